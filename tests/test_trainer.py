"""SDARTrainer on a tiny random Qwen model, trained for real on CPU."""

from __future__ import annotations

import math

import pytest
import torch
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from sdar_trl import SDARConfig, SDARTrainer, compute_sdar_loss
from sdar_trl.teacher import prefix_cached_logps, render_teacher_prefix
from sdar_trl.testing import build_tiny_model, tiny_single_turn_config

SDAR_METRICS = ("sdar/gate_mean", "sdar/gate_active_ratio", "sdar/teacher_gap_mean", "sdar/distill_loss")


def length_reward(completions, **kwargs):
    # Varied rewards so that GRPO advantages (and hence policy gradients) are non-zero.
    return [len(c[0]["content"]) / 10.0 for c in completions]


def make_dataset(
    n: int = 8, context: str | None = "Add the two numbers; the answer is twice the number.", empty_every: int = 0
) -> Dataset:
    rows = []
    for i in range(n):
        row = {"prompt": [{"role": "user", "content": f"What is {i} + {i}?"}]}
        if context is not None:
            # empty_every=k: every k-th row carries no privileged information.
            row["privileged_context"] = "" if empty_every and i % empty_every == 0 else context
        rows.append(row)
    return Dataset.from_list(rows)


def make_args(tmp_path, config_class=SDARConfig, **overrides):
    return tiny_single_turn_config(tmp_path, config_class=config_class, **overrides)


def make_trainer(
    tmp_path,
    tokenizer,
    *,
    dataset=None,
    trainer_class=SDARTrainer,
    config_class=None,
    model=None,
    trainer_kwargs=None,
    **config,
):
    """A trainer on the tiny model; `config` goes to the config, `trainer_kwargs` to the trainer."""
    if config_class is None:
        config_class = SDARConfig if trainer_class is SDARTrainer else GRPOConfig
    args = make_args(tmp_path, config_class, **config)
    return trainer_class(
        model if model is not None else build_tiny_model(tokenizer),
        reward_funcs=length_reward,
        args=args,
        train_dataset=dataset if dataset is not None else make_dataset(),
        processing_class=tokenizer,
        **(trainer_kwargs or {}),
    )


def lora_config():
    from peft import LoraConfig

    return LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")


def generation_batch(trainer):
    """One generation batch as compute_loss receives it (before TRL's shuffling)."""
    trainer.model.train()
    rows = next(iter(trainer.get_train_dataloader()))
    return rows, trainer._generate_and_score_completions(rows)


def logged(trainer, key):
    return [record[key] for record in trainer.state.log_history if key in record]


def test_sdar_trains_every_parameter_and_logs_metrics(tmp_path, tiny_tokenizer):
    trainer = make_trainer(tmp_path, tiny_tokenizer, max_steps=3)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    unchanged = [n for n, p in trainer.model.named_parameters() if p.requires_grad and torch.equal(p, before[n])]
    assert not unchanged, f"parameters not updated: {unchanged}"
    for key in SDAR_METRICS:
        values = logged(trainer, key)
        assert len(values) == 3, key
        assert all(math.isfinite(v) for v in values), (key, values)
    # A step whose prompt has no privileged context counts no tokens (gate_mean 0); the others lie in (0, 1).
    gate_means = logged(trainer, "sdar/gate_mean")
    assert all(0.0 <= v < 1.0 for v in gate_means) and any(v > 0.0 for v in gate_means)


def test_distill_coef_zero_matches_plain_grpo_exactly(tmp_path, tiny_tokenizer):
    grpo = make_trainer(tmp_path / "grpo", tiny_tokenizer, trainer_class=GRPOTrainer, max_steps=3)
    grpo.train()
    sdar = make_trainer(tmp_path / "sdar", tiny_tokenizer, method="sdar", distill_coef=0.0, max_steps=3)
    sdar.train()
    grpo_loss, sdar_loss = logged(grpo, "loss"), logged(sdar, "loss")
    assert len(grpo_loss) == 3
    assert sdar_loss == grpo_loss
    for (name, p), (_, q) in zip(grpo.model.named_parameters(), sdar.model.named_parameters(), strict=True):
        assert torch.equal(p, q), name
    assert not any(key.startswith("sdar/") for record in sdar.state.log_history for key in record)


def test_no_teacher_forward_when_distill_coef_is_zero(tmp_path, tiny_tokenizer, monkeypatch):
    trainer = make_trainer(tmp_path, tiny_tokenizer, method="grpo")
    calls = []
    original = GRPOTrainer._get_per_token_logps_and_entropies

    def counting(self, *args, **kwargs):
        calls.append(args[1].shape)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GRPOTrainer, "_get_per_token_logps_and_entropies", counting)
    _, output = generation_batch(trainer)
    assert "teacher_per_token_logps" not in output
    assert calls == []  # on-policy GRPO: no old/ref/teacher forward at generation time


def test_empty_context_and_header_gives_teacher_equal_to_student(tmp_path, tiny_tokenizer):
    dataset = make_dataset(context="")
    trainer = make_trainer(
        tmp_path, tiny_tokenizer, dataset=dataset, teacher_context_header="", distill_empty_context=True
    )
    _, output = generation_batch(trainer)
    mask = output["completion_mask"].bool()
    with torch.no_grad():
        input_ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
        attention_mask = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        student, _, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, input_ids, attention_mask, output["completion_ids"].size(1)
        )
    teacher = output["teacher_per_token_logps"]
    torch.testing.assert_close(teacher[mask], student[mask], atol=1e-5, rtol=0)
    _, stats = compute_sdar_loss(student, teacher, output["completion_mask"], gate_beta=5.0)
    assert abs(stats["teacher_gap_mean"].item()) < 1e-5
    assert stats["gate_mean"].item() == pytest.approx(0.5, abs=1e-5)


@pytest.mark.parametrize(("prefix_cache", "sharded"), [(True, False), (False, False), (True, True)])
def test_teacher_logps_match_naive_forward_on_privileged_prompt(
    tmp_path, tiny_tokenizer, monkeypatch, prefix_cache, sharded
):
    import sdar_trl.teacher as teacher_module

    # Under FSDP / ZeRO-3 (simulated) the cache is not used: processes would run different forward counts.
    monkeypatch.setattr(SDARTrainer, "_weights_sharded", lambda self: sharded)

    cached_rows = []

    def spy(model, prefix, prompt_ids, *args, **kwargs):
        cached_rows.append(prompt_ids.size(0))
        return prefix_cached_logps(model, prefix, prompt_ids, *args, **kwargs)

    monkeypatch.setattr(teacher_module, "prefix_cached_logps", spy)
    # Three prompts x 4 generations: two distinct contexts (one cached prefix each) and one row without context
    # (full forward), so both paths run side by side in one batch.
    contexts = ["Add the two numbers.", "", "The answer is twice the number."]
    dataset = Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": f"What is {i} + {i}?"}], "privileged_context": c}
            for i, c in enumerate(contexts)
        ]
    )
    trainer = make_trainer(
        tmp_path,
        tiny_tokenizer,
        dataset=dataset,
        per_device_train_batch_size=12,
        teacher_prefix_cache=prefix_cache,
        distill_empty_context=True,
    )
    rows, output = generation_batch(trainer)
    assert sorted(row["privileged_context"] for row in rows) == sorted(contexts * 4)
    assert cached_rows == ([4, 4] if prefix_cache and not sharded else [])
    teacher = output["teacher_per_token_logps"]  # (B, C)
    model = trainer.model
    for i, row in enumerate(rows):
        prompt_text = tiny_tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        prefix = render_teacher_prefix(row["privileged_context"], header=trainer.args.teacher_context_header)
        prompt_ids = tiny_tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
        prompt_ids = prompt_ids + tiny_tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        completion = output["completion_ids"][i][output["completion_mask"][i].bool()].tolist()
        ids = torch.tensor([prompt_ids + completion])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1 : -1] / trainer.temperature
        naive = torch.log_softmax(logits.float(), dim=-1).gather(-1, torch.tensor(completion)[:, None])[:, 0]
        torch.testing.assert_close(teacher[i, : len(completion)], naive, atol=1e-4, rtol=0)


def test_loss_is_trl_loss_plus_scaled_distillation(tmp_path, tiny_tokenizer):
    trainer = make_trainer(tmp_path, tiny_tokenizer, distill_coef=0.5)
    _, inputs = generation_batch(trainer)
    trainer.current_gradient_accumulation_steps = 2
    total = trainer.compute_loss(trainer.model, inputs)
    captured = {}
    original = trainer._distill_term

    def spy(student_logps, inputs_, mask):
        loss, stats = original(student_logps, inputs_, mask)
        captured["distill"] = loss.detach()
        return loss, stats

    trainer._distill_term = spy
    total_again = trainer.compute_loss(trainer.model, inputs)
    trainer.args.distill_coef = 0.0
    trl_only = trainer.compute_loss(trainer.model, inputs)
    torch.testing.assert_close(total_again, total)
    expected = trl_only + 0.5 * captured["distill"] / 2
    torch.testing.assert_close(total.detach(), expected.detach(), atol=1e-7, rtol=1e-6)
    assert total.requires_grad


def test_opsd_switches_off_the_policy_gradient(tmp_path, tiny_tokenizer):
    trainer = make_trainer(tmp_path, tiny_tokenizer, method="opsd")
    _, inputs = generation_batch(trainer)
    trainer.current_gradient_accumulation_steps = 1
    loss = trainer.compute_loss(trainer.model, inputs)
    distill = trainer._metrics["train"]["sdar/distill_loss"][-1]
    # beta = 0 and no entropy bonus: nothing but λ · distillation remains.
    assert loss.item() == pytest.approx(0.01 * distill, rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("method", ["grpo_opsd", "skill_sd", "rlsd", "skill_grpo"])
def test_baseline_presets_train(tmp_path, tiny_tokenizer, method):
    trainer = make_trainer(tmp_path, tiny_tokenizer, method=method, max_steps=1)
    trainer.train()
    records = trainer.state.log_history
    assert math.isfinite(logged(trainer, "loss")[0])
    if method == "grpo_opsd":
        assert logged(trainer, "sdar/gate_mean") == [0.5]
        assert logged(trainer, "sdar/gate_active_ratio") == [0.0]
    if method == "skill_sd":
        assert "sdar/k3_mean" in records[0] and records[0]["sdar/k3_mean"] >= 0
    if method == "rlsd":
        assert logged(trainer, "sdar/rlsd_weight") == [0.5]
        assert math.isfinite(logged(trainer, "sdar/teacher_gap_mean")[0])
    if method == "skill_grpo":
        assert not any(key.startswith("sdar/") for key in records[0])


def test_rlsd_turns_advantages_into_token_advantages(tmp_path, tiny_tokenizer):
    trainer = make_trainer(tmp_path, tiny_tokenizer, method="rlsd")
    _, output = generation_batch(trainer)
    advantages = output["advantages"]
    assert advantages.shape == output["completion_ids"].shape
    assert torch.all(advantages[output["completion_mask"] == 0] == 0)


def test_skill_grpo_puts_the_context_in_the_student_prompt(tmp_path, tiny_tokenizer):
    trainer = make_trainer(
        tmp_path, tiny_tokenizer, method="skill_grpo", dataset=make_dataset(empty_every=2), num_generations=2
    )
    rows, output = generation_batch(trainer)
    for row, ids, mask in zip(rows, output["prompt_ids"], output["prompt_mask"], strict=True):
        text = tiny_tokenizer.decode(ids[mask.bool()])
        if row["privileged_context"]:
            assert "[Privileged Skill Information]\n" + row["privileged_context"] in text
        else:
            assert "Privileged" not in text


def test_base_teacher_without_peft_uses_initial_weights(tmp_path, tiny_tokenizer):
    trainer = make_trainer(tmp_path, tiny_tokenizer, teacher_mode="base", max_steps=2)
    trainer.train()
    base = trainer._sdar_base_teacher
    assert base is not None and base is not trainer.model
    fresh = build_tiny_model(tiny_tokenizer)
    for (name, p), (_, q) in zip(base.named_parameters(), fresh.named_parameters(), strict=True):
        assert torch.equal(p, q), name
    assert logged(trainer, "sdar/gate_mean")


def test_lora_live_and_base_teacher(tmp_path, tiny_tokenizer):
    for mode in ("live", "base"):
        trainer = make_trainer(
            tmp_path / mode,
            tiny_tokenizer,
            teacher_mode=mode,
            max_steps=2,
            trainer_kwargs={"peft_config": lora_config()},
        )
        lora_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}
        base_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" not in n}
        trainer.train()
        params = dict(trainer.model.named_parameters())
        assert lora_before and all(not torch.equal(params[n], v) for n, v in lora_before.items() if "lora_B" in n)
        assert all(torch.equal(params[n], v) for n, v in base_before.items())
        assert len(logged(trainer, "sdar/gate_mean")) == 2


def test_rejects_grpo_config_and_missing_context_column(tmp_path, tiny_tokenizer):
    with pytest.raises(TypeError, match="SDARConfig"):
        make_trainer(tmp_path, tiny_tokenizer, config_class=GRPOConfig)
    with pytest.raises(ValueError, match="privileged_context"):
        make_trainer(tmp_path, tiny_tokenizer, dataset=make_dataset(context=None))
    # Plain GRPO needs no privileged context.
    make_trainer(tmp_path, tiny_tokenizer, dataset=make_dataset(context=None), method="grpo")


def test_base_teacher_from_model_name_without_peft_is_rejected(tmp_path, tiny_tokenizer):
    with pytest.raises(ValueError, match="teacher_mode='base'"):
        make_trainer(tmp_path, tiny_tokenizer, model="some-org/some-model", teacher_mode="base")


def test_max_teacher_prompt_length_left_truncates(tmp_path, tiny_tokenizer):
    trainer = make_trainer(tmp_path, tiny_tokenizer, max_teacher_prompt_length=6)
    _, output = generation_batch(trainer)
    assert output["teacher_per_token_logps"].shape == output["completion_ids"].shape
    assert torch.isfinite(output["teacher_per_token_logps"]).all()


def test_qlora_4bit_cpu(tmp_path, tiny_tokenizer):
    pytest.importorskip("bitsandbytes")
    from transformers import BitsAndBytesConfig

    from sdar_trl.testing import save_tiny

    path = save_tiny(tmp_path / "tiny")
    trainer = make_trainer(
        tmp_path / "out",
        tiny_tokenizer,
        model=str(path),
        max_steps=1,
        model_init_kwargs={"dtype": torch.float32},
        trainer_kwargs={
            "quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32),
            "peft_config": lora_config(),
        },
    )
    assert getattr(trainer.model, "is_loaded_in_4bit", False) or any(
        "4bit" in type(m).__name__ for m in trainer.model.modules()
    )
    trainer.train()
    assert len(logged(trainer, "sdar/gate_mean")) == 1


@pytest.mark.parametrize("method", ["sdar", "skill_sd"])
def test_gradient_accumulation_and_reused_generations(tmp_path, tiny_tokenizer, method):
    # steps_per_generation = 2 with num_iterations = 2: TRL computes old_per_token_logps (so ρ ≠ 1 for Skill-SD)
    # and each generation batch is split over accumulation steps, each carrying its teacher log-probs.
    trainer = make_trainer(
        tmp_path,
        tiny_tokenizer,
        method=method,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        steps_per_generation=2,
        num_iterations=2,
        max_steps=2,
    )
    trainer.train()
    assert len(logged(trainer, "sdar/distill_loss")) == 2
    assert all(math.isfinite(v) for v in logged(trainer, "loss"))
    if method == "skill_sd":
        assert all(v > 0 for v in logged(trainer, "sdar/rho_mean"))


def test_evaluation_logs_sdar_metrics(tmp_path, tiny_tokenizer):
    trainer = make_trainer(
        tmp_path,
        tiny_tokenizer,
        per_device_eval_batch_size=4,
        num_generations_eval=4,
        trainer_kwargs={"eval_dataset": make_dataset(4)},
    )
    metrics = trainer.evaluate()
    assert math.isfinite(metrics["eval_loss"])
    assert 0.0 < metrics["eval_sdar/gate_mean"] < 1.0


def test_ema_teacher_tracks_the_trained_weights(tmp_path, tiny_tokenizer):
    trainer = make_trainer(tmp_path, tiny_tokenizer, teacher_mode="ema", teacher_ema_rate=0.5, max_steps=2)
    initial = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    ema = trainer._sdar_ema
    live = {n: p.detach() for n, p in trainer.model.named_parameters() if p.requires_grad}
    with ema.swapped_in():
        averaged = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    # After two updates with α = 0.5 the EMA lies strictly between the initial and the live weights (per tensor).
    changed = [n for n in live if not torch.equal(live[n], initial[n])]
    assert changed
    for name in changed:
        assert not torch.equal(averaged[name], live[name]), name
        assert not torch.equal(averaged[name], initial[name]), name
    # and the live weights are back after the swap
    for name, param in trainer.model.named_parameters():
        if param.requires_grad:
            assert torch.equal(param.detach(), live[name])
    assert len(logged(trainer, "sdar/gate_mean")) == 2


@pytest.mark.parametrize("keep_empty", [False, True])
def test_rows_without_context_are_left_out_of_distillation(tmp_path, tiny_tokenizer, keep_empty):
    trainer = make_trainer(
        tmp_path, tiny_tokenizer, dataset=make_dataset(context=""), distill_coef=0.5, distill_empty_context=keep_empty
    )
    _, inputs = generation_batch(trainer)
    trainer.current_gradient_accumulation_steps = 1
    total = trainer.compute_loss(trainer.model, inputs).detach()
    distill = trainer._metrics["train"]["sdar/distill_loss"][-1]
    trainer.args.distill_coef = 0.0
    trl_only = trainer.compute_loss(trainer.model, inputs).detach()
    if keep_empty:
        # teacher == student: Δ = 0 and g = 0.5, so the term is 0 in value (but not in gradient)
        assert trainer._metrics["train"]["sdar/gate_mean"][-1] == pytest.approx(0.5, abs=1e-5)
        assert "teacher_row_mask" not in inputs
    else:
        assert inputs["teacher_row_mask"].tolist() == [0.0] * len(inputs["teacher_row_mask"])
        assert distill == 0.0
        assert trainer._metrics["train"]["sdar/gate_mean"][-1] == 0.0  # no token counted
        torch.testing.assert_close(total, trl_only)


def test_teacher_row_mask_follows_each_rows_context(tmp_path, tiny_tokenizer):
    # Two prompts per batch (num_generations=2), half of the rows without privileged context.
    trainer = make_trainer(tmp_path, tiny_tokenizer, dataset=make_dataset(empty_every=2), num_generations=2)
    for _ in range(3):
        rows, output = generation_batch(trainer)
        expected = [1.0 if row["privileged_context"] else 0.0 for row in rows]
        assert output["teacher_row_mask"].tolist() == expected


def test_base_teacher_reuses_trl_reference_model_when_beta_is_positive(tmp_path, tiny_tokenizer):
    from sdar_trl.testing import save_tiny

    path = save_tiny(tmp_path / "tiny")  # beta > 0 without PEFT: TRL reloads the reference model by name
    trainer = make_trainer(
        tmp_path / "out", tiny_tokenizer, model=str(path), teacher_mode="base", beta=0.01, max_steps=1
    )
    assert trainer.ref_model is not None
    assert trainer._sdar_base_teacher is trainer.ref_model
    trainer.train()
    assert math.isfinite(logged(trainer, "kl")[0])
    assert len(logged(trainer, "sdar/gate_mean")) == 1
