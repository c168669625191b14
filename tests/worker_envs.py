"""Environments for tests/test_env_workers.py, in their own stdlib-only module: a worker process imports it to
unpickle the factory, and a light module keeps the worker's start (and restart) fast.

`CrashEnv` misbehaves on chosen actions the way native engines do: `crash` segfaults (reads address 0 through
`ctypes`), `exit` ends the process with `os._exit(3)`, `hang` blocks for ten minutes. Any other action is echoed in
the observation (`you did <action>`), so a test sees exactly what reached the environment.
"""

from __future__ import annotations

import ctypes
import os
import time


class CrashEnv:
    action_format = "think_action"

    def __init__(self, length: int = 2) -> None:
        self.length = length
        self.max_episode_steps = length
        self.seed: int | None = None
        self.t = 0

    def reset(self, *, seed=None, options=None):
        self.seed, self.t = (0 if seed is None else seed), 0
        info = {"task": f"task {self.seed}", "task_type": "crash", "admissible_actions": ["go", "win"]}
        return f"start {self.seed} pid {os.getpid()}", info

    def step(self, action):
        if self.seed is None:
            raise RuntimeError("step() before reset()")
        if action == "crash":
            ctypes.string_at(0)  # SIGSEGV: Python cannot catch it, the process dies
        if action == "exit":
            os._exit(3)
        if action == "hang":
            time.sleep(600)
        if action == "raise":
            raise ValueError("injected fault")
        self.t += 1
        won = action == "win"
        done = won or self.t >= self.length
        return f"you did {action!r}", float(won), won, done and not won, {"won": won, "admissible_actions": ["go"]}

    def privileged_facts(self):
        return f"facts of task {self.seed}"

    def close(self):
        pass


def dying_factory():
    """A factory whose process dies while building, as a worker of an unguarded training script does."""
    os._exit(1)
