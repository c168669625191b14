"""Episode mode: an AgentEnvironment as TRL's `environment_factory` (sdar_trl.environments.trl_adapter) under SDAR.

The tiny random model never writes a tool call by itself, so the trainer tests script the generation
(`patch_generation`): everything after it (TRL's tool loop, `tool_mask`, rewards, teacher and loss) runs for real.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset

from sdar_trl import SDARTrainer
from sdar_trl.environments import TRLEnvironment, episode_reward, make_env, trl_environment
from sdar_trl.testing import ScriptedEnv, build_tiny_model, patch_generation, tiny_agent_config

CONTEXT = "The answer is win."


def _rows(count: int = 4) -> list[dict]:
    prompt = [{"role": "user", "content": "Play the game."}]
    return [{"prompt": prompt, "seed": i, "privileged_context": CONTEXT} for i in range(count)]


def _tool_call(action: str) -> str:
    return "<tool_call>\n" + json.dumps({"name": "act", "arguments": {"action": action}}) + "\n</tool_call>"


def _respond(text: str, call: int, position: int) -> str:
    """Even calls start an episode: rows 0 and 2 win, rows 1 and 3 make a non-final move; odd calls follow the tool."""
    if call % 2 == 0:
        return _tool_call("win" if position % 2 == 0 else "go")
    return "done"


def _trainer(tmp_path, tokenizer, **overrides):
    # TRL gives a tool-calling trainer's tokenizer a response template (add_response_schema mutates it), which would
    # change how every later test sharing the session's tokenizer parses completions: train on a copy.
    tokenizer = copy.deepcopy(tokenizer)
    args = tiny_agent_config(
        tmp_path / "out",
        max_completion_length=128,
        max_tool_calling_iterations=3,
        **overrides,
    )
    return SDARTrainer(
        build_tiny_model(tokenizer),
        args=args,
        train_dataset=Dataset.from_list(_rows()),
        processing_class=tokenizer,
        environment_factory=trl_environment(ScriptedEnv, length=2),
    )


def test_sdar_trains_two_steps_through_environment_factory(tmp_path, tiny_tokenizer):
    trainer = _trainer(tmp_path, tiny_tokenizer)
    assert getattr(tiny_tokenizer, "response_template", None) is None  # the shared tokenizer is left as it was
    assert [tool.__name__ for tool in trainer.tools] == ["act"]  # reset/get_reward/private members are no tools
    assert trainer.reward_func_names == ["ScriptedEnvEpisode"]  # get_reward() is the only reward source
    seen = patch_generation(trainer, _respond)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()

    # The reset text follows the prompt; the tool output follows the tool call (row 1 of the first batch moved).
    assert re.search(r"Play the game\.\n\nobs \d-0\nAdmissible actions: go, win<", seen[0])
    assert re.search(r"<tool_response>\nobs \d-1\nAdmissible actions: go, win\n</tool_response>", seen[5])
    logged = [entry for entry in trainer.state.log_history if "sdar/gate_mean" in entry]
    assert len(logged) == 2
    for entry in logged:
        for name in ("sdar/distill_loss", "sdar/gate_mean", "sdar/gate_active_ratio", "sdar/teacher_gap_mean"):
            assert math.isfinite(entry[name]), (name, entry[name])
        assert 0.0 < entry["sdar/gate_mean"] < 1.0
        assert entry["tools/call_frequency"] == 1.0 and entry["tools/failure_frequency"] == 0.0
        # Two of the four episodes win (reward 1): the reward is the episode's, through get_reward().
        assert entry["rewards/ScriptedEnvEpisode/mean"] == pytest.approx(0.5)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))


def test_tool_output_tokens_get_no_distillation_weight(tmp_path, tiny_tokenizer):
    trainer = _trainer(tmp_path, tiny_tokenizer, max_steps=1)
    patch_generation(trainer, _respond)
    terms = []
    distill_term = trainer._distill_term

    def capture_term(student_logps, inputs, mask):
        terms.append((student_logps.detach().clone(), dict(inputs), mask.clone()))
        return distill_term(student_logps, inputs, mask)

    trainer._distill_term = capture_term
    trainer.train()

    student, batch, mask = terms[0]  # the loss's rows (TRL shuffles the generated batch before the loss)
    teacher = batch["teacher_per_token_logps"]
    tok = tiny_tokenizer
    sampled_after = len(tok("done", add_special_tokens=False)["input_ids"]) + 1  # + EOS
    positions = []  # (row, column) of every token the policy sampled, from the lengths above only
    for row in range(4):
        ids = batch["completion_ids"][row][batch["completion_mask"][row].bool()].tolist()
        tool_ids = [t for t, m in zip(ids, batch["tool_mask"][row].tolist(), strict=False) if m == 0]
        won = '"win"' in tok.decode(ids)
        call = tok(_tool_call("win" if won else "go"), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert ids[: len(call)] == call
        expected_tool = (
            "\n<|im_start|>user\n<tool_response>\nobs {seed}-1\n"
            + ("The episode is over. Task completed." if won else "Admissible actions: go, win")
            + "\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
        )
        seed = re.search(r"obs (\d+)-1", tok.decode(tool_ids)).group(1)
        assert tok.decode(tool_ids) == expected_tool.format(seed=seed)  # exactly the tool turn, nothing sampled
        first, tool_length = len(call), len(tool_ids)
        assert len(ids) == first + tool_length + sampled_after
        positions += [(row, c) for c in range(first)]
        positions += [(row, c) for c in range(first + tool_length, first + tool_length + sampled_after)]

    expected_mask = torch.zeros_like(mask)
    for row, column in positions:
        expected_mask[row, column] = 1
    assert torch.equal(mask, expected_mask)
    # The teacher saw the privileged context: its log-probs of the sampled tokens differ from the student's.
    assert not torch.allclose(teacher[mask.bool()], student[mask.bool()])
    # The gate statistics are means over the sampled tokens only (hand-computed at the positions above).
    rows, columns = zip(*positions, strict=True)
    gap = teacher[rows, columns] - student[rows, columns]  # (S,)
    gate = torch.sigmoid(trainer.args.gate_beta * gap)
    entry = next(e for e in trainer.state.log_history if "sdar/gate_mean" in e)
    assert entry["sdar/gate_mean"] == pytest.approx(gate.mean().item(), rel=1e-5)
    assert entry["sdar/teacher_gap_mean"] == pytest.approx(gap.mean().item(), rel=1e-4, abs=1e-7)
    # And the distillation gradient is exactly zero on every tool-output token.
    logps = student.clone().requires_grad_(True)
    loss, _ = trainer._distill_term(logps, {"teacher_per_token_logps": teacher}, mask)
    loss.backward()
    tool_positions = batch["completion_mask"].bool() & ~batch["tool_mask"].bool()
    assert tool_positions.sum() > 0
    assert torch.all(logps.grad[tool_positions] == 0)
    assert torch.all(logps.grad[mask.bool()] != 0)


@pytest.mark.parametrize("name", ["webshop-mini", "alfworld-mini", "searchqa-mini"])
def test_adapter_plays_the_expert_to_a_win(name):
    episode_class = trl_environment(name, split="train")
    episode = episode_class()
    reference = make_env(name, split="train")
    for seed in (0, 7):
        text = episode.reset(seed=seed, prompt="ignored column", privileged_context="also ignored")
        observation, info = reference.reset(seed=seed)
        assert text.startswith("\n\n" + observation)
        if info["admissible_actions"]:
            assert f"\nAdmissible actions: {info['admissible_actions'][0]}" in text
        expected_return = 0.0
        while not episode.done:
            action = reference.expert_action()
            _, reward, terminated, truncated, _ = reference.step(action)
            expected_return += reward
            reply = episode.act(action)
        assert terminated and not truncated
        assert reply.endswith("The episode is over. Task completed.")
        assert episode.won and episode.failure is None
        assert episode.get_reward() == expected_return > 0
        assert episode.act("anything") == "The episode is over; no more actions are accepted."
    assert episode_class.failed_episodes == 0


def test_a_raising_step_ends_the_episode_with_reward_zero_and_is_counted(caplog):
    episode_class = trl_environment(ScriptedEnv, length=5, fail_on_step=2)
    episode = episode_class()
    episode.reset(seed=3)
    assert episode.act("go") == "\n".join(["obs 3-1", "Admissible actions: go, win"])
    assert episode.act("go") == "The environment failed (RuntimeError); the episode is over."
    assert episode.done and episode.failure == "step: RuntimeError: scripted failure on step 2"
    assert episode.get_reward() == 0.0 and episode_class.failed_episodes == 1
    assert episode.act("win") == "The episode is over; no more actions are accepted."
    assert "scripted failure on step 2" in caplog.text

    # A malformed step result and a raising reset fail the same way; the next reset starts a clean episode.
    garbage = trl_environment(ScriptedEnv, garbage_on_step=1)()
    garbage.reset(seed=0)
    garbage.act("go")
    assert garbage.failure is not None and garbage.failure.startswith("step: EnvOutputError")
    broken = trl_environment(ScriptedEnv, fail_on_reset=True, name="Broken")()
    assert broken.reset(seed=0).endswith("the episode is over.") and broken.get_reward() == 0.0
    assert type(broken).__name__ == "Broken" and type(broken).failed_episodes == 1
    assert episode_class.failed_episodes == 1  # counted per class
    episode.reset(seed=4)
    assert episode.failure is None and not episode.done
    episode.act("win")
    assert episode.get_reward() == 1.0


def test_episode_reward_scores_and_logs_the_episodes():
    plain = trl_environment(ScriptedEnv, length=2, fail_on_step=None, get_reward=False)
    assert not hasattr(plain, "get_reward") and issubclass(plain, TRLEnvironment)
    won, lost = plain(), plain()
    won.reset(seed=0)
    won.act("win")
    lost.reset(seed=1)
    lost.act("go")
    lost.act("go")  # the length limit: truncated, not won
    failing = trl_environment(ScriptedEnv, fail_on_step=1, get_reward=False)()
    failing.reset(seed=2)
    failing.act("win")
    logged: dict[str, float] = {}
    rewards = episode_reward([[]] * 3, environments=[won, lost, failing], log_metric=logged.__setitem__)
    assert rewards == [1.0, 0.0, 0.0]
    assert logged == {"env/success": 1 / 3, "env/episode_length": 1.0, "env/failed_episodes": 1 / 3}
    with pytest.raises(ValueError, match="environments= argument"):
        episode_reward([[]])


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="got 3 "):
        trl_environment(3)
    with pytest.raises(ValueError, match="max_steps must be a positive int or None, got 0"):
        trl_environment("toy-keys", max_steps=0)
    with pytest.raises(TypeError, match=r"column 'seed' must hold int task seeds, got '3' \(str\)"):
        trl_environment(ScriptedEnv)().reset(seed="3")
    limited = trl_environment(ScriptedEnv, length=10, max_steps=2)()
    limited.reset(seed=0)
    limited.act("go")
    assert limited.act("go").endswith("The episode is over. Task not completed.") and limited.done


@pytest.mark.integration
def test_example_trains_in_episode_mode(tmp_path):
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    completed = subprocess.run(
        [sys.executable, str(root / "examples" / "trl_environment_factory.py"), "--output_dir", str(tmp_path / "out"),
         "--env", "alfworld-mini", "--max_steps", "1", "--train_tasks", "2", "--max_completion_length", "32"],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    for name in ("rewards/episode_reward/mean", "env/success", "env/failed_episodes", "sdar/gate_mean"):
        assert f"'{name}'" in completed.stdout, name
    assert "failed episodes: 0" in completed.stdout
    assert (tmp_path / "out" / "model.safetensors").is_file()
