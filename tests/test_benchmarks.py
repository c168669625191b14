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
