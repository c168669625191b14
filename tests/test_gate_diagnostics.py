"""Gate diagnostics in real tiny training (`gate_diagnostics=True`): split metrics, token dumps, report files.

The "model" is scripted (`patch_generation`) so that the responses, hence the token classes and outcomes, are known;
log-probs, the teacher forward, the loss and the optimizer steps run for real.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from datasets import Dataset

from agent_constants import GO, WIN, skill_bank
from sdar_trl import SDARConfig, SDARTrainer, gate_branch
from sdar_trl.diagnostics import TOKEN_CLASSES
from sdar_trl.report import write_run_report
from sdar_trl.testing import (
    ScriptedEnv,
    build_tiny_model,
    patch_generation,
    tiny_agent_config,
    tiny_single_turn_config,
)

pytestmark = pytest.mark.integration

BANK = skill_bank()
SPLIT = [f"sdar/gate_mean/{x}" for x in (*TOKEN_CLASSES, "success", "failure")]
SPLIT += [key.replace("gate_mean", "gate_active_ratio") for key in SPLIT]


def _agent_run(tmp_path, tiny_tokenizer, **overrides) -> SDARTrainer:
    torch.manual_seed(0)
    trainer = SDARTrainer(
        build_tiny_model(tiny_tokenizer),
        args=tiny_agent_config(tmp_path, **overrides),
        train_dataset=Dataset.from_list([{"seed": i} for i in range(8)]),
        processing_class=tiny_tokenizer,
        env_factory=lambda: ScriptedEnv(length=3),
        skill_bank=BANK,
    )

    def respond(text: str, call: int, position: int) -> str:
        # Trajectories 0 and 2 win at their second step, 1 and 3 play on (one malformed step), so each task group has
        # a success and a failure.
        return [GO, "garbage", GO, GO][position % 4] if call % 3 == 0 or position % 2 else WIN

    patch_generation(trainer, respond)
    trainer.train()
    return trainer


def _record_micro_batches(monkeypatch) -> list[dict[str, float]]:
    """Per micro-batch (compute_loss call) of the next run: its batch gate mean and its split means (NaN: no token)."""
    calls: list[dict[str, float]] = []
    log_sdar_stats, finish = SDARTrainer._log_sdar_stats, gate_branch.finish_split_stats

    def keep_gate_mean(self, mode, stats, mask):
        if "distill_loss" in stats:  # the loss's call (RLSD's has no distill_loss)
            calls.append({"gate_mean": float(stats["gate_mean"])})
        return log_sdar_stats(self, mode, stats, mask)

    def keep_split(sums, counts):
        means = finish(sums, counts)
        calls[-1].update(means)
        return means

    monkeypatch.setattr(SDARTrainer, "_log_sdar_stats", keep_gate_mean)
    monkeypatch.setattr(gate_branch, "finish_split_stats", keep_split)
    return calls


def _train_logs(trainer: SDARTrainer) -> list[dict]:
    return [entry for entry in trainer.state.log_history if "loss" in entry]


def test_agent_mode_logs_split_gate_metrics_and_writes_token_dumps(tmp_path, tiny_tokenizer, monkeypatch):
    calls = _record_micro_batches(monkeypatch)
    trainer = _agent_run(tmp_path / "on", tiny_tokenizer, gate_diagnostics=True, gate_diagnostics_every=1)
    logs = _train_logs(trainer)
    assert len(logs) == 2
    for entry in logs:
        for key in ("reasoning", "action", "format", "success", "failure"):
            assert 0.0 < entry[f"sdar/gate_mean/{key}"] < 1.0, key
            assert 0.0 <= entry[f"sdar/gate_active_ratio/{key}"] <= 1.0, key
    assert len(calls) >= 4  # several chunks per step: the check below runs per chunk
    for values in calls:
        # Every distillation token is in exactly one class and one outcome: a micro-batch's gate mean is a
        # token-weighted average of its class means, and of its outcome means.
        for groups in (TOKEN_CLASSES, ("success", "failure")):
            means = [values[f"gate_mean/{g}"] for g in groups if not math.isnan(values[f"gate_mean/{g}"])]
            assert min(means) - 1e-6 <= values["gate_mean"] <= max(means) + 1e-6
    assert any("sdar/gate_mean/other" in entry for entry in logs)  # the "garbage" responses

    lines = (tmp_path / "on" / "gate_tokens.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["step"] for r in records] == [1] * 4 + [2] * 4  # every step (gate_diagnostics_every=1), 4 samples
    for step in (1, 2):  # distinct samples: two trajectories that played the same step the same way count once
        shown = [(r["prompt_tail"], tuple(r["tokens"])) for r in records if r["step"] == step]
        assert len(set(shown)) == len(shown)
    for record in records:
        text = "".join(record["tokens"])
        assert text.endswith("<|im_end|>") and record["classes"][-1] == "format"  # EOS is a format token
        response = text.removesuffix("<|im_end|>")
        assert response in (GO, WIN, "garbage")
        if response == WIN:
            assert record["outcome"] == "success"  # "win" ends ScriptedEnv's episode with a win
        if response == "garbage":
            assert set(record["classes"][:-1]) == {"other"}
        else:
            action = "".join(t for t, c in zip(record["tokens"], record["classes"], strict=True) if c == "action")
            assert action == response.split("<action>")[1].removesuffix("</action>")
            assert "reasoning" in record["classes"]
        # The dumped gate is the loss's gate of the dumped Δ: g = sigmoid(β Δ), β = 5.
        for gate, delta in zip(record["gate"], record["delta"], strict=True):
            assert gate == pytest.approx(1 / (1 + math.exp(-5.0 * delta)), abs=1e-4)
        assert "obs" in record["prompt_tail"]
    page = (tmp_path / "on" / "gate_tokens.html").read_text(encoding="utf-8")
    assert "Step 2" in page and "Step 1" in page and 'title="action · gate' in page

    write_run_report(tmp_path / "on", trainer.state.log_history, title="gate run")
    report = (tmp_path / "on" / "report.md").read_text(encoding="utf-8")
    assert "## Gate diagnostics" in report and "[gate_tokens.html](gate_tokens.html)" in report
    for name in ("gate_split.png", "gate_heatmap.png"):
        assert (tmp_path / "on" / name).stat().st_size > 1000 and f"![{name}]({name})" in report


def test_gate_diagnostics_change_no_training_value(tmp_path, tiny_tokenizer):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one reduction order: bit-identical runs
    try:
        off = _train_logs(_agent_run(tmp_path / "off", tiny_tokenizer))
        on = _train_logs(_agent_run(tmp_path / "on", tiny_tokenizer, gate_diagnostics=True))
    finally:
        torch.set_num_threads(threads)
    for before, after in zip(off, on, strict=True):
        assert set(after) - set(before) == set(SPLIT)
        for key, value in before.items():
            if key not in ("step_time", "epoch") and not key.startswith("train_"):
                assert after[key] == value, key
    assert not (tmp_path / "off" / "gate_tokens.jsonl").exists()
    # gate_diagnostics_every=10 by default: a 2-step run dumps its first step only.
    assert {json.loads(line)["step"] for line in (tmp_path / "on" / "gate_tokens.jsonl").open()} == {1}


def test_single_turn_outcomes_come_from_the_advantage_sign(tmp_path, tiny_tokenizer):
    rows = [
        {"prompt": [{"role": "user", "content": f"What is {i} + {i}?"}], "privileged_context": "Add."}
        for i in range(4)
    ]
    args = tiny_single_turn_config(
        tmp_path,
        per_device_train_batch_size=8,
        max_completion_length=16,
        gate_diagnostics=True,
        gate_diagnostics_every=1,
    )
    trainer = SDARTrainer(
        build_tiny_model(tiny_tokenizer),
        # Long completions score higher: the reasoned answer beats the bare one within every group.
        reward_funcs=lambda completions, **kwargs: [len(c[0]["content"]) / 10.0 for c in completions],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tiny_tokenizer,
    )
    patch_generation(trainer, lambda text, call, position: "<think>add them</think>4" if position % 2 else "4")
    trainer.train()
    for entry in _train_logs(trainer):
        # Single-turn text has no action: no token, so the action keys are never logged (not logged as None).
        assert set(SPLIT) - set(entry) == {"sdar/gate_mean/action", "sdar/gate_active_ratio/action"}
        assert all(isinstance(entry[key], float) for key in SPLIT if key in entry)
    records = [json.loads(line) for line in (tmp_path / "gate_tokens.jsonl").open()]
    assert records and {r["step"] for r in records} == {1, 2}
    for record in records:
        reasoned = "".join(record["tokens"]).startswith("<think>")
        assert record["outcome"] == ("success" if reasoned else "failure")
        assert set(record["classes"]) == ({"format", "reasoning", "other"} if reasoned else {"format", "other"})


@pytest.mark.parametrize("method", ["grpo", "skill_sd", "rlsd"])
def test_gate_diagnostics_without_a_gate_warn(tmp_path, method):
    with pytest.warns(UserWarning, match=f"gate_diagnostics=True has no effect with method='{method}'"):
        SDARConfig(output_dir=str(tmp_path), method=method, gate_diagnostics=True, report_to="none", bf16=False)


def test_gate_diagnostics_every_must_not_be_negative(tmp_path):
    with pytest.raises(ValueError, match="gate_diagnostics_every=-1 must be >= 0"):
        SDARConfig(output_dir=str(tmp_path), gate_diagnostics_every=-1, report_to="none", bf16=False)
