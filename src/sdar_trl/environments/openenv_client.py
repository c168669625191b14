"""Any OpenEnv environment as an `AgentEnvironment`: `make_env("openenv", base_url="http://127.0.0.1:8000")`.

```python
from sdar_trl.environments import make_env

env = make_env("openenv", base_url="http://127.0.0.1:8000")    # e.g. `python -m sdar_trl.serve webshop-mini`
obs, info = env.reset(seed=3)
obs, reward, terminated, truncated, info = env.step("search[red shoes]")
```

One `OpenEnvEnv` is one OpenEnv session (a WebSocket opened by OpenEnv's own `GenericEnvClient`, or the `EnvClient`
you pass). How OpenEnv's wire format maps to the protocol (docs/openenv.md):

- observation text: the first string among the observation fields `text`, `observation`, `prompt`, `message`,
  `content`, `output`, `echoed_message` (else the observation fields as JSON);
- `info["admissible_actions"]`, `task`, `task_type`, `won`, `score`: the observation field or, failing that, the
  metadata key of that name (`admissible_actions` also from `legal_actions`/`available_actions`/`valid_actions`).
  Without a task the reset observation's text is the task; without a type, `default_task_type`; without `won`,
  an episode is won when it ends (`done`) with a reward above 0;
- `reward`: OpenEnv's `reward` (None is 0.0, a bool 0.0/1.0); `done` is `terminated`, unless the metadata says
  `truncated: true`;
- `privileged_facts()` / `expert_action()`: the metadata keys `privileged_facts` / `expert_action`, when sent;
- actions: `{action_field: text}`, `action_field` read from the server's `/schema` when not given (its only string
  field besides `metadata`); `reset` sends `seed`, `split` (when set) and `reset_kwargs`.

Every failure to talk to the server (refused connection, closed socket, time-out, an error frame) raises
`OpenEnvConnectionError`: in training that fails the episode (kind `exception`, counted in `env/errors`,
docs/faults.md) and the next `reset` opens a new session.
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from .base import (
    INFO_ADMISSIBLE_ACTIONS,
    INFO_SCORE,
    INFO_TASK,
    INFO_TASK_TYPE,
    INFO_WON,
    EnvOutputError,
    ResetNeededError,
    row_seed,
)

__all__ = ["OBSERVATION_TEXT_FIELDS", "OpenEnvConnectionError", "OpenEnvEnv", "parse_openenv_result"]

#: Observation fields tried, in order, for the observation text.
OBSERVATION_TEXT_FIELDS = ("text", "observation", "prompt", "message", "content", "output", "echoed_message")
_ADMISSIBLE_FIELDS = (INFO_ADMISSIBLE_ACTIONS, "legal_actions", "available_actions", "valid_actions")


class OpenEnvConnectionError(ConnectionError):
    """The OpenEnv server could not be reached, closed the session, timed out or answered with an error."""


def _lookup(observation: Mapping[str, Any], metadata: Mapping[str, Any], key: str) -> Any:
    """`observation[key]`, else `metadata[key]`, else None (servers put task information in either)."""
    value = observation.get(key)
    return metadata.get(key) if value is None else value


def parse_openenv_result(
    observation: Any, metadata: Mapping[str, Any] | None
) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """OpenEnv's observation payload as `(text, info, metadata)`.

    `observation` is the observation's fields (a dict, or a pydantic model from a typed client); `metadata` the
    response's metadata (OpenEnv also nests it inside the observation). `info` holds the protocol keys found
    (`admissible_actions` always: None when the server sends none); `won`/`task` defaults are the caller's.
    Raises `EnvOutputError` for an observation that is neither a mapping nor a model.
    """
    if hasattr(observation, "model_dump"):
        observation = observation.model_dump()
    if not isinstance(observation, Mapping):
        raise EnvOutputError(
            f"an OpenEnv observation must be a JSON object (or a pydantic model), got {type(observation).__name__} "
            f"({observation!r:.80})."
        )
    merged_metadata = {**(observation.get("metadata") or {}), **(metadata or {})}
    fields = {k: v for k, v in observation.items() if k != "metadata"}
    text = next((fields[k] for k in OBSERVATION_TEXT_FIELDS if isinstance(fields.get(k), str)), None)
    if text is None:
        text = json.dumps(fields, sort_keys=True, default=str)
    info: dict[str, Any] = {INFO_ADMISSIBLE_ACTIONS: None}
    for key in _ADMISSIBLE_FIELDS:
        actions = _lookup(fields, merged_metadata, key)
        if isinstance(actions, list):
            info[INFO_ADMISSIBLE_ACTIONS] = [str(a) for a in actions]
            break
    for key in (INFO_TASK, INFO_TASK_TYPE):
        value = _lookup(fields, merged_metadata, key)
        if isinstance(value, str) and value:
            info[key] = value
    won = _lookup(fields, merged_metadata, INFO_WON)
    if isinstance(won, bool):
        info[INFO_WON] = won
    score = _lookup(fields, merged_metadata, INFO_SCORE)
    if isinstance(score, numbers.Real) and not isinstance(score, bool) and math.isfinite(score):
        info[INFO_SCORE] = float(score)
    return text, info, merged_metadata


def _schema_action_field(base_url: str, timeout: float) -> str:
    """The action's text field from the server's `/schema`: its only string property besides `metadata`."""
    url = base_url.replace("ws://", "http://").replace("wss://", "https://").rstrip("/") + "/schema"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            schema = json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise OpenEnvConnectionError(
            f"could not read the action schema from {url}: {error}. Is the server running (e.g. `python -m "
            "sdar_trl.serve webshop-mini --port 8000`)? Or pass action_field='<the action's text field>'."
        ) from error
    properties = (schema.get("action") or {}).get("properties") or {}
    strings = sorted(name for name, spec in properties.items() if name != "metadata" and spec.get("type") == "string")
    if len(strings) != 1:
        raise ValueError(
            f"the action schema of {base_url} has string fields {strings} (all fields: {sorted(properties)}); "
            "expected exactly one to carry the action text. Pass action_field='<name>' in env_kwargs."
        )
    return strings[0]


class OpenEnvEnv:
    """An OpenEnv environment server (or client) as an `AgentEnvironment` (see the module docstring).

    Args:
        base_url: the server, e.g. `"http://127.0.0.1:8000"` (`ws://` works too). Give this or `client`.
        client: an OpenEnv `EnvClient` (async; its `.sync()` wrapper is used) or `SyncEnvClient` instead of a URL.
        split: sent as the `split` reset option (None: not sent; the server's default split).
        action_field: the action's text field (None: read from `/schema` at the first reset; `"text"` with a `client`
            that has no URL).
        action_builder: builds the action from the text, for typed clients (default: `{action_field: text}`).
        reset_kwargs: further reset options sent with every reset.
        default_task_type: `info["task_type"]` when the server sends none.
        timeout: seconds to wait for the connection and for each answer.
    """

    action_format = "think_action"

    def __init__(
        self,
        base_url: str | None = None,
        *,
        client: Any = None,
        split: str | None = None,
        action_field: str | None = None,
        action_builder: Callable[[str], Any] | None = None,
        reset_kwargs: Mapping[str, Any] | None = None,
        default_task_type: str = "openenv",
        timeout: float = 60.0,
    ) -> None:
        if (base_url is None) == (client is None):
            raise ValueError(
                f"give exactly one of base_url (e.g. 'http://127.0.0.1:8000') and client (an OpenEnv EnvClient); "
                f"got base_url={base_url!r}, client={type(client).__name__ if client is not None else None}."
            )
        if base_url is not None and (not isinstance(base_url, str) or "://" not in base_url):
            raise ValueError(f"base_url must be a URL such as 'http://127.0.0.1:8000', got {base_url!r}.")
        if not isinstance(timeout, numbers.Real) or not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}.")
        self.base_url = base_url or getattr(client, "base_url", None)
        self.split = split
        self.reset_kwargs = dict(reset_kwargs or {})
        self.default_task_type = default_task_type
        self.timeout = float(timeout)
        self._user_client = client
        self._client: Any = None
        # Read from /schema at the first reset, not here: a factory must not fail while the server is down (the
        # episode fails instead, and training goes on).
        self.action_field = action_field if action_field is not None or self.base_url else "text"
        self._action_builder = action_builder
        self._task: str | None = None
        self._task_type = default_task_type
        self._metadata: dict[str, Any] = {}
        self._admissible: list[str] | None = None

    # -- the session -------------------------------------------------------------------------------------------
    def _session(self) -> Any:
        """The connected synchronous client, opened on first use (and again after a failure dropped it)."""
        if self._client is None:
            client = self._user_client
            if client is None:
                from openenv import GenericEnvClient

                client = GenericEnvClient(
                    base_url=self.base_url, connect_timeout_s=self.timeout, message_timeout_s=self.timeout
                )
            self._client = client.sync() if callable(getattr(client, "sync", None)) else client
            self._client.connect()
        return self._client

    def _call(self, what: str, call: Callable[[Any], Any]) -> Any:
        """`call(session)`; any failure becomes `OpenEnvConnectionError` and drops the session (the next reset
        opens a new one: the server's session, and the episode in it, may be gone)."""
        try:
            return call(self._session())
        # Socket, time-out and server errors (RuntimeError from an error frame) all end the episode alike.
        except Exception as error:
            self._drop_session()
            raise OpenEnvConnectionError(
                f"OpenEnv {what} at {self.base_url} failed: {type(error).__name__}: {error}. The episode is lost; "
                "check that the server is running (docs/openenv.md)."
            ) from error

    def _drop_session(self) -> None:
        client, self._client = self._client, None
        self._task = None
        if client is not None and self._user_client is None:
            # The socket is already broken: closing it is best effort.
            with contextlib.suppress(Exception):
                client.close()

    # -- protocol ------------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Reset the server's environment with `seed` (or the row's seed), `split` and `reset_kwargs`."""
        if self._action_builder is None and self.action_field is None:
            self.action_field = _schema_action_field(self.base_url, self.timeout)
        seed = row_seed(seed, options)
        kwargs = {**self.reset_kwargs, **({"seed": seed} if seed is not None else {})}
        if self.split is not None:
            kwargs["split"] = self.split
        result = self._call("reset", lambda session: session.reset(**kwargs))
        text, info, metadata = parse_openenv_result(result.observation, result.metadata)
        self._task = info.get(INFO_TASK) or text
        self._task_type = info.get(INFO_TASK_TYPE) or self.default_task_type
        self._metadata = metadata
        self._admissible = info[INFO_ADMISSIBLE_ACTIONS]
        info[INFO_TASK] = self._task
        info[INFO_TASK_TYPE] = self._task_type
        return text, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Send `action`; `terminated` is OpenEnv's `done` unless the metadata marks the end as `truncated`."""
        if self._task is None:
            raise ResetNeededError(
                "OpenEnvEnv.step() before reset() (or after a failed call); call env.reset() first."
            )
        payload = self._action_builder(action) if self._action_builder else {self.action_field: action}
        result = self._call("step", lambda session: session.step(payload))
        text, info, metadata = parse_openenv_result(result.observation, result.metadata)
        # OpenEnv's Observation.reward admits None and bool; the protocol wants a real number (a bool is refused).
        reward = result.reward
        if reward is None or isinstance(reward, bool):
            reward = float(bool(reward))
        done = result.done
        if not isinstance(done, bool):
            raise EnvOutputError(f"the OpenEnv server sent done={done!r} ({type(done).__name__}); expected a bool.")
        truncated = done and metadata.get("truncated") is True
        terminated = done and not truncated
        info.setdefault(INFO_WON, bool(done and isinstance(reward, numbers.Real) and reward > 0))
        info.setdefault(INFO_TASK, self._task)
        info.setdefault(INFO_TASK_TYPE, self._task_type)
        self._metadata = metadata
        self._admissible = info[INFO_ADMISSIBLE_ACTIONS]
        return text, reward, terminated, truncated, info

    def close(self) -> None:
        """Close the session (a `client` you passed in is closed too); safe to call repeatedly."""
        client, self._client = self._client, None
        self._task = None
        if client is not None:
            # Closing a broken connection is best effort.
            with contextlib.suppress(Exception):
                client.close()

    # -- what the server sends beyond the observation ------------------------------------------------------------
    def privileged_facts(self) -> str:
        """The oracle facts of the current task from the metadata (`python -m sdar_trl.serve` sends them)."""
        facts = self._metadata.get("privileged_facts")
        return facts if isinstance(facts, str) else ""

    def expert_action(self) -> str:
        """The expert's next action from the metadata; without one, the first admissible action (else `look`), so
        `check_agent_environment` can play any server."""
        if self._task is None:
            raise ResetNeededError("expert_action() needs a current episode; call env.reset() first.")
        action = self._metadata.get("expert_action")
        if isinstance(action, str):
            return action
        return self._admissible[0] if self._admissible else "look"
