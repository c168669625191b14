"""A step batch → the pieces one optimizer step trains on: shuffled slices, then chunks of similar-length rows.

Agent mode produces a variable number of step samples per rollout. `shuffle_into_slices` splits them into
`steps_per_generation` slices (one per gradient-accumulation step, as TRL splits its generation batch), and
`split_into_chunks` splits a slice into chunks of at most `per_device_train_batch_size` rows, each weighted by its
share of the slice (`agent_loss_weights`), so the chunk losses add up to the loss of the whole slice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

__all__ = [
    "TRL_LOSS_WEIGHT_KIND",
    "length_grouped_parts",
    "padding_source",
    "shuffle_into_slices",
    "split_into_chunks",
    "split_rows",
    "take_rows",
    "trim_left_padding",
]

#: How each TRL loss type normalises a micro-batch, hence which share of a slice a chunk's loss must be weighted by:
#: global token normalisers (num_items_in_batch) need no weight; per-micro-batch token means weigh by tokens;
#: per-sequence means weigh by rows.
TRL_LOSS_WEIGHT_KIND: dict[str, str] = {
    "dapo": "global",
    "cispo": "global",
    "vespo": "global",
    "bnpo": "tokens",
    "grpo": "rows",
    "sapo": "rows",
    "dr_grpo": "rows",
    "luspo": "rows",
}


def split_rows(num_rows: int, num_parts: int) -> list[range]:
    """Split `range(num_rows)` into `num_parts` contiguous ranges whose sizes differ by at most one."""
    if num_parts < 1:
        raise ValueError(f"num_parts must be >= 1, got {num_parts}.")
    base, extra = divmod(num_rows, num_parts)
    bounds, start = [], 0
    for part in range(num_parts):
        size = base + (1 if part < extra else 0)
        bounds.append(range(start, start + size))
        start += size
    return bounds


def length_grouped_parts(lengths: torch.Tensor, num_parts: int) -> list[list[int]]:
    """Split rows into `num_parts` groups (sizes differ by at most one) of rows with similar `lengths`.

    Chunks of a padded batch cost as much as their longest row: grouping rows by length before chunking (and
    trimming each chunk's padding with `trim_left_padding`) avoids paying for the batch's longest prompt in every
    chunk. The order of rows inside an optimizer step does not change its gradient, only the summation order.
    """
    order = torch.argsort(lengths, stable=True).tolist()  # (N,) rows, shortest first
    return [[order[i] for i in part] for part in split_rows(len(order), num_parts)]


def trim_left_padding(batch: Mapping[str, Any]) -> dict[str, Any]:
    """`batch` without the prompt columns that are padding in every row (prompts are left-padded).

    Log-probs do not change for rotary-position models (Llama, Qwen, ...): the dropped columns are masked out of
    attention, and rotary embeddings only see distances between tokens, which dropping a common run of padding
    keeps. (TRL's forward gives absolute-position models padding-shifted positions anyway; trimming shifts less.)
    """
    mask = batch["prompt_mask"]  # (n, P)
    used = mask.any(dim=0).nonzero()  # (k, 1) columns holding a real token in some row
    first = int(used[0, 0]) if used.numel() else mask.size(1)
    out = dict(batch)
    out["prompt_ids"] = batch["prompt_ids"][:, first:]  # (n, P - first)
    out["prompt_mask"] = mask[:, first:]  # (n, P - first)
    return out


def take_rows(batch: Mapping[str, Any], index: torch.Tensor, num_rows: int) -> dict[str, Any]:
    """Rows `index` of every per-row tensor of `batch` (first dim == num_rows); other entries are shared."""
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.size(0) == num_rows:
            out[key] = value[index.to(value.device)]
        else:
            out[key] = value
    return out


def shuffle_into_slices(batch: Mapping[str, Any], num_slices: int) -> list[dict[str, Any]]:
    """Shuffle the step samples (torch's global RNG) and split them into `num_slices` slices of near-equal size."""
    num = batch["prompt_ids"].size(0)
    order = torch.randperm(num)
    return [take_rows(batch, order[list(part)], num) for part in split_rows(num, num_slices)]


def padding_source(piece: dict[str, Any], slices: Sequence[dict[str, Any]] | None) -> dict[str, Any]:
    """A slice to copy padding rows from: `piece` itself, or (when it is empty) the first non-empty one of `slices`."""
    if piece["prompt_ids"].size(0) > 0 or slices is None:
        return piece
    return next((s for s in slices if s["prompt_ids"].size(0) > 0), piece)


def split_into_chunks(
    piece: dict[str, Any],
    *,
    chunk_size: int,
    width: int,
    equal_rows: bool,
    distill_mask: torch.Tensor,
    source: dict[str, Any],
) -> list[dict[str, Any]]:
    """Split one slice into chunks of <= `chunk_size` rows.

    With `equal_rows` (multi-process training) every process gets the same number of chunks with the same number
    of rows: `width` is the largest slice of any process, and short chunks are padded with fully masked copies of a
    row (of `source` when the slice is empty, see `padding_source`), which add nothing to any loss (TRL gathers
    per-row metrics inside its loss, and DDP needs equal backward counts). Each chunk carries `agent_loss_weights`,
    its share of the slice, so the chunk losses add up to what TRL (and the distillation term, whose tokens are
    `distill_mask` (n, C)) would compute on the whole slice: rows (incl. padding, which TRL's per-sequence means
    divide by), tokens, distillation tokens.
    """
    num = piece["prompt_ids"].size(0)
    mask = piece["completion_mask"]  # (n, C)
    count = max(math.ceil(width / chunk_size), 1)
    # Single process: no padding needed. Several: all chunks get the same row count.
    rows_per_chunk = math.ceil(width / count) if equal_rows else None
    totals = (max(num, 1), mask.sum().clamp(min=1), distill_mask.sum().clamp(min=1))
    chunks = []
    for real in length_grouped_parts(piece["prompt_mask"].sum(dim=1), count):
        padding = (rows_per_chunk - len(real)) if rows_per_chunk is not None else int(not real)
        index = torch.tensor(real + real[:1] * padding if real else [0] * padding)  # pad with a same-length row
        chunk = take_rows(piece if real else source, index, (piece if real else source)["prompt_ids"].size(0))
        chunk = trim_left_padding(chunk)  # rows of similar length: a chunk pays for its own longest prompt
        if padding:
            chunk["completion_mask"] = chunk["completion_mask"].clone()
            chunk["completion_mask"][len(real) :] = 0  # padding rows: attended prompt, no loss tokens
        if real:
            real_index = torch.tensor(real)
            chunk["agent_loss_weights"] = {
                "global": 1.0,  # TRL already divides by the rollout's token count (num_items_in_batch)
                "rows": len(index) / totals[0],
                "tokens": mask[real_index].sum() / totals[1],
                "distill": distill_mask[real_index].sum() / totals[2],
            }
        else:
            chunk["agent_loss_weights"] = {"global": 0.0, "rows": 0.0, "tokens": 0.0, "distill": 0.0}
        chunks.append(chunk)
    return chunks
