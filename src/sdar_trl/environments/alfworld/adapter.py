"""`AlfWorldEnv`: the real ALFWorld benchmark (TextWorld engine) behind our single-environment protocol.

Needs the `alfworld` package (`pip install "sdar-trl[alfworld]"`) and its game files, which
`alfworld-download` puts under `$ALFWORLD_DATA` (default `~/.cache/alfworld`). Nothing is downloaded
here. The adapter uses alfworld's `AlfredTWEnv` (the environment verl-agent and the SDAR reference
train on) to collect the solvable games of a split, then plays one game at a time through
`AlfredTWEnv.init_env(batch_size=1)`, unpacking the batch API:

- `reset(seed=i)` loads game `i` (modulo the number of games, in sorted path order);
- the task is the text after "Your task is to: " in the first observation; the task type is the
  prefix of the game's folder name (`pick_cool_then_place_in_recep-Apple-None-Fridge-1/...`);
- `admissible_actions` are `infos["admissible_commands"]` without "help"; `won` is `infos["won"]`;
- reward 10.0 on the winning step (as verl-agent), `truncated` at `max_episode_steps`.

Strings that cannot be ALFWorld commands (empty, longer than 200 characters, or with characters
outside printable ASCII) are answered "Nothing happens." without reaching TextWorld, as ALFWorld
itself answers unknown commands; they still count as a step.
"""

from __future__ import annotations

import copy
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..base import ResetNeededError, pick_game
from .world import (
    LOOK_AT_OBJ_IN_LIGHT,
    PICK_AND_PLACE_SIMPLE,
    PICK_CLEAN_THEN_PLACE,
    PICK_COOL_THEN_PLACE,
    PICK_HEAT_THEN_PLACE,
    PICK_TWO_OBJ_AND_PLACE,
    TASK_TYPES,
)

__all__ = ["AlfWorldEnv", "default_alfworld_config"]

INSTALL_HINT = 'pip install "sdar-trl[alfworld]"'
_TASK_MARKER = "Your task is to: "
_NOTHING_HAPPENS = "Nothing happens."
_MAX_COMMAND_CHARS = 200
_WIN_REWARD = 10.0
# Our split names -> (folder under json_2.1.1, AlfredTWEnv's train_eval argument).
_SPLITS: dict[str, tuple[str, str]] = {
    "train": ("train", "train"),
    "valid_seen": ("valid_seen", "eval_in_distribution"),
    "valid_unseen": ("valid_unseen", "eval_out_of_distribution"),
}


def default_alfworld_config(data_path: str | os.PathLike[str], max_episode_steps: int = 50) -> dict[str, Any]:
    """The `AlfredTWEnv` configuration the adapter uses: all six task types, no expert, no randomisation.

    It mirrors alfworld's `configs/base_config.yaml` for the text-only environment; pass
    `config=` to `AlfWorldEnv` to override any key (nested dicts are merged).
    """
    root = Path(data_path)
    json_root = root / "json_2.1.1"
    return {
        "dataset": {
            "data_path": str(json_root / "train"),
            "eval_id_data_path": str(json_root / "valid_seen"),
            "eval_ood_data_path": str(json_root / "valid_unseen"),
            "num_train_games": -1,
            "num_eval_games": -1,
        },
        "logic": {"domain": str(root / "logic" / "alfred.pddl"), "grammar": str(root / "logic" / "alfred.twl2")},
        "env": {
            "type": "AlfredTWEnv",
            "domain_randomization": False,
            "task_types": [1, 2, 3, 4, 5, 6],
            "expert_timeout_steps": 150,
            "expert_type": "handcoded",
            "goal_desc_human_anns_prob": 0.0,
        },
        "general": {"training_method": "dqn"},
        "rl": {"training": {"max_nb_steps_per_episode": max_episode_steps}},
        "dagger": {"training": {"max_nb_steps_per_episode": max_episode_steps}},
    }


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def task_type_from_game(game_file: str, task: str = "") -> str:
    """ALFWorld's task type of a game: the folder-name prefix, else guessed from the task sentence."""
    for part in reversed(Path(game_file).parts):
        prefix = part.split("-", 1)[0]
        if prefix in TASK_TYPES:
            return prefix
    text = task.lower()
    if text.startswith(("look at", "examine")):
        return LOOK_AT_OBJ_IN_LIGHT
    for words, task_type in (
        (("clean",), PICK_CLEAN_THEN_PLACE),
        (("hot", "heat"), PICK_HEAT_THEN_PLACE),
        (("cool", "cold"), PICK_COOL_THEN_PLACE),
        (("two",), PICK_TWO_OBJ_AND_PLACE),
    ):
        if any(word in text.split() for word in words):
            return task_type
    return PICK_AND_PLACE_SIMPLE


def _unbatch(infos: Mapping[str, Any]) -> dict[str, Any]:
    """TextWorld's batched infos (key -> one value per game) for our single game."""
    single: dict[str, Any] = {}
    for key, values in infos.items():
        single[key] = values[0] if isinstance(values, (list, tuple)) and values else values
    return single


def _plausible_command(text: str) -> bool:
    return 0 < len(text) <= _MAX_COMMAND_CHARS and all(" " <= ch <= "~" for ch in text)


class AlfWorldEnv:
    """The real ALFWorld text games (through `alfworld`'s `AlfredTWEnv`) as an `AgentEnvironment`.

    Args:
        split: "train" (3,553 games), "valid_seen" (140) or "valid_unseen" (134) with the standard data.
        difficulty: only "full" (the real benchmark has one level); accepted for a uniform signature.
        data_path: the folder `alfworld-download` filled; default `$ALFWORLD_DATA`, else `~/.cache/alfworld`.
        config: overrides merged into `default_alfworld_config(data_path, max_episode_steps)`.
        seed: seeds the game choice of `reset(seed=None)`.
        max_episode_steps: the step limit (ALFWorld with verl-agent: 50).

    Raises:
        ImportError: the `alfworld` package is not installed.
        FileNotFoundError: the game files of `split` are not under `data_path`.
    """

    action_format = "think_action"

    def __init__(
        self,
        *,
        split: str = "train",
        difficulty: str | int = "full",
        data_path: str | os.PathLike[str] | None = None,
        config: Mapping[str, Any] | None = None,
        seed: int = 0,
        max_episode_steps: int = 50,
    ) -> None:
        if split not in _SPLITS:
            raise ValueError(f"split={split!r} is not an ALFWorld split; expected one of {tuple(_SPLITS)}.")
        if difficulty not in ("full", 2):
            raise ValueError(
                f"difficulty={difficulty!r}: the real ALFWorld has a single level, 'full'. Use "
                "make_env('alfworld-mini', difficulty=...) for easier tasks."
            )
        if not isinstance(max_episode_steps, int) or max_episode_steps < 1:
            raise ValueError(f"max_episode_steps={max_episode_steps!r} must be a positive int (ALFWorld uses 50).")
        try:
            from alfworld.agents.environment import get_environment
        except ImportError as error:
            raise ImportError(
                f"AlfWorldEnv needs the `alfworld` package, which is not installed ({error}). Install it with "
                f"`{INSTALL_HINT}`, then fetch the games with `alfworld-download`."
            ) from error

        root = Path(data_path or os.environ.get("ALFWORLD_DATA") or Path.home() / ".cache" / "alfworld").expanduser()
        folder = root / "json_2.1.1" / _SPLITS[split][0]
        if not folder.is_dir():
            raise FileNotFoundError(
                f"ALFWorld games for split {split!r} not found: {str(folder)!r} does not exist. Run "
                f"`alfworld-download` (it fills $ALFWORLD_DATA, default ~/.cache/alfworld), or set ALFWORLD_DATA / "
                "pass data_path= to the folder that holds json_2.1.1/."
            )
        self.split = split
        self.difficulty = "full"
        self.data_path = root
        self.max_episode_steps = max_episode_steps
        self.config = _merge(default_alfworld_config(root, max_episode_steps), config or {})
        self._base = get_environment(self.config["env"]["type"])(self.config, train_eval=_SPLITS[split][1])
        self.game_files: list[str] = sorted(str(path) for path in self._base.game_files)
        if not self.game_files:
            raise FileNotFoundError(
                f"no solvable ALFWorld game (game.tw-pddl) found under {str(folder)!r}. Re-run `alfworld-download` "
                "or point ALFWORLD_DATA / data_path= at a complete download."
            )
        self.num_tasks: int | None = len(self.game_files)
        self._rng = random.Random(seed)
        self._env: Any = None
        self._env_game: str | None = None
        self._game: str | None = None
        self._admissible: list[str] = []
        self._last_obs = ""
        self._steps = 0
        self._won = False
        self._terminated = False
        self._truncated = False
        self.closed = False

    # -- protocol ------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Load game `seed` (modulo the number of games) and return its first observation."""
        game = pick_game(self.game_files, seed, options, self._rng)
        if game != self._env_game:
            self._close_env()
            self._base.game_files = [game]
            self._base.num_games = 1
            self._env = self._base.init_env(batch_size=1)
            self._env_game = game
        observations, infos = self._env.reset()
        info = _unbatch(infos)
        obs = str(observations[0])
        marker = obs.find(_TASK_MARKER)
        if marker < 0:
            raise RuntimeError(
                f"the first observation of {game!r} has no {_TASK_MARKER!r} line; got {obs[:200]!r}. Is this an "
                "ALFWorld game file?"
            )
        task = obs[marker + len(_TASK_MARKER) :].strip()
        self._game = game
        self._steps = 0
        self._won = self._terminated = self._truncated = False
        self._last_obs = obs
        self._admissible = self._commands(info)
        return obs, {
            "task": task,
            "task_type": task_type_from_game(game, task),
            "admissible_actions": list(self._admissible),
            "task_id": game,
            "split": self.split,
        }

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Send one command to the game; see the module docstring for rewards and implausible strings."""
        if self._env is None or self._game is None:
            raise ResetNeededError("AlfWorldEnv.step() called before reset(); call reset(seed=...) first.")
        if self._terminated or self._truncated:
            return self._last_obs, 0.0, self._terminated, self._truncated, self._info()
        self._steps += 1
        command = " ".join(action.lower().split()) if isinstance(action, str) else ""
        done = False
        if _plausible_command(command):
            observations, _, dones, infos = self._env.step([command])
            info = _unbatch(infos)
            obs = str(observations[0])
            done = bool(dones[0])
            self._won = bool(info.get("won", False))
            self._admissible = self._commands(info)
        else:
            obs = _NOTHING_HAPPENS
        self._last_obs = obs
        self._terminated = self._won
        self._truncated = not self._won and (done or self._steps >= self.max_episode_steps)
        reward = _WIN_REWARD if self._won else 0.0
        return obs, reward, self._terminated, self._truncated, self._info()

    def close(self) -> None:
        """Close the TextWorld environment; safe to call repeatedly."""
        self._close_env()
        self.closed = True

    def privileged_facts(self) -> str:
        """No oracle facts are extracted from real games (the teacher gets skills only)."""
        return ""

    # -- internals -----------------------------------------------------------------------------------
    def _commands(self, info: Mapping[str, Any]) -> list[str]:
        commands = info.get("admissible_commands") or []
        return [str(command) for command in commands if command != "help"]

    def _info(self) -> dict[str, Any]:
        return {"won": self._won, "admissible_actions": list(self._admissible), "task_id": self._game}

    def _close_env(self) -> None:
        if self._env is not None:
            self._env.close()
        self._env = None
        self._env_game = None
