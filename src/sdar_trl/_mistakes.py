"""Agent-mode mistakes of SDARTrainer's arguments, named as such (instead of failing later on a missing column).

SDAR's agent mode (`env_factory`, a prompt per environment step) and TRL's `environment_factory` (one episode per
dataset row, the environment's methods called as tools) are easy to confuse: both take a callable building an
environment. These checks recognise one given for the other.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

__all__ = ["TRL_ENVIRONMENT_HINT", "check_environment_protocol", "check_single_turn_arguments"]


#: Appended to the error for an env_factory whose environment has reset() but no step(): TRL's style.
TRL_ENVIRONMENT_HINT = (
    " It has reset() but no step(): that is an environment for TRL's environment_factory (one episode per dataset "
    "row, its methods called as tools, rewards from reward_funcs). Pass it as environment_factory=... with "
    "reward_funcs, or write an AgentEnvironment for SDAR's step-level agent mode."
)


def check_environment_protocol(env: Any, *, factory_name: str) -> None:
    """Raise TypeError when `env`, built by `factory_name()`, lacks a callable reset, step or close.

    One message for both places an environment is built: the trainer's pool and an `env_workers` worker process.
    """
    missing = [name for name in ("reset", "step", "close") if not callable(getattr(env, name, None))]
    if missing:
        raise TypeError(
            f"{factory_name}() returned {type(env).__name__}, which lacks {missing}; it must return an "
            "AgentEnvironment (reset(*, seed, options) -> (obs, info), step(action) -> (obs, reward, terminated, "
            "truncated, info), close()). See docs/agents.md."
            + TRL_ENVIRONMENT_HINT
            * (callable(getattr(env, "reset", None)) and "step" in missing)
        )


def _makes_agent_environment(factory: Any) -> bool:
    """Whether `factory` (a class, a functools.partial of one, or a dict of them) builds an SDAR AgentEnvironment.

    Other callables (lambdas, functions) cannot be told apart without calling them."""
    if isinstance(factory, Mapping):
        return any(_makes_agent_environment(value) for value in factory.values())
    while isinstance(factory, functools.partial):
        factory = factory.func
    return isinstance(factory, type) and all(
        callable(getattr(factory, name, None)) for name in ("reset", "step", "close")
    )


def check_single_turn_arguments(train_dataset: Any, environment_factory: Any) -> None:
    """Name the agent-mode mistakes of a run without env_factory (which would otherwise fail on a missing column)."""
    if _makes_agent_environment(environment_factory):
        name = getattr(getattr(environment_factory, "func", environment_factory), "__name__", "MyEnv")
        raise ValueError(
            f"environment_factory builds {name}, an SDAR AgentEnvironment (reset/step/close), but environment_factory "
            "is TRL's mechanism: one episode per dataset row in which the model calls the environment's methods as "
            "tools, rewarded by reward_funcs. SDAR's step-level agent mode (a prompt per step, rewards from step(), "
            f"the teacher prompted with skills) takes env_factory: pass env_factory={name} instead (docs/agents.md)."
        )
    names = getattr(train_dataset, "column_names", None)
    if names is not None and "prompt" not in names:
        raise ValueError(
            f"train_dataset has no 'prompt' column (columns: {names}). Rows without a prompt are tasks for agent "
            "mode, which needs env_factory=... (a callable returning an AgentEnvironment, e.g. the environment "
            "class; see docs/agents.md). For single-turn training, add a 'prompt' column."
        )
