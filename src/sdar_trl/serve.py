"""Serve a package environment with OpenEnv's HTTP/WebSocket API (docs/openenv.md).

```bash
pip install "sdar-trl[openenv]"
python -m sdar_trl.serve webshop-mini --port 8000 --split train
```

Any environment `make_env` builds (the mini environments, `toy-keys`, the adapters) is served through OpenEnv's
`create_fastapi_app`: every WebSocket connection (`/ws`, what OpenEnv's `EnvClient` opens) gets its own session and
so its own environment instance; `reset` takes `seed`, `split` and `episode_id` as options. The wire models are
`TextAction` (`{"text": ...}`) and `TextObservation` (the observation text, the admissible actions, the task, its
type, `won`, `score`, `truncated`, plus OpenEnv's `reward`/`done`/`metadata`). The metadata carries the rest of the
environment's info dict and, unless `--no_privileged`, its oracle facts (`privileged_facts`) and its expert's next
action (`expert_action`), which `sdar_trl.environments.openenv_client.OpenEnvEnv` hands to the teacher and the
environment checker, never to the policy's prompt.

OpenEnv (`pip install "sdar-trl[openenv]"`) is imported only by this module, never by `import sdar_trl`.
"""

from __future__ import annotations

import argparse
import json
import math
import numbers
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .environments import INFO_ADMISSIBLE_ACTIONS, INFO_SCORE, INFO_TASK, INFO_TASK_TYPE, INFO_WON, make_env
from .environments.base import AgentEnvironment, ResetNeededError, check_reset_result, check_step_result

try:
    from openenv.core.env_server import Action, Environment, Observation, State, create_fastapi_app
    from pydantic import Field
except ImportError as error:  # pragma: no cover - depends on the installation
    raise ImportError(
        'sdar_trl.serve needs OpenEnv; install it with `pip install "sdar-trl[openenv]"` (openenv>=0.10,<0.11).'
    ) from error

__all__ = [
    "METADATA_EXPERT_ACTION",
    "METADATA_PRIVILEGED_FACTS",
    "METADATA_TRUNCATED",
    "SDAROpenEnvEnvironment",
    "TextAction",
    "TextObservation",
    "build_app",
    "json_safe",
    "main",
]

METADATA_PRIVILEGED_FACTS = "privileged_facts"
"""Observation metadata: the environment's oracle facts about the current task (str)."""
METADATA_EXPERT_ACTION = "expert_action"
"""Observation metadata: the environment expert's next action (str), when the environment has an expert."""
METADATA_TRUNCATED = "truncated"
"""Observation metadata: the episode was cut short by the environment's step limit (bool; OpenEnv has only `done`)."""

#: Info keys sent as typed observation fields; the rest of the info dict goes to the metadata.
_TYPED_INFO_KEYS = (INFO_ADMISSIBLE_ACTIONS, INFO_TASK, INFO_TASK_TYPE, INFO_WON, INFO_SCORE)


class TextAction(Action):
    """One text action, as the environment's `step(action: str)` takes it (e.g. `"click[buy now]"`)."""

    text: str = Field(description="The action text, e.g. 'search[red shoes]' or 'go to cabinet 1'.")


class TextObservation(Observation):
    """What a text environment's `reset`/`step` returned, with OpenEnv's `reward`, `done` and `metadata`."""

    text: str = Field(default="", description="The observation text shown to the agent.")
    admissible_actions: list[str] | None = Field(
        default=None, description="The actions valid in the current state, or None when the benchmark has no list."
    )
    task: str = Field(default="", description="The task description (set by reset, repeated on every step).")
    task_type: str = Field(default="", description="The task's type (skill routing, per-type metrics).")
    won: bool = Field(default=False, description="Whether the task has been accomplished.")
    score: float | None = Field(default=None, description="The benchmark's task score, when it defines one.")
    truncated: bool = Field(default=False, description="The episode hit the environment's own step limit.")


def json_safe(value: Any) -> Any:
    """`value` with numpy scalars as Python numbers and tuples as lists; `None` for what JSON cannot carry.

    Environment info dicts hold numpy numbers and the odd object (a goal, a game state): dropping those (rather than
    failing the response) keeps every plain field on the wire. Non-finite floats become None (JSON has no NaN).
    """
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        return [json_safe(v) for v in value]
    item = getattr(value, "item", None)
    if getattr(value, "ndim", None) == 0 and callable(item):  # a 0-d numpy array or tensor
        return json_safe(item())
    return None


class SDAROpenEnvEnvironment(Environment):
    """One session's environment: a package environment (`make_env(name, split=..., **env_kwargs)`) behind OpenEnv.

    The wrapped environment is built at the first `reset` and rebuilt when `reset` asks for another split, so the
    factory OpenEnv calls for every session (and for its stateless HTTP routes) costs nothing.

    Args:
        env_name: a name `sdar_trl.environments.make_env` accepts.
        split: the split used when `reset` gives none (None: the environment's own default).
        env_kwargs: further keyword arguments for `make_env`.
        privileged: send the oracle facts and the expert's next action in the observation metadata.
        lock: serialises calls into the wrapped environments of all sessions (the mini environments share cached
            catalogues and search indexes that were not written for concurrent use).
    """

    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(
        self,
        env_name: str,
        *,
        split: str | None = None,
        env_kwargs: Mapping[str, Any] | None = None,
        privileged: bool = True,
        lock: threading.Lock | None = None,
    ) -> None:
        super().__init__()
        self.env_name = env_name
        self.default_split = split
        self.env_kwargs = dict(env_kwargs or {})
        self.privileged = privileged
        self._lock = lock or threading.Lock()
        self._env: AgentEnvironment | None = None
        self._env_split: str | None = None
        self._state = State()
        self._task = ""
        self._task_type = ""

    def _environment(self, split: str | None) -> AgentEnvironment:
        split = split or self.default_split
        if self._env is None or split != self._env_split:
            if self._env is not None:
                self._env.close()
            kwargs = {**self.env_kwargs, **({"split": split} if split else {})}
            self._env = make_env(self.env_name, **kwargs)
            self._env_split = split
        return self._env

    def _observation(
        self,
        env: AgentEnvironment,
        text: str,
        info: Mapping[str, Any],
        *,
        reward: float | None,
        done: bool,
        truncated: bool,
    ) -> TextObservation:
        metadata = {k: json_safe(v) for k, v in info.items() if k not in _TYPED_INFO_KEYS}
        metadata[METADATA_TRUNCATED] = truncated
        if self.privileged:
            facts = getattr(env, "privileged_facts", None)
            if callable(facts):
                metadata[METADATA_PRIVILEGED_FACTS] = facts()
            expert = getattr(env, "expert_action", None)
            if callable(expert) and not done:
                metadata[METADATA_EXPERT_ACTION] = expert()
        score = info.get(INFO_SCORE)
        admissible = info.get(INFO_ADMISSIBLE_ACTIONS)
        return TextObservation(
            text=text,
            admissible_actions=None if admissible is None else [str(a) for a in admissible],
            task=self._task,
            task_type=self._task_type,
            won=bool(info.get(INFO_WON, False)),
            score=None if score is None else float(score),
            truncated=truncated,
            reward=reward,
            done=done,
            metadata=metadata,
        )

    def reset(
        self, seed: int | None = None, episode_id: str | None = None, split: str | None = None, **kwargs: Any
    ) -> TextObservation:
        """Start the episode of task `seed` on `split` (None: the server's `--split`); other options are ignored."""
        with self._lock:
            env = self._environment(split)
            # Checked here so that a wrong type or a NaN reward fails the call (an error frame) instead of reaching
            # the client as a plausible value (pydantic would send NaN as null, read as a 0.0 reward).
            text, info = check_reset_result(env.reset(seed=seed))
            self._task = str(info.get(INFO_TASK, ""))
            self._task_type = str(info.get(INFO_TASK_TYPE, ""))
            self._state = State(episode_id=episode_id, step_count=0)
            return self._observation(env, text, info, reward=None, done=False, truncated=False)

    def step(self, action: TextAction, timeout_s: float | None = None, **kwargs: Any) -> TextObservation:
        """Apply `action.text`; `done` is `terminated or truncated` (the metadata keeps `truncated`)."""
        with self._lock:
            env = self._env
            if env is None:
                raise ResetNeededError(f"{self.env_name}: step() before reset(); send a reset message first.")
            text, reward, terminated, truncated, info = check_step_result(env.step(action.text))
            self._state.step_count += 1
            return self._observation(
                env, text, info, reward=float(reward), done=bool(terminated or truncated), truncated=bool(truncated)
            )

    @property
    def state(self) -> State:
        return self._state

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None


def build_app(
    env_name: str,
    *,
    split: str | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    privileged: bool = True,
    max_sessions: int = 256,
) -> Any:
    """The FastAPI app serving `env_name` (one environment per WebSocket session, up to `max_sessions` at once).

    Builds one environment first, so a bad name or bad `env_kwargs` fails here rather than at the first client.
    """
    if not isinstance(max_sessions, int) or isinstance(max_sessions, bool) or max_sessions < 1:
        raise ValueError(f"max_sessions must be a positive int, got {max_sessions!r}.")
    kwargs = {**(env_kwargs or {}), **({"split": split} if split else {})}
    make_env(env_name, **kwargs).close()
    lock = threading.Lock()

    def factory() -> SDAROpenEnvEnvironment:
        return SDAROpenEnvEnvironment(env_name, split=split, env_kwargs=env_kwargs, privileged=privileged, lock=lock)

    factory.__name__ = env_name  # OpenEnv names the environment after its factory
    return create_fastapi_app(
        factory, TextAction, TextObservation, max_concurrent_envs=max_sessions, env_name=env_name, mode="simulation"
    )


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sdar_trl.serve",
        description="Serve a sdar_trl environment with OpenEnv's HTTP/WebSocket API (docs/openenv.md).",
    )
    parser.add_argument("env", help="environment name for sdar_trl.environments.make_env, e.g. webshop-mini")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--split", default=None, help="split used when a reset gives none (e.g. train, test)")
    parser.add_argument(
        "--env_kwargs", default="{}", help='JSON keyword arguments for make_env, e.g. \'{"difficulty": "easy"}\''
    )
    parser.add_argument("--max_sessions", type=int, default=256, help="concurrent sessions (one environment each)")
    parser.add_argument(
        "--no_privileged",
        action="store_true",
        help="leave the oracle facts and the expert's next action out of the observation metadata",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, *, run: Callable[..., Any] | None = None) -> None:
    """The command line: build the app and run it with uvicorn (`run` replaces `uvicorn.run`, for tests)."""
    args = _parse_args(argv)
    try:
        env_kwargs = json.loads(args.env_kwargs)
    except json.JSONDecodeError as error:
        raise SystemExit(f"--env_kwargs must be a JSON object, got {args.env_kwargs!r} ({error}).") from None
    if not isinstance(env_kwargs, dict):
        raise SystemExit(
            f'--env_kwargs must be a JSON object such as \'{{"difficulty": "easy"}}\', got {args.env_kwargs!r}.'
        )
    app = build_app(
        args.env,
        split=args.split,
        env_kwargs=env_kwargs,
        privileged=not args.no_privileged,
        max_sessions=args.max_sessions,
    )
    if run is None:
        import uvicorn

        run = uvicorn.run
    print(
        f"serving {args.env} on http://{args.host}:{args.port} (OpenEnv: /ws, /reset, /step, /schema, /health)",
        flush=True,
    )
    run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":  # pragma: no cover - exercised through subprocesses in tests/test_openenv.py
    main(sys.argv[1:])
