"""SDARTrainer in a real two-process (gloo, CPU) run: metrics are token-weighted means over all processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parent / "scripts"


def _run_two_processes(script: Path, tmp_path: Path, *script_args: str) -> dict:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
    command = [
        torchrun,
        "--nproc_per_node",
        "2",
        "--master_port",
        str(_free_port()),
        str(script),
        str(tmp_path),
        *script_args,
    ]
    # A session of its own, so that a timeout kills torchrun *and* its workers (subprocess.run's timeout only
    # kills torchrun and would leave a hung worker behind).
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"the two processes did not finish within 240 s; stderr:\n{stderr[-3000:]}")
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    assert process.returncode == 0 and len(lines) == 1, stderr[-3000:]
    return json.loads(lines[0].removeprefix("RESULT "))


@pytest.mark.integration
def test_two_process_run_gathers_sdar_metrics(tmp_path):
    result = _run_two_processes(SCRIPTS / "distributed_smoke.py", tmp_path)
    assert result["num_processes"] == 2
    records, local = result["records"], result["local_stats"]
    assert len(records) == 2 and len(local) == 4  # 2 steps x 2 processes, one micro-batch each
    for step, record in enumerate(records):
        shards = _shards_for_step(local, step)
        total = sum(s["count"] for s in shards)
        for name in ("gate_mean", "gate_active_ratio", "teacher_gap_mean", "distill_loss"):
            expected = sum(s[name] * s["count"] for s in shards) / total
            assert record[f"sdar/{name}"] == pytest.approx(expected, rel=1e-5, abs=1e-7), (step, name)


@pytest.mark.integration
def test_two_process_agent_mode_keeps_processes_in_lockstep(tmp_path):
    result = _run_two_processes(SCRIPTS / "distributed_agent.py", tmp_path)
    ranks = sorted(result["per_rank"], key=lambda r: r["rank"])
    # The processes held different numbers of step samples (different episode lengths) ...
    assert ranks[0]["samples"] != ranks[1]["samples"]
    # ... yet ran the same number of forward/backward chunks in every accumulation step (no hang, no drift).
    assert ranks[0]["per_step"] == ranks[1]["per_step"] and len(ranks[0]["per_step"]) == 4
    logs = result["logs"]
    assert len(logs) == 2
    for entry in logs:
        assert entry["env/episodes"] == 8  # 2 tasks × 2 copies per process, gathered over both processes
        assert "sdar/gate_mean" in entry


@pytest.mark.integration
def test_two_process_agent_mode_under_sharded_weights_runs_equal_forward_counts(tmp_path):
    # Plain DDP (above) lets each process run as many no-grad forwards as its own step samples need: the
    # counts differ. Under FSDP / ZeRO-3 (simulated) every forward gathers sharded weights, so a process
    # with fewer step samples pads its batch with masked rows and runs exactly as many.
    plain = sorted(_run_two_processes(SCRIPTS / "distributed_agent.py", tmp_path)["per_rank"], key=_rank)
    assert plain[0]["nograd_forwards"] != plain[1]["nograd_forwards"]
    result = _run_two_processes(SCRIPTS / "distributed_agent.py", tmp_path / "sharded", "sharded")
    ranks = sorted(result["per_rank"], key=_rank)
    assert ranks[0]["samples"] != ranks[1]["samples"]  # padding rows are not counted as samples
    assert ranks[0]["nograd_forwards"] == ranks[1]["nograd_forwards"]
    assert ranks[0]["per_step"] == ranks[1]["per_step"]
    assert all(entry["loss"] == entry["loss"] for entry in result["logs"])  # finite, not NaN


def _rank(entry: dict) -> int:
    return entry["rank"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _shards_for_step(local, step):
    by_rank = {0: [], 1: []}
    for entry in local:
        by_rank[entry["rank"]].append(entry)
    return [by_rank[0][step], by_rank[1][step]]
