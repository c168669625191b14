"""Agent mode of SDARTrainer: scripted environments and "models", and real tiny-model training on CPU."""

from __future__ import annotations

import functools
import json

import pytest
import torch
from datasets import Dataset

from agent_constants import EVEN, GO, WIN, skill_bank
from sdar_trl import SDARTrainer
from sdar_trl.environments.toy import KeyDoorEnv
from sdar_trl.skills import SkillBank
from sdar_trl.testing import ScriptedEnv, build_tiny_model, patch_generation, tiny_agent_config

SDAR_METRICS = ("sdar/gate_mean", "sdar/gate_active_ratio", "sdar/teacher_gap_mean", "sdar/distill_loss")
ENV_METRICS = ("env/success", "env/invalid_action_rate", "env/episode_length", "env/errors")
BANK = skill_bank(
    type0=[EVEN], unlock=[{"title": "Key", "principle": "Take the key first.", "when_to_apply": "Doors."}]
)


def agent_args(tmp_path, **overrides):
    return tiny_agent_config(tmp_path, **overrides)


def make_agent_trainer(tmp_path, tokenizer, *, env_factory=ScriptedEnv, skill_bank=BANK, dataset=None, **config):
    tasks = dataset if dataset is not None else Dataset.from_list([{"seed": i} for i in range(8)])
    return SDARTrainer(
        build_tiny_model(tokenizer),
        args=agent_args(tmp_path, **config),
        train_dataset=tasks,
        processing_class=tokenizer,
        env_factory=env_factory,
        skill_bank=skill_bank,
    )


def respond_by_script(script):
    """script[call][position] -> response text."""
    return lambda text, call, position: script[call][position]


# ---------------------------------------------------------------------------------------------- scripted
def test_scripted_batch_samples_advantages_masks_and_teacher_prompt(tmp_path, tiny_tokenizer):
    # Without the shared-prefix cache every teacher row goes through one recordable forward over its whole
    # teacher prompt (test_teacher_prefix_cache_gives_the_same_agent_batch checks the cached path against it).
    trainer = make_agent_trainer(
        tmp_path, tiny_tokenizer, env_factory=lambda: ScriptedEnv(length=2), teacher_prefix_cache=False
    )
    # Task 4 (two copies, group 0): copy 0 wins at step 2; copy 1 answers garbage then go (2 steps, no win).
    # Task 5 (group 1): both copies go, go (no win).
    script = [[GO, "garbage", GO, GO], [WIN, GO, GO, GO]]
    prompts = patch_generation(trainer, respond_by_script(script))
    teacher_inputs = []
    original = trainer._get_per_token_logps_and_entropies

    def recording(model, input_ids, attention_mask, *args, **kwargs):
        teacher_inputs.append((input_ids.clone(), attention_mask.clone()))
        return original(model, input_ids, attention_mask, *args, **kwargs)

    trainer._get_per_token_logps_and_entropies = recording
    rows = [{"seed": 4}, {"seed": 4}, {"seed": 5}, {"seed": 5}]
    batch = trainer._agent_generate_and_score(rows)

    # 4 trajectories × 2 steps = 8 samples, ordered by step then trajectory.
    assert len(prompts) == 8 and batch["prompt_ids"].shape[0] == 8
    # Rewards (penalty 0.1): group 0 = [1, -0.1 (invalid), 1, 0] -> mean 0.475, Bessel std sqrt(1.1075 / 3).
    # Group 1 = four zeros -> advantages 0.
    g0 = torch.tensor([1.0, -0.1, 1.0, 0.0])
    expected0 = (g0 - g0.mean()) / (g0.std() + 1e-6)
    advantages = batch["advantages"]
    torch.testing.assert_close(advantages[[0, 1, 4, 5]], expected0)
    torch.testing.assert_close(advantages[[2, 3, 6, 7]], torch.zeros(4))
    torch.testing.assert_close(expected0, torch.tensor([0.86407, -0.94636, 0.86407, -0.78177]), atol=1e-4, rtol=0)

    # Completion masks cover exactly the scripted response tokens + EOS.
    for row, text in enumerate([GO, "garbage", GO, GO, WIN, GO, GO, GO]):
        expected_ids = [*tiny_tokenizer(text, add_special_tokens=False)["input_ids"], tiny_tokenizer.eos_token_id]
        mask = batch["completion_mask"][row].bool()
        assert batch["completion_ids"][row][mask].tolist() == expected_ids

    # Exact teacher inputs: header + general & task-type skills + separator + the student's templated prompt +
    # the sampled completion. GA=1 and beta=0, so the teacher forwards (length-sorted groups of rows, each
    # cropped to its own width) are the only ones: together they hold every row exactly once.
    expected = []
    for row in range(8):
        task_type = "type0" if row in (0, 1, 4, 5) else "type1"
        prefix = "[Privileged Skill Information]\n" + BANK.render(task_type) + "\n\n"
        student = batch["prompt_ids"][row][batch["prompt_mask"][row].bool()].tolist()
        completion = batch["completion_ids"][row][batch["completion_mask"][row].bool()].tolist()
        expected.append(tiny_tokenizer(prefix, add_special_tokens=False)["input_ids"] + student + completion)
    seen = [
        ids[mask.bool()].tolist()
        for input_ids, masks in teacher_inputs
        for ids, mask in zip(input_ids, masks, strict=True)
    ]
    assert sorted(seen) == sorted(expected)
    decoded = [tiny_tokenizer.decode(ids) for ids in expected]
    assert "Even tasks end with win." in decoded[0]
    assert "Even tasks end with win." not in decoded[2]  # type1 gets general only
    assert "Say win when ready." in decoded[2]
    assert batch["teacher_per_token_logps"].shape == batch["completion_ids"].shape
    assert batch["teacher_row_mask"].tolist() == [1] * 8
    # The student never sees the skills.
    assert all("Privileged" not in p and "Say win" not in p for p in prompts)


def test_teacher_prefix_cache_gives_the_same_agent_batch(tmp_path, tiny_tokenizer):
    # Step samples share their teacher prefix per task type (skills): 8 samples, 2 prefixes of 4 rows each.
    script = [[GO, "garbage", GO, GO], [WIN, GO, GO, GO]]
    rows = [{"seed": 4}, {"seed": 4}, {"seed": 5}, {"seed": 5}]
    batches = []
    for cache in (True, False):
        trainer = make_agent_trainer(
            tmp_path, tiny_tokenizer, env_factory=lambda: ScriptedEnv(length=2), teacher_prefix_cache=cache
        )
        patch_generation(trainer, respond_by_script(script))
        batches.append(trainer._agent_generate_and_score(rows))
    cached, full = batches
    assert torch.equal(cached["completion_ids"], full["completion_ids"])
    mask = full["completion_mask"].bool()
    torch.testing.assert_close(
        cached["teacher_per_token_logps"][mask], full["teacher_per_token_logps"][mask], atol=1e-5, rtol=0
    )
    assert (cached["teacher_per_token_logps"][~mask] == 0).all()


def test_history_window_in_trainer_prompts(tmp_path, tiny_tokenizer):
    trainer = make_agent_trainer(
        tmp_path, tiny_tokenizer, env_factory=lambda: ScriptedEnv(length=4), history_length=1, max_steps_per_episode=4
    )
    prompts = patch_generation(trainer, lambda text, call, position: GO)
    trainer._agent_generate_and_score([{"seed": 2}, {"seed": 2}])
    last = prompts[-1]  # step 4 of copy 1
    assert "[Observation 3: 'obs 2-2', Action 3: 'go']" in last
    assert "Observation 2" not in last and "obs 2-3" in last
    assert last.startswith("<|im_start|>user\n") and last.endswith("<|im_start|>assistant\n")


@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "bnpo"])
def test_chunked_gradients_equal_unchunked(tmp_path, tiny_tokenizer, loss_type):
    trainer = make_agent_trainer(
        tmp_path, tiny_tokenizer, env_factory=lambda: ScriptedEnv(length=3), loss_type=loss_type
    )
    script = [[GO, "bad", GO, GO], ["<think>x</think><action>go to</action>", WIN, GO, "x"], [GO, GO, WIN]]
    patch_generation(trainer, respond_by_script(script))
    batch = trainer._agent_generate_and_score([{"seed": 0}, {"seed": 0}, {"seed": 1}, {"seed": 1}])
    assert batch["prompt_ids"].shape[0] > 4  # several chunks are needed below
    trainer._agent_buffer = [batch]
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train() in a real run

    def gradients(chunk_size):
        trainer.args.per_device_train_batch_size = chunk_size
        trainer.model.zero_grad()
        chunks = trainer._agent_chunks(batch)
        widths.append([chunk["prompt_ids"].size(1) for chunk in chunks])
        for chunk in chunks:
            trainer.compute_loss(trainer.model, chunk).backward()
        return len(chunks), [p.grad.clone() for p in trainer.model.parameters() if p.grad is not None]

    widths = []
    whole_count, whole = gradients(64)
    chunked_count, chunked = gradients(2)
    assert whole_count == 1 and chunked_count > 3
    # Chunks hold rows of similar length and drop their common left padding: the shortest prompts' chunk is
    # narrower than the whole batch, which pads every row to the longest prompt.
    assert widths[0] == [batch["prompt_ids"].size(1)] and min(widths[1]) < widths[0][0]
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_invalid_action_text_reaches_the_environment_instead_of_the_response(tmp_path, tiny_tokenizer):
    built = []

    def factory():
        built.append(ScriptedEnv(length=2))
        return built[-1]

    trainer = make_agent_trainer(tmp_path, tiny_tokenizer, env_factory=factory, invalid_action_text="look")
    patch_generation(trainer, respond_by_script([["bad\x00 response"] * 2, [GO] * 2]))
    trainer._agent_generate_and_score([{"seed": 0}, {"seed": 0}])
    assert sorted(env.actions for env in built if env.actions) == [["look", "go"], ["look", "go"]]


def test_environment_errors_are_counted_not_raised(tmp_path, tiny_tokenizer):
    # Every episode fails here: max_failed_episode_share=1 lets training go on (tests/test_faults.py covers the stop).
    factory = lambda: ScriptedEnv(length=3, fail_on_step=2)  # noqa: E731
    trainer = make_agent_trainer(tmp_path, tiny_tokenizer, env_factory=factory, max_failed_episode_share=1.0)
    patch_generation(trainer, lambda text, call, position: GO)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "env/errors" in entry]
    assert logs and all(entry["env/errors"] == 4 for entry in logs)  # every trajectory failed on step 2


def test_skill_grpo_shows_skills_to_the_student(tmp_path, tiny_tokenizer):
    trainer = make_agent_trainer(tmp_path, tiny_tokenizer, method="skill_grpo")
    prompts = patch_generation(trainer, lambda text, call, position: WIN)
    batch = trainer._agent_generate_and_score([{"seed": 0}, {"seed": 0}])
    assert all("[Privileged Skill Information]\n1. Finish" in p for p in prompts)
    assert "teacher_per_token_logps" not in batch


def test_oracle_facts_as_privileged_context(tmp_path, tiny_tokenizer):
    trainer = make_agent_trainer(tmp_path, tiny_tokenizer, skill_bank=None, privileged_context_source="facts")
    patch_generation(trainer, lambda text, call, position: WIN)
    episode = trainer._agent_play([{"seed": 3}], [0]).episodes[0]
    assert trainer._agent_context(episode) == "The answer to task 3 is win."


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "config", "match"),
    [
        ({"reward_funcs": lambda **k: [0.0]}, {}, "reward_funcs cannot be combined with env_factory"),
        ({"environment_factory": ScriptedEnv}, {}, "different mechanisms"),
        ({"skill_bank": None}, {}, "no skill_bank was given"),
        ({"skill_bank": {"general_skills": []}}, {}, "skill_bank must be a sdar_trl.SkillBank"),
        ({}, {"entropy_coef": 0.01}, "entropy bonus is not supported"),
        ({"env_factory": lambda: object()}, {}, "lacks \\['reset', 'step', 'close'\\]"),
        ({"env_factory": "webshop-mini"}, {}, "env_factory must be a callable"),
    ],
)
def test_bad_agent_arguments(tmp_path, tiny_tokenizer, kwargs, config, match):
    arguments = {"env_factory": ScriptedEnv, "skill_bank": BANK, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        SDARTrainer(
            build_tiny_model(tiny_tokenizer),
            args=agent_args(tmp_path, **config),
            train_dataset=Dataset.from_list([{"seed": 0}] * 4),
            processing_class=tiny_tokenizer,
            **arguments,
        )


def test_each_process_must_hold_whole_task_groups(tmp_path):
    from sdar_trl.agent.arguments import check_agent_arguments

    args = agent_args(tmp_path)
    args.num_generations = 3  # as if 2 processes shared a generation batch of 12 (TRL checks only the global size)
    with pytest.raises(ValueError, match="4 × 1 = 4 trajectories per process must be divisible by num_generations=3"):
        check_agent_arguments(
            args, env_factory=ScriptedEnv, skill_bank=BANK, reward_funcs=None, tools=None, rollout_func=None,
            environment_factory=None,
        )  # fmt: skip


def test_skill_bank_without_env_factory_is_rejected(tmp_path, tiny_tokenizer):
    with pytest.raises(ValueError, match="skill_bank and eval_env_factory are used in agent mode only"):
        SDARTrainer(
            build_tiny_model(tiny_tokenizer),
            reward_funcs=lambda completions, **k: [0.0] * len(completions),
            args=agent_args(tmp_path, method="grpo"),
            train_dataset=Dataset.from_list([{"prompt": "hi"}] * 4),
            processing_class=tiny_tokenizer,
            skill_bank=BANK,
        )


class ToolEnv:
    """An environment in TRL's environment_factory style: reset() plus methods the model calls as tools."""

    def reset(self, **kwargs):
        return None

    def move(self, direction: str) -> str:
        """Move.

        Args:
            direction: where to go.
        """
        return "moved"


@pytest.mark.parametrize(
    ("kwargs", "needles"),
    [
        # A task dataset without env_factory used to fail on a missing 'privileged_context' column.
        ({}, ["no 'prompt' column", "agent mode", "env_factory="]),
        ({"method": "grpo"}, ["no 'prompt' column", "agent mode", "env_factory="]),
        # TRL's environment_factory given our AgentEnvironment: named as such, with the difference explained.
        ({"environment_factory": KeyDoorEnv}, ["environment_factory", "TRL", "env_factory=KeyDoorEnv", "tools"]),
        (
            {"environment_factory": functools.partial(ScriptedEnv, length=2)},
            ["environment_factory", "TRL", "env_factory="],
        ),
    ],
)
def test_agent_mode_mistakes_without_env_factory_are_named(tmp_path, tiny_tokenizer, kwargs, needles):
    kwargs = dict(kwargs)
    method = kwargs.pop("method", "sdar")
    with pytest.raises(ValueError) as info:
        SDARTrainer(
            build_tiny_model(tiny_tokenizer),
            args=agent_args(tmp_path, method=method),
            train_dataset=Dataset.from_list([{"seed": i} for i in range(4)]),
            processing_class=tiny_tokenizer,
            **kwargs,
        )
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


def test_trl_environment_given_as_env_factory_is_named(tmp_path, tiny_tokenizer):
    with pytest.raises(TypeError, match=r"lacks \['step', 'close'\].*TRL's environment_factory.*environment_factory="):
        make_agent_trainer(tmp_path, tiny_tokenizer, env_factory=ToolEnv)


def test_empty_skill_bank_is_rejected(tmp_path, tiny_tokenizer):
    with pytest.raises(ValueError, match=r"skill_bank is empty.*plain GRPO.*distill_loss"):
        make_agent_trainer(tmp_path, tiny_tokenizer, skill_bank=SkillBank())


def test_empty_skill_bank_is_fine_for_grpo_and_facts(tmp_path, tiny_tokenizer):
    make_agent_trainer(tmp_path, tiny_tokenizer, skill_bank=SkillBank(), method="grpo")
    make_agent_trainer(tmp_path, tiny_tokenizer, skill_bank=SkillBank(), privileged_context_source="skills+facts")


def test_skill_bank_matching_no_task_type_warns_on_the_first_batch(tmp_path, tiny_tokenizer):
    # ScriptedEnv's task types are type0/type1; this bank only knows "unlock" and has no general skills, so every
    # teacher prompt would equal the student's: SDAR silently trained as GRPO with distill_loss = 0.
    bank = SkillBank.from_dict(
        {"task_specific_skills": {"unlock": [{"title": "Key", "principle": "Key first.", "when_to_apply": "Doors."}]}}
    )
    trainer = make_agent_trainer(tmp_path, tiny_tokenizer, skill_bank=bank, max_steps=2)
    patch_generation(trainer, lambda text, call, position: GO)
    with pytest.warns(UserWarning, match=r"task types \['type0'\].*\['unlock'\].*distill_loss = 0") as record:
        trainer.train()
    assert len([w for w in record if "task type" in str(w.message)]) == 1  # once, not every batch


# ---------------------------------------------------------------------------------------------- real model
@pytest.mark.integration
def test_end_to_end_training_and_evaluation(tmp_path, tiny_tokenizer):
    tasks = Dataset.from_list([{"seed": i} for i in range(16)])
    trainer = SDARTrainer(
        build_tiny_model(tiny_tokenizer),
        args=agent_args(tmp_path, max_steps=3, per_device_eval_batch_size=4),
        train_dataset=tasks,
        eval_dataset=tasks.select(range(6)),
        processing_class=tiny_tokenizer,
        env_factory=KeyDoorEnv,
        skill_bank=BANK,
        eval_env_factory=lambda: KeyDoorEnv(num_rooms=4),  # e.g. a held-out split
    )
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    train_logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(train_logs) == 3
    for entry in train_logs:
        for key in (*SDAR_METRICS, *ENV_METRICS):
            assert key in entry, key
        assert entry["env/episodes"] == 4
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))
    metrics = trainer.evaluate()
    assert metrics["eval_env/episodes"] == 6
    # Per-task outcomes: one episode per eval task, in task order, and they add up to the logged success.
    assert [episode.row["seed"] for episode in trainer.eval_episodes] == list(tasks.select(range(6))["seed"])
    assert sum(episode.won for episode in trainer.eval_episodes) / 6 == pytest.approx(metrics["eval_env/success"])
    for key in ("eval_env/success", "eval_env/invalid_action_rate", "eval_env/episode_length"):
        assert key in metrics and key in trainer.state.log_history[-1]
    assert any(key.startswith("eval_env/success/") for key in metrics)
    assert trainer.model.training  # evaluate() restores train mode
    assert trainer._envs.eval and all(env.num_rooms == 4 for env in trainer._envs.eval)


@pytest.mark.integration
@pytest.mark.parametrize("teacher_mode", ["live", "ema"])
def test_resume_from_checkpoint_continues_identically(tmp_path, tiny_tokenizer, teacher_mode):
    def run(output_dir, resume=None):
        trainer = SDARTrainer(
            build_tiny_model(tiny_tokenizer),
            args=agent_args(
                output_dir,
                max_steps=3,
                save_strategy="steps",
                save_steps=2,
                teacher_mode=teacher_mode,
                teacher_ema_rate=0.5,
            ),
            train_dataset=Dataset.from_list([{"seed": i} for i in range(16)]),
            processing_class=tiny_tokenizer,
            env_factory=KeyDoorEnv,
            skill_bank=BANK,
        )
        trainer.train(resume_from_checkpoint=resume)
        return {entry["step"]: entry for entry in trainer.state.log_history if "loss" in entry}

    full = run(tmp_path / "full")
    resumed = run(tmp_path / "resumed_copy", resume=str(tmp_path / "full" / "checkpoint-2"))
    assert set(resumed) == {1, 2, 3}  # steps 1-2 come from the checkpoint's trainer state
    assert resumed[2] == full[2]
    for key in ("loss", "grad_norm", "sdar/distill_loss", "env/invalid_action_rate"):
        assert resumed[3][key] == pytest.approx(full[3][key], rel=1e-5, abs=1e-9), key
    state = json.loads((tmp_path / "full" / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["global_step"] == 2


@pytest.mark.parametrize(
    "config",
    [
        {"method": "grpo"},
        {"method": "grpo_opsd"},
        {"method": "opsd"},
        {"method": "skill_sd"},
        {"method": "rlsd"},
        {"method": "skill_grpo"},
        {"method": "sdar", "loss_type": "bnpo", "entropy_coef": 0.001, "beta": 0.01},
        {"method": "sdar", "steps_per_generation": 2, "gradient_accumulation_steps": 1},
    ],
    ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()),
)
def test_every_method_trains_in_agent_mode(tmp_path, tiny_tokenizer, config):
    from peft import LoraConfig

    # Scripted responses: odd positions of each generation call win. Step 1 wins copies 1 and 3; step 2 sees copies
    # 0 and 2 and wins copy 2: 3 of 4 episodes won, so advantages (and the policy gradient) are non-zero.
    # In eval mode, as `from_pretrained` returns a model: the first rollout must still count as training (its
    # metrics, e.g. RLSD's, logged under train, not lost to the eval bucket).
    model = build_tiny_model(tiny_tokenizer).eval()
    trainer = SDARTrainer(
        model,
        args=agent_args(tmp_path, max_steps=1, **config),
        train_dataset=Dataset.from_list([{"seed": i} for i in range(8)]),
        processing_class=tiny_tokenizer,
        env_factory=lambda: ScriptedEnv(length=2),
        skill_bank=BANK,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
        if config.get("beta")
        else None,
    )
    patch_generation(trainer, lambda text, call, position: WIN if position % 2 else GO)
    trainable = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 1 and logs[0]["env/success"] == 0.75
    assert any(not torch.equal(p, trainable[n]) for n, p in trainer.model.named_parameters() if n in trainable)
    if trainer.args.distill_coef > 0:
        assert "sdar/distill_loss" in logs[0] and "sdar/teacher_gap_mean" in logs[0]
    if config["method"] == "rlsd":
        assert logs[0]["sdar/rlsd_weight"] == 0.5 and "sdar/teacher_gap_mean" in logs[0]
