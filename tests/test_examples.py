"""The example scripts run end to end (tiny budget, tiny model), alone and data-parallel on 2 CPU processes.

On a machine without GPUs, `accelerate launch --multi_gpu --num_processes 2` starts two processes that join a gloo
group on CPU (accelerate's `--cpu` launcher starts a single process unless MPI is set up).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sdar_trl.testing import save_tiny

ROOT = Path(__file__).resolve().parents[1]
TINY_BUDGET = [
    "--max_steps", "2", "--train_tasks", "8", "--eval_tasks", "4", "--per_device_train_batch_size", "4",
    "--num_generations", "2", "--max_completion_length", "16", "--cpu_threads", "1",
    # a tiny model is not a starter, so it gets the paper's settings: 16 accumulation steps, 50-turn episodes
    "--gradient_accumulation_steps", "1", "--max_steps_per_episode", "6",
]  # fmt: skip
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}


def _check_outputs(output_dir: Path, stdout: str, base_model: str) -> None:
    assert "Eval success before training:" in stdout and "after training:" in stdout
    for name in ("metrics.json", "report.md", "README.md", "model.safetensors", "success_by_task_type.png"):
        assert (output_dir / name).is_file(), name
    card = (output_dir / "README.md").read_text()
    assert f"a fine-tuned version of `{base_model}`" in card and "arXiv:2605.15155" in card
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert "env/success" in metrics["before"] and "env/success" in metrics["after"]
    assert "| metric | before training | after training |" in (output_dir / "report.md").read_text()


@pytest.mark.integration
@pytest.mark.parametrize("script", ["webshop.py", "alfworld.py", "search_qa.py"])
def test_example_runs_and_writes_the_report(tmp_path, script):
    model = save_tiny(tmp_path / "model")
    out = tmp_path / "out"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), "--model_name_or_path", str(model),
         "--output_dir", str(out), *TINY_BUDGET],
        capture_output=True, text=True, env=ENV, timeout=600, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    _check_outputs(out, completed.stdout, str(model))


@pytest.mark.integration
def test_example_trains_the_micro_starter_by_its_short_name(tmp_path):
    """The packaged micro starter goes through the same path as any model: 2 optimizer steps, offline."""
    out = tmp_path / "out"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "alfworld.py"), "--model_name_or_path", "micro:alfworld-mini",
         "--output_dir", str(out), *TINY_BUDGET],
        capture_output=True, text=True, env=ENV, timeout=600, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    _check_outputs(out, completed.stdout, "micro:alfworld-mini")
    # Redirected: one plain progress line per step, not transformers' log dicts.
    assert "[train] step 2/2: env/success" in completed.stdout and "{'loss'" not in completed.stdout
    logs = json.loads((out / "metrics.json").read_text())["log_history"]
    assert [entry["step"] for entry in logs if "env/episodes" in entry] == [1, 2]


@pytest.mark.slow
def test_example_runs_data_parallel_on_two_cpu_processes(tmp_path):
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if accelerate is None:
        pytest.skip("accelerate CLI not installed")
    model = save_tiny(tmp_path / "model")
    out = tmp_path / "out"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    completed = subprocess.run(
        [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", str(port),
         str(ROOT / "examples" / "webshop.py"), "--model_name_or_path", str(model), "--output_dir", str(out),
         *TINY_BUDGET],
        capture_output=True, text=True, env=ENV, timeout=900, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    _check_outputs(out, completed.stdout, str(model))
    logs = json.loads((out / "metrics.json").read_text())["log_history"]
    assert any(entry.get("env/episodes") == 8 for entry in logs)  # 2 processes × 4 trajectories


@pytest.fixture
def common(monkeypatch):
    """examples/_common.py as a module."""
    import importlib.util

    for name in ("HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY", "TRL_EXPERIMENTAL_SILENCE"):  # set at import
        monkeypatch.setenv(name, "1")
    spec = importlib.util.spec_from_file_location("examples_common", ROOT / "examples" / "_common.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "examples_common", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_a_run_never_silently_overwrites_another(common, tmp_path):
    run = tmp_path / "webshop-mini-sdar"
    choose = common.choose_output_dir
    assert choose(str(run), explicit=False, overwrite=False, resuming=False) == str(run)  # does not exist yet
    run.mkdir()
    (run / "runs").mkdir()  # a directory without a run's files is free
    assert choose(str(run), explicit=True, overwrite=False, resuming=False) == str(run)
    (run / "report.md").write_text("earlier run")
    assert choose(str(run), explicit=False, overwrite=False, resuming=False) == f"{run}-2"
    (tmp_path / "webshop-mini-sdar-2").mkdir()
    (tmp_path / "webshop-mini-sdar-2" / "checkpoint-5").mkdir()
    assert choose(str(run), explicit=False, overwrite=False, resuming=False) == f"{run}-3"
    with pytest.raises(SystemExit, match=r"already holds another run.*--overwrite_output_dir true"):
        choose(str(run), explicit=True, overwrite=False, resuming=False)
    assert choose(str(run), explicit=True, overwrite=True, resuming=False) == str(run)
    assert choose(str(run), explicit=True, overwrite=False, resuming=True) == str(run)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[1]", r"--env_kwargs '\[1\]' is a JSON list, not an object; expected e\.g\."),
        ("{bad", r"--env_kwargs '\{bad' is not valid JSON .*expected a JSON object"),
        ("max_episode_steps=8", r"not valid JSON"),
    ],
)
def test_env_kwargs_that_is_not_a_json_object_is_a_clear_error(common, text, match):
    with pytest.raises(SystemExit, match=match):
        common.parse_env_kwargs(text)
    assert common.parse_env_kwargs('{"max_episode_steps": 8}') == {"max_episode_steps": 8}


def test_cpu_threads_split_the_cores_over_the_local_processes(common, monkeypatch):
    """accelerate launch exports OMP_NUM_THREADS=1; the examples use the cores instead (docs/starter.md)."""
    monkeypatch.setattr(common.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert common.cpu_threads_per_process() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert common.cpu_threads_per_process() == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert common.cpu_threads_per_process() == 1
    assert common.cpu_threads_per_process(3) == 3
    with pytest.raises(ValueError, match="cpu_threads=-1"):
        common.cpu_threads_per_process(-1)


def test_micro_demo_defaults_follow_the_environment_of_the_starter(common):
    from sdar_trl.starter import DEMO_ENVS

    for env in ("alfworld-mini", "webshop-mini", "searchqa-mini"):
        _, defaults = common.demo_defaults(["--model_name_or_path", f"micro:{env}"], "alfworld-mini")
        limit = DEMO_ENVS[env].get("max_episode_steps", 4)  # searchqa-mini: the environment's own 4 turns
        assert defaults["max_steps_per_episode"] == limit, env  # the episode is never cut before the env ends it
        assert defaults["eval_tasks"] >= 50 and defaults["learning_rate"] == 3e-4
    _, smollm2 = common.demo_defaults(["--model_name_or_path", "smollm2"], "webshop-mini")
    assert smollm2["max_steps_per_episode"] == 6 and "eval_tasks" not in smollm2  # the SmolLM2 demo's own
