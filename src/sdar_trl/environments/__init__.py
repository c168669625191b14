"""Text environments for agent-mode training, and a registry to build them by name.

```python
from sdar_trl.environments import make_env, list_envs

env = make_env("webshop-mini", split="test")
obs, info = env.reset(seed=0)
```

Every environment follows `AgentEnvironment` (see `sdar_trl.environments.base`); check your own
with `check_agent_environment(env)`. `trl_environment(name)` wraps one as a TRL `environment_factory` class
(episode mode, docs/agents.md). Benchmark modules are imported only when first built, so a
missing optional dependency of one adapter never breaks the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .base import (
    ACTION_FORMATS,
    INFO_ADMISSIBLE_ACTIONS,
    INFO_SCORE,
    INFO_TASK,
    INFO_TASK_TYPE,
    INFO_WON,
    AgentEnvironment,
    AgentEnvironmentCheckError,
    ResetNeededError,
    check_agent_environment,
)
from .trl_adapter import TRLEnvironment, episode_reward, trl_environment

__all__ = [
    "ACTION_FORMATS",
    "INFO_ADMISSIBLE_ACTIONS",
    "INFO_SCORE",
    "INFO_TASK",
    "INFO_TASK_TYPE",
    "INFO_WON",
    "AgentEnvironment",
    "AgentEnvironmentCheckError",
    "ResetNeededError",
    "TRLEnvironment",
    "check_agent_environment",
    "episode_reward",
    "list_envs",
    "make_env",
    "register_env",
    "trl_environment",
]

# name -> "module:attribute" (imported lazily) or a factory callable.
_REGISTRY: dict[str, str | Callable[..., AgentEnvironment]] = {
    "alfworld-mini": "sdar_trl.environments.alfworld:AlfWorldMiniEnv",
    "webshop-mini": "sdar_trl.environments.webshop:WebShopMiniEnv",
    "searchqa-mini": "sdar_trl.environments.searchqa:SearchQAMiniEnv",
    "alfworld": "sdar_trl.environments.alfworld:AlfWorldEnv",
    "webshop": "sdar_trl.environments.webshop:WebShopServerEnv",
    "searchqa": "sdar_trl.environments.searchqa:SearchQAEnv",
    "textworld": "sdar_trl.environments.textworld:TextWorldEnv",
    "toy-keys": "sdar_trl.environments.toy:KeyDoorEnv",
    # Any OpenEnv server, e.g. `python -m sdar_trl.serve webshop-mini` (needs the `openenv` extra).
    "openenv": "sdar_trl.environments.openenv_client:OpenEnvEnv",
}


def register_env(name: str, factory: str | Callable[..., AgentEnvironment], *, overwrite: bool = False) -> None:
    """Register `factory` (a callable, or a lazy `"module:attribute"` path) under `name` for `make_env`."""
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"environment {name!r} is already registered; pass overwrite=True to replace it.")
    _REGISTRY[name] = factory


def list_envs() -> list[str]:
    """The names `make_env` accepts."""
    return sorted(_REGISTRY)


def _resolve(name: str) -> Callable[..., AgentEnvironment]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown environment {name!r}; registered environments: {list_envs()}.")
    factory = _REGISTRY[name]
    if callable(factory):
        return factory
    module_name, _, attribute = factory.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def make_env(name: str, **kwargs: Any) -> AgentEnvironment:
    """Build the environment registered as `name` with `kwargs` (e.g. `split=`, `difficulty=`)."""
    return _resolve(name)(**kwargs)
