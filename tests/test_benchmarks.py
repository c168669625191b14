"""Benchmark scripts run and honour their output contract (they are not timed here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_env_speed_prints_one_json_line():
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "env_speed.py"), "--seconds", "0.2"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "env_speed"
    assert {r["env"] for r in result["results"]} == {"alfworld-mini", "webshop-mini", "searchqa-mini"}
    assert all(r["steps"] > 0 and r["steps_per_second"] > 0 for r in result["results"])
    assert "steps/s" in completed.stderr


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from sdar_trl.testing import save_tiny

    return str(save_tiny(tmp_path_factory.mktemp("tiny") / "model"))


@pytest.mark.integration
def test_table1_writes_its_output_contract(tmp_path, tiny_model_dir):
    """Two methods x one seed on searchqa-mini (4 turns), one optimizer step: table1.json, table1.md, JSON line."""
    command = [sys.executable, str(ROOT / "benchmarks" / "table1.py"), "--model", tiny_model_dir]
    command += ["--envs", "searchqa-mini", "--methods", "starter,sdar", "--seeds", "1", "--max_steps", "1"]
    command += ["--eval_tasks", "2", "--output_dir", str(tmp_path)]
    completed = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    record = json.loads(completed.stdout.strip().splitlines()[-1])
    assert record["benchmark"] == "table1" and set(record["summary"]["searchqa-mini"]) == {"starter", "sdar"}
    runs = json.loads((tmp_path / "table1.json").read_text())["runs"]
    assert [(r["method"], r["steps"]) for r in runs] == [("starter", 0), ("sdar", 1)]
    for run in runs:
        assert {"env", "method", "seed", "success", "success_by_task_type", "steps", "wall_s"} <= set(run)
        assert 0.0 <= run["success"] <= 1.0 and run["eval_tasks"] == 2
        assert run["eval_first_seed"] == 24  # past the held-out tasks the starter build was chosen on
    assert runs[1]["curve"] and "env/success" in runs[1]["curve"][0]
    table = (tmp_path / "table1.md").read_text()
    assert "| Starter (no training) |" in table and "| SDAR |" in table
    assert "overridden by --max_steps 1 --eval_tasks 2" in table  # the header says what actually ran
    # A rerun skips the runs already recorded (it only re-renders the table).
    again = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    assert "seed 0: success" not in again.stderr
    assert len(json.loads((tmp_path / "table1.json").read_text())["runs"]) == 2


@pytest.mark.integration
def test_step_cost_prints_the_ratio_keys(tiny_model_dir):
    command = [sys.executable, str(ROOT / "benchmarks" / "step_cost.py"), "--model", tiny_model_dir]
    command += ["--env", "searchqa-mini", "--steps", "1", "--warmup", "0", "--max_completion_length", "16"]
    completed = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    record = json.loads(completed.stdout.strip().splitlines()[-1])
    assert {"full_step_ratio", "loss_path_ratio", "peak_memory_ratio", "env_time_share"} <= set(record)
    assert record["full_step_ratio"] > 0 and record["loss_path_ratio"] > 0 and record["peak_memory_ratio"] > 0
    assert 0.0 <= record["env_time_share"] <= 1.0
    assert record["runs"]["sdar"]["step_samples"] == record["runs"]["grpo"]["step_samples"]  # same first rollout
    assert "full step" in completed.stderr
    assert record["teacher_prefix_cache"] is True


@pytest.mark.integration
def test_teacher_forward_times_both_paths_and_they_agree(tiny_model_dir):
    command = [sys.executable, str(ROOT / "benchmarks" / "teacher_forward.py"), "--model", tiny_model_dir]
    command += ["--tasks", "2", "--copies", "2", "--repeats", "1"]
    completed = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    record = json.loads(completed.stdout.strip().splitlines()[-1])
    assert record["benchmark"] == "teacher_forward" and record["distinct_prefixes"] == 2
    assert record["max_abs_logp_diff"] < 1e-4  # the cache changes the cost, not the log-probs
    assert record["full_s"] > 0 and record["cached_s"] > 0 and record["student_s"] > 0
    assert record["cached_over_full"] == pytest.approx(record["cached_s"] / record["full_s"])
    assert "shared-prefix cache" in completed.stderr
