"""benchmarks/token_lengths.py: its statistics by hand, and one real run honouring the output contract."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tl():
    spec = importlib.util.spec_from_file_location("token_lengths", ROOT / "benchmarks" / "token_lengths.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_percentiles_are_nearest_rank(tl):
    assert tl.percentile([5, 1, 3, 2, 4], 50) == 3
    assert tl.percentile(list(range(1, 11)), 90) == 9
    assert tl.percentile(list(range(1, 11)), 50) == 5  # the lower median
    assert tl.percentile([7], 90) == 7
    assert tl.summarize([4, 1, 9, 2]) == {"median": 2, "p90": 9, "max": 9}
    with pytest.raises(ValueError, match="empty list"):
        tl.percentile([], 50)


def test_attention_ratio_is_the_ratio_of_summed_squares(tl):
    assert tl.attention_ratio([1, 2], [2, 2]) == pytest.approx(5 / 8)
    assert tl.attention_ratio([3], [3]) == 1.0


def test_seed_ranges(tl):
    assert tl.parse_seeds("1000-1002") == range(1000, 1003)
    for bad in ("1000", "5-3", "a-b"):
        with pytest.raises(SystemExit, match="FIRST-LAST"):
            tl.parse_seeds(bad)


@pytest.mark.integration
def test_a_small_run_prints_the_table_and_one_json_line():
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "token_lengths.py"),
        *("--envs", "searchqa-mini", "--seeds", "1000-1004", "--fit_episodes", "20"),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    record = json.loads(completed.stdout.strip().splitlines()[-1])
    assert record["benchmark"] == "token_lengths" and record["seeds"] == "1000-1004"
    rows = {r["tokenizer"]: r for r in record["results"]}
    assert list(rows) == ["shipped", "refit", "implicit"]  # searchqa-mini has no candidate atomic pieces
    assert len({r["steps"] for r in rows.values()}) == 1 and rows["shipped"]["steps"] > 5
    assert rows["shipped"]["attention_vs_shipped"] == 1.0
    # the shipped tokenizer spends a tenth or more of a prompt on lone spaces; implicit spaces none
    assert rows["shipped"]["lone_space_share"] > 0.1 and rows["implicit"]["lone_space_share"] == 0.0
    assert rows["implicit"]["student"]["median"] < rows["shipped"]["student"]["median"]
    assert rows["implicit"]["attention_vs_shipped"] < 1.0
    assert "searchqa-mini" in completed.stderr and "prompt med/p90/max" in completed.stderr
