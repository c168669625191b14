"""The seeded task generator of `alfworld-mini`: `generate_world(split, index, difficulty)`.

Generation, in order: task type -> room type -> receptacle layout -> target object, destination,
appliance or lamp -> layout trimmed to the difficulty level -> placements of the targets, the lamp
and the distractors. A candidate is kept only if the search-order expert (`expert.py`) solves it
within ALFWorld's 50 steps, so every task is solvable by a policy that sees only the prompt.
`generate_world` is a pure function of its arguments: the same triple always gives the same `WorldSpec`, and
different train indices give different worlds (no repeat in the first 500,000 indices even at the smallest level).

The layers: `world` (data tables and types) <- `engine` (the rules) <- `expert` <- this module, which runs the
expert on each candidate; nothing below imports it.
"""

from __future__ import annotations

import random
from functools import lru_cache

from .engine import AlfredEngine
from .expert import expert_command
from .world import (
    _LEVELS,
    _ROOM_LAYOUTS,
    _ROOM_OBJECTS,
    _ROOM_SIZE,
    _TASK_RULES,
    _TEMPLATES,
    EVAL_SPLIT_TASK_TYPES,
    LAMP_HOLDERS,
    LAMP_TYPES,
    LOOK_AT_OBJ_IN_LIGHT,
    OBJECT_PLACES,
    PICK_TWO_OBJ_AND_PLACE,
    SPLITS,
    TASK_TYPES,
    TaskSpec,
    WorldSpec,
    _layout_of,
    _Level,
    is_held_out_layout,
    natural_key,
    normalize_difficulty,
    split_size,
    type_of,
)

__all__ = ["EXPERT_STEP_BUDGET", "generate_world"]


_MAX_COPIES = 3  # instances of one distractor type
EXPERT_STEP_BUDGET = 50  # ALFWorld's episode length: generated tasks are solvable by the expert within it


# -- generation ----------------------------------------------------------------------------------------------
def _eval_task_type(split: str, index: int) -> str:
    counts = EVAL_SPLIT_TASK_TYPES[split]
    table = [task_type for task_type in TASK_TYPES for _ in range(counts[task_type])]
    random.Random(f"alfworld-mini/{split}/types").shuffle(table)
    return table[index % len(table)]


def _sample_room(rng: random.Random, room_type: str) -> dict[str, int]:
    low, high = _ROOM_SIZE[room_type]
    while True:
        counts = {kind: rng.randint(lo, hi) for kind, lo, hi in _ROOM_LAYOUTS[room_type]}
        if low <= sum(counts.values()) <= high:
            return {kind: n for kind, n in counts.items() if n > 0}


def _choose_goal(rng: random.Random, task_type: str, room_type: str, counts: dict[str, int]) -> TaskSpec | None:
    """A goal the room can host (None when it can host none of this type)."""
    _, appliance, allowed = _TASK_RULES[task_type]
    present = set(counts)
    candidates = []
    for obj in _ROOM_OBJECTS[room_type]:
        if allowed is not None and obj not in allowed:
            continue
        places = set(OBJECT_PLACES[obj]) & present
        if task_type == LOOK_AT_OBJ_IN_LIGHT:
            if places and present & set(LAMP_HOLDERS):
                candidates.append((obj, None))
            continue
        for destination in sorted(places - {appliance}):
            if places - {destination}:  # somewhere else to start from
                candidates.append((obj, destination))
    if not candidates:
        return None
    obj, destination = rng.choice(candidates)
    lamp = rng.choice(LAMP_TYPES) if task_type == LOOK_AT_OBJ_IN_LIGHT else None
    template = rng.choice(_TEMPLATES[task_type])
    sentence = template.format(obj=obj, recep=destination, lamp=lamp)
    return TaskSpec(task_type, obj, destination, appliance, lamp, sentence)


def _trim_room(rng: random.Random, counts: dict[str, int], task: TaskSpec, size: tuple[int, int]) -> dict[str, int]:
    """Keep a random subset of the receptacles that still hosts the task (easy / medium levels)."""
    sources = sorted(set(OBJECT_PLACES[task.object_type]) & set(counts) - {task.destination_type})
    required = [rng.choice(sources)]
    for kind in (task.destination_type, task.appliance_type):
        if kind is not None and kind not in required:
            required.append(kind)
    if task.lamp_type is not None:
        holders = sorted(set(LAMP_HOLDERS) & set(counts))
        if not set(required) & set(holders):
            required.append(rng.choice(holders))
    pool = [kind for kind, n in sorted(counts.items()) for _ in range(n)]
    for kind in required:
        pool.remove(kind)
    rng.shuffle(pool)
    target = max(len(required), rng.randint(*size))
    kept = required + pool[: target - len(required)]
    trimmed: dict[str, int] = {}
    for kind in kept:
        trimmed[kind] = trimmed.get(kind, 0) + 1
    return trimmed


def _place_objects(
    rng: random.Random, room_type: str, receptacles: list[str], task: TaskSpec, level: _Level
) -> list[tuple[str, str]]:
    by_type: dict[str, list[str]] = {}
    for name in receptacles:
        by_type.setdefault(type_of(name), []).append(name)
    placements: list[tuple[str, str]] = []

    # Targets: every instance of the target type starts outside the destination type.
    sources = [r for r in receptacles if type_of(r) in OBJECT_PLACES[task.object_type]]
    sources = [r for r in sources if type_of(r) != task.destination_type]
    low, high = level.target_copies
    if task.task_type == PICK_TWO_OBJ_AND_PLACE:
        low, high = max(2, low), max(2, high, low)
    spots = sources[:2] if level.early_targets else sources
    placements += [(f"{task.object_type} {i}", rng.choice(spots)) for i in range(1, rng.randint(low, high) + 1)]

    # Lamps: the task's lamp, or (bedrooms and living rooms) sometimes a desk lamp as furniture.
    holders = [r for r in receptacles if type_of(r) in LAMP_HOLDERS]
    if task.lamp_type is not None:
        placements.append((f"{task.lamp_type} 1", rng.choice(holders)))
    elif holders and room_type in ("bedroom", "livingroom") and rng.random() < 0.5:
        placements.append(("desklamp 1", rng.choice(holders)))

    # Distractors: other object types, each on a receptacle that can hold it (at most _MAX_COPIES per type).
    spots_of = {
        kind: [r for place in OBJECT_PLACES[kind] for r in by_type.get(place, ())]
        for kind in _ROOM_OBJECTS[room_type]
        if kind != task.object_type
    }
    kinds = [kind for kind, spots in spots_of.items() if spots]
    numbers: dict[str, int] = {}
    for _ in range(rng.randint(*level.distractors)):
        if not kinds:
            break
        kind = rng.choice(kinds)
        numbers[kind] = numbers.get(kind, 0) + 1
        placements.append((f"{kind} {numbers[kind]}", rng.choice(spots_of[kind])))
        if numbers[kind] == _MAX_COPIES:
            kinds.remove(kind)
    return placements


def _solvable(world: WorldSpec, max_steps: int) -> bool:
    engine = AlfredEngine(world)
    for _ in range(max_steps):
        engine.execute(expert_command(engine))
        if engine.won:
            return True
    return False


@lru_cache(maxsize=4096)
def generate_world(split: str, index: int, difficulty: str = "full") -> WorldSpec:
    """The world of task `index` of `split` at `difficulty` (deterministic; cached).

    Args:
        split: "train", "valid_seen" or "valid_unseen".
        index: the task index (>= 0; eval splits take it modulo their size).
        difficulty: "easy", "medium" or "full".

    Every returned world is solved by the expert within `EXPERT_STEP_BUDGET` (ALFWorld's 50 steps),
    whatever step limit an environment later applies.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not a split of alfworld-mini; expected one of {SPLITS}.")
    difficulty = normalize_difficulty(difficulty)
    size = split_size(split)
    if size is not None:
        index %= size
    level = _LEVELS[difficulty]
    rng = random.Random(f"alfworld-mini/{split}/{difficulty}/{index}")
    task_type = rng.choice(TASK_TYPES) if size is None else _eval_task_type(split, index)
    held_out = split == "valid_unseen"
    for _ in range(2000):
        room_type = rng.choice(_TASK_RULES[task_type][0])
        counts = _sample_room(rng, room_type)
        task = _choose_goal(rng, task_type, room_type, counts)
        if task is None:
            continue
        if level.receptacles is not None:
            counts = _trim_room(rng, counts, task, level.receptacles)
        receptacles = sorted((f"{kind} {i}" for kind, n in counts.items() for i in range(1, n + 1)), key=natural_key)
        if is_held_out_layout(room_type, _layout_of(receptacles)) != held_out:
            continue
        for _ in range(20):
            placements = _place_objects(rng, room_type, receptacles, task, level)
            world = WorldSpec(room_type, tuple(receptacles), tuple(placements), task, split, index, difficulty)
            if _solvable(world, EXPERT_STEP_BUDGET):
                return world
    raise RuntimeError(  # pragma: no cover - an internal invariant, checked by the tests over many seeds
        f"alfworld-mini could not generate task {index} of split {split!r} at difficulty {difficulty!r}."
    )
