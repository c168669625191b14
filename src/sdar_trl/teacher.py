"""Teacher prompts: privileged context prepended to the student's own prompt token ids.

The teacher is the same policy shown `header + context + separator` before the student's full
templated prompt (docs/trainer.md, "Teacher branch"). We build it from the student's *actual* prompt token ids (padding
stripped) rather than re-tokenizing text, so every token the student saw is kept verbatim, then
left-truncate (dropping the oldest tokens, as the reference does) and left-pad for the forward.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from ._teacher_forward import common_prompt_start, fused_head_logps, length_sorted_slices, prefix_cached_logps
from .context import render_teacher_prefix  # re-exported: the prefix now lives with the rest of the context

# The batched forwards (fused-head scoring, length-sorted slices, the prefix-cached path) live in
# sdar_trl._teacher_forward; their public names stay importable from here.
__all__ = [
    "EMATeacherWeights",
    "ForwardScorer",
    "build_teacher_prompt_ids",
    "common_prompt_start",
    "full_teacher_logps",
    "fused_head_logps",
    "length_sorted_slices",
    "prefix_cached_logps",
    "render_teacher_prefix",
    "shared_prefix_groups",
    "teacher_logps",
]

#: `(model, input_ids (b, S), attention_mask (b, S), logits_to_keep) -> (b, logits_to_keep)` log-probs of the last
#: `logits_to_keep` tokens from one forward over the given rows (left-padded prompt + right-padded completion).
ForwardScorer = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, int], torch.Tensor]


def build_teacher_prompt_ids(
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    prefix_ids: Sequence[Sequence[int]],
    *,
    pad_token_id: int,
    max_length: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prepend per-row prefix token ids to left-padded student prompts.

    Args:
        prompt_ids: (B, P) student prompt ids, left-padded.
        prompt_mask: (B, P) 1 on real prompt tokens, 0 on padding.
        prefix_ids: B token-id lists (the tokenized teacher prefix of each row; may be empty).
        pad_token_id: id used for left padding.
        max_length: keep only the last `max_length` tokens of each teacher prompt (left truncation).

    Returns:
        `(teacher_prompt_ids, teacher_prompt_mask)`, both (B, P_T), left-padded, on `prompt_ids.device`.
    """
    if prompt_ids.shape != prompt_mask.shape or prompt_ids.dim() != 2:
        raise ValueError(
            f"prompt_ids and prompt_mask must be (B, P) tensors of the same shape, got {tuple(prompt_ids.shape)} "
            f"and {tuple(prompt_mask.shape)}."
        )
    if len(prefix_ids) != prompt_ids.shape[0]:
        raise ValueError(
            f"Got {len(prefix_ids)} teacher prefixes for {prompt_ids.shape[0]} prompts; pass one (possibly empty) "
            "prefix per row."
        )
    if max_length is not None and max_length < 1:
        raise ValueError(f"max_length={max_length} must be a positive number of tokens or None.")
    rows = []
    for ids, mask, prefix in zip(prompt_ids, prompt_mask, prefix_ids, strict=True):
        student = ids[mask.bool()]  # (P_i,) the student's real prompt tokens, padding stripped
        prefix_tensor = torch.as_tensor(list(prefix), dtype=ids.dtype, device=ids.device)  # (K_i,)
        row = torch.cat([prefix_tensor, student])  # (K_i + P_i,)
        if max_length is not None:
            row = row[-max_length:]  # left truncation keeps the most recent context, as in the reference
        rows.append(row)
    width = max(1, max(row.numel() for row in rows))
    teacher_ids = prompt_ids.new_full((len(rows), width), pad_token_id)  # (B, P_T)
    teacher_mask = prompt_mask.new_zeros((len(rows), width))  # (B, P_T)
    for i, row in enumerate(rows):
        if row.numel():
            teacher_ids[i, width - row.numel() :] = row
            teacher_mask[i, width - row.numel() :] = 1
    return teacher_ids, teacher_mask


def shared_prefix_groups(
    prefix_ids: Sequence[Sequence[int]],
    prompt_lengths: Sequence[int],
    *,
    max_length: int | None = None,
    min_rows: int = 2,
) -> tuple[list[tuple[tuple[int, ...], torch.Tensor]], torch.Tensor]:
    """Rows whose teacher prompts start with the same privileged prefix, for a prefix encoded once.

    Step samples share their teacher prefix widely: every step of an episode, and every trajectory of a GRPO
    group, sees the same skills (per task type) and the same reset-time facts (per task). A batch of
    hundreds of step samples holds a handful of distinct prefixes, each often longer than the student's prompt.

    Args:
        prefix_ids: B token-id lists (a row's tokenized teacher prefix; empty = no privileged context).
        prompt_lengths: B real (unpadded) student-prompt lengths.
        max_length: the teacher-prompt truncation (`max_teacher_prompt_length`). A row it would truncate loses the
            start of its prefix, so it no longer shares it and is left to the plain forward.
        min_rows: smallest group worth a cached prefix (a lone row gains nothing from it).

    Returns:
        `(groups, rest)`: `groups` lists `(prefix, rows)` with `rows` a (b,) index tensor, in first-seen order;
        `rest` (r,) holds every other row (empty prefix, truncated, or a prefix shared by fewer than `min_rows`).
    """
    if len(prefix_ids) != len(prompt_lengths):
        raise ValueError(f"Got {len(prefix_ids)} teacher prefixes for {len(prompt_lengths)} prompt lengths.")
    if min_rows < 1:
        raise ValueError(f"min_rows={min_rows} must be at least 1.")
    by_prefix: dict[tuple[int, ...], list[int]] = {}
    rest: list[int] = []
    for row, (prefix, length) in enumerate(zip(prefix_ids, prompt_lengths, strict=True)):
        fits = max_length is None or len(prefix) + int(length) <= max_length
        if len(prefix) and fits:
            by_prefix.setdefault(tuple(prefix), []).append(row)
        else:
            rest.append(row)
    groups = []
    for prefix, rows in by_prefix.items():
        if len(rows) >= min_rows:
            groups.append((prefix, torch.tensor(rows, dtype=torch.long)))
        else:
            rest.extend(rows)
    return groups, torch.tensor(sorted(rest), dtype=torch.long)


def full_teacher_logps(
    model: torch.nn.Module,
    prefix_ids: Sequence[Sequence[int]],
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    *,
    pad_token_id: int,
    batch_size: int,
    score: ForwardScorer = fused_head_logps,
    max_length: int | None = None,
) -> torch.Tensor:
    """Teacher log-probs with one forward over `prefix + prompt + completion` per row (no shared cache).

    Rows of similar length go together, each group cropped to its own width (`length_sorted_slices`): far less
    padding than one forward over the whole batch. Returns (B, C) float32; 0 past each row's completion.
    """
    teacher_prompt_ids, teacher_prompt_mask = build_teacher_prompt_ids(
        prompt_ids, prompt_mask, prefix_ids, pad_token_id=pad_token_id, max_length=max_length
    )  # (B, P_T) each
    input_ids = torch.cat([teacher_prompt_ids, completion_ids], dim=1)  # (B, P_T + C)
    attention_mask = torch.cat([teacher_prompt_mask, completion_mask], dim=1)  # (B, P_T + C)
    width = teacher_prompt_ids.size(1)
    logps = torch.zeros(completion_ids.shape, dtype=torch.float32, device=completion_ids.device)  # (B, C)
    for rows, prompt_len, completion_len in length_sorted_slices(teacher_prompt_mask, completion_mask, batch_size):
        window = slice(width - prompt_len, width + completion_len)
        logps[rows, :completion_len] = score(
            model, input_ids[rows, window], attention_mask[rows, window], completion_len
        ).float()  # (b, completion_len)
    return logps


def teacher_logps(
    model: torch.nn.Module,
    prefix_ids: Sequence[Sequence[int]],
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    *,
    pad_token_id: int,
    batch_size: int,
    use_prefix_cache: bool = True,
    score: ForwardScorer = fused_head_logps,
    max_length: int | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    share_prompt_starts: bool = True,
) -> torch.Tensor:
    """The teacher's log-probs of every row's completion, given the row's teacher prefix: the trainer's path.

    With `use_prefix_cache`, each prefix that two or more rows share is encoded once and its key/value cache
    reused (`prefix_cached_logps`); every other row (no context, a lone prefix, a prompt `max_length` truncates)
    takes one full forward (`full_teacher_logps` with `score`). Without it every row takes the full forward
    (needed where every process must run the same number of forwards, e.g. FSDP / ZeRO-3). Rows with an empty
    prefix are scored exactly as the student is. Call it under `torch.no_grad()`.

    Args:
        model: the teacher (a causal LM patched with TRL's fused LM head).
        prefix_ids: B token-id lists, each row's tokenized `render_teacher_prefix` (empty: no context).
        prompt_ids, prompt_mask: (B, P) the student prompts, left-padded.
        completion_ids, completion_mask: (B, C) the completions, right-padded.
        pad_token_id: pads the rebuilt teacher prompts of the full forward.
        batch_size: rows per forward.
        use_prefix_cache: share the forward over common prefixes (`SDARConfig.teacher_prefix_cache`).
        score: the full-forward scorer (the trainer passes TRL's own log-prob forward).
        max_length: `max_teacher_prompt_length` (left truncation of the teacher prompt).
        autocast: wraps the cached path's forwards (the scorer handles its own precision).
        share_prompt_starts: the cache also holds the prompt tokens a prefix's rows share (`prefix_cached_logps`).

    Returns:
        (B, C) float32 log-probs aligned with the completion tokens; 0 past each row's completion.
    """
    if len(prefix_ids) != prompt_ids.size(0):
        raise ValueError(
            f"Got {len(prefix_ids)} teacher prefixes for {prompt_ids.size(0)} rows; pass one prefix per row (an empty "
            "list for a row without privileged context)."
        )
    if use_prefix_cache:
        groups, rest = shared_prefix_groups(prefix_ids, prompt_mask.sum(dim=1).tolist(), max_length=max_length)
    else:
        groups, rest = [], torch.arange(len(prefix_ids))
    logps = torch.zeros(completion_ids.shape, dtype=torch.float32, device=completion_ids.device)  # (B, C)
    for prefix, rows in groups:
        rows = rows.to(completion_ids.device)  # (b,)
        logps[rows] = prefix_cached_logps(
            model,
            prefix,
            prompt_ids[rows],
            prompt_mask[rows],
            completion_ids[rows],
            completion_mask[rows],
            batch_size=batch_size,
            autocast=autocast,
            share_prompt_starts=share_prompt_starts,
        )  # (b, C)
    if rest.numel():
        rest = rest.to(completion_ids.device)  # (r,)
        logps[rest] = full_teacher_logps(
            model,
            [prefix_ids[i] for i in rest.tolist()],
            prompt_ids[rest],
            prompt_mask[rest],
            completion_ids[rest],
            completion_mask[rest],
            pad_token_id=pad_token_id,
            batch_size=batch_size,
            score=score,
            max_length=max_length,
        )  # (r, C)
    return logps


class EMATeacherWeights:
    """Exponential moving average of a model's trainable parameters, swapped in for teacher forwards.

    Only trainable parameters are averaged: frozen ones (a PEFT base model, a quantized backbone) are
    identical in the student and the EMA teacher. The average is kept in float32 so that small updates
    (α = 0.05) are not rounded away in bf16/fp16, so the memory cost is one float32 copy of the trainable
    parameters (plus a temporary copy in the parameters' dtype while swapped in). `update()` applies
    `ema ← (1 − rate)·ema + rate·θ`; `swapped_in()` points the parameters at the EMA values for the
    duration of a `with` block and restores the live tensors afterwards, even on error.
    Not for parameters sharded across processes (DeepSpeed ZeRO-3, FSDP): each process would average a shard.
    """

    def __init__(self, model: torch.nn.Module, *, update_rate: float) -> None:
        if not 0.0 < update_rate <= 1.0:
            raise ValueError(f"update_rate={update_rate} must lie in (0, 1]; 1 copies the live weights each update.")
        self.update_rate = update_rate
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("The model has no trainable parameters, so an EMA teacher would equal the live model.")
        self.shadow = [p.detach().to(torch.float32, copy=True) for p in self.params]
        self._live: list[torch.Tensor] | None = None

    def state_dict(self) -> dict[str, Any]:
        """The average and its rate, on CPU (what a checkpoint needs to continue the same average)."""
        return {"update_rate": self.update_rate, "shadow": [shadow.detach().cpu() for shadow in self.shadow]}

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue the average saved by `state_dict()`; the shapes must match this model's trainable parameters."""
        shadow = list(state["shadow"])
        if len(shadow) != len(self.shadow):
            raise ValueError(
                f"The saved EMA teacher averages {len(shadow)} trainable tensors, this model has {len(self.shadow)}. "
                "Resume with the model (and PEFT configuration) the checkpoint was trained with."
            )
        for index, (saved, current) in enumerate(zip(shadow, self.shadow, strict=True)):
            if saved.shape != current.shape:
                raise ValueError(
                    f"The saved EMA teacher's tensor {index} has shape {tuple(saved.shape)}, this model's "
                    f"{tuple(current.shape)}. Resume with the model the checkpoint was trained with."
                )
        for saved, current in zip(shadow, self.shadow, strict=True):
            current.copy_(saved.to(device=current.device, dtype=current.dtype))

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the current weights (call after each optimizer step)."""
        if self._live is not None:
            raise RuntimeError("EMATeacherWeights.update() was called inside swapped_in(); call it outside.")
        for shadow, param in zip(self.shadow, self.params, strict=True):
            shadow.lerp_(param.detach().to(torch.float32), self.update_rate)

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """Within the block the model's trainable parameters hold the EMA values (in their own dtype)."""
        if self._live is not None:
            raise RuntimeError("EMATeacherWeights.swapped_in() is not re-entrant.")
        with torch.no_grad():
            self._live = [param.data for param in self.params]
            for param, shadow in zip(self.params, self.shadow, strict=True):
                param.data = shadow.to(dtype=param.dtype, device=param.device)
        try:
            yield
        finally:
            with torch.no_grad():
                for param, live in zip(self.params, self._live, strict=True):
                    param.data = live
            self._live = None
