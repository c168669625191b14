"""`SDARTrainer`: `trl.GRPOTrainer` plus a skill-conditioned teacher branch.

Glue only. The math lives in `sdar_trl.loss`, the teacher prompts in `sdar_trl.teacher`; TRL's own
generation, log-prob function, loss and logging do everything else (every wrapped method calls
`super()`; the private ones are listed in `sdar_trl._compat`). Per generation batch:

1. `_generate_and_score_completions`: TRL samples and scores; we then run one no-grad forward of
   the teacher (header + privileged context + the student's prompt ids, then the identical
   completion ids) with the rollout-time weights and store `teacher_per_token_logps` (B, C).
   RLSD additionally turns the advantages into (B, C) token advantages here.
2. `compute_loss`: TRL computes its loss; the student's grad-carrying log-probs from TRL's single
   forward are captured (no second forward) and `distill_coef × distillation / grad_accum` is added.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch
from accelerate.utils import is_peft_model
from datasets import Dataset, IterableDataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, ProcessorMixin, TrainerCallback
from trl import GRPOTrainer

from ._compat import (
    add_fused_lm_head,
    disable_gradient_checkpointing,
    prepare_deepspeed,
    prepare_fsdp,
    use_adapter,
)
from .config import SDARConfig
from .loss import (
    compute_opsd_loss,
    compute_rlsd_advantages,
    compute_rlsd_weight,
    compute_sdar_loss,
    compute_skill_sd_loss,
    masked_mean,
)
from .teacher import EMATeacherWeights, build_teacher_prompt_ids, render_teacher_prefix

__all__ = ["SDARTrainer"]


class SDARTrainer(GRPOTrainer):
    """GRPO with SDAR's gated self-distillation from a privileged-context teacher.

    Takes every argument of [`trl.GRPOTrainer`]; `args` must be an [`SDARConfig`]. Each dataset row
    may carry a `privileged_context` string (column name: `args.privileged_context_column`): the
    teacher sees `teacher_context_header + context + teacher_context_separator` before the
    student's prompt. Rows without it (or with an empty string) get a teacher identical to the student.

    Example:
        ```python
        trainer = SDARTrainer(model, reward_funcs=reward_fn, args=SDARConfig(output_dir="out"),
                              train_dataset=dataset, processing_class=tokenizer)
        trainer.train()
        ```
    """

    _tag_names: ClassVar[list[str]] = ["trl", "grpo", "sdar"]
    _name = "SDAR"

    def __init__(
        self,
        model: str | PreTrainedModel | Any,
        reward_funcs: Any = None,
        args: SDARConfig | None = None,
        train_dataset: Dataset | IterableDataset | None = None,
        eval_dataset: Dataset | IterableDataset | dict[str, Dataset | IterableDataset] | None = None,
        processing_class: PreTrainedTokenizerBase | ProcessorMixin | None = None,
        reward_processing_classes: Any = None,
        callbacks: list[TrainerCallback] | None = None,
        optimizers: tuple[torch.optim.Optimizer | None, torch.optim.lr_scheduler.LambdaLR | None] = (None, None),
        quantization_config: Any = None,
        peft_config: Any = None,
        tools: list[Callable] | None = None,
        rollout_func: Callable | None = None,
        environment_factory: Any = None,
    ) -> None:
        if args is None:
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "model") or "model"
            args = SDARConfig(output_dir=f"{str(name).rstrip('/').split('/')[-1]}-SDAR")
        if not isinstance(args, SDARConfig):
            raise TypeError(
                f"SDARTrainer needs an SDARConfig, got {type(args).__name__}. SDARConfig accepts every GRPOConfig "
                "field: replace GRPOConfig(...) with SDARConfig(...) (method='grpo' reproduces plain GRPO)."
            )
        self._check_dataset_columns(train_dataset, args, "train_dataset")
        self._check_dataset_columns(eval_dataset, args, "eval_dataset")

        # A frozen copy of the initial weights for teacher_mode="base" without PEFT, taken before TRL
        # patches the model (a deepcopy of a patched model would call back into the original weights).
        base_teacher = None
        uses_peft = peft_config is not None or (not isinstance(model, str) and is_peft_model(model))
        if args.needs_teacher and args.teacher_mode == "base" and not uses_peft and args.beta == 0.0:
            if isinstance(model, PreTrainedModel):
                base_teacher = copy.deepcopy(model)
            else:
                raise ValueError(
                    f"teacher_mode='base' without PEFT needs a frozen copy of the initial model, but model={model!r} "
                    "is a name and beta=0 means TRL loads no reference model. Pass a loaded model instance, set "
                    "beta > 0 (the reference model is then reused as the base teacher), or train with peft_config."
                )

        super().__init__(
            model,
            reward_funcs,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            reward_processing_classes=reward_processing_classes,
            callbacks=callbacks,
            optimizers=optimizers,
            quantization_config=quantization_config,
            peft_config=peft_config,
            tools=tools,
            rollout_func=rollout_func,
            environment_factory=environment_factory,
        )

        self._sdar_capture = False
        self._sdar_captured: list[torch.Tensor] = []
        self._sdar_base_teacher = self._prepare_base_teacher(base_teacher)
        self._sdar_ema = self._prepare_ema_teacher()
        if args.teacher_mode == "base" and args.sync_ref_model and self._sdar_base_teacher is self.ref_model:
            raise ValueError(
                "teacher_mode='base' reuses the reference model as the frozen base teacher, but sync_ref_model=True "
                "keeps moving it. Set sync_ref_model=False, or use teacher_mode='live'."
            )

    # ------------------------------------------------------------------ set-up helpers
    @staticmethod
    def _check_dataset_columns(dataset: Any, args: SDARConfig, split: str) -> None:
        column = args.privileged_context_column
        if dataset is None or not args.needs_privileged_context:
            return
        datasets = dataset.values() if isinstance(dataset, dict) else [dataset]
        for data in datasets:
            names = getattr(data, "column_names", None)
            if names is not None and column not in names:
                raise ValueError(
                    f"{split} has no {column!r} column (columns: {names}), but method={args.method!r} needs a "
                    f"privileged context per row for the teacher. Add a string column {column!r} (empty string = no "
                    "privileged information), set privileged_context_column to the right name, or use method='grpo'."
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

    def _prepare_ema_teacher(self) -> EMATeacherWeights | None:
        if not (self.args.needs_teacher and self.args.teacher_mode == "ema"):
            return None
        zero_stage = getattr(getattr(self.accelerator.state, "deepspeed_plugin", None), "zero_stage", 0)
        if self.is_fsdp_enabled or zero_stage == 3:
            raise ValueError(
                "teacher_mode='ema' keeps a local copy of the trainable weights and cannot average parameters "
                "sharded by FSDP or DeepSpeed ZeRO-3. Use teacher_mode='live' (SDAR) or 'base', or ZeRO stage <= 2."
            )
        ema = EMATeacherWeights(self.model, update_rate=self.args.teacher_ema_rate)
        self.add_callback(_EMAUpdateCallback(ema, every=self.args.teacher_ema_sync_steps))
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

    # ------------------------------------------------------------------ generation batch
    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if self.args.skills_in_student_prompt:
            inputs = [self._with_context_in_prompt(row) for row in inputs]
        output = super()._generate_and_score_completions(inputs)
        if not self.args.needs_teacher:
            return output
        if "pixel_values" in output:
            raise NotImplementedError(
                "SDARTrainer's teacher branch does not support multimodal batches yet (the teacher prompt would have "
                "to repeat the image tokens). Use method='grpo' for vision-language models."
            )
        prefixes = [self._render_prefix(row.get(self.args.privileged_context_column)) for row in inputs]
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
        return output

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

    @staticmethod
    def _sampled_token_mask(batch: dict[str, Any]) -> torch.Tensor:
        """(B, C) completion tokens the policy sampled: tool/environment tokens are excluded."""
        mask = batch["completion_mask"]  # (B, C)
        if "tool_mask" in batch:
            mask = mask * batch["tool_mask"]  # environment/tool tokens were not sampled by the policy
        return mask

    def _with_context_in_prompt(self, row: dict[str, Any]) -> dict[str, Any]:
        """Skill-GRPO: the privileged context goes into the student's own prompt."""
        prefix = self._render_prefix(row.get(self.args.privileged_context_column))
        prompt = row["prompt"]
        if not prefix:
            return row
        if isinstance(prompt, str):
            return {**row, "prompt": prefix + prompt}
        # Conversational: prepend to the first user message, keeping any system message first.
        messages = [dict(m) for m in prompt]
        for message in messages:
            if message.get("role") == "user" and isinstance(message.get("content"), str):
                message["content"] = prefix + message["content"]
                return {**row, "prompt": messages}
        raise ValueError(
            "skills_in_student_prompt=True needs a string prompt or a conversation with a text user message; got "
            f"{prompt!r}."
        )

    def _compute_teacher_logps(self, output: dict[str, Any], prefixes: list[str]) -> torch.Tensor:
        tokenizer = getattr(self.processing_class, "tokenizer", self.processing_class)
        prefix_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] if p else [] for p in prefixes]
        pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        teacher_prompt_ids, teacher_prompt_mask = build_teacher_prompt_ids(
            output["prompt_ids"],
            output["prompt_mask"],
            prefix_ids,
            pad_token_id=pad_token_id,
            max_length=self.args.max_teacher_prompt_length,
        )  # (B, P_T) each
        completion_ids, completion_mask = output["completion_ids"], output["completion_mask"]  # (B, C) each
        input_ids = torch.cat([teacher_prompt_ids, completion_ids], dim=1)  # (B, P_T + C)
        attention_mask = torch.cat([teacher_prompt_mask, completion_mask], dim=1)  # (B, P_T + C)
        with (
            torch.no_grad(),
            disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs),
            self._teacher_model() as teacher,
        ):
            teacher_logps, _, _ = self._get_per_token_logps_and_entropies(
                teacher, input_ids, attention_mask, completion_ids.size(1), batch_size=self._forward_batch_size()
            )  # (B, C) aligned with the student's completion tokens
        return teacher_logps

    def _apply_rlsd(self, output: dict[str, Any], teacher_logps: torch.Tensor) -> None:
        """RLSD: replace (B,) advantages by teacher-reweighted (B, C) token advantages."""
        student_logps = output.get("old_per_token_logps")
        if student_logps is None:
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
        mask = self._sampled_token_mask(output)  # (B, C)
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

    # ------------------------------------------------------------------ loss
    def _get_per_token_logps_and_entropies(self, model: Any, input_ids: torch.Tensor, *args: Any, **kwargs: Any):
        result = super()._get_per_token_logps_and_entropies(model, input_ids, *args, **kwargs)
        if self._sdar_capture:
            self._sdar_captured.append(result[0])  # (B, C) the student's log-probs, with grad in training
        return result

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> torch.Tensor:
        if self.args.distill_coef == 0:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if not self.args.use_policy_loss:
            # Zero advantages null every TRL policy-gradient loss while keeping its KL term and entropy bonus.
            inputs = {**inputs, "advantages": torch.zeros_like(inputs["advantages"])}
        self._sdar_capture, self._sdar_captured = True, []
        try:
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        finally:
            self._sdar_capture = False
        captured, self._sdar_captured = self._sdar_captured, []
        if len(captured) != 1:
            raise RuntimeError(
                f"Expected TRL's _compute_loss to run exactly one log-prob forward, saw {len(captured)}. The "
                "installed TRL changed an internal SDARTrainer relies on: run tests/test_trl_contract.py and see "
                "sdar_trl/_compat.py."
            )
        student_logps = captured[0]  # (B, C) with grad
        mask = self._sampled_token_mask(inputs)  # (B, C)
        if "teacher_row_mask" in inputs:
            mask = mask * inputs["teacher_row_mask"].unsqueeze(-1)  # rows without privileged context
        distill, stats = self._distill_term(student_logps, inputs, mask)
        mode = "train" if self.model.training else "eval"
        # TRL's loss is already divided by the accumulation steps (loss_is_scaled_for_ga); match it.
        normalizer = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        self._log_sdar_stats(mode, {"distill_loss": distill.detach(), **stats}, mask)
        return loss + self.args.distill_coef * distill / normalizer

    def _distill_term(
        self, student_logps: torch.Tensor, inputs: dict[str, Any], mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        teacher_logps = inputs["teacher_per_token_logps"]  # (B, C)
        if self.args.distill_loss == "gated":
            return compute_sdar_loss(student_logps, teacher_logps, mask, gate_beta=self.args.gate_beta)
        if self.args.distill_loss == "sampled_token":
            return compute_opsd_loss(student_logps, teacher_logps, mask)
        old_logps = inputs.get("old_per_token_logps")
        old_logps = student_logps.detach() if old_logps is None else old_logps  # on-policy: ρ = 1 in value
        return compute_skill_sd_loss(student_logps, teacher_logps, old_logps, mask)

    def _log_sdar_stats(self, mode: str, stats: dict[str, torch.Tensor], mask: torch.Tensor) -> None:
        """Token-weighted means over all processes, logged as `sdar/<name>`."""
        count = mask.sum().to(torch.float32)
        local = torch.stack([*(value.to(torch.float32) * count for value in stats.values()), count])
        totals = self.accelerator.reduce(local, reduction="sum")
        denominator = totals[-1].clamp(min=1.0)
        for name, total in zip(stats, totals[:-1], strict=True):
            self._metrics[mode][f"sdar/{name}"].append((total / denominator).item())


class _EMAUpdateCallback(TrainerCallback):
    """Updates the EMA teacher after every `every`-th optimizer step."""

    def __init__(self, ema: EMATeacherWeights, *, every: int) -> None:
        self.ema = ema
        self.every = every

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step % self.every == 0:
            self.ema.update()
