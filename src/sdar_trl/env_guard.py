"""Guards at the environment boundary: step timeouts, task seeds, fault kinds and their logging, closing.

One rule (docs/faults.md): an environment call that raises, returns the wrong types, times out or gives a non-finite
or out-of-range reward ends its episode as *failed*. The rollout records the fault kind on the episode; the trainer
masks the episode's samples out of the loss and the group statistics, counts `env/errors/<kind>`, logs the first
occurrences through `logging`, and stops with `EnvironmentFailureError` when more than
`SDARConfig.max_failed_episode_share` of a batch failed.
"""

from __future__ import annotations

import logging
import math
import numbers
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from .environments.base import EnvOutputError

__all__ = [
    "FAULT_KINDS",
    "EnvFaultLog",
    "EnvStepTimeoutError",
    "EnvWorkerDiedError",
    "EnvironmentFailureError",
    "call_with_timeout",
    "check_failed_share",
    "check_task_seeds",
    "classify_fault",
    "close_environments",
    "parse_seed",
]

logger = logging.getLogger(__name__)

#: The kinds of failed environment calls, each counted as `env/errors/<kind>`.
FAULT_KINDS: tuple[str, ...] = ("exception", "bad_output", "timeout", "bad_reward", "worker_died")

_T = TypeVar("_T")


class EnvStepTimeoutError(TimeoutError):
    """An environment call did not return within `SDARConfig.env_step_timeout` seconds."""


class EnvWorkerDiedError(RuntimeError):
    """The worker process holding an environment died (segfault, `os._exit`, OOM kill): `SDARConfig.env_workers`."""


class EnvironmentFailureError(RuntimeError):
    """More episodes of a batch failed than `SDARConfig.max_failed_episode_share` allows."""


def classify_fault(error: BaseException) -> str:
    """The fault kind (one of `FAULT_KINDS`) of an error raised while calling an environment."""
    if isinstance(error, EnvStepTimeoutError):
        return "timeout"
    if isinstance(error, EnvWorkerDiedError):
        return "worker_died"
    if isinstance(error, EnvOutputError):
        return error.kind
    return "exception"


def call_with_timeout(fn: Callable[[], _T], *, timeout: float | None, what: str) -> _T:
    """`fn()`, or `EnvStepTimeoutError` when it has not returned after `timeout` seconds (None: wait forever).

    The call runs in a daemon thread, so a hung environment cannot block the process, nor its exit. Python cannot
    stop that thread: it keeps running in the background, so the caller must never use the environment again
    (the trainer drops it from its pool and builds a new one with the factory).
    """
    if timeout is None:
        return fn()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as error:  # noqa: BLE001 - handed over to the calling thread, which re-raises it
            outcome["error"] = error

    thread = threading.Thread(target=run, name=f"sdar-env-{what}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise EnvStepTimeoutError(
            f"{what} did not return within env_step_timeout={timeout:g} s; the environment instance is abandoned."
        )
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def parse_seed(value: object, *, row_index: int, source: str = "task") -> int | None:
    """A task row's `seed` as an `int` (None stays None); integral floats such as 3.0 are accepted.

    Raises ValueError naming the row for anything else (NaN, 2.5, "abc", True): ignoring a bad seed would make every
    trajectory of the batch play the same random task.
    """
    if value is None:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        return int(value)
    if (
        isinstance(value, numbers.Real)
        and not isinstance(value, (bool, np.bool_))
        and math.isfinite(float(value))
        and float(value).is_integer()
    ):
        return int(value)
    raise ValueError(
        f"{source} row {row_index} has seed={value!r} ({type(value).__name__}); expected an integer (or an integral "
        "float such as 3.0). Fix the seed column, e.g. drop rows with missing seeds and cast it to int64."
    )


def check_task_seeds(rows: Any, *, source: str) -> None:
    """Check the `seed` column of a task dataset (a `datasets.Dataset` or a list of rows) before training starts."""
    names = getattr(rows, "column_names", None)
    if names is not None:
        if "seed" not in names:
            return
        seeds: Iterable[object] = rows["seed"]
    elif isinstance(rows, Sequence):
        seeds = (row.get("seed") if isinstance(row, Mapping) else None for row in rows)
    else:
        return  # an iterable dataset: each batch is checked as it is played
    for index, seed in enumerate(seeds):
        parse_seed(seed, row_index=index, source=source)


class EnvFaultLog:
    """Logs the first `max_logged` failed episodes of each fault kind (warning level), with the error and the task."""

    def __init__(self, *, max_logged: int = 3) -> None:
        self.max_logged = max_logged
        self.logged: Counter[str] = Counter()

    def report(self, episodes: Iterable[Any], *, env_name: str) -> None:
        for episode in episodes:
            kind = getattr(episode, "env_error_kind", None)
            if kind is None or self.logged[kind] >= self.max_logged:
                continue
            self.logged[kind] += 1
            last = " (further ones of this kind are counted in env/errors/{kind}, not logged)"
            logger.warning(
                "%s episode failed (%s) at step %d of task %r (row %s): %s%s",
                env_name,
                kind,
                episode.length,
                episode.task or "<before reset>",
                dict(episode.row),
                episode.env_error,
                last.format(kind=kind) if self.logged[kind] == self.max_logged else "",
            )


def check_failed_share(metrics: Mapping[str, float], *, max_share: float, env_name: str) -> None:
    """Raise `EnvironmentFailureError` when `env/errors` / `env/episodes` exceeds `max_share` (summarised metrics)."""
    episodes = metrics.get("env/episodes", 0.0)
    failed = metrics.get("env/errors", 0.0)
    if not episodes or failed / episodes <= max_share:
        return
    kinds = ", ".join(f"{kind}: {int(metrics.get(f'env/errors/{kind}', 0))}" for kind in FAULT_KINDS)
    raise EnvironmentFailureError(
        f"{env_name}: {int(failed)} of {int(episodes)} episodes of this batch failed ({kinds}), more than "
        f"max_failed_episode_share={max_share:g}. The environment is broken: see the logged errors (and "
        "docs/faults.md); raise max_failed_episode_share (1 never stops) to train through it."
    )


def close_environments(envs: Iterable[Any]) -> list[str]:
    """Close every environment even if some `close()` raises; returns the errors (each is logged as a warning)."""
    errors = []
    for env in envs:
        try:
            env.close()
        except Exception as error:  # noqa: BLE001 - one broken close() must not leave the other environments open
            message = f"{type(env).__name__}.close() raised {type(error).__name__}: {error}"
            logger.warning("%s; closing the other environments anyway.", message)
            errors.append(message)
    return errors
