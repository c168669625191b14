"""Finished episodes → one training batch of step samples, in TRL's layout (docs/agents.md, "How a step flows").

Every step sample gets its episode's reward (minus the invalid-action penalty), the step samples of a task group
are normalised together (cross-step group advantages, `sdar_trl.loss.compute_step_advantages`), failed episodes
and padding rows get no loss tokens. The log-prob forwards (old, reference, teacher) are the trainer's: they need
the model; `build_training_batch` is pure tensor bookkeeping.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..loss import compute_step_advantages
from .records import RolloutResult, StepRecord

__all__ = ["build_step_batch", "build_training_batch", "compute_step_rewards", "dummy_step"]


def compute_step_rewards(result: RolloutResult, *, invalid_action_penalty: float) -> list[float]:
    """Per step sample: its episode's reward, minus `invalid_action_penalty` if the response did not parse."""
    by_trajectory = {episode.trajectory: episode for episode in result.episodes}
    return [
        by_trajectory[step.trajectory].reward - (0.0 if step.valid else invalid_action_penalty)
        for step in result.steps
    ]


def build_step_batch(
    steps: Sequence[StepRecord], *, pad_token_id: int, device: torch.device | str | None = None
) -> dict[str, torch.Tensor]:
    """TRL's batch layout for step samples: left-padded prompts, right-padded completions.

    Returns `prompt_ids`/`prompt_mask` (N, P) and `completion_ids`/`completion_mask` (N, C), with the
    masks 1 on real tokens. An empty completion (the model emitted nothing) keeps an all-zero mask row.
    """
    num = len(steps)
    prompt_len = max((len(s.prompt_ids) for s in steps), default=0)
    completion_len = max((len(s.completion_ids) for s in steps), default=0)
    prompt_ids = torch.full((num, prompt_len), pad_token_id, dtype=torch.long)  # (N, P)
    prompt_mask = torch.zeros((num, prompt_len), dtype=torch.long)  # (N, P)
    completion_ids = torch.full((num, max(completion_len, 1)), pad_token_id, dtype=torch.long)  # (N, C)
    completion_mask = torch.zeros((num, max(completion_len, 1)), dtype=torch.long)  # (N, C)
    for row, step in enumerate(steps):
        p, c = len(step.prompt_ids), len(step.completion_ids)
        if p:
            prompt_ids[row, prompt_len - p :] = torch.tensor(step.prompt_ids, dtype=torch.long)
            prompt_mask[row, prompt_len - p :] = 1
        if c:
            completion_ids[row, :c] = torch.tensor(step.completion_ids, dtype=torch.long)
            completion_mask[row, :c] = 1
    batch = {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
    }
    return {key: value.to(device) for key, value in batch.items()} if device is not None else batch


def dummy_step(pad_token_id: int) -> StepRecord:
    """A one-token placeholder sample (masked out of every loss): keeps forward counts equal across processes."""
    return StepRecord(
        trajectory=-1,
        group=-1,
        step=0,
        prompt="",
        prompt_ids=[pad_token_id],
        completion_ids=[pad_token_id],
        response="",
        action="",
        valid=False,
    )


def build_training_batch(
    result: RolloutResult,
    *,
    pad_token_id: int,
    invalid_action_penalty: float,
    num_rows: int,
    device: torch.device | str | None = None,
) -> tuple[dict[str, torch.Tensor], list[StepRecord]]:
    """The step samples of `result` as a batch with `advantages`, padded with `dummy_step` rows to `num_rows`.

    Samples of failed episodes (docs/faults.md) and dummy rows get no loss tokens and count in no group statistics.
    Returns the batch (`build_step_batch` keys plus `advantages` (N,)) and its N step records (dummies included).
    """
    steps = list(result.steps)
    real = len(steps)
    if num_rows < real:
        raise ValueError(
            f"num_rows={num_rows} is smaller than the rollout's {real} step samples; pass at least {real}."
        )
    steps += [dummy_step(pad_token_id)] * (num_rows - real)
    batch = build_step_batch(steps, pad_token_id=pad_token_id, device=device)
    failed = {episode.trajectory for episode in result.episodes if episode.failed}
    valid = torch.tensor([i < real and step.trajectory not in failed for i, step in enumerate(steps)])  # (N,)
    batch["completion_mask"][~valid.to(batch["completion_mask"].device)] = 0  # dummy rows, failed episodes
    rewards = compute_step_rewards(result, invalid_action_penalty=invalid_action_penalty)
    rewards = torch.tensor(rewards + [0.0] * (num_rows - real), dtype=torch.float32)  # (N,)
    groups = torch.tensor([step.group for step in steps])  # (N,)
    advantages = compute_step_advantages(rewards, groups, valid=valid)  # (N,) 0 on dummy and failed rows
    batch["advantages"] = advantages.to(batch["completion_mask"].device)  # (N,)
    return batch, steps
