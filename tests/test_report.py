"""Run reports and the agent-mode progress display."""

from __future__ import annotations

import io
import json

import pytest
from datasets import Dataset
from rich.console import Console

from sdar_trl import SDARConfig, SDARTrainer
from sdar_trl.callbacks import AgentProgressCallback
from sdar_trl.environments.toy import KeyDoorEnv
from sdar_trl.report import write_run_report
from sdar_trl.skills import Skill, SkillBank
from sdar_trl.testing import build_tiny_model

LOG = [
    {"loss": 0.1, "env/success": 0.25, "env/reward": 0.2, "sdar/gate_mean": 0.48, "sdar/teacher_gap_mean": -0.1,
     "env/episodes/unlock": 4.0, "step": 1},
    {"loss": 0.05, "env/success": 0.5, "env/reward": 0.45, "sdar/gate_mean": 0.51, "sdar/teacher_gap_mean": 0.0,
     "step": 2},
]  # fmt: skip


def test_report_files_and_table(tmp_path):
    content = write_run_report(
        tmp_path,
        LOG,
        before={"eval_before_env/success": 0.2, "eval_before_env/episodes": 20.0, "eval_before_runtime": 1.0},
        after={
            "eval_env/success": 0.4,
            "eval_env/episodes": 20.0,
            "eval_env/success/unlock": 0.5,
            "eval_env/episodes/unlock": 10.0,
            "eval_env/episode_length": 3.25,
        },
        title="toy run",
        details={"env": "toy-keys", "method": "sdar"},
    )
    assert content["before"] == {"env/success": 0.2, "env/episodes": 20.0} and content["after"]["env/success"] == 0.4
    assert json.loads((tmp_path / "metrics.json").read_text())["log_history"][1]["step"] == 2
    report = (tmp_path / "report.md").read_text()
    # Wilson 95 % intervals, by hand: 4/20 -> [0.0807, 0.4160]; 8/20 -> [0.2188, 0.6134]; 5/10 -> [0.2366, 0.7634].
    assert "| `env/success` | 20.0 % (4/20; 95 % CI 8.1–41.6) | 40.0 % (8/20; 95 % CI 21.9–61.3) | +20.0 |" in report
    assert "| `env/success/unlock` | — | 50.0 % (5/10; 95 % CI 23.7–76.3) | — |" in report
    assert "| `env/episode_length` | — | 3.250 | |" in report
    assert "env/episodes/unlock" not in report  # counts feed the intervals, they are not rows
    assert "- **method**: sdar" in report
    for name in ("curves.png", "success_by_task_type.png"):
        assert (tmp_path / name).stat().st_size > 1000 and f"![{name}]({name})" in report


def test_report_without_counts_shows_the_rate_alone(tmp_path):
    write_run_report(tmp_path, LOG[:1], before={"eval_before_env/success": 0.25}, after={"eval_env/success": 0.5})
    report = (tmp_path / "report.md").read_text()
    assert "| `env/success` | 25.0 % | 50.0 % | +25.0 |" in report


@pytest.mark.parametrize("terminal", [True, False])
def test_progress_callback_draws_rollout_training_and_evaluation(tmp_path, tiny_tokenizer, terminal):
    out = io.StringIO()
    progress = AgentProgressCallback(Console(file=out, force_terminal=terminal, width=100))
    trainer = SDARTrainer(
        build_tiny_model(tiny_tokenizer),
        args=SDARConfig(
            output_dir=str(tmp_path),
            per_device_train_batch_size=4,
            num_generations=2,
            max_completion_length=8,
            max_steps=1,
            logging_steps=1,
            report_to="none",
            bf16=False,
            disable_tqdm=True,
            max_steps_per_episode=2,
        ),
        train_dataset=Dataset.from_list([{"seed": i} for i in range(4)]),
        eval_dataset=Dataset.from_list([{"seed": i} for i in range(2)]),
        processing_class=tiny_tokenizer,
        env_factory=KeyDoorEnv,
        skill_bank=SkillBank(general=[Skill("Look", "Read the room.", "Always.")]),
        callbacks=[progress],
    )
    trainer.train()
    trainer.evaluate()
    progress.stop()
    text = out.getvalue()
    if terminal:
        assert "Training" in text and "Rollout" in text and "Evaluation" in text
    else:  # redirected to a file: plain lines as they happen, no escape codes
        lines = text.splitlines()
        assert lines[0] == "[train] 1 optimizer steps" and "\x1b[" not in text
        assert any(line.startswith("[train] step 1/1: env/success ") for line in lines)
        assert "[eval] 2/2 episodes" in lines
        assert any(line.startswith("[eval] step 1/1: eval_env/success ") for line in lines)
