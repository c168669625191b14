"""Held-out evaluation in agent mode: every task played once, its outcomes summarised as `eval_env/*` metrics.

`SDARTrainer.evaluate` hands `play_held_out` its episode player (the trainer's `play_episodes` call at the
evaluation temperature) and logs what `gathered_env_metrics` returns.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .records import EpisodeRecord, RolloutResult, summarize_episodes

__all__ = ["gathered_env_metrics", "play_held_out"]


def play_held_out(
    rows: Sequence[Mapping[str, Any]],
    play: Callable[[list[Mapping[str, Any]], list[int]], RolloutResult],
    *,
    batch_size: int,
    process_index: int = 0,
    num_processes: int = 1,
    max_over_processes: Callable[[int], int] = int,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[EpisodeRecord]:
    """Play every task of this process's share of `rows` once, `batch_size` tasks at a time; their episodes in order.

    Process `process_index` of `num_processes` plays rows `process_index::num_processes`. Every process plays as many
    batches as the busiest one (`max_over_processes` all-reduces a count), so lock-step generation never waits on a
    process that has finished; a process out of tasks plays empty batches. `play(rows, group_ids)` plays one batch,
    each task its own group; `on_progress(done, total)` follows each batch.
    """
    local = list(rows[process_index::num_processes])
    num_batches = max_over_processes(math.ceil(len(local) / batch_size))
    episodes: list[EpisodeRecord] = []
    for index in range(num_batches):
        batch = local[index * batch_size : (index + 1) * batch_size]
        episodes.extend(play(batch, list(range(len(batch)))).episodes)
        if on_progress is not None:
            on_progress(len(episodes), len(local))
    return episodes


def gathered_env_metrics(
    episodes: Sequence[EpisodeRecord], gather: Callable[[list[EpisodeRecord]], list[EpisodeRecord]] | None = None
) -> dict[str, float]:
    """`env/*` metrics (`summarize_episodes`) over the episodes of all processes, collected by `gather`.

    The task rows are dropped before gathering (they can be big); None gathers nothing (a single process).
    """
    light = [dataclasses.replace(episode, row={}) for episode in episodes]
    if gather is not None:
        light = gather(light)
    return summarize_episodes(light)
