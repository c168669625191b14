"""`AlfWorldMiniEnv`: ALFWorld's household tasks, generated procedurally, in pure Python.

```python
from sdar_trl.environments.alfworld import AlfWorldMiniEnv

env = AlfWorldMiniEnv(split="valid_unseen", difficulty="full")
obs, info = env.reset(seed=3)                 # info["task"] == "put a clean apple in fridge."
obs, reward, terminated, truncated, info = env.step(env.expert_action())
```

See `docs/environments/alfworld-mini.md` for the transcript, the grammar, the splits, the
difficulty levels and how it differs from the real benchmark.
"""

from __future__ import annotations

import random
from typing import Any

from ..base import ResetNeededError, row_seed
from .engine import AlfredEngine, render_initial_observation
from .expert import expert_command, expert_response
from .generation import generate_world
from .world import (
    LOOK_AT_OBJ_IN_LIGHT,
    OPENABLE,
    SPLITS,
    WorldSpec,
    natural_key,
    normalize_difficulty,
    split_size,
    type_of,
)

__all__ = ["AlfWorldMiniEnv"]

_WIN_REWARD = 10.0
_TRAIN_SEED_RANGE = 2**31


class AlfWorldMiniEnv:
    """ALFWorld-style household tasks on procedurally generated rooms (the `alfworld-mini` environment).

    Follows `sdar_trl.environments.base.AgentEnvironment`. Reward 10.0 on the step that completes
    the task, else 0.0; `terminated=True` on success, `truncated=True` when `max_episode_steps`
    steps were played without success.

    Args:
        split: "train" (unbounded: every seed >= 0 is a distinct task), "valid_seen" (140 tasks) or
            "valid_unseen" (134 tasks on room layouts that train never produces).
        difficulty: "easy" (3-5 receptacles, the object in one of the first two that can hold it),
            "medium" (6-12 receptacles) or "full" (default, ALFWorld scale: 11-30 receptacles, 10-24
            distractor objects); 0, 1, 2 are aliases.
        seed: seeds the task choice of `reset(seed=None)`.
        max_episode_steps: the step limit (ALFWorld: 50).
    """

    action_format = "think_action"

    def __init__(
        self,
        *,
        split: str = "train",
        difficulty: str | int = "full",
        seed: int = 0,
        max_episode_steps: int = 50,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split={split!r} is not a split of alfworld-mini; expected one of {SPLITS}.")
        if not isinstance(max_episode_steps, int) or max_episode_steps < 1:
            raise ValueError(f"max_episode_steps={max_episode_steps!r} must be a positive int (ALFWorld uses 50).")
        self.split = split
        self.difficulty = normalize_difficulty(difficulty)
        self.max_episode_steps = max_episode_steps
        self.num_tasks: int | None = split_size(split)
        self._rng = random.Random(seed)
        self._engine: AlfredEngine | None = None
        self._world: WorldSpec | None = None
        self._task_id = ""
        self._steps = 0
        self._last_obs = ""
        self._terminated = False
        self._truncated = False
        self.closed = False

    # -- protocol ------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Start task `seed` of the split (eval splits: modulo their size); a random task when None.

        Args:
            seed: the task index (an int >= 0 for train), or None to draw one with the env's RNG.
            options: the dataset row; its int `"seed"` is used when `seed` is None.
        """
        seed = row_seed(seed, options)
        if seed is None:
            seed = self._rng.randrange(self.num_tasks or _TRAIN_SEED_RANGE)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int task index or None, got {type(seed).__name__} ({seed!r}).")
        if self.num_tasks is None and seed < 0:
            raise ValueError(f"seed={seed} is negative; train task indices are ints >= 0.")
        index = seed % self.num_tasks if self.num_tasks is not None else seed
        self._world = generate_world(self.split, index, self.difficulty)
        self._engine = AlfredEngine(self._world)
        self._task_id = f"alfworld-mini/{self.split}/{self.difficulty}/{index}"
        self._steps = 0
        self._terminated = self._truncated = False
        self._last_obs = render_initial_observation(self._world)
        task = self._world.task
        info = {
            "task": task.sentence,
            "task_type": task.task_type,
            "admissible_actions": self._engine.admissible_actions(),
            "task_id": self._task_id,
            "split": self.split,
            "difficulty": self.difficulty,
            "room_type": self._world.room_type,
        }
        return self._last_obs, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Apply one command; anything not admissible gets "Nothing happens." and changes nothing."""
        engine = self._require_engine("step")
        if self._terminated or self._truncated:
            return self._last_obs, 0.0, self._terminated, self._truncated, self._step_info(engine)
        self._steps += 1
        feedback, _ = engine.execute(action if isinstance(action, str) else "")
        self._terminated = engine.won
        self._truncated = not engine.won and self._steps >= self.max_episode_steps
        self._last_obs = feedback
        reward = _WIN_REWARD if engine.won else 0.0
        return feedback, reward, self._terminated, self._truncated, self._step_info(engine)

    def close(self) -> None:
        """Nothing to release; safe to call repeatedly."""
        self.closed = True

    # -- extras --------------------------------------------------------------------------------------
    def expert_action(self) -> str:
        """The expert's next command (see `sdar_trl.environments.alfworld.expert`)."""
        return expert_command(self._require_engine("expert_action"))

    def expert_response(self) -> str:
        """The expert's next move as a model response, `<think>reason</think><action>command</action>`."""
        return expert_response(self._require_engine("expert_response"))

    def privileged_facts(self) -> str:
        """Oracle facts about the current task: where the target objects, the lamp and the destination are."""
        if self._engine is None:
            return ""
        engine = self._engine
        task = engine.task
        facts = []
        for obj in sorted(engine.where, key=natural_key):
            if type_of(obj) == task.object_type:
                place = engine.where[obj]
                facts.append(f"You are holding the {obj}." if place is None else f"The {obj} is {_at(place)}.")
        if task.task_type == LOOK_AT_OBJ_IN_LIGHT:
            lamps = [obj for obj in engine.where if type_of(obj) == task.lamp_type]
            facts += [
                f"The {lamp} is {_at(engine.where[lamp] or '')}; turn it on while holding the object."
                for lamp in lamps
            ]
        else:
            destination = engine.first_of_type(task.destination_type or "")
            facts.append(f"The {destination} is where it must go.")
            if task.appliance_type is not None:
                facts.append(f"Use the {engine.first_of_type(task.appliance_type)} to change its state first.")
        return " ".join(facts)

    @property
    def world(self) -> WorldSpec | None:
        """The spec of the current task (None before the first reset)."""
        return self._world

    # -- internals -----------------------------------------------------------------------------------
    def _require_engine(self, caller: str) -> AlfredEngine:
        if self._engine is None:
            raise ResetNeededError(f"AlfWorldMiniEnv.{caller}() called before reset(); call reset(seed=...) first.")
        return self._engine

    def _step_info(self, engine: AlfredEngine) -> dict[str, Any]:
        return {
            "won": engine.won,
            "admissible_actions": engine.admissible_actions(),
            "task_id": self._task_id,
            "task_type": engine.task.task_type,
        }


def _at(receptacle: str) -> str:
    return f"in the {receptacle}" if type_of(receptacle) in OPENABLE else f"on the {receptacle}"
