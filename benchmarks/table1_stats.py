"""benchmarks/table1.py's statistics: mean ± std over seeds, task-by-task pairs against a baseline, McNemar's p.

Pure functions of the run records in table1.json; table1_report.py renders what they return.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Hashable
from typing import Any

from table1_presets import METHODS


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """env → method → {mean, std, n, interval, by_task_type: {type: {mean, std, interval}}} over seeds (std: sample
    std, 0 for n=1; interval: `bootstrap_interval`'s 95 % interval over seeds and tasks, None without per-task
    outcomes)."""
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
                "interval": bootstrap_interval(runs, env_name, method),
                "by_task_type": {
                    t: {
                        **_mean_std([r["success_by_task_type"].get(t, 0.0) for r in chosen]),
                        "interval": bootstrap_interval(runs, env_name, method, task_type=t),
                    }
                    for t in types
                },
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
    """env → method → {pairs, only_method, only_baseline, p, difference, difference_by_task_type}: every method's
    task-by-task count against `baseline`, and its success minus the baseline's with a 95 % interval
    (`bootstrap_interval`), overall and per task type (type → interval, on that type's tasks only).

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
                "difference": bootstrap_interval(runs, env_name, method, baseline=baseline),
                "difference_by_task_type": {
                    task_type: bootstrap_interval(runs, env_name, method, baseline=baseline, task_type=task_type)
                    for task_type in _task_types(runs, env_name, method)
                },
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


#: The validity bar of a table (issue "Micro agents", docs/results.md): GRPO must beat the untrained starter by
#: this much, with the 95 % interval of the difference above zero, before methods are compared on an env.
VALIDITY_MIN_GAIN = 0.15
BOOTSTRAP_RESAMPLES = 2000


def _task_types(runs: list[dict[str, Any]], env_name: str, method: str) -> list[str]:
    """The task types of `method`'s per-task outcomes on `env_name`, sorted."""
    by_seed = _outcomes_by_seed(runs, env_name, method)
    return sorted({task_type for outcomes in by_seed.values() for _, task_type in outcomes.values() if task_type})


def _outcomes_by_seed(runs: list[dict[str, Any]], env_name: str, method: str) -> dict[int, dict[Any, tuple]]:
    """seed → held-out task → (won, task type) of `method`'s runs on `env_name` that recorded per-task outcomes."""
    return {
        r["seed"]: {o["seed"]: (o["won"], o.get("task_type")) for o in r["eval_outcomes"]}
        for r in runs
        if r["env"] == env_name and r["method"] == method and r.get("eval_outcomes")
    }


def _searchqa_world(task_seed: int) -> int:
    from sdar_trl.environments.searchqa.mini import QUESTIONS_PER_WORLD

    return task_seed // QUESTIONS_PER_WORLD


#: env → the group a held-out task belongs to, for envs whose tasks are not drawn independently: searchqa-mini's
#: task i is question i % 100 of world i // 100, and questions about one world's names and facts succeed or fail
#: together (its test split is 500 questions about 5 worlds). Envs not listed: every task is its own group.
TASK_CLUSTERS: dict[str, Callable[[int], Hashable]] = {"searchqa-mini": _searchqa_world}


def bootstrap_interval(
    runs: list[dict[str, Any]],
    env_name: str,
    method: str,
    baseline: str | None = None,
    task_type: str | None = None,
    resamples: int = BOOTSTRAP_RESAMPLES,
    rng_seed: int = 0,
    cluster_of: Callable[[int], Hashable] | None = None,
) -> dict[str, float] | None:
    """{mean, low, high, seeds, tasks, clusters}: `method`'s held-out success on `env_name` (or its difference from
    `baseline`'s), with a 95 % percentile bootstrap interval that resamples seeds and held-out tasks.

    Both sources of noise count: which tasks were drawn (every run of an env plays the same held-out tasks) and
    which training run a seed gave. Outcomes are paired: the difference is taken task by task, on the seeds both
    methods ran, or against the baseline's only run (the untrained starter is evaluated once), over the tasks all
    of those runs recorded. With one seed only the tasks are resampled, so the interval says nothing about
    seed-to-seed variation. Tasks are resampled in two stages where they come in groups (`cluster_of`, default
    `TASK_CLUSTERS[env_name]`; `clusters` counts the groups): the groups first, then tasks within each group drawn,
    because tasks of one group are not independent evidence. None when per-task outcomes are missing or nothing
    can be paired.
    """
    import numpy as np

    mine = _outcomes_by_seed(runs, env_name, method)
    theirs = _outcomes_by_seed(runs, env_name, baseline) if baseline is not None else {}
    if baseline is not None and len(theirs) > 1:
        mine = {seed: outcomes for seed, outcomes in mine.items() if seed in theirs}
    if not mine or (baseline is not None and not theirs):
        return None
    seeds = sorted(mine)
    pairs = [(mine[s], theirs[s] if s in theirs else next(iter(theirs.values()))) for s in seeds] if theirs else []
    everything = [*mine.values(), *(other for _, other in pairs)]
    common = set.intersection(*(set(outcomes) for outcomes in everything))
    tasks = sorted(t for t in common if task_type is None or mine[seeds[0]][t][1] == task_type)
    if not tasks:
        return None
    wins = np.array([[float(mine[s][t][0]) for t in tasks] for s in seeds])  # (S, T)
    if baseline is not None:
        wins = wins - np.array([[float(other[t][0]) for t in tasks] for _, other in pairs])  # (S, T) in {-1, 0, 1}
    cluster_of = cluster_of or TASK_CLUSTERS.get(env_name) or (lambda task: task)
    members: dict[Hashable, list[int]] = {}
    for column, task in enumerate(tasks):
        members.setdefault(cluster_of(task), []).append(column)
    groups = list(members.values())
    rng = np.random.default_rng(rng_seed)
    num_seeds, num_tasks = wins.shape
    # A resample's mean is count_s @ wins @ weight_t / (S sum_t weight_t), with multinomial counts of the drawn seeds
    # and task weights: a group drawn c times contributes c x its size tasks drawn uniformly within it (the sum of c
    # independent within-group resamples). Groups of one task (every task on most envs) weigh their count.
    seed_counts = rng.multinomial(num_seeds, [1 / num_seeds] * num_seeds, size=resamples)  # (R, S)
    group_counts = rng.multinomial(len(groups), [1 / len(groups)] * len(groups), size=resamples)  # (R, G)
    task_weights = np.zeros((resamples, num_tasks))  # (R, T)
    for g, columns in enumerate(groups):
        if len(columns) == 1:
            task_weights[:, columns[0]] = group_counts[:, g]
        else:
            draws = group_counts[:, g] * len(columns)  # (R,)
            task_weights[:, columns] = rng.multinomial(draws, [1 / len(columns)] * len(columns))  # (R, n_g)
    means = np.einsum("rs,st,rt->r", seed_counts, wins, task_weights) / (num_seeds * task_weights.sum(axis=1))  # (R,)
    low, high = np.quantile(means, [0.025, 0.975])
    return {
        "mean": float(wins.mean()),
        "low": float(low),
        "high": float(high),
        "seeds": num_seeds,
        "tasks": num_tasks,
        "clusters": len(groups),
    }


def validity(runs: list[dict[str, Any]], min_gain: float = VALIDITY_MIN_GAIN) -> dict[str, dict[str, Any]]:
    """env → {gain, low, high, met, ...}: whether GRPO beats the starter by `min_gain` with the 95 % interval of
    the difference above zero (`bootstrap_interval`), for every env with both runs recorded per task."""
    table: dict[str, dict[str, Any]] = {}
    for env_name in dict.fromkeys(r["env"] for r in runs):
        gain = bootstrap_interval(runs, env_name, "grpo", baseline="starter")
        if gain is None:
            continue
        table[env_name] = {**gain, "met": gain["mean"] >= min_gain and gain["low"] > 0}
    return table


def steps_to_reach(runs: list[dict[str, Any]], baseline: str = "grpo") -> dict[str, dict[str, int | None]]:
    """env → method → the first optimizer step at which the method's held-out curve (mean over its seeds) reaches
    the `baseline`'s final curve value (mean over seeds at its last point), or None if it never does.

    The curve's tasks are the first `curve_eval_tasks` of the final evaluation's, so the target is the baseline's
    success on those tasks, not its final success on the whole split. Envs without a baseline curve are left out.
    """
    curves: dict[tuple[str, str], dict[int, list[float]]] = {}
    for run in runs:
        for point in run.get("held_out_curve") or []:
            curves.setdefault((run["env"], run["method"]), {}).setdefault(point["step"], []).append(point["success"])
    table: dict[str, dict[str, int | None]] = {}
    for (env_name, method), by_step in curves.items():
        target_curve = curves.get((env_name, baseline))
        if not target_curve:
            continue
        target = statistics.fmean(target_curve[max(target_curve)])
        reached = [step for step in sorted(by_step) if statistics.fmean(by_step[step]) >= target]
        table.setdefault(env_name, {})[method] = reached[0] if reached else None
    return table
