"""`SDARTrainer`: `trl.GRPOTrainer` plus a skill-conditioned teacher branch.

Glue only: TRL overrides and the wiring between TRL and SDAR's modules. The math lives in `sdar_trl.loss`, the
teacher forwards in `sdar_trl.teacher`, the privileged context in `sdar_trl.context`, agent mode in
`sdar_trl.agent`; TRL's own generation, log-prob function, loss and logging do everything else (every wrapped
method calls `super()`; the private ones are listed in `sdar_trl._compat`). Two mixins hold the trainer's other
methods by job: `TeacherBranchMixin` (`sdar_trl.teacher_branch`: teacher weights, teacher log-probs, RLSD,
`sdar/*` metrics) and `AgentModeMixin` (`sdar_trl.agent_mode`: episodes through TRL's generation, step batches,
chunks, held-out evaluation). Per generation batch:

1. `_generate_and_score_completions` (agent mode: `training_step` → `_agent_generate_and_score`): TRL samples and
   scores; we then run one no-grad forward of the teacher (header + privileged context + the student's prompt ids,
   then the identical completion ids) with the rollout-time weights and store `teacher_per_token_logps` (B, C).
   RLSD additionally turns the advantages into (B, C) token advantages here.
2. `compute_loss`: TRL computes its loss; the student's grad-carrying log-probs from TRL's single
   forward are captured (no second forward) and `distill_coef × distillation / grad_accum` is added.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from accelerate.utils import DistributedType
from datasets import Dataset, IterableDataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase, ProcessorMixin, Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, TrainOutput
from trl import GRPOTrainer

from ._compat import compact_fused_log_probs_on_cpu
from ._mistakes import check_single_turn_arguments
from .agent import (
    TRL_LOSS_WEIGHT_KIND,
    EnvironmentPools,
    EpisodeRecord,
    shuffle_into_slices,
)
from .agent.arguments import check_agent_arguments, check_task_datasets
from .agent_mode import AgentModeMixin
from .callbacks import CloseEnvironmentsCallback
from .checkpoint import load_sdar_state, resolve_resume_checkpoint, save_sdar_state
from .config import SDARConfig
from .context import check_context_column, prepend_to_prompt
from .env_guard import EnvFaultLog
from .environments.base import AgentEnvironment
from .gate_branch import GateDiagnosticsMixin
from .loss import compute_distill_loss, distill_token_mask
from .model_card import SDAR_PAPER, base_model_name, render_model_card
from .retrieval import SkillRetriever
from .skills import SkillBank
from .teacher_branch import TeacherBranchMixin, frozen_base_copy
from .unpadded import unpadded_logps_and_entropies, use_unpadded_logps

__all__ = ["SDARTrainer"]


class SDARTrainer(AgentModeMixin, TeacherBranchMixin, GateDiagnosticsMixin, GRPOTrainer):
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
    _paper: ClassVar[dict[str, str]] = SDAR_PAPER  # TRL's card fields; GRPOTrainer's would cite DeepSeekMath

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
        env_factory: Callable[[], AgentEnvironment] | None = None,
        skill_bank: SkillBank | None = None,
        eval_env_factory: Callable[[], AgentEnvironment] | None = None,
    ) -> None:
        if args is None:
            name = model if isinstance(model, str) else getattr(model.config, "_name_or_path", "model") or "model"
            args = SDARConfig(output_dir=f"{str(name).rstrip('/').split('/')[-1]}-SDAR")
        if not isinstance(args, SDARConfig):
            raise TypeError(
                f"SDARTrainer needs an SDARConfig, got {type(args).__name__}. SDARConfig accepts every GRPOConfig "
                "field: replace GRPOConfig(...) with SDARConfig(...) (method='grpo' reproduces plain GRPO)."
            )
        if env_factory is not None:
            reward_funcs = check_agent_arguments(
                args,
                env_factory=env_factory,
                skill_bank=skill_bank,
                reward_funcs=reward_funcs,
                tools=tools,
                rollout_func=rollout_func,
                environment_factory=environment_factory,
                eval_env_factory=eval_env_factory,
            )
            check_task_datasets(train_dataset, eval_dataset)
        else:
            if args.skill_retrieval != "rules":
                raise ValueError(
                    f"skill_retrieval={args.skill_retrieval!r} chooses skills per agent-mode episode (pass "
                    "env_factory=... and skill_bank=...). Single-turn rows carry their own privileged context in the "
                    f"{args.privileged_context_column!r} column: leave skill_retrieval='rules'."
                )
            if skill_bank is not None or eval_env_factory is not None:
                raise ValueError(
                    "skill_bank and eval_env_factory are used in agent mode only (pass env_factory=...). For "
                    f"single-turn data, render the skills into the {args.privileged_context_column!r} column: "
                    "skill_bank.render(task_type)."
                )
            check_single_turn_arguments(train_dataset, environment_factory)
            for split, data in (("train_dataset", train_dataset), ("eval_dataset", eval_dataset)):
                if args.needs_privileged_context:
                    check_context_column(data, column=args.privileged_context_column, method=args.method, split=split)

        base_teacher = frozen_base_copy(model, args, peft_config)  # before TRL patches the model

        # On CPU, score only the completion positions in the log-prob forwards: identical values, and the
        # vocabulary projection is about a fifth of the FLOPs per token with a 49k vocabulary.
        compact_fused_log_probs_on_cpu()
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

        self.env_factory = env_factory
        self.eval_env_factory = eval_env_factory
        self.skill_bank = skill_bank
        #: Chooses each episode's skills (`skill_retrieval`); None without a skill bank.
        self.skill_retriever = (
            SkillRetriever(skill_bank, args.skill_retrieval, k=args.skill_retrieval_k, ucb_c=args.skill_ucb_c)
            if skill_bank is not None
            else None
        )
        self._envs = EnvironmentPools(
            env_factory, eval_env_factory, env_workers=args.env_workers, step_timeout=args.env_step_timeout
        )
        #: The episodes the last agent-mode `evaluate()` played on this process, in task order (per-task outcomes
        #: for error analysis or paired comparisons between runs; `eval_env/*` are their aggregates).
        self.eval_episodes: list[EpisodeRecord] = []
        self._agent_buffer: list[dict[str, Any]] | None = None
        self._env_fault_log = EnvFaultLog()  # logs the first failed episodes of each kind
        self._skill_coverage_checked = False
        if env_factory is not None:
            self._envs.get(1)  # build one now so a broken factory fails at construction, not mid-run
            self.add_callback(CloseEnvironmentsCallback(self.close_environments))
        self._sdar_capture = False
        self._sdar_captured: list[torch.Tensor] = []
        self._gate_pieces: dict[int, str] = {}  # token id -> its decoded text (gate diagnostics)
        self._gate_dump_state = (0, set())  # (step being dumped, its samples written so far)
        self._setup_teacher(base_teacher)

    # ------------------------------------------------------------------ checkpoints (sdar_trl.checkpoint)
    def train(
        self,
        resume_from_checkpoint: str | bool | None = None,
        trial: Any = None,
        ignore_keys_for_eval: list[str] | None = None,
    ) -> TrainOutput:
        """transformers' `train`, resuming only from a complete checkpoint and restoring SDAR's state from it.

        `resume_from_checkpoint=True` skips (with a warning) newer checkpoints left partial by a process killed while
        saving; an explicit path to a partial one raises `ValueError` naming what it lacks (docs/trainer.md).
        The agent-mode environments are closed when training ends, also when it raises.
        """
        retrieval_state = None if self.skill_retriever is None else self.skill_retriever.state_dict()
        checkpoint = resolve_resume_checkpoint(
            resume_from_checkpoint,
            self.args.output_dir,
            needs_sdar_state=self._sdar_ema is not None or retrieval_state is not None,
        )
        if checkpoint is not None:
            load_sdar_state(
                checkpoint, teacher_mode=self.args.teacher_mode, ema=self._sdar_ema, retriever=self.skill_retriever
            )
        try:
            return super().train(checkpoint, trial, ignore_keys_for_eval)
        finally:
            # on_train_end closes them after a normal run; a run stopped by an exception never reaches it.
            self.close_environments()

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        # Ours first: transformers writes trainer_state.json last, so a checkpoint that has it holds ours too.
        if self.args.should_save:
            folder = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            save_sdar_state(
                os.path.join(self._get_output_dir(trial=trial), folder),
                teacher_mode=self.args.teacher_mode,
                ema=self._sdar_ema,
                retriever=self.skill_retriever,
            )
        super()._save_checkpoint(model, trial)

    # ------------------------------------------------------------------ generation batch
    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        if self.args.skills_in_student_prompt:  # Skill-GRPO: the privileged context goes into the student's prompt
            column = self.args.privileged_context_column
            inputs = [
                {**row, "prompt": prepend_to_prompt(row["prompt"], self._render_prefix(row.get(column)))}
                for row in inputs
            ]
        output = super()._generate_and_score_completions(inputs)
        if not self.args.needs_teacher:
            return output
        if "pixel_values" in output:
            raise NotImplementedError(
                "SDARTrainer's teacher branch does not support multimodal batches yet (the teacher prompt would have "
                "to repeat the image tokens). Use method='grpo' for vision-language models."
            )
        if self._gate_diagnostics_on():  # before RLSD, which turns the (B,) advantages into (B, C) token advantages
            self._gate_annotate(
                output, action_format=None, outcomes=self._gate_outcomes_from_advantages(output["advantages"])
            )
        self._add_teacher_logps(
            output, [self._render_prefix(row.get(self.args.privileged_context_column)) for row in inputs]
        )
        return output

    # ------------------------------------------------------------------ agent mode (env_factory=...)
    # The overrides only; the agent-mode methods are `AgentModeMixin`'s (sdar_trl.agent_mode).
    def close_environments(self) -> None:
        """Close every pooled environment (they are rebuilt on demand by the next rollout).

        A `close()` that raises is logged and the other environments are still closed; it never aborts `train()`.
        """
        self._envs.close()

    def _prepare_inputs(self, generation_batch: Any) -> Any:
        if (
            self.env_factory is not None
            and isinstance(generation_batch, dict)
            and "agent_loss_weights" in generation_batch
        ):
            return generation_batch  # an agent-mode chunk, prepared in training_step
        return super()._prepare_inputs(generation_batch)

    def training_step(self, model: Any, inputs: Any, num_items_in_batch: Any = None) -> torch.Tensor:
        if self.env_factory is None:
            return super().training_step(model, inputs, num_items_in_batch)
        start = time.perf_counter()
        # transformers' training_step switches to train mode only inside the chunk loop below, after the rollout: a
        # model fresh from `from_pretrained` (eval mode) would play the first rollout in eval mode, and everything
        # keyed on `self.model.training` there (the rollout's metrics, such as RLSD's, and the forward chunk size)
        # would count as evaluation for that step only.
        model.train()
        generate_every = self.args.steps_per_generation * self.num_iterations
        if self._step % generate_every == 0 or self._agent_buffer is None:
            batch = self._agent_generate_and_score(inputs)
            self._agent_buffer = shuffle_into_slices(batch, self.args.steps_per_generation)
        chunks = self._agent_chunks(self._agent_buffer[self._step % self.args.steps_per_generation])
        # Nested gradient accumulation: every chunk but the last accumulates locally (no DDP/FSDP reduction, no
        # DeepSpeed step), the last one keeps the synchronisation state the Trainer's loop chose for this step.
        outer_sync = self.accelerator.sync_gradients
        total = torch.zeros((), device=self.accelerator.device)
        try:
            for index, chunk in enumerate(chunks):
                last = index == len(chunks) - 1
                self.accelerator.gradient_state._set_sync_gradients(outer_sync and last)
                skip_no_sync = last or self.accelerator.distributed_type == DistributedType.DEEPSPEED
                with contextlib.nullcontext() if skip_no_sync else self.accelerator.no_sync(model):
                    # transformers' step (forward, backward); GRPOTrainer.training_step would count it as a step.
                    total = total + Trainer.training_step(self, model, chunk, num_items_in_batch).detach()
        finally:
            self.accelerator.gradient_state._set_sync_gradients(outer_sync)
        self._step += 1
        self._current_train_step_time += time.perf_counter() - start
        if self._step % self.current_gradient_accumulation_steps == 0:
            self._metrics["train"]["step_time"].append(self._current_train_step_time)
            self._current_train_step_time = 0.0
        return total

    def create_model_card(
        self,
        model_name: str | None = None,
        dataset_name: str | None = None,
        tags: str | list[str] | None = None,
    ) -> None:
        """Write `README.md` in `output_dir` (`sdar_trl.model_card`): TRL's template would call a local base
        model "None" and cite GRPO's paper."""
        if not self.is_world_process_zero():
            return
        tags = [tags] if isinstance(tags, str) else list(tags or [])
        details = {"optimizer steps": self.state.global_step, **({"dataset": dataset_name} if dataset_name else {})}
        card = render_model_card(
            model_name=model_name or self.args.output_dir.rstrip("/").split("/")[-1],
            base_model=base_model_name(getattr(self.model.config, "_name_or_path", None)),
            method=self.args.method,
            tags=[*self._tag_names, *tags],
            details=details,
        )
        with open(f"{self.args.output_dir}/README.md", "w", encoding="utf-8") as file:
            file.write(card)

    def evaluate(
        self,
        eval_dataset: Dataset | dict[str, Dataset] | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """Agent mode: play every eval task once (at `eval_temperature`) and log `eval_env/*`; else TRL's evaluate.

        The episodes played on this process stay in `self.eval_episodes` (one `EpisodeRecord` per task, its dataset
        row in `.row`) until the next call.
        """
        if self.env_factory is None:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        dataset = self.eval_dataset if eval_dataset is None else eval_dataset
        if dataset is None:
            raise ValueError("evaluate() needs eval tasks: pass eval_dataset= here or to SDARTrainer(...).")
        if isinstance(dataset, dict):
            metrics: dict[str, float] = {}
            for name, split in dataset.items():
                metrics.update(self.evaluate(split, ignore_keys, f"{metric_key_prefix}_{name}"))
            return metrics
        metrics = self._agent_evaluate(dataset, metric_key_prefix)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    # ------------------------------------------------------------------ loss
    def _get_per_token_logps_and_entropies(
        self,
        model: Any,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        logits_to_keep: int,
        batch_size: int | None = None,
        compute_entropy: bool = False,
        compute_aux_loss: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        # Row by row only for text: multimodal inputs are indexed per image/tile, and the MoE load-balancing loss of
        # separate rows would not average to the batch's (its router statistics are pooled over the batch).
        multimodal = any(value is not None for value in kwargs.values())
        # Under FSDP / ZeRO-3 every process must run as many forwards as the others: "auto" decides from this
        # process's rows, so it stays batched there ("always" runs one forward per row, and row counts are equal).
        mode = "never" if self.args.unpadded_logps == "auto" and self._weights_sharded() else self.args.unpadded_logps
        unpadded = use_unpadded_logps(mode, input_ids.device, attention_mask)
        if compute_aux_loss or multimodal or not unpadded:
            result = super()._get_per_token_logps_and_entropies(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size=batch_size,
                compute_entropy=compute_entropy,
                compute_aux_loss=compute_aux_loss,
                **kwargs,
            )
        else:
            trl_forward = functools.partial(super()._get_per_token_logps_and_entropies, model)
            result = unpadded_logps_and_entropies(
                trl_forward, input_ids, attention_mask, logits_to_keep, compute_entropy=compute_entropy
            )
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
        # Agent mode trains a slice of step samples in several chunks; each chunk's share of the slice loss.
        weights = inputs.get("agent_loss_weights")
        trl_weight = 1.0 if weights is None else weights[TRL_LOSS_WEIGHT_KIND[self.loss_type]]
        if self.args.distill_coef == 0:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch) * trl_weight
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
        mask = distill_token_mask(inputs)  # (B, C)
        distill, stats = self._distill_term(student_logps, inputs, mask)
        mode = "train" if self.model.training else "eval"
        # TRL's loss is already divided by the accumulation steps (loss_is_scaled_for_ga); match it.
        normalizer = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        self._log_sdar_stats(mode, {"distill_loss": distill.detach(), **stats}, mask)
        self._gate_record(student_logps, inputs, mask, mode)  # no-op unless gate_diagnostics annotated the batch
        distill_weight = 1.0 if weights is None else weights["distill"]
        return loss * trl_weight + self.args.distill_coef * distill / normalizer * distill_weight

    def _distill_term(
        self, student_logps: torch.Tensor, inputs: dict[str, Any], mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return compute_distill_loss(
            self.args.distill_loss,
            student_logps,
            inputs["teacher_per_token_logps"],  # (B, C)
            mask,
            old_logps=inputs.get("old_per_token_logps"),
            gate_beta=self.args.gate_beta,
        )
