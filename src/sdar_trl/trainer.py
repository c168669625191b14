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
import dataclasses
import functools
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import torch
from accelerate.utils import DistributedType, gather_object, is_peft_model
from datasets import Dataset, IterableDataset
from transformers import (
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    ProcessorMixin,
    Trainer,
    TrainerCallback,
)
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, TrainOutput
from trl import GRPOTrainer

from ._compat import (
    add_fused_lm_head,
    compact_fused_log_probs_on_cpu,
    disable_gradient_checkpointing,
    prepare_deepspeed,
    prepare_fsdp,
    use_adapter,
)
from ._mistakes import TRL_ENVIRONMENT_HINT, check_single_turn_arguments
from .checkpoint import load_sdar_state, resolve_resume_checkpoint, save_sdar_state
from .config import SDARConfig
from .env_guard import EnvFaultLog, check_failed_share, check_task_seeds, close_environments
from .env_workers import EnvWorkerPool, check_picklable_factory
from .environments.base import AgentEnvironment
from .loss import (
    compute_opsd_loss,
    compute_rlsd_advantages,
    compute_rlsd_weight,
    compute_sdar_loss,
    compute_skill_sd_loss,
    compute_step_advantages,
    masked_mean,
)
from .model_card import SDAR_PAPER, base_model_name, render_model_card
from .rollout import (
    EpisodeRecord,
    RolloutResult,
    StepRecord,
    build_step_batch,
    compute_step_rewards,
    length_grouped_parts,
    play_episodes,
    split_rows,
    summarize_episodes,
    trim_left_padding,
)
from .sft import render_context
from .skills import SkillBank, check_skill_coverage
from .teacher import EMATeacherWeights, render_teacher_prefix, teacher_logps

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
            reward_funcs = _check_agent_arguments(
                args,
                env_factory=env_factory,
                skill_bank=skill_bank,
                reward_funcs=reward_funcs,
                tools=tools,
                rollout_func=rollout_func,
                environment_factory=environment_factory,
            )
            if eval_env_factory is not None and not callable(eval_env_factory):
                raise TypeError(
                    f"eval_env_factory must be a callable returning an environment, got {eval_env_factory!r}."
                )
            check_task_seeds(train_dataset, source="train_dataset")
            splits = eval_dataset if isinstance(eval_dataset, dict) else {"": eval_dataset}
            for name, split in splits.items():
                check_task_seeds(split, source=f"eval_dataset{f'[{name!r}]' if name else ''}")
        else:
            if skill_bank is not None or eval_env_factory is not None:
                raise ValueError(
                    "skill_bank and eval_env_factory are used in agent mode only (pass env_factory=...). For "
                    f"single-turn data, render the skills into the {args.privileged_context_column!r} column: "
                    "skill_bank.render(task_type)."
                )
            check_single_turn_arguments(train_dataset, environment_factory)
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
        self._env_worker_pool: EnvWorkerPool | None = None  # started on first use when args.env_workers >= 1
        if env_factory is not None and args.env_workers:
            check_picklable_factory(env_factory, name="env_factory")
            if eval_env_factory is not None:
                check_picklable_factory(eval_env_factory, name="eval_env_factory")
        self._agent_envs: list[AgentEnvironment] = []
        self._agent_eval_envs: list[AgentEnvironment] = []
        #: The episodes the last agent-mode `evaluate()` played on this process, in task order (per-task outcomes
        #: for error analysis or paired comparisons between runs; `eval_env/*` are their aggregates).
        self.eval_episodes: list[EpisodeRecord] = []
        self._agent_buffer: list[dict[str, Any]] | None = None
        self._env_fault_log = EnvFaultLog()  # logs the first failed episodes of each kind
        self._skill_coverage_checked = False
        if env_factory is not None:
            self._agent_environments(1)  # build one now so a broken factory fails at construction, not mid-run
            self.add_callback(_CloseEnvironmentsCallback(self))
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
        checkpoint = resolve_resume_checkpoint(
            resume_from_checkpoint, self.args.output_dir, needs_sdar_state=self._sdar_ema is not None
        )
        if checkpoint is not None:
            load_sdar_state(checkpoint, teacher_mode=self.args.teacher_mode, ema=self._sdar_ema)
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
            )
        super()._save_checkpoint(model, trial)

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

    # ------------------------------------------------------------------ agent mode (env_factory=...)
    def _agent_environments(self, count: int, *, evaluation: bool = False) -> list[AgentEnvironment]:
        """`count` environments from a pool that grows on demand (episodes reset them, so reuse is safe).

        Evaluation uses its own pool built by `eval_env_factory` when one was given (e.g. a held-out split).
        """
        pool, factory = self._env_pool(evaluation)
        separate = pool is self._agent_eval_envs
        assert factory is not None  # internal invariant: agent mode only
        while len(pool) < count:
            env = factory()  # also replaces abandoned (timed-out) environments, dropped from the pool by _agent_play
            missing = [name for name in ("reset", "step", "close") if not callable(getattr(env, name, None))]
            if missing:
                raise TypeError(
                    f"{'eval_env_factory' if separate else 'env_factory'}() returned {type(env).__name__}, which "
                    f"lacks {missing}; it must return an AgentEnvironment (reset(*, seed, options) -> (obs, info), "
                    "step(action) -> (obs, reward, terminated, truncated, info), close()). See docs/agents.md."
                    + TRL_ENVIRONMENT_HINT
                    * (callable(getattr(env, "reset", None)) and "step" in missing)
                )
            pool.append(env)
        return pool[:count]

    def close_environments(self) -> None:
        """Close every pooled environment (they are rebuilt on demand by the next rollout).

        A `close()` that raises is logged and the other environments are still closed; it never aborts `train()`.
        """
        envs = [*self._agent_envs, *self._agent_eval_envs]
        self._agent_envs, self._agent_eval_envs = [], []
        try:
            close_environments(envs)
        finally:
            if self._env_worker_pool is not None:
                self._env_worker_pool.close()  # also stops workers whose environments failed to close
                self._env_worker_pool = None

    def _env_source(self, evaluation: bool) -> tuple[list[AgentEnvironment], Callable[[], AgentEnvironment] | None]:
        """The pool and the user's factory of this mode: evaluation's own when `eval_env_factory` was given."""
        if evaluation and self.eval_env_factory is not None:
            return self._agent_eval_envs, self.eval_env_factory
        return self._agent_envs, self.env_factory

    def _env_pool(self, evaluation: bool) -> tuple[list[AgentEnvironment], Callable[[], AgentEnvironment] | None]:
        """The pool and the factory episodes use: the user's, built in a worker process when `env_workers` >= 1."""
        pool, factory = self._env_source(evaluation)
        if factory is None or not self.args.env_workers:
            return pool, factory
        if self._env_worker_pool is None:
            self._env_worker_pool = EnvWorkerPool(self.args.env_workers, timeout=self.args.env_step_timeout)
        return pool, functools.partial(self._env_worker_pool.make_env, factory)

    def _env_name(self, *, evaluation: bool = False) -> str:
        """The environment class, for error messages (the factory's name when no instance is pooled)."""
        pool, factory = self._env_source(evaluation)
        if pool:
            return getattr(pool[0], "env_class_name", type(pool[0]).__name__)  # a WorkerEnvironment names its env
        return getattr(factory, "__name__", repr(factory))

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
            self._agent_buffer = self._agent_slices(self._agent_generate_and_score(inputs))
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

    def _agent_generate_and_score(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Rollout → step samples → rewards → group advantages → old/ref/teacher log-probs (one dict of N rows)."""
        group_size = self.num_generations
        if len(rows) % group_size != 0:
            raise RuntimeError(
                f"agent mode received {len(rows)} rows on this process, not a multiple of num_generations="
                f"{group_size}; every process must hold whole task groups."
            )
        for start in range(0, len(rows), group_size):
            if any(row != rows[start] for row in rows[start : start + group_size]):
                raise RuntimeError(
                    "agent mode expects the num_generations copies of a task to be consecutive identical rows (TRL's "
                    f"RepeatSampler); rows {start}..{start + group_size - 1} differ. Do not pass a custom sampler."
                )
        result = self._agent_play(rows, [i // group_size for i in range(len(rows))])
        self._check_skill_coverage(result.episodes)
        metrics = self._log_env_metrics("train", result.episodes)
        check_failed_share(metrics, max_share=self.args.max_failed_episode_share, env_name=self._env_name())
        return self._agent_build_batch(result)

    def _check_skill_coverage(self, episodes: list[EpisodeRecord]) -> None:
        """Warn once (first batch) when the skill bank has skills for none of the episodes' task types."""
        uses_skills = self.args.needs_privileged_context and "skills" in self.args.privileged_context_source
        if self._skill_coverage_checked or not uses_skills or self.skill_bank is None:
            return
        self._skill_coverage_checked = True
        problem = check_skill_coverage(self.skill_bank, [episode.task_type for episode in episodes])
        if problem is not None:
            warnings.warn(problem, UserWarning, stacklevel=2)

    def _agent_play(
        self, rows: list[dict[str, Any]], group_ids: list[int], *, evaluation: bool = False
    ) -> RolloutResult:
        envs = self._agent_environments(len(rows), evaluation=evaluation)
        student_prefix = None
        if self.args.skills_in_student_prompt:
            student_prefix = lambda episode: self._render_prefix(self._agent_context(episode))  # noqa: E731
        result = play_episodes(
            envs,
            rows,
            self._agent_generate,
            group_ids=group_ids,
            max_steps=self.args.max_steps_per_episode,
            history_length=self.args.history_length,
            max_observation_length=self.args.max_observation_length,
            student_prefix=student_prefix,
            keep_going=self._agent_keep_going,
            on_step=lambda step, live: self._agent_hook("on_rollout_step", step=step, live=live, total=len(rows)),
            step_timeout=self.args.env_step_timeout,
            max_abs_reward=self.args.max_abs_reward,
            max_admissible_actions=self.args.max_admissible_actions,
            invalid_action=self.args.invalid_action_text,
        )
        self._env_fault_log.report(result.episodes, env_name=self._env_name(evaluation=evaluation))
        # A timed-out call may still be running in its thread: never reuse (or close) that instance, build a new one.
        pool, _ = self._env_source(evaluation)
        for index in sorted(result.abandoned, reverse=True):
            del pool[index]
        return result

    def _agent_hook(self, event: str, **kwargs: Any) -> None:
        """Call `event` on every callback that defines it (agent-mode progress: see `AgentProgressCallback`)."""
        for callback in self.callback_handler.callbacks:
            handler = getattr(callback, event, None)
            if callable(handler):
                handler(self.args, self.state, self.control, **kwargs)

    def _agent_keep_going(self, local_live: bool) -> bool:
        """Continue while any process has a live episode, so all processes generate in lock-step."""
        if self.accelerator.num_processes == 1:
            return local_live
        flag = torch.tensor([int(local_live)], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)

    def _agent_generate(self, prompts: list[str]) -> list[tuple[list[int], list[int], str]]:
        """One batched generation through TRL's backend for every live prompt of this step."""
        count = len(prompts)
        target = count
        if self.accelerator.num_processes > 1:
            # Collective generation (vLLM server slicing, ZeRO-3, FSDP) needs the same prompt count everywhere.
            target = int(self.accelerator.gather(torch.tensor([count], device=self.accelerator.device)).max())
        if target == 0:
            return []
        filler = prompts[0] if prompts else "Say nothing."
        conversations = [[{"role": "user", "content": p}] for p in [*prompts, *([filler] * (target - count))]]
        prompt_ids, _, _ = self._tokenize_prompts(conversations)
        completion_ids, _ = self._generate_single_turn(prompt_ids, None, {}, 1)
        prompt_ids, completion_ids = [list(p) for p in prompt_ids[:count]], [list(c) for c in completion_ids[:count]]
        # Keep special tokens such as <think> (special in some tokenizers): drop only the trailing EOS/padding.
        stop_ids = {*self.eos_token_ids, self._tokenizer.pad_token_id}
        texts = [self._tokenizer.decode(_strip_trailing(ids, stop_ids)) for ids in completion_ids]
        return list(zip(prompt_ids, completion_ids, texts, strict=True))

    def _agent_context(self, episode: EpisodeRecord) -> str:
        """The teacher's privileged context for one episode (SDAR: general + task-type skills)."""
        source = self.args.privileged_context_source
        skills = self.skill_bank.render(episode.task_type) if "skills" in source and self.skill_bank else ""
        context = render_context(source, skills=skills, facts=episode.privileged_facts)
        row_context = episode.row.get(self.args.privileged_context_column)
        if isinstance(row_context, str):
            context = "\n\n".join(part for part in (context, row_context) if part)
        return context

    def _agent_build_batch(self, result: RolloutResult) -> dict[str, Any]:
        device = self.accelerator.device
        steps = list(result.steps)
        real = len(steps)
        # Every trajectory of this process may have failed at reset: one masked dummy sample keeps this process's
        # forward/backward count equal to the others'. Under FSDP / ZeRO-3 every forward gathers the sharded
        # weights from all processes, so the no-grad forwards below (old, reference, teacher log-probs, chunked by
        # row count) must run as often on every process: pad all processes to the largest step-sample count.
        target = max(real, 1)
        if self._weights_sharded() and self.accelerator.num_processes > 1:
            target = int(self.accelerator.gather(torch.tensor([target], device=device)).max())
        steps += [_dummy_step(self._tokenizer.pad_token_id)] * (target - real)
        batch: dict[str, Any] = build_step_batch(steps, pad_token_id=self._tokenizer.pad_token_id, device=device)
        # Samples of failed episodes (docs/faults.md) are never learnt from: no loss tokens, no group statistics.
        failed = {episode.trajectory for episode in result.episodes if episode.failed}
        valid = torch.tensor([i < real and step.trajectory not in failed for i, step in enumerate(steps)])  # (N,)
        batch["completion_mask"][~valid.to(device)] = 0  # dummy rows and failed episodes: no loss tokens
        rewards = compute_step_rewards(result, invalid_action_penalty=self.args.invalid_action_penalty)
        rewards = torch.tensor(rewards + [0.0] * (target - real), dtype=torch.float32)  # (N,)
        groups = torch.tensor([step.group for step in steps])  # (N,)
        advantages = compute_step_advantages(rewards, groups, valid=valid)  # (N,) 0 on dummy and failed rows
        batch["advantages"] = advantages.to(device)  # (N,)
        mask = batch["completion_mask"]  # (N, C)
        batch["num_items_in_batch"] = self.accelerator.gather(mask.sum()).sum()
        input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)  # (N, P + C)
        attention_mask = torch.cat([batch["prompt_mask"], mask], dim=1)  # (N, P + C)
        logits_to_keep = batch["completion_ids"].size(1)
        generate_every = self.args.steps_per_generation * self.num_iterations
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            if self.args.gradient_accumulation_steps % generate_every != 0:
                # The samples outlive this optimizer step (TRL's rule): keep the rollout-time log-probs.
                batch["old_per_token_logps"] = self._get_per_token_logps_and_entropies(
                    self.model, input_ids, attention_mask, logits_to_keep, batch_size=self._forward_batch_size()
                )[0]  # (N, C)
            if self.beta != 0.0:
                batch["ref_per_token_logps"] = self._agent_reference_logps(input_ids, attention_mask, logits_to_keep)
        if self.use_vllm and self.vllm_importance_sampling_correction:
            # Agent mode does not keep vLLM's sampling log-probs yet: no correction (ratio 1); see docs/deviations.md.
            batch["importance_sampling_ratio"] = torch.ones_like(mask, dtype=torch.float32)  # (N, C)
        if self.args.needs_teacher:
            episodes = {episode.trajectory: episode for episode in result.episodes}
            contexts = [
                self._agent_context(episodes[step.trajectory]) if i < real else "" for i, step in enumerate(steps)
            ]
            prefixes = [self._render_prefix(context) for context in contexts]
            teacher_logps = self._compute_teacher_logps(batch, prefixes)  # (N, C)
            batch["teacher_per_token_logps"] = teacher_logps
            if not self.args.distill_empty_context:
                batch["teacher_row_mask"] = torch.tensor(
                    [prefix != "" for prefix in prefixes], dtype=mask.dtype, device=device
                )  # (N,)
            if self.args.rlsd_weight > 0:
                self._apply_rlsd(batch, teacher_logps)
        return batch

    def _agent_reference_logps(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int
    ) -> torch.Tensor:
        """(N, C) log-probs under TRL's reference (its ref model, or the PEFT model with the adapter disabled)."""
        if self.ref_model is not None:
            return self._get_per_token_logps_and_entropies(
                self.ref_model, input_ids, attention_mask, logits_to_keep, batch_size=self._forward_batch_size()
            )[0]
        model = self.accelerator.unwrap_model(self.model)
        with use_adapter(model, adapter_name="ref" if "ref" in model.peft_config else None):
            return self._get_per_token_logps_and_entropies(
                self.model, input_ids, attention_mask, logits_to_keep, batch_size=self._forward_batch_size()
            )[0]

    def _agent_slices(self, batch: dict[str, Any]) -> list[dict[str, Any]]:
        """Shuffle the step samples and split them into `steps_per_generation` slices (one per accumulation step)."""
        num = batch["prompt_ids"].size(0)
        order = torch.randperm(num)
        return [_take_rows(batch, order[list(part)], num) for part in split_rows(num, self.args.steps_per_generation)]

    def _agent_chunks(self, piece: dict[str, Any]) -> list[dict[str, Any]]:
        """Split one slice into chunks of <= per_device_train_batch_size rows.

        Under multi-process training every process gets the same number of chunks with the same number of rows
        (TRL gathers per-row metrics inside its loss, and DDP needs equal backward counts): short chunks are padded
        with fully masked copies of a row, which add nothing to any loss. Each chunk carries `agent_loss_weights`,
        its share of the slice, so the chunk losses add up to what TRL (and the distillation term) would compute on
        the whole slice: rows (incl. padding, which TRL's per-sequence means divide by), tokens, distillation tokens.
        """
        num = piece["prompt_ids"].size(0)
        mask = piece["completion_mask"]  # (n, C)
        distill_mask = self._distill_mask(piece) if "teacher_per_token_logps" in piece else mask  # (n, C)
        width = num
        if self.accelerator.num_processes > 1:
            width = int(self.accelerator.gather(torch.tensor([num], device=mask.device)).max())
        count = max(math.ceil(width / self.args.per_device_train_batch_size), 1)
        # Single process: no padding needed. Several: all chunks get the same row count.
        rows_per_chunk = math.ceil(width / count) if self.accelerator.num_processes > 1 else None
        source = self._agent_buffer_dummy(piece)
        totals = (max(num, 1), mask.sum().clamp(min=1), distill_mask.sum().clamp(min=1))
        chunks = []
        for real in length_grouped_parts(piece["prompt_mask"].sum(dim=1), count):
            padding = (rows_per_chunk - len(real)) if rows_per_chunk is not None else int(not real)
            index = torch.tensor(real + real[:1] * padding if real else [0] * padding)  # pad with a same-length row
            chunk = _take_rows(piece if real else source, index, (piece if real else source)["prompt_ids"].size(0))
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

    def _agent_buffer_dummy(self, piece: dict[str, Any]) -> dict[str, Any]:
        """A slice to copy padding rows from: this slice, or the first non-empty slice of the buffer."""
        if piece["prompt_ids"].size(0) > 0 or self._agent_buffer is None:
            return piece
        return next((s for s in self._agent_buffer if s["prompt_ids"].size(0) > 0), piece)

    def _gather_env_metrics(self, episodes: list[EpisodeRecord]) -> dict[str, float]:
        """`env/*` metrics over the episodes of all processes (rows dropped before gathering: they can be big)."""
        light = [dataclasses.replace(episode, row={}) for episode in episodes]
        if self.accelerator.num_processes > 1:
            light = gather_object(light)
        return summarize_episodes(light)

    def _log_env_metrics(self, mode: str, episodes: list[EpisodeRecord]) -> dict[str, float]:
        """Gather episode outcomes from all processes and append the `env/*` metrics."""
        metrics = self._gather_env_metrics(episodes)
        for name, value in metrics.items():
            self._metrics[mode][name].append(value)
        return metrics

    @contextlib.contextmanager
    def _sampling_temperature(self, temperature: float) -> Iterator[None]:
        """Temporarily sample at `temperature` (0 = greedy) in TRL's generation backend."""
        if self.use_vllm:
            previous = self.vllm_generation.temperature
            self.vllm_generation.temperature = temperature
            try:
                yield
            finally:
                self.vllm_generation.temperature = previous
            return
        previous = self.generation_config, self.generation_kwargs
        kwargs = {**self.generation_kwargs, "do_sample": temperature > 0, "temperature": temperature or None}
        if temperature == 0:
            kwargs.update(top_p=None, top_k=None, min_p=None)
        self.generation_config, self.generation_kwargs = GenerationConfig(**kwargs, disable_compile=True), kwargs
        try:
            yield
        finally:
            self.generation_config, self.generation_kwargs = previous

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
        start = time.perf_counter()
        rows = [dict(row) for row in dataset]
        local = rows[self.accelerator.process_index :: self.accelerator.num_processes]
        width = self.args.per_device_eval_batch_size
        num_batches = math.ceil(len(local) / width)
        if self.accelerator.num_processes > 1:
            counts = self.accelerator.gather(torch.tensor([num_batches], device=self.accelerator.device))
            num_batches = int(counts.max())
        was_training = self.model.training
        self.model.eval()
        episodes: list[EpisodeRecord] = []
        try:
            with self._sampling_temperature(self.args.eval_temperature):
                for index in range(num_batches):
                    batch = local[index * width : (index + 1) * width]
                    episodes.extend(self._agent_play(batch, list(range(len(batch))), evaluation=True).episodes)
                    self._agent_hook("on_evaluate_progress", done=len(episodes), total=len(local))
            self.eval_episodes = episodes
            metrics = {f"{metric_key_prefix}_{k}": v for k, v in self._gather_env_metrics(episodes).items()}
            metrics[f"{metric_key_prefix}_runtime"] = round(time.perf_counter() - start, 4)
            self.log(metrics)  # in eval mode, so TRL's log() adds no train metrics to this record
        finally:
            self.model.train(was_training)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

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
        # Agent mode trains a slice of step samples in several chunks; each chunk's share of the slice loss.
        weights = inputs.get("agent_loss_weights")
        trl_weight = 1.0 if weights is None else weights[_TRL_LOSS_WEIGHT_KIND[self.loss_type]]
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
        mask = self._distill_mask(inputs)  # (B, C)
        distill, stats = self._distill_term(student_logps, inputs, mask)
        mode = "train" if self.model.training else "eval"
        # TRL's loss is already divided by the accumulation steps (loss_is_scaled_for_ga); match it.
        normalizer = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        self._log_sdar_stats(mode, {"distill_loss": distill.detach(), **stats}, mask)
        distill_weight = 1.0 if weights is None else weights["distill"]
        return loss * trl_weight + self.args.distill_coef * distill / normalizer * distill_weight

    def _distill_mask(self, inputs: dict[str, Any]) -> torch.Tensor:
        """(B, C) tokens of the distillation term: sampled tokens of rows that have a privileged context."""
        mask = self._sampled_token_mask(inputs)  # (B, C)
        if "teacher_row_mask" in inputs:
            mask = mask * inputs["teacher_row_mask"].unsqueeze(-1)  # rows without privileged context
        return mask

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


#: How each TRL loss type normalises a micro-batch, hence which share of a slice a chunk's loss must be weighted by:
#: global token normalisers (num_items_in_batch) need no weight; per-micro-batch token means weigh by tokens;
#: per-sequence means weigh by rows.
_TRL_LOSS_WEIGHT_KIND: dict[str, str] = {
    "dapo": "global",
    "cispo": "global",
    "vespo": "global",
    "bnpo": "tokens",
    "grpo": "rows",
    "sapo": "rows",
    "dr_grpo": "rows",
    "luspo": "rows",
}


def _environment_reward(*args: Any, **kwargs: Any) -> list[float]:
    """Placeholder reward function: in agent mode rewards come from the environment, never from here."""
    raise RuntimeError("agent mode computes rewards from the environment; this placeholder must never be called.")


def _check_agent_arguments(
    args: SDARConfig,
    *,
    env_factory: Any,
    skill_bank: Any,
    reward_funcs: Any,
    tools: Any,
    rollout_func: Any,
    environment_factory: Any,
) -> list[Callable[..., Any]]:
    """Validate the agent-mode arguments before TRL builds anything; returns the placeholder reward function."""
    if not callable(env_factory):
        raise TypeError(
            f"env_factory must be a callable returning an environment (e.g. the class MyEnv), got {env_factory!r}."
        )
    for name, value in (("reward_funcs", reward_funcs), ("tools", tools), ("rollout_func", rollout_func)):
        if value is not None:
            raise ValueError(
                f"{name} cannot be combined with env_factory: in agent mode the environment owns the episode and its "
                f"reward. Drop {name}=..., or drop env_factory to train single-turn."
            )
    if environment_factory is not None:
        raise ValueError(
            "environment_factory (TRL's tool-calling environments, one row per episode) and env_factory (SDAR's "
            "step-level agent mode) are different mechanisms; pass only one. See docs/agents.md."
        )
    if skill_bank is not None and not isinstance(skill_bank, SkillBank):
        raise TypeError(f"skill_bank must be a sdar_trl.SkillBank, got {type(skill_bank).__name__}.")
    if (
        skill_bank is not None
        and len(skill_bank) == 0
        and args.needs_teacher
        and args.privileged_context_source == "skills"
    ):
        raise ValueError(
            f"skill_bank is empty, so with privileged_context_source='skills' every teacher prompt equals the "
            f"student's: method={args.method!r} would train as plain GRPO (distill_loss = 0). Pass a bank with skills "
            "(SkillBank.load(path), or SkillBank.from_package('webshop') for a built-in environment), set "
            "privileged_context_source='facts' or 'skills+facts', or use method='grpo'."
        )
    if args.needs_privileged_context and args.privileged_context_source == "skills" and skill_bank is None:
        raise ValueError(
            f"method={args.method!r} needs a privileged context for the teacher, but no skill_bank was given and "
            "privileged_context_source='skills'. Pass skill_bank=SkillBank.load(path) (or SkillBank.from_package("
            "'webshop') for a built-in environment), set privileged_context_source='facts', or use method='grpo'."
        )
    if args.loss_type not in _TRL_LOSS_WEIGHT_KIND:
        raise ValueError(
            f"loss_type={args.loss_type!r} is not supported in agent mode; expected one of "
            f"{sorted(_TRL_LOSS_WEIGHT_KIND)}."
        )
    if _TRL_LOSS_WEIGHT_KIND[args.loss_type] == "global" and (args.entropy_coef != 0 or args.use_adaptive_entropy):
        raise ValueError(
            f"loss_type={args.loss_type!r} with an entropy bonus is not supported in agent mode yet (TRL adds the "
            "bonus per micro-batch, which chunking would over-count). Use loss_type='bnpo' or 'grpo' with the bonus, "
            "or set entropy_coef=0."
        )
    local_rows = args.per_device_train_batch_size * args.steps_per_generation
    if local_rows % args.num_generations != 0:
        raise ValueError(
            f"agent mode plays whole task groups on each process: per_device_train_batch_size × steps_per_generation "
            f"= {args.per_device_train_batch_size} × {args.steps_per_generation} = {local_rows} trajectories per "
            f"process must be divisible by num_generations={args.num_generations}. Adjust one of them (e.g. "
            f"gradient_accumulation_steps or generation_batch_size)."
        )
    return [_environment_reward]


def _strip_trailing(ids: list[int], stop_ids: set[int]) -> list[int]:
    end = len(ids)
    while end and ids[end - 1] in stop_ids:
        end -= 1
    return ids[:end]


def _dummy_step(pad_token_id: int) -> StepRecord:
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


def _take_rows(batch: Mapping[str, Any], index: torch.Tensor, num_rows: int) -> dict[str, Any]:
    """Rows `index` of every per-row tensor of `batch` (first dim == num_rows); other entries are shared."""
    out: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0 and value.size(0) == num_rows:
            out[key] = value[index.to(value.device)]
        else:
            out[key] = value
    return out


class _CloseEnvironmentsCallback(TrainerCallback):
    """Closes the agent-mode environment pool when training ends."""

    def __init__(self, trainer: SDARTrainer) -> None:
        self.trainer = trainer

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer.close_environments()
