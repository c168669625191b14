"""Any `AgentEnvironment` as a TRL `environment_factory` class: episode mode (docs/agents.md).

TRL's `GRPOTrainer(environment_factory=...)` (TRL >= 1.16) plays a whole episode as one completion: it builds one
instance per rollout, calls `reset(**row)` with the dataset row's columns and appends the returned text to the
row's last user message, exposes the instance's public methods as tools (schema from the type hints and the Google
docstring), masks the tool output out of the policy loss with `tool_mask`, and adds `get_reward()` as a reward
source. `SDARTrainer` forwards `environment_factory` unchanged; its distillation term uses the same `tool_mask`.

```python
from sdar_trl.environments import trl_environment

WebShopEpisode = trl_environment("webshop-mini", split="train")
trainer = SDARTrainer(model, args=config, train_dataset=rows, environment_factory=WebShopEpisode)
```

The class exposes one tool, `act(action)`, which sends `action` to `AgentEnvironment.step`. An exception in `reset`
or `step` (or a malformed result) ends the episode: reward 0, `failure` set, and the next `act` calls say the
episode is over. `episode_reward` is the same reward as a TRL reward function, which also logs `env/*` metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from .base import (
    INFO_ADMISSIBLE_ACTIONS,
    INFO_WON,
    AgentEnvironment,
    check_reset_result,
    check_step_result,
)

__all__ = ["TRLEnvironment", "episode_reward", "trl_environment"]

logger = logging.getLogger(__name__)

#: Admissible actions shown after an observation; longer lists are cut (the model sees how many were left out).
MAX_SHOWN_ACTIONS = 50
#: Starts the text `reset` returns (TRL concatenates it to the prompt's last user message).
OBSERVATION_SEPARATOR = "\n\n"


def render_observation(observation: str, admissible_actions: Sequence[str] | None) -> str:
    """An observation followed by the admissible actions (when the environment lists them)."""
    if not admissible_actions:
        return observation
    shown = list(admissible_actions[:MAX_SHOWN_ACTIONS])
    more = len(admissible_actions) - len(shown)
    listed = ", ".join(shown) + (f", ... ({more} more)" if more > 0 else "")
    return f"{observation}\nAdmissible actions: {listed}"


class TRLEnvironment:
    """One episode of an `AgentEnvironment`, in the shape of a TRL `environment_factory` instance.

    Build subclasses with `trl_environment(...)`; this base class has no `get_reward`, so TRL takes the reward
    from `reward_funcs` only (e.g. `episode_reward`). State of the current episode, read by reward functions
    through TRL's `environments=` argument: `episode_return` (sum of step rewards, 0.0 after a failure), `won`,
    `num_steps`, `done`, `failure` (the error text of a failed episode, else None). The class attribute
    `failed_episodes` counts the failed episodes of the class.
    """

    # Private: TRL turns every public function of the class into a tool.
    _make_env: ClassVar[Callable[[], AgentEnvironment] | None] = None
    #: Dataset column holding the task seed passed to `AgentEnvironment.reset(seed=...)`.
    seed_column: ClassVar[str] = "seed"
    #: Steps after which the adapter ends the episode itself (None: only the environment's own limit).
    max_steps: ClassVar[int | None] = None
    #: Episodes of this class whose environment raised (or returned a malformed result), over the process' life.
    failed_episodes: ClassVar[int] = 0

    def __init__(self) -> None:
        factory = type(self)._make_env
        if factory is None:
            raise TypeError(
                f"{type(self).__name__} has no environment to wrap; build the class with "
                "trl_environment('webshop-mini', ...) or trl_environment(MyEnvClass)."
            )
        self._env = factory()
        self._reset_state()

    def _reset_state(self) -> None:
        self.episode_return = 0.0
        self.won = False
        self.num_steps = 0
        self.done = False
        self.failure: str | None = None

    def _fail(self, where: str, error: Exception) -> str:
        """End the episode as failed (reward 0) and tell the model so."""
        self.failure = f"{where}: {type(error).__name__}: {error}"
        self.done = True
        self.episode_return = 0.0
        self.won = False
        type(self).failed_episodes += 1
        logger.warning("episode failed in %s (reward 0): %s", type(self).__name__, self.failure)
        return f"The environment failed ({type(error).__name__}); the episode is over."

    def reset(self, **kwargs: Any) -> str:
        """Start the episode of the dataset row `kwargs` (TRL passes every column); returns the first observation.

        The row's `seed_column` (default `"seed"`) picks the task; the whole row is passed as `options`.
        A raising `reset` fails the episode (reward 0) instead of stopping training.
        """
        self._reset_state()
        seed = kwargs.get(self.seed_column)
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise TypeError(
                f"dataset column {self.seed_column!r} must hold int task seeds, got {seed!r} "
                f"({type(seed).__name__}). Store the seeds as ints, or pass seed_column= to trl_environment."
            )
        try:
            observation, info = check_reset_result(self._env.reset(seed=seed, options=dict(kwargs)))
        except Exception as error:  # noqa: BLE001 - any environment error fails this episode, not the run
            return OBSERVATION_SEPARATOR + self._fail("reset", error)
        # TRL appends the returned text to the row's last user message as it is: keep the two apart.
        return OBSERVATION_SEPARATOR + render_observation(observation, info.get(INFO_ADMISSIBLE_ACTIONS))

    def act(self, action: str) -> str:
        """Take one action in the environment and return what happens next.

        Args:
            action: The action to take, written exactly as one of the admissible actions.

        Returns:
            The new observation and the admissible actions, or the end of the episode.
        """
        if self.done:
            return "The episode is over; no more actions are accepted."
        try:
            result = self._env.step(str(action))
            observation, reward, terminated, truncated, info = check_step_result(result)
        except Exception as error:  # noqa: BLE001 - see reset: a broken step ends the episode with reward 0
            return self._fail("step", error)
        self.num_steps += 1
        self.episode_return += reward
        self.won = bool(info.get(INFO_WON, False))
        limit = type(self).max_steps
        self.done = terminated or truncated or (limit is not None and self.num_steps >= limit)
        if self.done:
            outcome = "Task completed." if self.won else "Task not completed."
            return f"{observation}\nThe episode is over. {outcome}"
        return render_observation(observation, info.get(INFO_ADMISSIBLE_ACTIONS))


class _OwnsReward:
    """Mixin adding TRL's `get_reward` (TRL then adds it as a reward source named after the class)."""

    def get_reward(self) -> float:
        """The episode's return: the sum of its step rewards, 0.0 for a failed episode."""
        return 0.0 if self.failure is not None else float(self.episode_return)  # type: ignore[attr-defined]


def trl_environment(
    env: str | Callable[[], AgentEnvironment],
    /,
    *,
    get_reward: bool = True,
    seed_column: str = "seed",
    max_steps: int | None = None,
    name: str | None = None,
    **env_kwargs: Any,
) -> type[TRLEnvironment]:
    """A TRL `environment_factory` class playing `env` (a `make_env` name or a factory) one episode per row.

    Args:
        env: a registered environment name (`list_envs()`, e.g. `"webshop-mini"`) or a callable returning an
            `AgentEnvironment` (e.g. the class).
        get_reward: give the class TRL's `get_reward()` (the episode return, added by TRL as a reward source).
            Set False when the reward comes from `reward_funcs` only (e.g. `episode_reward`), or it is counted twice.
        seed_column: the dataset column with the task seed of each row.
        max_steps: end the episode after this many `act` calls (None: the environment's own step limit); TRL's
            `max_tool_calling_iterations` bounds the model's calls too.
        name: the class name (TRL logs the `get_reward` column under it); default from the environment name.
        **env_kwargs: passed to `make_env(env, ...)` or to the callable (e.g. `split="train"`).

    Returns:
        A class to pass as `environment_factory=`: `reset(**row)`, one tool `act(action)`, and `get_reward()`.
    """
    if isinstance(env, str):
        from . import make_env  # the registry lives in the package __init__, which imports this module

        env_name = env

        def factory() -> AgentEnvironment:
            return make_env(env_name, **env_kwargs)

        default_name = "".join(part.capitalize() for part in env.replace("_", "-").split("-")) + "Episode"
    elif callable(env):
        make = env

        def factory() -> AgentEnvironment:
            return make(**env_kwargs)

        default_name = f"{getattr(env, '__name__', 'Environment')}Episode"
    else:
        raise TypeError(
            f"env must be an environment name (one of make_env's, e.g. 'webshop-mini') or a callable returning an "
            f"AgentEnvironment, got {env!r} ({type(env).__name__})."
        )
    if max_steps is not None and (not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 1):
        raise ValueError(f"max_steps must be a positive int or None, got {max_steps!r}.")
    if not isinstance(seed_column, str) or not seed_column:
        raise ValueError(f"seed_column must be a non-empty column name, got {seed_column!r}.")
    bases: tuple[type, ...] = (_OwnsReward, TRLEnvironment) if get_reward else (TRLEnvironment,)
    attributes = {
        "_make_env": staticmethod(factory),
        "failed_episodes": 0,
        "seed_column": seed_column,
        "max_steps": max_steps,
        "__module__": __name__,
        "__doc__": f"{env!r} as a TRL environment_factory class (see sdar_trl.environments.trl_adapter).",
    }
    return type(name or default_name, bases, attributes)


def episode_reward(
    completions: list[Any],
    environments: Sequence[TRLEnvironment] | None = None,
    log_metric: Callable[[str, float], None] | None = None,
    **kwargs: Any,
) -> list[float]:
    """TRL reward function: each rollout's episode return (0.0 if it failed), logging `env/*` metrics.

    Pass it in `reward_funcs` with a class built by `trl_environment(..., get_reward=False)` (with the default
    `get_reward=True`, TRL already adds the same reward). Logs the batch means `env/success`, `env/episode_length`
    (steps taken) and `env/failed_episodes` (the fraction of episodes whose environment raised).
    """
    if environments is None:
        raise ValueError(
            "episode_reward needs TRL's environments= argument: use it with environment_factory=trl_environment(...)"
            " (TRL >= 1.16 passes the rollouts' environments to reward functions)."
        )
    if len(environments) != len(completions):
        raise ValueError(
            f"got {len(environments)} environments for {len(completions)} completions; expected one per completion."
        )
    rewards = [0.0 if env.failure is not None else float(env.episode_return) for env in environments]
    if log_metric is not None and environments:
        count = len(environments)
        log_metric("env/success", sum(env.won for env in environments) / count)
        log_metric("env/episode_length", sum(env.num_steps for env in environments) / count)
        log_metric("env/failed_episodes", sum(env.failure is not None for env in environments) / count)
    return rewards
