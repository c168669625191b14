"""`TextWorldEnv`: TextWorld games (the engine behind ALFWorld) behind our single-environment protocol.

Needs the `textworld` package (`pip install "sdar-trl[textworld]"`) and game files: ones you generate, e.g.
`tw-make tw-simple --rewards dense --goal detailed --seed 3 --output games/game_3.z8`, or ones you own. Each game
file (`.z8` / `.ulx`) must have the `.json` that `tw-make` writes next to it: TextWorld reads the objective,
the admissible commands and the walkthrough from it. Nothing is downloaded or generated here.

- `reset(seed=i)` plays game `i % len(game_files)` (game files in sorted path order), so a task row
  `{"seed": i}` is reproducible; the games are deterministic.
- The task is the game's objective (`EnvInfos(objective=True)`); the task type is `"textworld"`.
- `admissible_actions` are TextWorld's admissible commands in the current state.
- Reward: 1.0 on the step that wins the game, else 0.0 (a binary success reward, as the paper's benchmarks).
  The game's own score, normalised to [0, 1] by its maximum score, is reported as `info["score"]`
  (tw-make's `--rewards dense` games score every sub-goal, so it shows partial progress).
- `terminated` when the game is won or lost; `truncated` at `max_episode_steps` (TextWorld games have no
  step limit of their own).
- `expert_action()` is the next command of the game's walkthrough from the current state
  (`EnvInfos(policy_commands=True)`).

Strings that cannot be game commands (empty, longer than 200 characters, or with characters outside printable
ASCII such as a NUL byte) are answered without reaching the interpreter, with the text the game gives an
unknown verb; they still count as a step. The rollout cleans actions before they get here, but a native
interpreter is the last place a control character should be tried out.
"""

from __future__ import annotations

import glob
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..base import ResetNeededError, pick_game

__all__ = ["INSTALL_HINT", "TASK_TYPE", "TextWorldEnv", "resolve_game_files"]

INSTALL_HINT = 'pip install "sdar-trl[textworld]"'
TASK_TYPE = "textworld"
GAME_SUFFIXES = (".z8", ".z5", ".ulx")
_MAX_COMMAND_CHARS = 200
_UNKNOWN_COMMAND = "That's not a verb I recognise."
_WIN_REWARD = 1.0

GameFiles = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def resolve_game_files(game_files: GameFiles) -> list[str]:
    """The sorted game files named by `game_files`: a file, a folder (its game files), a glob, or a list of these.

    Raises:
        FileNotFoundError: a path or glob names no game file, or nothing was found at all.
        TypeError: `game_files` is not a path, a glob or a sequence of them.
    """
    if isinstance(game_files, (str, os.PathLike)):
        entries: list[str | os.PathLike[str]] = [game_files]
    elif isinstance(game_files, Sequence):
        entries = list(game_files)
    else:
        raise TypeError(
            f"game_files must be a path, a glob or a list of them, got {type(game_files).__name__} "
            f"({game_files!r:.80}). Pass e.g. game_files='games/*.z8'."
        )
    found: set[str] = set()
    for entry in entries:
        if not isinstance(entry, (str, os.PathLike)):
            raise TypeError(f"game_files entries must be paths or globs, got {type(entry).__name__} ({entry!r:.80}).")
        text = os.path.expanduser(os.fspath(entry))
        path = Path(text)
        if path.is_dir():
            matches = [str(p) for p in path.iterdir() if p.suffix in GAME_SUFFIXES]
        elif path.is_file():
            matches = [text]
        else:
            matches = [m for m in glob.glob(text) if Path(m).suffix in GAME_SUFFIXES and Path(m).is_file()]
        if not matches:
            raise FileNotFoundError(
                f"game_files entry {text!r} names no TextWorld game (a file, a folder or a glob of "
                f"{'/'.join(GAME_SUFFIXES)} files was expected). Generate games with e.g. `tw-make tw-simple "
                "--rewards dense --goal detailed --seed 0 --output games/game_0.z8`."
            )
        found.update(os.path.abspath(m) for m in matches)
    if not found:
        raise FileNotFoundError("game_files is empty; pass at least one TextWorld game file, folder or glob.")
    return sorted(found)


def _plausible_command(text: str) -> bool:
    return 0 < len(text) <= _MAX_COMMAND_CHARS and all(" " <= ch <= "~" for ch in text)


def _clean_feedback(text: str) -> str:
    """Game text without the interpreter's trailing `>` prompt and padding."""
    text = text.rstrip()
    if text.endswith(">"):
        text = text[:-1]
    return text.strip()


class TextWorldEnv:
    """TextWorld games as an `AgentEnvironment` (see the module docstring for tasks, rewards and limits).

    Args:
        game_files: the games: a game file, a folder of them, a glob (`"games/*.z8"`) or a list of these.
        max_episode_steps: the step limit (`truncated` when reached).
        seed: seeds the game choice of `reset(seed=None)`.
        split, difficulty: accepted for a uniform signature with the other environments; the games are the split.

    Raises:
        ImportError: the `textworld` package is not installed.
        FileNotFoundError / TypeError: `game_files` names no game (see `resolve_game_files`).
    """

    action_format = "think_action"

    def __init__(
        self,
        *,
        game_files: GameFiles,
        max_episode_steps: int = 50,
        seed: int = 0,
        split: str | None = None,
        difficulty: str | None = None,
    ) -> None:
        if not isinstance(max_episode_steps, int) or isinstance(max_episode_steps, bool) or max_episode_steps < 1:
            raise ValueError(f"max_episode_steps={max_episode_steps!r} must be a positive int (e.g. 50).")
        try:
            import textworld
        except ImportError as error:
            raise ImportError(
                f"TextWorldEnv needs the `textworld` package, which is not installed ({error}). Install it with "
                f"`{INSTALL_HINT}`."
            ) from error
        self._textworld = textworld
        self.game_files = resolve_game_files(game_files)
        self.num_tasks: int | None = len(self.game_files)
        self.split = split or "games"
        self.difficulty = difficulty
        self.max_episode_steps = max_episode_steps
        self.request_infos = textworld.EnvInfos(
            objective=True,
            description=True,
            admissible_commands=True,
            policy_commands=True,
            won=True,
            lost=True,
            score=True,
            max_score=True,
        )
        self._rng = random.Random(seed)
        self._env: Any = None
        self._env_game: str | None = None
        self._game: str | None = None
        self._state: Mapping[str, Any] = {}
        self._last_obs = ""
        self._steps = 0
        self._won = self._lost = self._truncated = False
        self.closed = False

    # -- protocol ------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Start game `seed % len(game_files)` (a row's `"seed"` when `seed` is None) and return its opening text."""
        game = pick_game(self.game_files, seed, options, self._rng)
        if game != self._env_game:
            self._close_env()
            self._env = self._textworld.start(game, request_infos=self.request_infos)
            self._env_game = game
        state = self._env.reset()
        objective = state.get("objective")
        if not isinstance(objective, str) or not objective.strip():
            raise RuntimeError(
                f"the game {game!r} has no objective (got {objective!r}); TextWorldEnv needs the game's .json "
                "next to it (tw-make writes one) and a game with a goal (tw-make ... --goal detailed)."
            )
        self._game = game
        self._state = state
        self._steps = 0
        self._won = self._lost = self._truncated = False
        # The opening text is the banner plus the room; the banner is ASCII art that only costs tokens.
        description = _clean_feedback(str(state.get("description") or ""))
        obs = f"{objective.strip()}\n\n{description}" if description else objective.strip()
        self._last_obs = obs
        return obs, {
            "task": objective.strip(),
            "task_type": TASK_TYPE,
            "admissible_actions": self._commands(),
            "task_id": game,
            "split": self.split,
        }

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Send one command to the game; see the module docstring for the reward and implausible strings."""
        if self._env is None or self._game is None:
            raise ResetNeededError("TextWorldEnv.step() called before reset(); call reset(seed=...) first.")
        terminated = self._won or self._lost
        if terminated or self._truncated:
            # The interpreter's end-of-game prompt (RESTART/RESTORE/QUIT) must not see further commands.
            return self._last_obs, 0.0, terminated, self._truncated, self._info()
        self._steps += 1
        command = " ".join(action.lower().split()) if isinstance(action, str) else ""
        reward = 0.0
        if _plausible_command(command):
            state, _, _ = self._env.step(command)
            self._state = state
            obs = _clean_feedback(str(state.feedback))
            self._won = bool(state.get("won"))
            self._lost = bool(state.get("lost"))
            reward = _WIN_REWARD if self._won else 0.0
        else:
            obs = _UNKNOWN_COMMAND
        self._last_obs = obs
        terminated = self._won or self._lost
        self._truncated = not terminated and self._steps >= self.max_episode_steps
        return obs, reward, terminated, self._truncated, self._info()

    def close(self) -> None:
        """Close the game's interpreter; safe to call repeatedly."""
        self._close_env()
        self.closed = True

    def expert_action(self) -> str:
        """The walkthrough's next command from the current state ("look" when the game gives none)."""
        if self._env is None:
            raise ResetNeededError("TextWorldEnv.expert_action() called before reset(); call reset(seed=...) first.")
        commands = self._state.get("policy_commands") or []
        return str(commands[0]) if commands else "look"

    def expert_response(self) -> str:
        """`expert_action()` as a full response in the think/action format."""
        return f"<think>I follow the walkthrough.</think><action>{self.expert_action()}</action>"

    def privileged_facts(self) -> str:
        """No oracle facts are extracted from TextWorld games (the teacher gets skills only)."""
        return ""

    # -- internals -----------------------------------------------------------------------------------
    def _commands(self) -> list[str]:
        return [str(command) for command in self._state.get("admissible_commands") or [] if command != "help"]

    def _info(self) -> dict[str, Any]:
        score = self._state.get("score")
        max_score = self._state.get("max_score")
        info: dict[str, Any] = {
            "won": self._won,
            "lost": self._lost,
            "admissible_actions": self._commands(),
            "task_id": self._game,
        }
        if isinstance(score, (int, float)) and isinstance(max_score, (int, float)) and max_score > 0:
            info["score"] = float(score) / float(max_score)
        return info

    def _close_env(self) -> None:
        if self._env is not None:
            self._env.close()
        self._env = None
        self._env_game = None
