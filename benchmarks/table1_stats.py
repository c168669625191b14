"""benchmarks/table1.py's statistics: mean ± std over seeds, task-by-task pairs against a baseline, McNemar's p.

Pure functions of the run records in table1.json; table1_report.py renders what they return.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from table1_presets import METHODS


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """env → method → {mean, std, n, by_task_type: {type: (mean, std)}} over seeds (std: sample std, 0 for n=1)."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for env_name in dict.fromkeys(r["env"] for r in runs):
        summary[env_name] = {}
        for method in METHODS:
            chosen = [r for r in runs if r["env"] == env_name and r["method"] == method]
            if not chosen:
                continue
            types = sorted({t for r in chosen for t in r["success_by_task_type"]})
            summary[env_name][method] = {
                **_mean_std([r["success"] for r in chosen]),
                "n": len(chosen),
                "by_task_type": {t: _mean_std([r["success_by_task_type"].get(t, 0.0) for r in chosen]) for t in types},
                "wall_s": sum(r["wall_s"] for r in chosen),
            }
    return summary


def paired_outcomes(runs: list[dict[str, Any]], first: str, second: str) -> dict[str, dict[str, int]]:
    """env → {pairs, only_<first>, only_<second>}: held-out tasks one method solved and the other did not.

    Pairs are (seed, task) with both runs recorded per task (`eval_outcomes`); runs made before it was recorded
    are left out. Tasks both solve (or both fail) say nothing about which is better, so only the discordant
    counts matter (McNemar): a difference of a few tasks among many discordant ones is noise.
    """
    outcomes: dict[tuple[str, str, int], dict[Any, bool]] = {
        (r["env"], r["method"], r["seed"]): {o["seed"]: o["won"] for o in r["eval_outcomes"]}
        for r in runs
        if r.get("eval_outcomes")
    }
    paired: dict[str, dict[str, int]] = {}
    for (env_name, method, seed), won in outcomes.items():
        other = outcomes.get((env_name, second, seed))
        if method != first or other is None:
            continue
        counts = paired.setdefault(env_name, {"pairs": 0, f"only_{first}": 0, f"only_{second}": 0})
        for task in won.keys() & other.keys():
            counts["pairs"] += 1
            counts[f"only_{first}"] += won[task] and not other[task]
            counts[f"only_{second}"] += other[task] and not won[task]
    return paired


def mcnemar_p(only_first: int, only_second: int) -> float:
    """Exact two-sided McNemar p: how likely a split at least this uneven of the discordant pairs is by chance.

    Under "no difference" each discordant pair goes either way with probability 1/2, so the smaller count is
    Binomial(n, 1/2); p is twice its lower tail (capped at 1). No discordant pair at all gives 1.
    """
    n, low = only_first + only_second, min(only_first, only_second)
    return min(1.0, 2 * sum(math.comb(n, k) for k in range(low + 1)) / 2**n)


def paired_against(runs: list[dict[str, Any]], baseline: str = "grpo") -> dict[str, dict[str, dict[str, Any]]]:
    """env → method → {pairs, only_method, only_baseline, p}: every method's task-by-task count against `baseline`.

    `paired_outcomes` for each method in table order (those with per-task outcomes and a baseline run on a matching
    seed), with the exact McNemar p of its discordant pairs.
    """
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for method in METHODS:
        if method == baseline:
            continue
        for env_name, counts in paired_outcomes(runs, method, baseline).items():
            only_method, only_baseline = counts[f"only_{method}"], counts[f"only_{baseline}"]
            table.setdefault(env_name, {})[method] = {
                "pairs": counts["pairs"],
                "only_method": only_method,
                "only_baseline": only_baseline,
                "p": mcnemar_p(only_method, only_baseline),
            }
    return table


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def machines_by_env(runs: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """env → {CPU (or GPU) the runs were made on: number of runs}; runs recorded before the field existed count
    under "not recorded". Rollouts from the same seed are identical across methods on one machine only."""
    machines: dict[str, dict[str, int]] = {}
    for run in runs:
        machine = run.get("machine") or {}
        label = machine.get("gpu") or machine.get("cpu") or "not recorded"
        by_label = machines.setdefault(run["env"], {})
        by_label[label] = by_label.get(label, 0) + 1
    return machines
