"""The agent-mode environment pools of a trainer: built on demand, reused across rollouts, closed at the end.

Training and evaluation each keep a pool (evaluation its own when an `eval_env_factory` was given, e.g. a held-out
split). With `env_workers >= 1` every environment lives in a worker process (`sdar_trl.env_workers`), so a segfault
or a hang fails one episode instead of the run (docs/faults.md).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from .._mistakes import check_environment_protocol
from ..env_guard import close_environments
from ..env_workers import EnvWorkerPool, check_picklable_factory
from ..environments.base import AgentEnvironment

__all__ = ["EnvironmentPools"]


class EnvironmentPools:
    """The environments episodes are played in, by mode: `train` and `eval` pools, grown on demand.

    Args:
        env_factory: the user's factory of training environments (None: single-turn, no environments).
        eval_env_factory: the factory of evaluation environments (None: evaluation uses the training pool).
        env_workers: worker processes to run environments in (0: in this process).
        step_timeout: seconds a worker's `reset`/`step` may take (`SDARConfig.env_step_timeout`).
    """

    def __init__(
        self,
        env_factory: Callable[[], AgentEnvironment] | None,
        eval_env_factory: Callable[[], AgentEnvironment] | None = None,
        *,
        env_workers: int = 0,
        step_timeout: float | None = None,
    ) -> None:
        self.env_factory = env_factory
        self.eval_env_factory = eval_env_factory
        self.env_workers = env_workers
        self.step_timeout = step_timeout
        self.train: list[AgentEnvironment] = []
        self.eval: list[AgentEnvironment] = []
        self.worker_pool: EnvWorkerPool | None = None  # started on first use when env_workers >= 1
        if env_factory is not None and env_workers:
            check_picklable_factory(env_factory, name="env_factory")
            if eval_env_factory is not None:
                check_picklable_factory(eval_env_factory, name="eval_env_factory")

    def source(self, evaluation: bool) -> tuple[list[AgentEnvironment], Callable[[], AgentEnvironment] | None]:
        """The pool and the user's factory of this mode: evaluation's own when `eval_env_factory` was given."""
        if evaluation and self.eval_env_factory is not None:
            return self.eval, self.eval_env_factory
        return self.train, self.env_factory

    def _builder(self, evaluation: bool) -> tuple[list[AgentEnvironment], Callable[[], AgentEnvironment] | None]:
        """The pool and the factory episodes use: the user's, built in a worker process when `env_workers` >= 1."""
        pool, factory = self.source(evaluation)
        if factory is None or not self.env_workers:
            return pool, factory
        if self.worker_pool is None:
            self.worker_pool = EnvWorkerPool(self.env_workers, timeout=self.step_timeout)
        return pool, functools.partial(self.worker_pool.make_env, factory)

    def get(self, count: int, *, evaluation: bool = False) -> list[AgentEnvironment]:
        """`count` environments from the mode's pool, built as needed (episodes reset them, so reuse is safe)."""
        pool, factory = self._builder(evaluation)
        if factory is None:
            raise RuntimeError("no env_factory was given: environments are only used in agent mode.")
        while len(pool) < count:
            env = factory()  # also replaces abandoned (timed-out) environments, dropped from the pool by `drop`
            check_environment_protocol(env, factory_name="eval_env_factory" if pool is self.eval else "env_factory")
            pool.append(env)
        return pool[:count]

    def drop(self, indices: Iterable[int], *, evaluation: bool = False) -> None:
        """Forget the environments at `indices` of the mode's pool (timed out: their call may still be running)."""
        pool, _ = self.source(evaluation)
        for index in sorted(indices, reverse=True):
            del pool[index]

    def name(self, *, evaluation: bool = False) -> str:
        """The environment class, for error messages (the factory's name when no instance is pooled)."""
        pool, factory = self.source(evaluation)
        if pool:
            return getattr(pool[0], "env_class_name", type(pool[0]).__name__)  # a WorkerEnvironment names its env
        return getattr(factory, "__name__", repr(factory))

    def close(self) -> None:
        """Close every pooled environment and stop the workers (the next rollout rebuilds them on demand).

        A `close()` that raises is logged and the other environments are still closed.
        """
        envs: list[Any] = [*self.train, *self.eval]
        self.train, self.eval = [], []
        try:
            close_environments(envs)
        finally:
            if self.worker_pool is not None:
                self.worker_pool.close()  # also stops workers whose environments failed to close
                self.worker_pool = None
