"""The teacher side of `SDARTrainer`: which weights score, the teacher forward over a batch, RLSD's advantages.

`TeacherBranchMixin` holds the methods of `SDARTrainer` (a `trl.GRPOTrainer`) that score the policy's samples under
the privileged-context teacher, for single-turn and agent-mode batches alike:

- which module scores teacher prompts for `teacher_mode` (`live`: the policy; `base`: frozen initial weights, a
  copy taken by `frozen_base_copy`, TRL's reference model or the PEFT model without its adapter; `ema`: averaged
  weights swapped in, `sdar_trl.teacher.EMATeacherWeights`);
- `_add_teacher_logps`: one no-grad forward per row over `header + context + separator + prompt + completion`
  (`sdar_trl.teacher.teacher_logps`, with the shared-prefix cache), stored as `teacher_per_token_logps` (B, C);
- RLSD (`rlsd_weight > 0`): teacher-reweighted (B, C) token advantages (`sdar_trl.loss`);
- `_log_sdar_stats`: the `sdar/*` metrics, token-weighted over all processes.

The prefix text is `sdar_trl.context.render_teacher_prefix`; the distillation term itself is computed in
`SDARTrainer.compute_loss` (`sdar_trl.loss.compute_distill_loss`).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from accelerate.utils import is_peft_model
from transformers import PreTrainedModel

from ._compat import add_fused_lm_head, disable_gradient_checkpointing, prepare_deepspeed, prepare_fsdp, use_adapter
from .callbacks import EMAUpdateCallback
from .context import render_teacher_prefix
from .loss import compute_rlsd_advantages, compute_rlsd_weight, masked_mean, sampled_token_mask
from .teacher import EMATeacherWeights, teacher_logps

if TYPE_CHECKING:
    from .config import SDARConfig

__all__ = ["TeacherBranchMixin", "frozen_base_copy"]


def frozen_base_copy(model: Any, args: SDARConfig, peft_config: Any) -> PreTrainedModel | None:
    """A copy of the initial weights for `teacher_mode="base"` without PEFT and without a reference model (beta=0).

    Taken before TRL patches the model: a deepcopy of a patched model would call back into the original weights.
    None when another module holds the initial weights (TRL's reference model, or the PEFT model's base).
    """
    uses_peft = peft_config is not None or (not isinstance(model, str) and is_peft_model(model))
    if not (args.needs_teacher and args.teacher_mode == "base" and not uses_peft and args.beta == 0.0):
        return None
    if not isinstance(model, PreTrainedModel):
        raise ValueError(
            f"teacher_mode='base' without PEFT needs a frozen copy of the initial model, but model={model!r} "
            "is a name and beta=0 means TRL loads no reference model. Pass a loaded model instance, set "
            "beta > 0 (the reference model is then reused as the base teacher), or train with peft_config."
        )
    return copy.deepcopy(model)


class TeacherBranchMixin:
    """The teacher-scoring methods of `SDARTrainer` (mixed into a `trl.GRPOTrainer` subclass; see the module doc)."""

    args: SDARConfig
    _sdar_base_teacher: torch.nn.Module | None
    _sdar_ema: EMATeacherWeights | None

    def _setup_teacher(self, base_teacher: PreTrainedModel | None) -> None:
        """Prepare the teacher weights of `teacher_mode` (after `GRPOTrainer.__init__`: needs its accelerator)."""
        self._sdar_base_teacher = self._prepare_base_teacher(base_teacher)
        self._sdar_ema = self._prepare_ema_teacher()
        if self.args.teacher_mode == "base" and self.args.sync_ref_model and self._sdar_base_teacher is self.ref_model:
            raise ValueError(
                "teacher_mode='base' reuses the reference model as the frozen base teacher, but sync_ref_model=True "
                "keeps moving it. Set sync_ref_model=False, or use teacher_mode='live'."
            )

    def _prepare_base_teacher(self, base_teacher: PreTrainedModel | None) -> torch.nn.Module | None:
        if not (self.args.needs_teacher and self.args.teacher_mode == "base"):
            return None
        if is_peft_model(self.model):
            return None  # the adapter is disabled around the teacher forward instead
        if base_teacher is None:
            return self.ref_model  # beta > 0: TRL's reference model holds the initial weights
        base_teacher.eval().requires_grad_(False)
        add_fused_lm_head(
            base_teacher, temperature=self.temperature, cast_lm_head_to_fp32=self.args.cast_lm_head_to_fp32
        )
        if self.is_deepspeed_enabled:
            return prepare_deepspeed(base_teacher, self.accelerator)
        if self.is_fsdp_enabled:
            return prepare_fsdp(base_teacher, self.accelerator)
        return self.accelerator.prepare_model(base_teacher, evaluation_mode=True)

    def _weights_sharded(self) -> bool:
        """FSDP or DeepSpeed ZeRO-3: every forward gathers parameters across processes, so all must run it."""
        zero_stage = getattr(getattr(self.accelerator.state, "deepspeed_plugin", None), "zero_stage", 0)
        return bool(self.is_fsdp_enabled or zero_stage == 3)

    def _prepare_ema_teacher(self) -> EMATeacherWeights | None:
        if not (self.args.needs_teacher and self.args.teacher_mode == "ema"):
            return None
        if self._weights_sharded():
            raise ValueError(
                "teacher_mode='ema' keeps a local copy of the trainable weights and cannot average parameters "
                "sharded by FSDP or DeepSpeed ZeRO-3. Use teacher_mode='live' (SDAR) or 'base', or ZeRO stage <= 2."
            )
        ema = EMATeacherWeights(self.model, update_rate=self.args.teacher_ema_rate)
        self.add_callback(EMAUpdateCallback(ema, every=self.args.teacher_ema_sync_steps))
        return ema

    @contextlib.contextmanager
    def _teacher_model(self) -> Iterator[torch.nn.Module]:
        """Yield the module that scores teacher prompts for the configured `teacher_mode`."""
        if self.args.teacher_mode == "live":
            yield self.model
        elif self._sdar_ema is not None:
            with self._sdar_ema.swapped_in():
                yield self.model
        elif self._sdar_base_teacher is not None:
            yield self._sdar_base_teacher
        else:  # PEFT: the initial weights are the model with its adapter disabled
            with use_adapter(self.accelerator.unwrap_model(self.model), adapter_name=None):
                yield self.model

    def _add_teacher_logps(self, output: dict[str, Any], prefixes: list[str]) -> None:
        """Score the batch under the teacher (one prefix per row) and store what the loss needs from it."""
        teacher_logps = self._compute_teacher_logps(output, prefixes)  # (B, C)
        output["teacher_per_token_logps"] = teacher_logps
        if not self.args.distill_empty_context:
            # Without privileged information (empty prefix) the teacher is the student: Δ = 0, g = 0.5, and the gated
            # term would only raise the likelihood of the row's own samples. Leave such rows out of the distillation.
            output["teacher_row_mask"] = torch.tensor(
                [prefix != "" for prefix in prefixes],
                dtype=output["completion_mask"].dtype,
                device=teacher_logps.device,
            )  # (B,)
        if self.args.rlsd_weight > 0:
            self._apply_rlsd(output, teacher_logps)

    def _render_prefix(self, context: Any) -> str:
        """`header + context + separator` for a row's privileged context ("" when it has none)."""
        return render_teacher_prefix(
            context, header=self.args.teacher_context_header, separator=self.args.teacher_context_separator
        )

    def _forward_batch_size(self) -> int:
        """Rows per chunk of a no-grad forward, as TRL chunks its own old/ref log-prob forwards."""
        if self.model.training:
            return self.args.per_device_train_batch_size
        return self.args.per_device_eval_batch_size

    def _compute_teacher_logps(self, output: dict[str, Any], prefixes: list[str]) -> torch.Tensor:
        """(B, C) log-probs of the batch's completions under the teacher: `prefixes[i]` + row i's prompt ids."""
        tokenizer = getattr(self.processing_class, "tokenizer", self.processing_class)
        prefix_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] if p else [] for p in prefixes]
        pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        # Sharded weights need the same forward count on every process; the number of distinct prefixes differs
        # between processes, so there every row takes the full forward (the batch size is the same everywhere).
        # Elsewhere step samples share prefixes widely (all steps of an episode, all trajectories of a task), so
        # each shared prefix is encoded once and only prompt + completion is scored per row.
        use_prefix_cache = self.args.teacher_prefix_cache and not self._weights_sharded()
        with (
            torch.no_grad(),
            disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs),
            self._teacher_model() as teacher,
        ):
            return teacher_logps(
                teacher,
                prefix_ids,
                output["prompt_ids"],
                output["prompt_mask"],
                output["completion_ids"],
                output["completion_mask"],
                pad_token_id=pad_token_id,
                batch_size=self._forward_batch_size(),
                use_prefix_cache=use_prefix_cache,
                score=self._score_full_forward,
                max_length=self.args.max_teacher_prompt_length,
                autocast=self.accelerator.autocast,
            )  # (B, C) aligned with the student's completion tokens

    def _score_full_forward(
        self, model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int
    ) -> torch.Tensor:
        """A teacher forward through TRL's own log-prob forward (the temperature and fused head of the student's)."""
        logps, _, _ = self._get_per_token_logps_and_entropies(
            model, input_ids, attention_mask, logits_to_keep, batch_size=input_ids.size(0)
        )  # (b, logits_to_keep)
        return logps

    def _rollout_student_logps(self, output: dict[str, Any]) -> torch.Tensor:
        """(B, C) log-probs of the batch's completions under the rollout-time student (no grad)."""
        student_logps = output.get("old_per_token_logps")
        if student_logps is not None:
            return student_logps
        # On-policy step: TRL skipped the old-log-prob forward, so score the rollout-time student once here.
        input_ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)  # (B, P + C)
        attention_mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)  # (B, P + C)
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            student_logps, _, _ = self._get_per_token_logps_and_entropies(
                self.model,
                input_ids,
                attention_mask,
                output["completion_ids"].size(1),
                batch_size=self._forward_batch_size(),
            )  # (B, C)
        return student_logps

    def _apply_rlsd(self, output: dict[str, Any], teacher_logps: torch.Tensor) -> None:
        """RLSD: replace (B,) advantages by teacher-reweighted (B, C) token advantages."""
        student_logps = self._rollout_student_logps(output)  # (B, C)
        mask = sampled_token_mask(output)  # (B, C)
        weight = compute_rlsd_weight(
            self.state.global_step, initial_weight=self.args.rlsd_weight, decay_steps=self.args.rlsd_decay_steps
        )
        output["advantages"] = compute_rlsd_advantages(
            output["advantages"], student_logps, teacher_logps, mask, weight=weight, clip_eps=self.args.rlsd_clip_eps
        )  # (B, C)
        mode = "train" if self.model.training else "eval"
        self._metrics[mode]["sdar/rlsd_weight"].append(weight)
        gap_mean = masked_mean(teacher_logps - student_logps, mask)  # rollout-time Δ
        self._log_sdar_stats(mode, {"teacher_gap_mean": gap_mean}, mask)

    def _log_sdar_stats(self, mode: str, stats: dict[str, torch.Tensor], mask: torch.Tensor) -> None:
        """Token-weighted means over all processes, logged as `sdar/<name>`."""
        count = mask.sum().to(torch.float32)
        local = torch.stack([*(value.to(torch.float32) * count for value in stats.values()), count])
        totals = self.accelerator.reduce(local, reduction="sum")
        denominator = totals[-1].clamp(min=1.0)
        for name, total in zip(stats, totals[:-1], strict=True):
            self._metrics[mode][f"sdar/{name}"].append((total / denominator).item())
