"""ALFWorld for agent-mode training: the procedural `alfworld-mini` and an adapter to the real benchmark.

- `AlfWorldMiniEnv` (`make_env("alfworld-mini")`): pure-Python household tasks with ALFWorld's
  six task types, command grammar, feedback text and reward; seeded generation; an imitable expert.
- `AlfWorldEnv` (`make_env("alfworld")`): the real ALFWorld TextWorld games through the `alfworld`
  package (`pip install "sdar-trl[alfworld]"`, then `alfworld-download`).

The skill library for the teacher is `SkillBank.from_package("alfworld")` (this folder's skills.json).
"""

from .adapter import AlfWorldEnv
from .env import AlfWorldMiniEnv
from .world import (
    DIFFICULTIES,
    LOOK_AT_OBJ_IN_LIGHT,
    PICK_AND_PLACE_SIMPLE,
    PICK_CLEAN_THEN_PLACE,
    PICK_COOL_THEN_PLACE,
    PICK_HEAT_THEN_PLACE,
    PICK_TWO_OBJ_AND_PLACE,
    SPLITS,
    TASK_TYPES,
)

__all__ = [
    "DIFFICULTIES",
    "LOOK_AT_OBJ_IN_LIGHT",
    "PICK_AND_PLACE_SIMPLE",
    "PICK_CLEAN_THEN_PLACE",
    "PICK_COOL_THEN_PLACE",
    "PICK_HEAT_THEN_PLACE",
    "PICK_TWO_OBJ_AND_PLACE",
    "SPLITS",
    "TASK_TYPES",
    "AlfWorldEnv",
    "AlfWorldMiniEnv",
]
