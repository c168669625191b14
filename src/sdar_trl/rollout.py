"""Multi-turn, step-level rollouts: a re-export module kept so that `from sdar_trl.rollout import ...` keeps working.

The code now lives in the `sdar_trl.agent` package: the episode loop in `sdar_trl.agent.episodes`, its records
and `summarize_episodes` in `sdar_trl.agent.records`, the step prompt in `sdar_trl.agent.prompts`, the step batch
(`build_step_batch`, `compute_step_rewards`) in `sdar_trl.agent.batch`, and `split_rows`,
`length_grouped_parts`, `trim_left_padding` in `sdar_trl.agent.chunks`.
"""

from __future__ import annotations

from .agent.batch import build_step_batch, compute_step_rewards
from .agent.chunks import length_grouped_parts, split_rows, trim_left_padding
from .agent.episodes import GenerateFn, play_episodes
from .agent.prompts import (
    DEFAULT_PROMPT_TEMPLATES,
    TRUNCATION_MARKER,
    render_admissible_actions,
    render_history,
    render_step_prompt,
    rendered_history_actions,
    truncate_observation,
)
from .agent.records import EpisodeRecord, RolloutResult, StepRecord, summarize_episodes

__all__ = [
    "DEFAULT_PROMPT_TEMPLATES",
    "TRUNCATION_MARKER",
    "EpisodeRecord",
    "GenerateFn",
    "RolloutResult",
    "StepRecord",
    "build_step_batch",
    "compute_step_rewards",
    "length_grouped_parts",
    "play_episodes",
    "render_admissible_actions",
    "render_history",
    "render_step_prompt",
    "rendered_history_actions",
    "split_rows",
    "summarize_episodes",
    "trim_left_padding",
    "truncate_observation",
]
