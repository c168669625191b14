"""Agent mode: multi-turn episodes in environments, trained one environment step per sample (docs/agents.md).

One module per job, in the order a training step runs them (docs/agents.md, "How a step flows"):

- `environments`: the environment pools (`EnvironmentPools`), in this process or in worker processes;
- `prompts`: the step prompt (`render_step_prompt`) with its history and admissible actions;
- `episodes`: the episode loop (`play_episodes`), driven by a batched `generate` callable;
- `records`: what the loop records (`StepRecord`, `EpisodeRecord`, `RolloutResult`) and its `env/*` metrics;
- `batch`: finished episodes → a step batch with rewards and cross-step group advantages (`build_training_batch`);
- `chunks`: a step batch → shuffled slices and weighted chunks of similar-length rows;
- `evaluation`: held-out evaluation (`play_held_out`);
- `arguments`: the agent-mode argument checks run when a trainer is built.

`SDARTrainer` wires these to TRL: it hands `play_episodes` a `generate` callable and gets a batch back. No module
here imports the trainer, and none needs TRL or transformers. The teacher's privileged context is
`sdar_trl.context`. `sdar_trl.rollout` re-exports the names it held before this package existed.
"""

from __future__ import annotations

from .batch import build_step_batch, build_training_batch, compute_step_rewards, dummy_step
from .chunks import (
    TRL_LOSS_WEIGHT_KIND,
    length_grouped_parts,
    padding_source,
    shuffle_into_slices,
    split_into_chunks,
    split_rows,
    take_rows,
    trim_left_padding,
)
from .environments import EnvironmentPools
from .episodes import GenerateFn, play_episodes, strip_trailing
from .evaluation import gathered_env_metrics, play_held_out
from .prompts import (
    DEFAULT_PROMPT_TEMPLATES,
    TRUNCATION_MARKER,
    render_admissible_actions,
    render_history,
    render_step_prompt,
    rendered_history_actions,
    truncate_observation,
)
from .records import EpisodeRecord, RolloutResult, StepRecord, summarize_episodes

__all__ = [
    "DEFAULT_PROMPT_TEMPLATES",
    "TRL_LOSS_WEIGHT_KIND",
    "TRUNCATION_MARKER",
    "EnvironmentPools",
    "EpisodeRecord",
    "GenerateFn",
    "RolloutResult",
    "StepRecord",
    "build_step_batch",
    "build_training_batch",
    "compute_step_rewards",
    "dummy_step",
    "gathered_env_metrics",
    "length_grouped_parts",
    "padding_source",
    "play_episodes",
    "play_held_out",
    "render_admissible_actions",
    "render_history",
    "render_step_prompt",
    "rendered_history_actions",
    "shuffle_into_slices",
    "split_into_chunks",
    "split_rows",
    "strip_trailing",
    "summarize_episodes",
    "take_rows",
    "trim_left_padding",
    "truncate_observation",
]
