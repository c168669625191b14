"""The records of played episodes: one `StepRecord` per (trajectory, step), one `EpisodeRecord` per trajectory.

`play_episodes` (`sdar_trl.agent.episodes`) fills them; `sdar_trl.agent.batch` turns them into a training batch and
`summarize_episodes` into the `env/*` metrics.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..env_guard import FAULT_KINDS, classify_fault

__all__ = ["EpisodeRecord", "RolloutResult", "StepRecord", "summarize_episodes"]


@dataclass
class StepRecord:
    """One (copy, step) training sample."""

    trajectory: int
    group: int
    step: int
    prompt: str
    prompt_ids: list[int]
    completion_ids: list[int]
    response: str
    action: str
    valid: bool
    parse_error: str | None = None


@dataclass
class EpisodeRecord:
    """The outcome of one trajectory.

    `env_error` holds the error text and `env_error_kind` its kind (one of `env_guard.FAULT_KINDS`) when an
    environment call failed the episode; its samples are then never learnt from (docs/faults.md).
    """

    trajectory: int
    group: int
    task: str = ""
    task_type: str = ""
    reward: float = 0.0
    won: bool = False
    score: float | None = None
    length: int = 0
    invalid_steps: int = 0
    env_error: str | None = None
    env_error_kind: str | None = None
    privileged_facts: str = ""
    terminated: bool = False
    truncated: bool = False
    row: Mapping[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """Whether an environment call ended this episode (its samples get no loss and no group statistics)."""
        return self.env_error is not None

    def fail(self, error: BaseException) -> None:
        """Mark the episode failed by `error` (no win, no reward)."""
        self.env_error = f"{type(error).__name__}: {error}"
        self.env_error_kind = classify_fault(error)
        self.won, self.reward = False, 0.0


@dataclass
class RolloutResult:
    """All step samples and episode outcomes of one `play_episodes` call.

    `abandoned` lists the environments (by trajectory index) whose call timed out: their call may still be running in
    a background thread, so they must never be used again (the trainer replaces them).
    """

    steps: list[StepRecord]
    episodes: list[EpisodeRecord]
    abandoned: list[int] = field(default_factory=list)


def summarize_episodes(episodes: Sequence[EpisodeRecord], steps_invalid: int | None = None) -> dict[str, float]:
    """`env/*` metrics over finished episodes (all processes' episodes, gathered by the caller).

    Keys: `env/success`, `env/success/<task_type>`, `env/episodes/<task_type>` (so that a report can put an
    interval on each type's rate), `env/reward` (mean episode reward), `env/score` (when the environment
    reports a score), `env/invalid_action_rate` (invalid steps / steps), `env/episode_length`, `env/errors`
    (count of trajectories ended by an environment error), `env/errors/<kind>` for every kind of
    `env_guard.FAULT_KINDS` (0 included, so every step logs the same keys), `env/episodes`.
    """
    if not episodes:
        return {}
    metrics: dict[str, float] = {"env/episodes": float(len(episodes))}
    metrics["env/success"] = sum(e.won for e in episodes) / len(episodes)
    metrics["env/reward"] = sum(e.reward for e in episodes) / len(episodes)
    by_type: dict[str, list[bool]] = defaultdict(list)
    for episode in episodes:
        by_type[episode.task_type or "unknown"].append(episode.won)
    for task_type, wins in sorted(by_type.items()):
        metrics[f"env/success/{task_type}"] = sum(wins) / len(wins)
        metrics[f"env/episodes/{task_type}"] = float(len(wins))
    scores = [e.score if e.score is not None else 0.0 for e in episodes]
    if any(e.score is not None for e in episodes):
        metrics["env/score"] = sum(scores) / len(scores)
    total_steps = sum(e.length for e in episodes)
    invalid = sum(e.invalid_steps for e in episodes) if steps_invalid is None else steps_invalid
    metrics["env/invalid_action_rate"] = invalid / total_steps if total_steps else 0.0
    metrics["env/episode_length"] = total_steps / len(episodes)
    metrics["env/errors"] = float(sum(e.failed for e in episodes))
    for kind in FAULT_KINDS:
        metrics[f"env/errors/{kind}"] = float(sum(e.env_error_kind == kind for e in episodes))
    return metrics
