"""Gate diagnostics in `SDARTrainer` (`gate_diagnostics=True`; docs/gate.md): wiring only, the logic is
`sdar_trl.diagnostics`.

`GateDiagnosticsMixin` holds the methods of `SDARTrainer` that

- annotate a generation batch (single-turn and agent mode) with two per-row columns: `gate_token_classes` (B, C),
  each completion token's class (`diagnostics.TOKEN_CLASSES`, -1 on padding), and `gate_outcome` (B,), the row's
  outcome (agent mode: its episode won or not; single-turn: its advantage is positive or negative). Being per-row
  tensors, they follow the rows through TRL's and agent mode's shuffles, slices and chunks;
- in `compute_loss`, after the distillation term: recompute the gate from the same detached log-probs (no graph, no
  second forward), log `sdar/gate_mean/<class|outcome>` and `sdar/gate_active_ratio/<class|outcome>` token-weighted
  over all processes (one collective per micro-batch; a class without tokens logs nothing), and on dump steps append
  a few samples' tokens with their gate and Δ to `output_dir/gate_tokens.jsonl` and re-render `gate_tokens.html`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .diagnostics import (
    GATE_TOKENS_FILE,
    GATE_TOKENS_HTML,
    OUTCOME_FAILURE,
    OUTCOME_SUCCESS,
    OUTCOME_UNKNOWN,
    finish_split_stats,
    gate_split_stats,
    gate_token_record,
    read_gate_records,
    render_gate_html,
    token_classes,
)
from .loss import compute_gate

if TYPE_CHECKING:
    from .config import SDARConfig

__all__ = ["GATE_DUMP_SAMPLES", "GateDiagnosticsMixin", "write_gate_records"]

#: Samples written per dump step (the first distinct ones with distillation tokens that the step trains on, on the
#: main process).
GATE_DUMP_SAMPLES = 4
#: Characters of a sample's prompt shown before its tokens.
_PROMPT_TAIL_CHARS = 300


class GateDiagnosticsMixin:
    """The gate-diagnostics methods of `SDARTrainer` (mixed into a `trl.GRPOTrainer` subclass; see the module doc)."""

    args: SDARConfig
    _gate_pieces: dict[int, str]
    _gate_dump_state: tuple[int, set[tuple[tuple[int, ...], tuple[int, ...]]]]  # (dump step, samples written)

    def _gate_diagnostics_on(self) -> bool:
        """The split statistics exist only where the gated term runs."""
        return bool(self.args.gate_diagnostics) and self.args.distill_coef > 0 and self.args.distill_loss == "gated"

    def _gate_tokenizer(self) -> Any:
        return getattr(self.processing_class, "tokenizer", self.processing_class)

    def _gate_decode_pieces(self, ids: list[int]) -> list[str]:
        """Each token decoded on its own, cached per token id (the vocabulary is decoded at most once per run)."""
        cache = self._gate_pieces
        missing = sorted({i for i in ids if i not in cache})
        if missing:
            cache.update(zip(missing, self._gate_tokenizer().batch_decode([[i] for i in missing]), strict=True))
        return [cache[i] for i in ids]

    def _gate_annotate(self, batch: dict[str, Any], *, action_format: str | None, outcomes: list[int]) -> None:
        """Add `gate_token_classes` (B, C) and `gate_outcome` (B,) to a generation batch (see the module doc)."""
        ids = batch["completion_ids"]  # (B, C)
        lengths = batch["completion_mask"].sum(dim=1).tolist()  # completions are right-padded: real tokens first
        special = set(self._gate_tokenizer().all_special_ids)
        classes = torch.full(ids.shape, -1, dtype=torch.long)  # (B, C)
        for row, (row_ids, length) in enumerate(zip(ids.tolist(), lengths, strict=True)):
            row_ids = row_ids[: int(length)]
            if row_ids:
                labels = token_classes(
                    self._gate_decode_pieces(row_ids), action_format, special=[i in special for i in row_ids]
                )
                classes[row, : len(labels)] = torch.tensor(labels, dtype=torch.long)
        batch["gate_token_classes"] = classes.to(ids.device)  # (B, C)
        batch["gate_outcome"] = torch.tensor(outcomes, dtype=torch.long, device=ids.device)  # (B,)

    @staticmethod
    def _gate_outcomes_from_advantages(advantages: torch.Tensor) -> list[int]:
        """Single-turn outcome: above the group's mean reward (advantage > 0) is a success, below a failure."""
        signs = torch.sign(advantages.detach()).tolist()  # (B,)
        return [OUTCOME_SUCCESS if s > 0 else OUTCOME_FAILURE if s < 0 else OUTCOME_UNKNOWN for s in signs]

    def _gate_record(self, student_logps: torch.Tensor, inputs: dict[str, Any], mask: torch.Tensor, mode: str) -> None:
        """Log the split gate statistics of one micro-batch; on dump steps also write its first samples' tokens."""
        if "gate_token_classes" not in inputs:
            return
        with torch.no_grad():
            teacher_logps = inputs["teacher_per_token_logps"].detach()  # (B, C)
            student = student_logps.detach()  # (B, C)
            gate = compute_gate(student, teacher_logps, gate_beta=self.args.gate_beta)  # (B, C)
            sums, counts = gate_split_stats(gate, mask, inputs["gate_token_classes"], inputs["gate_outcome"])  # (K,)
            totals = self.accelerator.reduce(torch.stack([sums, counts]), reduction="sum")  # (2, K) all processes
        total_sums, total_counts = totals.tolist()  # one host sync for all statistics
        for name, value in finish_split_stats(total_sums, total_counts).items():
            # No token of that class or outcome on any process: append nothing, so that a logging window without any
            # logs no key (TRL's log() would turn a window of NaNs into None, which breaks float() consumers).
            if not math.isnan(value):
                self._metrics[mode][f"sdar/{name}"].append(value)
        if mode == "train":
            self._gate_dump(gate, teacher_logps - student, inputs, mask)

    def _gate_dump_step(self) -> int | None:
        """The optimizer step being trained (1-based) if it is a dump step (the first, then every N-th), else None."""
        every = self.args.gate_diagnostics_every
        step = self.state.global_step + 1
        if every <= 0 or not self.is_world_process_zero() or not (step == 1 or step % every == 0):
            return None
        return step

    def _gate_dump(self, gate: torch.Tensor, delta: torch.Tensor, inputs: dict[str, Any], mask: torch.Tensor) -> None:
        step = self._gate_dump_step()
        if step is None:
            return
        dumped_step, seen = self._gate_dump_state
        if dumped_step != step:
            seen = set()
        if len(seen) >= GATE_DUMP_SAMPLES:
            return
        keep = mask.bool()  # (B, C)
        tokenizer = self._gate_tokenizer()
        records = []
        for row, count in enumerate(keep.sum(dim=1).tolist()):
            if count == 0 or len(seen) >= GATE_DUMP_SAMPLES:
                continue
            where = keep[row]  # (C,)
            prompt_ids = inputs["prompt_ids"][row][inputs["prompt_mask"][row].bool()].tolist()
            completion_ids = inputs["completion_ids"][row][where].tolist()
            # The trajectories of a task often sample the same step: a repeat would only show the same tokens again.
            key = (tuple(prompt_ids), tuple(completion_ids))
            if key in seen:
                continue
            seen.add(key)
            records.append(
                gate_token_record(
                    self._gate_decode_pieces(completion_ids),
                    inputs["gate_token_classes"][row][where].clamp(min=0).tolist(),
                    gate[row][where].tolist(),
                    delta[row][where].tolist(),
                    step=step,
                    outcome=int(inputs["gate_outcome"][row]),
                    prompt_tail=tokenizer.decode(prompt_ids)[-_PROMPT_TAIL_CHARS:],
                )
            )
        self._gate_dump_state = (step, seen)
        if records:
            write_gate_records(Path(self.args.output_dir), records)


def write_gate_records(output_dir: Path, records: list[dict[str, Any]]) -> None:
    """Append `records` to `output_dir/gate_tokens.jsonl` and re-render `gate_tokens.html` (its newest steps)."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / GATE_TOKENS_FILE
    with path.open("a", encoding="utf-8") as file:
        file.writelines(json.dumps(record) + "\n" for record in records)
    html_page = render_gate_html(read_gate_records(path), title="SDAR gate by token")
    (output_dir / GATE_TOKENS_HTML).write_text(html_page, encoding="utf-8")
