"""alfworld-mini command grammar: every command with a valid case, invalid cases and the exact feedback text.

One hand-built kitchen serves every case, so each row reads as a tiny scenario:
`(setup commands, command, expected feedback or None for "Nothing happens.")`.
"""

from __future__ import annotations

import pytest

from sdar_trl.environments.alfworld.engine import NOTHING_HAPPENS, AlfredEngine, render_initial_observation
from sdar_trl.environments.alfworld.world import PICK_HEAT_THEN_PLACE, TaskSpec, WorldSpec

ROOM = (
    "cabinet 1",
    "cabinet 2",
    "countertop 1",
    "diningtable 1",
    "fridge 1",
    "microwave 1",
    "sidetable 1",
    "sinkbasin 1",
)
WORLD = WorldSpec(
    room_type="kitchen",
    receptacles=ROOM,
    placements=(
        ("apple 1", "countertop 1"),
        ("mug 2", "countertop 1"),
        ("mug 1", "cabinet 1"),
        ("knife 1", "cabinet 2"),
        ("bread 1", "fridge 1"),
        ("desklamp 1", "sidetable 1"),
    ),
    task=TaskSpec(PICK_HEAT_THEN_PLACE, "apple", "diningtable", "microwave", None, "put a hot apple in diningtable."),
    split="train",
    index=0,
    difficulty="full",
)

AT_COUNTER = ("go to countertop 1",)
HOLD_APPLE = ("go to countertop 1", "take apple 1 from countertop 1")
AT_CABINET = ("go to cabinet 1",)
CABINET_OPEN = ("go to cabinet 1", "open cabinet 1")

# (id, setup, command, expected feedback; None means "Nothing happens." and no state change)
CASES = [
    # go to
    ("goto", (), "go to countertop 1",
     "You arrive at countertop 1. On the countertop 1, you see a apple 1, and a mug 2."),
    ("goto-closed", (), "go to cabinet 1", "You arrive at cabinet 1. The cabinet 1 is closed."),
    ("goto-empty", (), "go to diningtable 1", "You arrive at diningtable 1. On the diningtable 1, you see nothing."),
    ("goto-open", (*CABINET_OPEN, "go to countertop 1"), "go to cabinet 1",
     "You arrive at cabinet 1. The cabinet 1 is open. In it, you see a mug 1."),
    ("goto-unknown", (), "go to cabinet 9", None),
    ("goto-here", AT_COUNTER, "go to countertop 1", None),
    ("goto-object", (), "go to apple 1", None),
    # open / close
    ("open", AT_CABINET, "open cabinet 1", "You open the cabinet 1. The cabinet 1 is open. In it, you see a mug 1."),
    ("open-empty", ("go to microwave 1",), "open microwave 1",
     "You open the microwave 1. The microwave 1 is open. In it, you see nothing."),
    ("open-elsewhere", (), "open cabinet 1", None),
    ("open-not-openable", AT_COUNTER, "open countertop 1", None),
    ("open-twice", CABINET_OPEN, "open cabinet 1", None),
    ("close", CABINET_OPEN, "close cabinet 1", "You close the cabinet 1."),
    ("close-closed", AT_CABINET, "close cabinet 1", None),
    ("close-elsewhere", (*CABINET_OPEN, "go to countertop 1"), "close cabinet 1", None),
    # take
    ("take", AT_COUNTER, "take apple 1 from countertop 1", "You pick up the apple 1 from the countertop 1."),
    ("take-open", CABINET_OPEN, "take mug 1 from cabinet 1", "You pick up the mug 1 from the cabinet 1."),
    ("take-closed", AT_CABINET, "take mug 1 from cabinet 1", None),
    ("take-hands-full", HOLD_APPLE, "take mug 2 from countertop 1", None),
    ("take-wrong-receptacle", AT_COUNTER, "take apple 1 from diningtable 1", None),
    ("take-elsewhere", (), "take apple 1 from countertop 1", None),
    ("take-lamp", ("go to sidetable 1",), "take desklamp 1 from sidetable 1", None),
    ("take-no-from", AT_COUNTER, "take apple 1", None),
    # move / put
    ("move", (*HOLD_APPLE, "go to diningtable 1"), "move apple 1 to diningtable 1",
     "You move the apple 1 to the diningtable 1."),
    ("put-in-on", (*HOLD_APPLE, "go to diningtable 1"), "put apple 1 in/on diningtable 1",
     "You move the apple 1 to the diningtable 1."),
    ("put-on", (*HOLD_APPLE, "go to diningtable 1"), "put apple 1 on diningtable 1",
     "You move the apple 1 to the diningtable 1."),
    ("put-in", (*HOLD_APPLE, "go to fridge 1", "open fridge 1"), "put apple 1 in fridge 1",
     "You move the apple 1 to the fridge 1."),
    ("move-closed", (*HOLD_APPLE, "go to fridge 1"), "move apple 1 to fridge 1", None),
    ("move-cannot-hold", (*HOLD_APPLE, "go to cabinet 1", "open cabinet 1"), "move apple 1 to cabinet 1", None),
    ("move-not-held", AT_COUNTER, "move apple 1 to countertop 1", None),
    ("move-elsewhere", HOLD_APPLE, "move apple 1 to diningtable 1", None),
    # heat / cool / clean
    ("heat", (*HOLD_APPLE, "go to microwave 1"), "heat apple 1 with microwave 1",
     "You heat the apple 1 using the microwave 1."),
    ("heat-wrong-appliance", (*HOLD_APPLE, "go to fridge 1"), "heat apple 1 with fridge 1", None),
    ("heat-elsewhere", HOLD_APPLE, "heat apple 1 with microwave 1", None),
    ("heat-not-held", ("go to microwave 1",), "heat apple 1 with microwave 1", None),
    ("heat-not-heatable", ("go to cabinet 2", "open cabinet 2", "take knife 1 from cabinet 2", "go to microwave 1"),
     "heat knife 1 with microwave 1", None),
    ("cool", (*HOLD_APPLE, "go to fridge 1"), "cool apple 1 with fridge 1",
     "You cool the apple 1 using the fridge 1."),
    ("cool-wrong-appliance", (*HOLD_APPLE, "go to sinkbasin 1"), "cool apple 1 with sinkbasin 1", None),
    ("clean", (*HOLD_APPLE, "go to sinkbasin 1"), "clean apple 1 with sinkbasin 1",
     "You clean the apple 1 using the sinkbasin 1."),
    ("clean-wrong-appliance", (*HOLD_APPLE, "go to microwave 1"), "clean apple 1 with microwave 1", None),
    # use
    ("use", ("go to sidetable 1",), "use desklamp 1", "You turn on the desklamp 1."),
    ("use-elsewhere", AT_COUNTER, "use desklamp 1", None),
    ("use-not-a-lamp", AT_COUNTER, "use apple 1", None),
    # examine
    ("examine-receptacle", AT_COUNTER, "examine countertop 1", "On the countertop 1, you see a apple 1, and a mug 2."),
    ("examine-closed", AT_CABINET, "examine cabinet 1", "The cabinet 1 is closed."),
    ("examine-open", CABINET_OPEN, "examine cabinet 1", "The cabinet 1 is open. In it, you see a mug 1."),
    ("examine-receptacle-elsewhere", (), "examine countertop 1", None),
    ("examine-object", AT_COUNTER, "examine apple 1", "There's nothing special about apple 1."),
    ("examine-held", (*HOLD_APPLE, "go to diningtable 1"), "examine apple 1",
     "There's nothing special about apple 1."),
    ("examine-hot", (*HOLD_APPLE, "go to microwave 1", "heat apple 1 with microwave 1"), "examine apple 1",
     "This is a hot apple 1."),
    ("examine-cold", (*HOLD_APPLE, "go to fridge 1", "cool apple 1 with fridge 1"), "examine apple 1",
     "This is a cold apple 1."),
    ("examine-clean", (*HOLD_APPLE, "go to sinkbasin 1", "clean apple 1 with sinkbasin 1"), "examine apple 1",
     "This is a clean apple 1."),
    ("examine-hot-clean",
     (*HOLD_APPLE, "go to sinkbasin 1", "clean apple 1 with sinkbasin 1", "go to microwave 1",
      "heat apple 1 with microwave 1"),
     "examine apple 1", "This is a hot and clean apple 1."),
    ("examine-lamp-off", ("go to sidetable 1",), "examine desklamp 1", "This desklamp 1 is off."),
    ("examine-lamp-on", ("go to sidetable 1", "use desklamp 1"), "examine desklamp 1", "This desklamp 1 is on."),
    ("examine-inside-closed", AT_CABINET, "examine mug 1", None),
    ("examine-elsewhere", (), "examine apple 1", None),
    # inventory / look
    ("inventory-empty", (), "inventory", "You are not carrying anything."),
    ("inventory-held", HOLD_APPLE, "inventory", "You are carrying: a apple 1."),
    ("look-middle", (), "look",
     "You are in the middle of a room. Looking quickly around you, you see a cabinet 1, a cabinet 2, a countertop 1, "
     "a diningtable 1, a fridge 1, a microwave 1, a sidetable 1, and a sinkbasin 1."),
    ("look-at", AT_COUNTER, "look", "You are facing the countertop 1. Next to it, you see nothing."),
    # malformed
    ("empty", AT_COUNTER, "", None),
    ("verb-only", AT_COUNTER, "take", None),
    ("unknown-verb", AT_COUNTER, "eat apple 1", None),
    ("help", AT_COUNTER, "help", None),
    ("tags", AT_COUNTER, "<action>look</action>", None),
    ("trailing-words", AT_COUNTER, "look around", None),
]  # fmt: skip


def _engine_after(setup: tuple[str, ...]) -> AlfredEngine:
    engine = AlfredEngine(WORLD)
    for command in setup:
        feedback, accepted = engine.execute(command)
        assert accepted, f"setup command {command!r} was refused: {feedback!r}"
    return engine


def _snapshot(engine: AlfredEngine) -> tuple[object, ...]:
    return (
        engine.location,
        engine.holding,
        sorted(engine.opened),
        {name: list(objs) for name, objs in engine.contents.items()},
        sorted(engine.hot),
        sorted(engine.cool),
        sorted(engine.clean),
        sorted(engine.toggled),
        engine.won,
    )


@pytest.mark.parametrize(("setup", "command", "expected"), [case[1:] for case in CASES], ids=[c[0] for c in CASES])
def test_command(setup, command, expected):
    engine = _engine_after(setup)
    admissible = engine.admissible_actions()
    before = _snapshot(engine)
    feedback, accepted = engine.execute(command)
    if expected is None:
        assert (feedback, accepted) == (NOTHING_HAPPENS, False)
        assert _snapshot(engine) == before, "a refused command must leave the state untouched"
        assert engine.normalize(command) not in admissible
    else:
        assert (feedback, accepted) == (expected, True)
        put_alias = command.startswith("put ")
        assert put_alias or command in admissible, f"{command!r} was accepted but not listed as admissible"


def test_every_command_kind_has_valid_and_invalid_cases():
    verbs = (
        "go",
        "open",
        "close",
        "take",
        "move",
        "put",
        "heat",
        "cool",
        "clean",
        "use",
        "examine",
        "inventory",
        "look",
    )
    for verb in verbs:
        rows = [case for case in CASES if case[2].split(" ", 1)[0] == verb]
        assert any(row[3] is not None for row in rows), f"no valid case for {verb!r}"
        if verb not in ("inventory", "look", "put"):
            assert any(row[3] is None for row in rows), f"no invalid case for {verb!r}"


def test_whitespace_and_case_are_normalised():
    engine = _engine_after(())
    assert engine.execute("  GO   to Countertop 1 ")[1]
    assert engine.location == "countertop 1"


def test_admissible_actions_at_counter_match_alfworld_shape():
    engine = _engine_after(AT_COUNTER)
    assert engine.admissible_actions() == [
        "examine apple 1",
        "examine countertop 1",
        "examine mug 2",
        "go to cabinet 1",
        "go to cabinet 2",
        "go to diningtable 1",
        "go to fridge 1",
        "go to microwave 1",
        "go to sidetable 1",
        "go to sinkbasin 1",
        "inventory",
        "look",
        "take apple 1 from countertop 1",
        "take mug 2 from countertop 1",
    ]


def test_admissible_actions_while_holding():
    engine = _engine_after((*HOLD_APPLE, "go to microwave 1"))
    actions = engine.admissible_actions()
    assert "heat apple 1 with microwave 1" in actions
    assert "open microwave 1" in actions
    assert "examine apple 1" in actions
    assert not any(action.startswith(("take ", "move ")) for action in actions)  # closed microwave, hands full


def test_every_admissible_action_is_accepted():
    for setup in ((), AT_COUNTER, HOLD_APPLE, CABINET_OPEN, ("go to sidetable 1",), (*HOLD_APPLE, "go to fridge 1")):
        for command in _engine_after(setup).admissible_actions():
            engine = _engine_after(setup)
            assert engine.execute(command)[1], f"admissible {command!r} refused after {setup}"


def test_initial_observation_and_goal():
    assert render_initial_observation(WORLD) == (
        "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room. Looking quickly around you, you see "
        "a cabinet 1, a cabinet 2, a countertop 1, a diningtable 1, a fridge 1, a microwave 1, a sidetable 1, and a "
        "sinkbasin 1.\n\nYour task is to: put a hot apple in diningtable."
    )
    engine = _engine_after((*HOLD_APPLE, "go to diningtable 1"))
    engine.execute("move apple 1 to diningtable 1")
    assert not engine.won, "a cold apple on the table is not a hot apple"
    engine = _engine_after((*HOLD_APPLE, "go to microwave 1", "heat apple 1 with microwave 1", "go to diningtable 1"))
    assert not engine.won
    engine.execute("move apple 1 to diningtable 1")
    assert engine.won
