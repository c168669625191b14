"""Row-by-row log-prob forwards without padding: which columns of each row to run, and how to put the rows back.

TRL's log-prob forward runs a padded batch `(B, T)`: prompts left-padded, completions right-padded. On CPU every
padding position costs as much as a real token, and the padding mask keeps transformers off SDPA's `is_causal`
path. Running each row alone on its real columns avoids both (see docs/trainer.md, "Unpadded log-prob forwards").

The log-probs of the real tokens do not change for rotary-position models (Llama, Qwen, ...) up to float rounding:
with causal attention, trailing padding never reaches an earlier token, leading padding is masked out of attention,
and rotary embeddings see only distances between tokens, which cutting a row's leading padding keeps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "UNPADDED_AUTO_MIN_TOKENS",
    "UNPADDED_LOGPS_MODES",
    "RowSpan",
    "reassemble_rows",
    "row_spans",
    "unpadded_logps_and_entropies",
    "use_unpadded_logps",
]

#: `SDARConfig.unpadded_logps` values: "auto" (per row on CPU for long rows, batched elsewhere), "always", "never".
UNPADDED_LOGPS_MODES: tuple[str, ...] = ("auto", "always", "never")
#: "auto" runs a CPU forward row by row from this mean number of real tokens per row. Measured on one CPU thread
#: (docs/trainer.md): per row was 1.3-5x slower for rows of 30-100 tokens (micro starters and SmolLM2-135M), even
#: at ~260 tokens, and 1.5-1.8x faster for rows of 500-900 tokens.
UNPADDED_AUTO_MIN_TOKENS: int = 384


@dataclass(frozen=True)
class RowSpan:
    """The columns `[start, stop)` of one row to run alone; its last `keep` columns are its scored completion columns.

    `keep` counts the completion columns up to the row's last real token, so the row's output fills the first `keep`
    of the batch's `logits_to_keep` output columns.
    """

    start: int
    stop: int
    keep: int


def row_spans(attention_mask: torch.Tensor, logits_to_keep: int) -> list[RowSpan]:
    """Per row of `attention_mask` (B, T), the span from its first to its last real column.

    The last `logits_to_keep` columns are the completion. A span always holds at least one column before the
    completion (the token that predicts the first completion token) and one completion column, so that a row whose
    completion is entirely masked (a truncated completion, a padding row of an agent-mode chunk) still runs a
    forward: every row keeps its place in the graph and the number of forwards does not depend on the data.
    """
    if attention_mask.dim() != 2:
        raise ValueError(
            f"attention_mask must be 2-D (batch, sequence), got shape {tuple(attention_mask.shape)}: pass the "
            "concatenation of prompt_mask and completion_mask."
        )
    length = attention_mask.size(1)
    if not 0 < logits_to_keep < length:
        raise ValueError(
            f"logits_to_keep={logits_to_keep} must lie in [1, {length - 1}] for a sequence of {length} columns (the "
            "completion columns; at least one prompt column must precede them)."
        )
    completion_start = length - logits_to_keep
    real = attention_mask != 0  # (B, T)
    columns = torch.arange(length, device=attention_mask.device)  # (T,)
    # First and last real column of each row; a row without any gets (length, -1), widened below.
    first = torch.where(real, columns, length).amin(dim=1).tolist()  # (B,)
    last = torch.where(real, columns, -1).amax(dim=1).tolist()  # (B,)
    spans = []
    for row_first, row_last in zip(first, last, strict=True):
        start = min(row_first, completion_start - 1)
        stop = max(row_last + 1, completion_start + 1)
        spans.append(RowSpan(start=start, stop=stop, keep=stop - completion_start))
    return spans


def reassemble_rows(pieces: Sequence[torch.Tensor], spans: Sequence[RowSpan], logits_to_keep: int) -> torch.Tensor:
    """Stack per-row outputs `(1, span.keep)` into `(B, logits_to_keep)`, right-filling each row with 0.

    The filled positions are trailing completion padding: TRL's batched forward gives them 0 too (they carry no
    label), and every loss masks them with `completion_mask`. Differentiable (padding, not in-place writes).
    """
    if len(pieces) != len(spans):
        raise ValueError(f"Got {len(pieces)} row outputs for {len(spans)} row spans; pass one output per span.")
    rows = []
    for piece, span in zip(pieces, spans, strict=True):
        if piece.shape != (1, span.keep):
            raise ValueError(
                f"A row output has shape {tuple(piece.shape)}, expected (1, {span.keep}) (its span's keep columns)."
            )
        rows.append(F.pad(piece, (0, logits_to_keep - span.keep)))  # (1, logits_to_keep)
    return torch.cat(rows, dim=0)  # (B, logits_to_keep)


def use_unpadded_logps(mode: str, device: torch.device, attention_mask: torch.Tensor) -> bool:
    """Whether `unpadded_logps=mode` runs this log-prob forward (mask `attention_mask` (B, T)) row by row.

    "auto" chooses per row on CPU for rows of at least `UNPADDED_AUTO_MIN_TOKENS` real tokens on average: there every
    padded position costs a full token, while each separate forward adds a fixed cost per layer that dominates short
    rows (docs/trainer.md has the measurements). On accelerators padding is cheap and one batched kernel wins.
    """
    if mode not in UNPADDED_LOGPS_MODES:
        raise ValueError(
            f"unpadded_logps={mode!r} is not supported; expected one of {list(UNPADDED_LOGPS_MODES)} ('auto': row by "
            "row on CPU for long rows, batched elsewhere)."
        )
    if mode != "auto":
        return mode == "always"
    if device.type != "cpu" or attention_mask.size(0) < 2:
        return False  # a single row has no padding to cut
    mean_tokens = float(attention_mask.count_nonzero()) / attention_mask.size(0)
    return mean_tokens >= UNPADDED_AUTO_MIN_TOKENS


def unpadded_logps_and_entropies(
    forward: Callable[..., tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    *,
    compute_entropy: bool,
) -> tuple[torch.Tensor, torch.Tensor | None, None]:
    """`forward` (TRL's `_get_per_token_logps_and_entropies`, bound to its model) once per row on the row's real
    columns (`row_spans`), reassembled to `(B, logits_to_keep)` log-probs (and entropies when asked)."""
    spans = row_spans(attention_mask, logits_to_keep)
    logps, entropies = [], []
    for row, span in enumerate(spans):
        row_logps, row_entropy, _ = forward(
            input_ids[row : row + 1, span.start : span.stop],  # (1, span)
            attention_mask[row : row + 1, span.start : span.stop],  # (1, span) all ones unless the row has holes
            span.keep,
            batch_size=1,
            compute_entropy=compute_entropy,
        )
        logps.append(row_logps)  # (1, keep)
        entropies.append(row_entropy)  # (1, keep) or None
    return (
        reassemble_rows(logps, spans, logits_to_keep),  # (B, C)
        reassemble_rows(entropies, spans, logits_to_keep) if compute_entropy else None,  # (B, C)
        None,
    )
