"""`toy-keys`: a tiny multi-turn environment for smoke tests, docs and the agent-mode quick start.

A short corridor of rooms. Task type `unlock`: take the coloured key somewhere in the corridor, then
open the door of that colour in the last room. Task type `fetch`: take the named object and come
back to room 1. Commands: `go to room N`, `take X`, `open X door`, `look`. Success gives reward 1.
Everything is a function of the seed, so `reset(seed=i)` replays task i exactly.
"""

from __future__ import annotations

import random
from typing import Any

from .base import ResetNeededError

__all__ = ["KeyDoorEnv"]

_COLORS = ("red", "blue", "green", "yellow")
_OBJECTS = ("apple", "book", "lamp", "coin")


class KeyDoorEnv:
    """A corridor of `num_rooms` rooms with an `unlock` or a `fetch` task (see the module docstring).

    Args:
        num_rooms: rooms in the corridor (>= 2).
        max_episode_steps: the environment's own step limit (`truncated=True` when reached).
        seed: seeds the task choice when `reset(seed=None)`.
    """

    action_format = "think_action"

    def __init__(self, num_rooms: int = 3, max_episode_steps: int = 8, seed: int = 0) -> None:
        if num_rooms < 2:
            raise ValueError(f"num_rooms={num_rooms} must be >= 2 (a task needs somewhere to go).")
        self.num_rooms = num_rooms
        self.max_episode_steps = max_episode_steps
        self._rng = random.Random(seed)
        self._task: dict[str, Any] | None = None
        self.closed = False

    # -- protocol ------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        if seed is None and options is not None and isinstance(options.get("seed"), int):
            seed = options["seed"]
        rng = random.Random(seed) if seed is not None else random.Random(self._rng.random())
        kind = "unlock" if rng.random() < 0.5 else "fetch"
        self._task = {
            "kind": kind,
            "color": rng.choice(_COLORS),
            "object": rng.choice(_OBJECTS),
            "item_room": rng.randint(2, self.num_rooms),
        }
        self._room, self._holding, self._steps, self._done, self._won = 1, None, 0, False, False
        task = (
            f"take the {self._task['color']} key and open the {self._task['color']} door."
            if kind == "unlock"
            else f"bring the {self._task['object']} back to room 1."
        )
        self._task_text = task
        return self._observe(), self._info(task=task, task_type=kind)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._task is None:
            raise ResetNeededError("KeyDoorEnv.step() called before reset(); call reset(seed=...) first.")
        if self._done:
            return "The episode is over.", 0.0, True, False, self._info()
        self._steps += 1
        command = action.strip().lower() if isinstance(action, str) else ""
        feedback = self._apply(command) if command in self._admissible() else "Nothing happens."
        reward = 1.0 if self._won else 0.0
        truncated = not self._won and self._steps >= self.max_episode_steps
        self._done = self._won or truncated
        return feedback, reward, self._won, truncated, self._info()

    def close(self) -> None:
        self.closed = True

    # -- extras --------------------------------------------------------------------------------------
    def privileged_facts(self) -> str:
        if self._task is None:
            return ""
        thing = f"{self._task['color']} key" if self._task["kind"] == "unlock" else self._task["object"]
        return f"The {thing} is in room {self._task['item_room']}."

    def expert_action(self) -> str:
        if self._task is None:
            raise ResetNeededError("call reset() before expert_action().")
        thing = self._thing()
        if self._holding is None:
            if self._room != self._task["item_room"]:
                return f"go to room {self._room + 1}"
            return f"take {thing}"
        goal_room = self.num_rooms if self._task["kind"] == "unlock" else 1
        if self._room != goal_room:
            return f"go to room {goal_room}"
        return f"open {self._task['color']} door" if self._task["kind"] == "unlock" else "look"

    def expert_response(self) -> str:
        action = self.expert_action()
        return f"<think>The plan for this task says: {action}.</think><action>{action}</action>"

    # -- internals -----------------------------------------------------------------------------------
    def _thing(self) -> str:
        assert self._task is not None  # internal invariant: only called after reset
        return f"{self._task['color']} key" if self._task["kind"] == "unlock" else self._task["object"]

    def _observe(self) -> str:
        assert self._task is not None  # internal invariant: only called after reset
        parts = [f"You are in room {self._room} of {self.num_rooms}."]
        if self._holding is None and self._room == self._task["item_room"]:
            parts.append(f"You see a {self._thing()}.")
        if self._task["kind"] == "unlock" and self._room == self.num_rooms:
            parts.append(f"There is a {self._task['color']} door.")
        if self._holding:
            parts.append(f"You carry the {self._holding}.")
        return " ".join(parts)

    def _admissible(self) -> list[str]:
        assert self._task is not None  # internal invariant: only called after reset
        actions = ["look"] + [f"go to room {r}" for r in range(1, self.num_rooms + 1) if r != self._room]
        if self._holding is None and self._room == self._task["item_room"]:
            actions.append(f"take {self._thing()}")
        if self._task["kind"] == "unlock" and self._room == self.num_rooms:
            actions.append(f"open {self._task['color']} door")
        return actions

    def _apply(self, command: str) -> str:
        assert self._task is not None  # internal invariant: only called after reset
        if command.startswith("go to room "):
            self._room = int(command.rsplit(" ", 1)[1])
            if self._task["kind"] == "fetch" and self._holding and self._room == 1:
                self._won = True
            return self._observe()
        if command.startswith("take "):
            self._holding = self._thing()
            return f"You pick up the {self._holding}."
        if command.startswith("open "):
            if self._holding == self._thing():
                self._won = True
                return f"You unlock and open the {self._task['color']} door."
            return f"The {self._task['color']} door is locked."
        return self._observe()

    def _info(self, **extra: Any) -> dict[str, Any]:
        info: dict[str, Any] = {"won": self._won, "admissible_actions": None if self._done else self._admissible()}
        if self._done:
            info["admissible_actions"] = []
        info.update(extra)
        return info
