"""The teacher's batched no-grad forwards, below `sdar_trl.teacher` (which re-exports the public names).

`fused_head_logps` scores completion tokens through TRL's fused LM head; `length_sorted_slices` groups rows of
similar length so a forward pads little; `prefix_cached_logps` encodes a privileged prefix (and the prompt tokens
its rows share, `common_prompt_start`) once and scores every row after its key/value cache. `teacher.py` builds the
teacher prompts and chooses, per row, between this cached path and one full forward.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ._compat import KV_CACHE_NAME

__all__ = ["common_prompt_start", "fused_head_logps", "length_sorted_slices", "prefix_cached_logps"]


def length_sorted_slices(
    prompt_mask: torch.Tensor, completion_mask: torch.Tensor, batch_size: int
) -> list[tuple[torch.Tensor, int, int]]:
    """Group rows of similar length for a no-grad forward and give each group the width it needs.

    The teacher scores every step sample of a rollout at once, and agent prompts vary a lot in length
    (history, observations, the privileged context), so one forward over the batch padded to its longest
    row wastes most of its work on padding. Rows are sorted by real length (prompt + completion) and cut
    into groups of `batch_size`; each group is then cropped to its longest left-padded prompt and its
    longest right-padded completion.

    Args:
        prompt_mask: (B, P) 1 on real prompt tokens, left padding 0.
        completion_mask: (B, C) 1 on real completion tokens, right padding 0.
        batch_size: rows per group (≥ 1).

    Returns:
        `(rows, prompt_width, completion_width)` per group: `rows` a (b,) index tensor; the group's inputs are
        `prompt[rows, P - prompt_width:]` and `completion[rows, :completion_width]` (`completion_width` ≥ 1).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1.")
    prompt_lengths = prompt_mask.sum(dim=1)  # (B,)
    completion_lengths = completion_mask.sum(dim=1)  # (B,)
    order = torch.argsort(prompt_lengths + completion_lengths, stable=True)  # (B,)
    slices = []
    for start in range(0, order.numel(), batch_size):
        rows = order[start : start + batch_size]  # (b,)
        prompt_width = int(prompt_lengths[rows].max())
        completion_width = max(1, int(completion_lengths[rows].max()))
        slices.append((rows, prompt_width, completion_width))
    return slices


def fused_head_logps(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    **forward_kwargs: Any,
) -> torch.Tensor:
    """(b, logits_to_keep) float32 log-probs of the last `logits_to_keep` tokens through TRL's fused LM head.

    `model` must be patched with `add_fused_lm_head` (GRPOTrainer patches every model it scores): the fused head
    returns the label log-probs without materialising (b, S, V) logits. `attention_mask` may be wider than
    `input_ids` when a key/value cache in `forward_kwargs` holds earlier tokens; its last S columns are the
    mask of `input_ids`. Padded positions score 0.
    """
    own_mask = attention_mask[:, -input_ids.size(1) :]  # (b, S)
    labels = input_ids.masked_fill(own_mask == 0, -100)  # (b, S)
    labels[:, :-logits_to_keep] = -100  # score the last logits_to_keep tokens only
    out = model(
        input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True, **forward_kwargs
    )
    return out.log_probs[:, -logits_to_keep:].float()  # (b, logits_to_keep)


def common_prompt_start(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> int:
    """How many leading real tokens every row's prompt shares, keeping at least one token of each row's own.

    Step samples of one task share their chat template, instructions and task text before the history and the
    observation diverge; the first step of every trajectory of a GRPO group has the very same prompt. Those
    tokens can join the encoded-once teacher prefix. One token per row stays out so that the row's own forward
    still produces the logits of its first completion token.

    Args:
        prompt_ids, prompt_mask: (b, P) left-padded prompts.

    Returns:
        L with 0 <= L < the shortest real prompt length (0 when some prompt has at most one token).
    """
    lengths = prompt_mask.sum(dim=1)  # (b,)
    shortest = int(lengths.min()) if lengths.numel() else 0
    if shortest <= 1:
        return 0
    width = prompt_ids.size(1)
    # Real tokens of row i start at column width - length_i: align every row on its first real token.
    starts = (width - lengths).tolist()
    aligned = torch.stack([prompt_ids[i, start : start + shortest - 1] for i, start in enumerate(starts)])  # (b, S-1)
    same = (aligned == aligned[:1]).all(dim=0)  # (S-1,) column agrees across rows
    mismatch = (~same).nonzero()
    return int(mismatch[0]) if mismatch.numel() else shortest - 1


def _drop_prompt_start(prompt_mask: torch.Tensor, count: int) -> torch.Tensor:
    """`prompt_mask` with the first `count` real tokens of every row masked out (they moved into the cache)."""
    if count == 0:
        return prompt_mask
    width = prompt_mask.size(1)
    columns = torch.arange(width, device=prompt_mask.device).unsqueeze(0)  # (1, P)
    first_real = (width - prompt_mask.sum(dim=1)).unsqueeze(1)  # (b, 1)
    moved = (columns >= first_real) & (columns < first_real + count)  # (b, P)
    return prompt_mask.masked_fill(moved, 0)  # (b, P)


def _encode_into_cache(
    model: torch.nn.Module,
    ids: torch.Tensor,
    cache: Any,
    width: int,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]],
) -> Any:
    """Run `ids` (1, n) after `width` cached tokens (`cache` None: from scratch) and return the grown cache."""
    kwargs: dict[str, Any] = {}
    if cache is not None:
        # The forward appends to the cache it is given: grow a copy, the caller keeps using the original.
        kwargs[KV_CACHE_NAME] = copy.deepcopy(cache)
        kwargs["position_ids"] = torch.arange(width, width + ids.size(1), device=ids.device).unsqueeze(0)  # (1, n)
    with autocast():
        # logits_to_keep=1: only the cache is needed, not a vocabulary projection of every position.
        out = model(
            input_ids=ids,
            attention_mask=ids.new_ones(1, width + ids.size(1)),
            use_cache=True,
            logits_to_keep=1,
            **kwargs,
        )
    grown = getattr(out, KV_CACHE_NAME, None)
    if grown is None:
        raise RuntimeError(
            f"{type(model).__name__} returned no key/value cache for the teacher prefix (use_cache=True was "
            "ignored, e.g. under gradient checkpointing in training mode). Set SDARConfig(teacher_prefix_cache=False) "
            "to score every teacher prompt with a full forward."
        )
    return grown


def _score_after_cache(
    model: torch.nn.Module,
    cache: Any,
    width: int,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    batch_size: int,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]],
) -> torch.Tensor:
    """(b, C) log-probs of rows whose teacher prompt is the `width` cached tokens + their own unmasked prompt."""
    logps = torch.zeros(completion_ids.shape, dtype=torch.float32, device=prompt_ids.device)  # (b, C)
    prompt_width = prompt_ids.size(1)
    for rows, prompt_len, completion_len in length_sorted_slices(prompt_mask, completion_mask, batch_size):
        ids = torch.cat(
            [prompt_ids[rows, prompt_width - prompt_len :], completion_ids[rows, :completion_len]], dim=1
        )  # (n, S)
        mask = torch.cat(
            [prompt_mask[rows, prompt_width - prompt_len :], completion_mask[rows, :completion_len]], dim=1
        )  # (n, S)
        full_mask = torch.cat([mask.new_ones(rows.numel(), width), mask], dim=1)  # (n, K + S)
        # Masked columns (left padding, or prompt tokens already in the cache) sit between the cache and the rest:
        # positions count real tokens only, so every token keeps its position in the contiguous teacher prompt.
        positions = (full_mask.cumsum(dim=1) - 1).clamp(min=0)[:, width:]  # (n, S)
        rows_cache = copy.deepcopy(cache)  # the forward appends to the cache it is given
        rows_cache.batch_repeat_interleave(rows.numel())
        with autocast():
            logps[rows, :completion_len] = fused_head_logps(
                model, ids, full_mask, completion_len, position_ids=positions, **{KV_CACHE_NAME: rows_cache}
            )  # (n, completion_len)
    return logps


def prefix_cached_logps(
    model: torch.nn.Module,
    prefix: Sequence[int],
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    *,
    batch_size: int,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    share_prompt_starts: bool = True,
) -> torch.Tensor:
    """Teacher log-probs of rows that share one prefix: the prefix is encoded once, its key/value cache reused.

    Gives the log-probs a forward over `prefix + prompt + completion` per row gives (up to float rounding), at
    the cost of one forward over the prefix plus one over `prompt + completion` per row. With
    `share_prompt_starts` the cache goes further, in two levels: the prompt tokens every row starts with
    (`common_prompt_start`: chat template, instructions, task) join the prefix, and rows with the very same
    prompt (the first step of every trajectory of a group) share one more cache of their whole prompt but its
    last token. Each row then runs only what is its own. `model` must be a causal LM patched with TRL's fused LM
    head (`add_fused_lm_head`), as every model GRPOTrainer scores is, and accept a key/value cache
    (`sdar_trl._compat.KV_CACHE_NAME`); call it under `torch.no_grad()`.

    Args:
        model: the teacher (the live policy, an EMA swap or the frozen base).
        prefix: the shared teacher-prefix token ids (K,), K ≥ 1.
        prompt_ids, prompt_mask: (b, P) the rows' student prompts, left-padded.
        completion_ids, completion_mask: (b, C) the rows' completions, right-padded.
        batch_size: rows per forward.
        autocast: a context-manager factory wrapped around each forward (e.g. `accelerator.autocast`).
        share_prompt_starts: also cache the prompt tokens the rows share (False: the prefix only).

    Returns:
        (b, C) float32 log-probs of the completion tokens; 0 past each row's completion.
    """
    if len(prefix) == 0:
        raise ValueError("prefix_cached_logps needs a non-empty prefix; score rows without context directly.")
    device = prompt_ids.device
    shared = common_prompt_start(prompt_ids, prompt_mask) if share_prompt_starts and len(prompt_ids) > 1 else 0
    head = list(prefix)
    if shared:
        first_row = prompt_ids[0, prompt_ids.size(1) - int(prompt_mask[0].sum()) :]  # (P_0,) row 0 unpadded
        head += first_row[:shared].tolist()
    head_tensor = torch.as_tensor(head, dtype=prompt_ids.dtype, device=device).unsqueeze(0)  # (1, K + L)
    cache = _encode_into_cache(model, head_tensor, None, 0, autocast)
    width = head_tensor.size(1)
    prompt_mask = _drop_prompt_start(prompt_mask, shared)  # (b, P) the rest of each prompt is the row's own
    logps = torch.zeros(completion_ids.shape, dtype=torch.float32, device=device)  # (b, C)
    # Level two: rows with an identical (remaining) prompt, e.g. the first step of every trajectory of a group.
    # Without sharing, every row is scored on its own after the prefix cache.
    by_prompt: dict[tuple[int, ...], list[int]] = {}
    alone: list[int] = [] if share_prompt_starts else list(range(prompt_ids.size(0)))
    if share_prompt_starts:
        for row in range(prompt_ids.size(0)):
            by_prompt.setdefault(tuple(prompt_ids[row][prompt_mask[row].bool()].tolist()), []).append(row)
    for own, rows in by_prompt.items():
        if len(rows) < 2 or len(own) < 2:
            alone.extend(rows)
            continue
        index = torch.tensor(rows, device=device)  # (r,)
        extra = torch.as_tensor(own[:-1], dtype=prompt_ids.dtype, device=device).unsqueeze(0)  # (1, n)
        sub_cache = _encode_into_cache(model, extra, cache, width, autocast)
        sub_mask = _drop_prompt_start(prompt_mask[index], len(own) - 1)  # (r, P) one real token left per row
        logps[index] = _score_after_cache(
            model,
            sub_cache,
            width + extra.size(1),
            prompt_ids[index],
            sub_mask,
            completion_ids[index],
            completion_mask[index],
            batch_size,
            autocast,
        )  # (r, C)
    if alone:
        index = torch.tensor(sorted(alone), device=device)  # (a,)
        logps[index] = _score_after_cache(
            model,
            cache,
            width,
            prompt_ids[index],
            prompt_mask[index],
            completion_ids[index],
            completion_mask[index],
            batch_size,
            autocast,
        )  # (a, C)
    return logps  # (b, C)
