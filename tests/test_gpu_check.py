"""scripts/gpu_check.py: the no-CUDA exit, path selection, the JSON records, and its worker run for real on a CPU."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sdar_trl.testing import save_tiny

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("gpu_check", None)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA: the script would run")
def test_without_cuda_it_says_so_and_exits_0():
    completed = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, env=ENV, timeout=300,
                               check=False)  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert completed.stdout.strip().startswith("gpu_check: no CUDA device here")
    assert "{" not in completed.stdout  # no JSON line: nothing was run


def test_path_selection_follows_the_machine(gpu_check):
    names = lambda plans: [(p.name, p.skip_reason is None) for p in plans]  # noqa: E731
    one_gpu = gpu_check.select_paths(None, gpu_count=1, vllm_available=False)
    assert names(one_gpu) == [("bf16", True), ("lora_4bit", True), ("vllm_colocate", False), ("ddp", False)]
    assert one_gpu[3].skip_reason == "needs 2 GPUs, found 1" and "pip install" in one_gpu[2].skip_reason
    assert all(ok for _, ok in names(gpu_check.select_paths(None, gpu_count=2, vllm_available=True)))
    # a requested subset keeps the standard order
    assert [p.name for p in gpu_check.select_paths(["ddp", "bf16"], gpu_count=4, vllm_available=True)] == [
        "bf16",
        "ddp",
    ]
    with pytest.raises(ValueError, match=r"unknown path\(s\) \['fp8'\]; expected a comma-separated subset"):
        gpu_check.select_paths(["bf16", "fp8"], gpu_count=1, vllm_available=True)


def test_records_say_ok_only_for_two_steps_and_a_gate(gpu_check):
    good = {"steps": 2, "step_seconds": 3.5, "peak_gpu_memory_gb": 2.25, "sdar/gate_mean": 0.48}
    record = gpu_check.result_record("bf16", returncode=0, worker=good)
    assert record == {"path": "bf16", "ok": True, "step_seconds": 3.5, "peak_gpu_memory_gb": 2.25,
                      "sdar/gate_mean": 0.48, "skipped": None, "error": None}  # fmt: skip
    assert json.loads(json.dumps(record)) == record  # one JSON line

    crashed = gpu_check.result_record("ddp", returncode=1, worker=None, stderr="x" * 5000 + "CUDA out of memory")
    assert crashed["ok"] is False and crashed["error"].startswith("exit status 1. ")
    assert crashed["error"].endswith("CUDA out of memory") and len(crashed["error"]) < 1600  # the tail only

    no_gate = gpu_check.result_record("bf16", returncode=0, worker={**good, "sdar/gate_mean": None})
    assert no_gate["ok"] is False and "gate" in no_gate["error"]
    one_step = gpu_check.result_record("bf16", returncode=0, worker={**good, "steps": 1})
    assert one_step["ok"] is False and "ran 1 optimizer steps" in one_step["error"]
    stopped = gpu_check.result_record("vllm_colocate", returncode=-9, worker=None, stderr="loading", timed_out=150.0)
    assert stopped["ok"] is False and stopped["error"].startswith("stopped after 150 s.")
    skipped = gpu_check.result_record("ddp", returncode=None, worker=None, skip_reason="needs 2 GPUs, found 1")
    assert skipped["ok"] is None and skipped["skipped"] == "needs 2 GPUs, found 1"

    assert gpu_check.exit_status([record, skipped]) == 0
    assert gpu_check.exit_status([record, skipped, crashed]) == 1


def test_a_failing_path_is_a_record_not_an_exception(gpu_check, tmp_path):
    record = gpu_check.run_path(gpu_check.PathPlan("bf16"), model=str(tmp_path / "no-model"), cpu=True, timeout=300)
    assert record["ok"] is False and record["error"].startswith("exit status 1.")
    assert "no-model" in record["error"]  # the worker's own traceback names the missing model


@pytest.mark.integration
def test_the_worker_trains_two_sdar_steps_on_a_cpu(gpu_check, tmp_path):
    """The bf16 path's worker on CPU in fp32 (`--cpu`), with the tiny model: the same code a GPU runs."""
    model = save_tiny(tmp_path / "model")
    record = gpu_check.run_path(gpu_check.PathPlan("bf16"), model=str(model), cpu=True, timeout=600)
    assert record["ok"] is True, record["error"]
    assert record["step_seconds"] > 0 and 0.0 <= record["sdar/gate_mean"] <= 1.0
    assert record["peak_gpu_memory_gb"] is None  # no GPU


def test_the_time_outs_keep_the_whole_check_under_8_minutes(gpu_check):
    assert set(gpu_check.PATH_TIMEOUT) == set(gpu_check.PATHS)
    assert sum(gpu_check.PATH_TIMEOUT.values()) <= 8 * 60 - 20  # 20 s left for merging the starter once


def test_a_timed_out_path_stops_the_workers_its_launcher_started_in_their_own_sessions(gpu_check):
    """torchrun starts workers in sessions of their own: killing its group alone left a worker holding the stderr
    pipe, and reading the pipe to its end hung a CI run. Every process the launcher started is killed now."""
    import psutil

    launcher = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], start_new_session=True); "
        "time.sleep(120)"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", launcher], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    time.sleep(2.0)  # the worker is started
    workers = psutil.Process(process.pid).children(recursive=True)
    assert len(workers) == 1 and os.getsid(workers[0].pid) != os.getsid(process.pid)
    start = time.monotonic()
    stderr, timed_out = gpu_check.communicate_within(process, timeout=0.5)
    assert (stderr, timed_out) == ("", 0.5) and time.monotonic() - start < 20
    psutil.wait_procs(workers, timeout=10)
    assert not workers[0].is_running()


def test_a_path_over_its_time_out_is_killed_and_reported(gpu_check, tmp_path):
    record = gpu_check.run_path(gpu_check.PathPlan("bf16"), model=str(tmp_path), cpu=True, timeout=1.0)
    assert record["ok"] is False and record["error"].startswith("stopped after 1 s.")
