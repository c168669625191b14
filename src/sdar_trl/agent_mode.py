"""Agent mode of `SDARTrainer`: the wiring between TRL and `sdar_trl.agent` (docs/agents.md, "How a step flows").

`AgentModeMixin` holds the agent-mode methods of `SDARTrainer` (a `trl.GRPOTrainer`); `SDARTrainer.training_step`
and `evaluate` call them when an `env_factory` was given. Everything that needs no model lives in `sdar_trl.agent`
(episode loop, step prompts, step batch, chunks, held-out loop, environment pools); what stays here needs TRL, the
model or the other processes:

- `_agent_generate`: the `generate` callable handed to `play_episodes`, one batched generation through TRL's
  backend (vLLM included) per lock-step turn;
- `_agent_play`: `play_episodes` with the run's settings, all processes in lock-step (`_agent_keep_going`);
- `_agent_build_batch`: `build_training_batch`, then the old/reference log-prob forwards and the teacher's
  (`TeacherBranchMixin._add_teacher_logps`, each episode's context from `sdar_trl.context.privileged_context`);
- `_agent_chunks`: a slice's weighted chunks, equal in count and rows on every process;
- `_agent_evaluate`: held-out episodes at `eval_temperature`, logged as `eval_env/*`.
"""

from __future__ import annotations

import functools
import time
import warnings
from typing import TYPE_CHECKING, Any

import torch
from accelerate.utils import gather_object

from ._compat import disable_gradient_checkpointing, sampling_temperature, use_adapter
from .agent import (
    EnvironmentPools,
    EpisodeRecord,
    RolloutResult,
    build_training_batch,
    gathered_env_metrics,
    padding_source,
    play_episodes,
    play_held_out,
    split_into_chunks,
    strip_trailing,
)
from .agent.arguments import check_task_groups
from .context import privileged_context
from .diagnostics import won_outcome
from .env_guard import EnvFaultLog, check_failed_share
from .loss import distill_token_mask, gated_gap_sums, sampled_token_mask
from .retrieval import SkillRetriever, chosen_skill_metrics
from .skills import SkillBank, check_skill_coverage

if TYPE_CHECKING:
    from .config import SDARConfig

__all__ = ["AgentModeMixin"]


class AgentModeMixin:
    """The agent-mode methods of `SDARTrainer` (mixed into a `trl.GRPOTrainer` subclass; see the module doc)."""

    args: SDARConfig
    skill_bank: SkillBank | None
    skill_retriever: SkillRetriever | None
    eval_episodes: list[EpisodeRecord]
    _envs: EnvironmentPools
    _env_fault_log: EnvFaultLog
    _agent_buffer: list[dict[str, Any]] | None
    _skill_coverage_checked: bool

    def _max_over_processes(self, value: int) -> int:
        """The largest `value` of all processes (collective calls need equal counts everywhere)."""
        if self.accelerator.num_processes == 1:
            return value
        return int(self.accelerator.gather(torch.tensor([value], device=self.accelerator.device)).max())

    def _agent_generate_and_score(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Rollout → step samples → rewards → group advantages → old/ref/teacher log-probs (one dict of N rows)."""
        result = self._agent_play(rows, check_task_groups(rows, self.num_generations))
        uses_skills = self.args.needs_privileged_context and "skills" in self.args.privileged_context_source
        if not self._skill_coverage_checked and uses_skills and self.skill_bank is not None:
            self._skill_coverage_checked = True  # warn once (first batch): no skills for any of the task types
            problem = check_skill_coverage(self.skill_bank, [episode.task_type for episode in result.episodes])
            if problem is not None:
                warnings.warn(problem, UserWarning, stacklevel=2)
        if uses_skills and self.skill_retriever is not None:
            self._log_skill_choices(result.episodes)
        metrics = self._log_env_metrics("train", result.episodes)
        check_failed_share(metrics, max_share=self.args.max_failed_episode_share, env_name=self._envs.name())
        return self._agent_build_batch(result)

    def _agent_play(
        self, rows: list[dict[str, Any]], group_ids: list[int], *, evaluation: bool = False
    ) -> RolloutResult:
        """`play_episodes` with this run's settings, generating through TRL's backend (`_agent_generate`)."""
        student_prefix = None
        if self.args.skills_in_student_prompt:
            student_prefix = lambda episode: self._render_prefix(self._agent_context(episode))  # noqa: E731
        result = play_episodes(
            self._envs.get(len(rows), evaluation=evaluation),
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
        self._env_fault_log.report(result.episodes, env_name=self._envs.name(evaluation=evaluation))
        # A timed-out call may still be running in its thread: never reuse (or close) that instance, build a new one.
        self._envs.drop(result.abandoned, evaluation=evaluation)
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
        """One batched generation through TRL's backend for every live prompt of this step (a `GenerateFn`)."""
        count = len(prompts)
        # Collective generation (vLLM server slicing, ZeRO-3, FSDP) needs the same prompt count everywhere.
        target = self._max_over_processes(count)
        if target == 0:
            return []
        filler = prompts[0] if prompts else "Say nothing."
        conversations = [[{"role": "user", "content": p}] for p in [*prompts, *([filler] * (target - count))]]
        prompt_ids, _, _ = self._tokenize_prompts(conversations)
        completion_ids, _ = self._generate_single_turn(prompt_ids, None, {}, 1)
        prompt_ids, completion_ids = [list(p) for p in prompt_ids[:count]], [list(c) for c in completion_ids[:count]]
        # Keep special tokens such as <think> (special in some tokenizers): drop only the trailing EOS/padding.
        stop_ids = {*self.eos_token_ids, self._tokenizer.pad_token_id}
        texts = [self._tokenizer.decode(strip_trailing(ids, stop_ids)) for ids in completion_ids]
        return list(zip(prompt_ids, completion_ids, texts, strict=True))

    def _agent_context(self, episode: EpisodeRecord) -> str:
        """The teacher's privileged context for one episode (SDAR: general + task-type skills; `skill_retrieval`)."""
        chosen = None
        if self.skill_retriever is not None and self.args.skill_retrieval != "rules":
            chosen = self.skill_retriever.chosen(episode.task_type, episode.task)
        return privileged_context(
            self.args.privileged_context_source,
            skill_bank=self.skill_bank,
            task_type=episode.task_type,
            facts=episode.privileged_facts,
            row=episode.row,
            column=self.args.privileged_context_column,
            chosen=chosen,
        )

    def _gather(self, items: list[Any]) -> list[Any]:
        """`items` of every process, in process order (the same list everywhere)."""
        return gather_object(items) if self.accelerator.num_processes > 1 else items

    def _log_skill_choices(self, episodes: list[EpisodeRecord]) -> None:
        """`skills/*`: which skills the retriever showed the episodes of all processes (failed episodes left out)."""
        retriever = self.skill_retriever
        assert retriever is not None  # internal invariant: called only with a skill bank
        choices = self._gather([retriever.select(e.task_type, e.task) for e in episodes if not e.failed])
        for name, value in chosen_skill_metrics(retriever.ids, choices).items():
            self._metrics["train"][name].append(value)

    def _agent_update_skill_bandit(self, batch: dict[str, Any], steps: list[Any], result: RolloutResult) -> None:
        """skill_retrieval="ucb": credit each episode's gated teacher gap to the skills it showed (all processes)."""
        retriever = self.skill_retriever
        assert retriever is not None and retriever.bandit is not None  # internal invariant: ucb with a skill bank
        sums, counts = gated_gap_sums(
            self._rollout_student_logps(batch),  # (N, C)
            batch["teacher_per_token_logps"],  # (N, C)
            sampled_token_mask(batch),  # (N, C)
            gate_beta=self.args.gate_beta,
        )  # (N,), (N,)
        totals: dict[int, list[float]] = {}
        for step, row_sum, row_count in zip(steps[: len(result.steps)], sums.tolist(), counts.tolist(), strict=False):
            total = totals.setdefault(step.trajectory, [0.0, 0.0])
            total[0] += row_sum
            total[1] += row_count
        rounds = []
        for episode in result.episodes:
            gap_sum, tokens = totals.get(episode.trajectory, (0.0, 0.0))
            if episode.failed or tokens == 0:
                continue  # no sampled token to measure the teacher's help on
            choice = retriever.select(episode.task_type, episode.task)  # before any update: the context it was shown
            rounds.append((episode.task_type, choice, gap_sum / tokens))
        rounds = self._gather(rounds)
        for task_type, choice, reward in rounds:
            retriever.bandit.update(task_type, choice, reward)
        if rounds:
            self._metrics["train"]["skills/ucb_reward"].append(sum(r for _, _, r in rounds) / len(rounds))

    def _agent_build_batch(self, result: RolloutResult) -> dict[str, Any]:
        """The step batch of `result` (`sdar_trl.agent.batch`) plus the log-probs the loss needs."""
        # Every trajectory of this process may have failed at reset: one masked dummy sample keeps this process's
        # forward/backward count equal to the others'. Under FSDP / ZeRO-3 every forward gathers the sharded
        # weights from all processes, so the no-grad forwards below (old, reference, teacher log-probs, chunked by
        # row count) must run as often on every process: pad all processes to the largest step-sample count.
        num_rows = max(len(result.steps), 1)
        if self._weights_sharded():
            num_rows = self._max_over_processes(num_rows)
        batch, steps = build_training_batch(
            result,
            pad_token_id=self._tokenizer.pad_token_id,
            invalid_action_penalty=self.args.invalid_action_penalty,
            num_rows=num_rows,
            device=self.accelerator.device,
        )
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
            real = len(result.steps)  # the rows after them are dummies: no context
            if self._gate_diagnostics_on():
                # The pool the rollout just played in: its action format says where a response's action is.
                action_format = getattr(self._envs.get(1)[0], "action_format", "think_action")
                outcomes = [won_outcome(episodes[s.trajectory].won if i < real else None) for i, s in enumerate(steps)]
                self._gate_annotate(batch, action_format=action_format, outcomes=outcomes)
            contexts = [self._agent_context(episodes[s.trajectory]) if i < real else "" for i, s in enumerate(steps)]
            self._add_teacher_logps(batch, [self._render_prefix(context) for context in contexts])  # (N, C)
            if self.args.skill_retrieval == "ucb" and self.skill_retriever is not None:
                self._agent_update_skill_bandit(batch, steps, result)
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

    def _agent_chunks(self, piece: dict[str, Any]) -> list[dict[str, Any]]:
        """One slice in weighted chunks of <= per_device_train_batch_size rows (`agent.chunks.split_into_chunks`)."""
        distill_mask = distill_token_mask(piece) if "teacher_per_token_logps" in piece else piece["completion_mask"]
        return split_into_chunks(
            piece,
            chunk_size=self.args.per_device_train_batch_size,
            width=self._max_over_processes(piece["prompt_ids"].size(0)),
            equal_rows=self.accelerator.num_processes > 1,
            distill_mask=distill_mask,  # (n, C)
            source=padding_source(piece, self._agent_buffer),
        )

    def _gather_env_metrics(self, episodes: list[EpisodeRecord]) -> dict[str, float]:
        """`env/*` metrics over the episodes of all processes."""
        return gathered_env_metrics(episodes, gather_object if self.accelerator.num_processes > 1 else None)

    def _log_env_metrics(self, mode: str, episodes: list[EpisodeRecord]) -> dict[str, float]:
        """Gather episode outcomes from all processes and append the `env/*` metrics."""
        metrics = self._gather_env_metrics(episodes)
        for name, value in metrics.items():
            self._metrics[mode][name].append(value)
        return metrics

    def _agent_evaluate(self, dataset: Any, metric_key_prefix: str) -> dict[str, float]:
        """Play every task of `dataset` once at `eval_temperature`, keep the episodes, log `<prefix>_env/*`."""
        start = time.perf_counter()
        was_training = self.model.training
        self.model.eval()
        try:
            with sampling_temperature(self, self.args.eval_temperature):
                self.eval_episodes = play_held_out(
                    [dict(row) for row in dataset],
                    functools.partial(self._agent_play, evaluation=True),
                    batch_size=self.args.per_device_eval_batch_size,
                    process_index=self.accelerator.process_index,
                    num_processes=self.accelerator.num_processes,
                    max_over_processes=self._max_over_processes,
                    on_progress=lambda done, total: self._agent_hook("on_evaluate_progress", done=done, total=total),
                )
            metrics = {f"{metric_key_prefix}_{k}": v for k, v in self._gather_env_metrics(self.eval_episodes).items()}
            metrics[f"{metric_key_prefix}_runtime"] = round(time.perf_counter() - start, 4)
            self.log(metrics)  # in eval mode, so TRL's log() adds no train metrics to this record
        finally:
            self.model.train(was_training)
        return metrics
