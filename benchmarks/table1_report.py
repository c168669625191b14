"""benchmarks/table1.py's report: table1.md (the paper's layout) and one learning-curve PNG per env.

`render_markdown` takes table1_stats.py's summary and paired counts; `plot_curves` needs matplotlib (optional).
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from table1_presets import METHODS
from table1_stats import VALIDITY_MIN_GAIN


def _cell(stats: dict[str, Any]) -> str:
    """Success % with its 95 % interval where per-task outcomes were recorded, else mean ± std over seeds."""
    interval = stats.get("interval")
    if interval is None:
        return f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}"
    return f"{100 * interval['mean']:.1f} ({100 * interval['low']:.1f}–{100 * interval['high']:.1f})"


def _signed(interval: dict[str, float]) -> str:
    """A difference in points with its 95 % interval, e.g. `+4.0 (0.4 to 7.6)`."""
    return f"{100 * interval['mean']:+.1f} ({100 * interval['low']:+.1f} to {100 * interval['high']:+.1f})"


def _grouped(interval: dict[str, Any]) -> str:
    """`in N groups`, where the interval resampled groups of tasks first (table1_stats.TASK_CLUSTERS), else ''."""
    clusters = interval.get("clusters", interval["tasks"])
    return f" in {clusters} groups resampled first" if clusters < interval["tasks"] else ""


def _task_counts(by_method: dict[str, dict[str, Any]], task_type: str | None = None) -> int | None:
    """The held-out tasks behind an env's (or one task type's) success rates (the most any method recorded)."""
    counts = [
        (stats["interval"] if task_type is None else stats["by_task_type"].get(task_type, {}).get("interval"))
        for stats in by_method.values()
    ]
    tasks = [c["tasks"] for c in counts if c]
    return max(tasks) if tasks else None


def render_validity(validity: dict[str, dict[str, Any]], min_gain: float = VALIDITY_MIN_GAIN) -> list[str]:
    """The table's validity line: GRPO − starter per env, and whether every env clears the bar."""
    if not validity:
        return []
    lines = [
        f"**Validity** (GRPO − starter ≥ +{100 * min_gain:.0f} points with the 95 % interval above 0, on every "
        f"env): **{'met' if all(v['met'] for v in validity.values()) else 'not met'}**.",
        "",
    ]
    for env_name, gain in validity.items():
        verdict = "met" if gain["met"] else "**not met**: change its budget (on training tasks) before comparing"
        seeds = f"{gain['seeds']} seeds" if gain["seeds"] > 1 else "1 seed (the interval resamples tasks only)"
        tasks = f"{gain['tasks']} tasks{_grouped(gain)}"
        lines.append(f"- {env_name}: {_signed(gain)} points, {tasks} × {seeds} — {verdict}")
    return [*lines, ""]


def _render_by_task_type(against: dict[str, dict[str, Any]], name: str) -> list[str]:
    """Each method − the baseline per task type (points, 95 % interval; each type's task count), where recorded."""
    types = sorted({t for counts in against.values() for t in counts["difference_by_task_type"]})
    if not types:
        return []
    headings = []
    for task_type in types:
        found = [c["difference_by_task_type"].get(task_type) for c in against.values()]
        tasks = max((i["tasks"] for i in found if i), default=None)
        headings.append(f"{task_type} ({tasks})" if tasks else task_type)
    lines = [
        f"Against {name} by task type (points, 95 % interval; the same pairs, each type's tasks only):",
        "",
        "| method | " + " | ".join(headings) + " |",
        "|---|" + "---|" * len(types),
    ]
    for method, counts in against.items():
        by_type = counts["difference_by_task_type"]
        cells = [_signed(by_type[t]) if by_type.get(t) else "–" for t in types]
        lines.append(f"| {METHODS[method]} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def render_markdown(
    summary: dict[str, dict[str, dict[str, Any]]],
    header: str,
    paired: dict[str, dict[str, dict[str, Any]]] | None = None,
    baseline: str = "grpo",
    machines: dict[str, dict[str, int]] | None = None,
    validity: dict[str, dict[str, Any]] | None = None,
    reach: dict[str, dict[str, int | None]] | None = None,
) -> str:
    """One table per env in the paper's layout: a row per method, a column per task type (with its task count),
    then the overall; under it, where recorded, each method's held-out tasks solved against `baseline`
    (`paired_against`) with the difference and its interval, and the machines the env's runs were made on
    (`machines_by_env`). `validity` (table1_stats.validity) heads the page; `reach` (table1_stats.steps_to_reach)
    adds a column: the step at which each method's held-out curve reached the baseline's final value."""
    paired = paired or {}
    machines = machines or {}
    name = METHODS[baseline]
    lines = [header, "", *render_validity(validity or {})]
    for env_name, by_method in summary.items():
        types = sorted({t for stats in by_method.values() for t in stats["by_task_type"]})
        tasks = _task_counts(by_method)
        overall = [stats["interval"] for stats in by_method.values() if stats["interval"]]
        grouped = _grouped(max(overall, key=lambda i: i["tasks"])) if overall else ""
        unit = (
            f"success %, mean and 95 % interval over seeds and {tasks} held-out tasks{grouped}"
            if tasks
            else "success %, mean ± std over seeds"
        )
        lines += [f"### {env_name} ({unit})", ""]
        headings = [f"{t} ({n})" if (n := _task_counts(by_method, t)) else t for t in types]
        steps = (reach or {}).get(env_name)
        extra = [f"steps to {name}'s final (curve)"] if steps else []
        lines.append("| method | " + " | ".join([*headings, "**all**", "seeds", *extra]) + " |")
        lines.append("|---|" + "---|" * (len(types) + 2 + len(extra)))
        for method, stats in by_method.items():
            cells = [_cell(stats["by_task_type"][t]) if t in stats["by_task_type"] else "–" for t in types]
            cells += [f"**{_cell(stats)}**" if method == "sdar" else _cell(stats), str(stats["n"])]
            if steps:
                reached = steps.get(method, "–")
                cells.append("not reached" if reached is None else str(reached))
            lines.append(f"| {METHODS[method]} | " + " | ".join(cells) + " |")
        lines.append("")
        if paired.get(env_name):
            lines += [
                f"Against {name}, task by task (held-out task × seed pairs where both runs recorded each task's "
                f"outcome; McNemar counts only the discordant pairs; the difference's interval resamples seeds and "
                f"tasks):",
                "",
                f"| method | − {name}, points (95 % interval) | pairs | solved by it, not {name} "
                f"| solved by {name}, not it | exact McNemar p |",
                "|---|---|---|---|---|---|",
            ]
            for method, counts in paired[env_name].items():
                difference = _signed(counts["difference"]) if counts.get("difference") else "–"
                lines.append(
                    f"| {METHODS[method]} | {difference} | {counts['pairs']} | {counts['only_method']} "
                    f"| {counts['only_baseline']} | {counts['p']:.2g} |"
                )
            lines.append("")
            lines += _render_by_task_type(paired[env_name], name)
        if machines.get(env_name):
            made_on = ", ".join(f"{label} ({count})" for label, count in sorted(machines[env_name].items()))
            lines += [f"Runs made on: {made_on}.", ""]
    return "\n".join(lines)


#: One look per method, so that curves with equal values (common with 8 trajectories per step) stay apart.
_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*")
_LINESTYLES = ("-", "-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), "-")


def curve_styles(methods: Sequence[str]) -> dict[str, dict[str, Any]]:
    """method → matplotlib line style: its own colour, marker and dash pattern, and a small sideways offset.

    Colour, marker and dashes follow the method's row in `METHODS`, so a method looks the same in every env's
    plot. Two methods with the same mean at every step would otherwise draw one line over the other: the offset (a
    fraction of a step, symmetric about the true step over the methods plotted) keeps both visible.
    """
    count = len(methods)
    styles = {}
    for position, method in enumerate(methods):
        row = list(METHODS).index(method)
        styles[method] = {
            "color": f"C{row}",
            "marker": _MARKERS[row % len(_MARKERS)],
            "linestyle": _LINESTYLES[row % len(_LINESTYLES)],
            "offset": 0.0 if count == 1 else 0.16 * (position / (count - 1) - 0.5),
            "linewidth": 2.4 if method == "sdar" else 1.4,  # the paper's method stands out, as its bold cell
        }
    return styles


def held_out_series(runs: list[dict[str, Any]], env_name: str) -> dict[str, list[tuple[int, float, int]]]:
    """method → `(step, success, tasks)` points of its held-out curve, mean over the seeds that have the step.

    The curve evaluates the first tasks of the final evaluation every `eval_every` steps; the untrained starter
    has no curve, so its point at step 0 is its final evaluation restricted to those same first tasks (the curve's
    task count): every method's curve then starts from the starter's success on the tasks it is measured on.
    """
    series: dict[str, list[tuple[int, float, int]]] = {}
    env_runs = [r for r in runs if r["env"] == env_name]
    curve_tasks = {int(p["tasks"]) for r in env_runs for p in r.get("held_out_curve") or []}
    starters = [r for r in env_runs if r["method"] == "starter" and r.get("eval_outcomes")]
    if len(curve_tasks) == 1 and starters:
        (tasks,) = curve_tasks
        wins = [sum(o["won"] for o in r["eval_outcomes"][:tasks]) / tasks for r in starters]
        series["starter"] = [(0, statistics.fmean(wins), tasks)]
    for method in METHODS:
        curves = [r["held_out_curve"] for r in env_runs if r["method"] == method and r.get("held_out_curve")]
        if not curves:
            continue
        steps = sorted({p["step"] for curve in curves for p in curve})
        series[method] = [
            (
                step,
                statistics.fmean(p["success"] for curve in curves for p in curve if p["step"] == step),
                int(max(p["tasks"] for curve in curves for p in curve if p["step"] == step)),
            )
            for step in steps
        ]
    return series


def plot_curves(runs: list[dict[str, Any]], output_dir: Path) -> list[str]:
    """One PNG per env (needs matplotlib): training-rollout success per optimizer step (left) and, for presets with
    a held-out curve, held-out success every `eval_every` steps from the starter's at step 0 (right); means over
    seeds."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        print(
            "matplotlib is not installed: no learning-curve plots (pip install 'sdar-trl[examples]')", file=sys.stderr
        )
        return []
    written = []
    # An env with no trained run yet (only the starter's evaluation) has no curve: no empty figure for it.
    for env_name in dict.fromkeys(r["env"] for r in runs if r["curve"]):
        held_out = held_out_series(runs, env_name)
        trained = [method for method in held_out if method != "starter"]
        figure, axes = plt.subplots(1, 2 if trained else 1, figsize=(12 if trained else 7, 4), squeeze=False)
        axis = axes[0][0]
        curves_by_method = {
            method: curves
            for method in METHODS
            if (curves := [r["curve"] for r in runs if r["env"] == env_name and r["method"] == method and r["curve"]])
        }
        styles = curve_styles(list(curves_by_method))
        for method, curves in curves_by_method.items():
            steps = sorted({point["step"] for curve in curves for point in curve})
            means = [
                statistics.fmean(p["env/success"] for curve in curves for p in curve if p["step"] == step)
                for step in steps
            ]
            _plot_method(axis, method, styles[method], steps, means)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # optimizer steps are whole numbers
        axis.set(
            xlabel="optimizer step (points offset sideways per method)",
            ylabel="training-rollout success",
            title=f"{env_name}: learning curves (mean over seeds)",
        )
        axis.legend(fontsize=7)
        if trained:
            _plot_held_out(axes[0][1], held_out, styles | curve_styles(["starter"]), env_name)
        path = output_dir / f"table1_{env_name}.png"
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path.name)
    return written


def _plot_method(axis: Any, method: str, style: dict[str, Any], steps: list[int], values: list[float]) -> None:
    """One method's line in its `curve_styles` look, each point moved sideways by the method's offset."""
    axis.plot(
        [step + style["offset"] for step in steps],
        values,
        color=style["color"],
        marker=style["marker"],
        linestyle=style["linestyle"],
        linewidth=style["linewidth"],
        markerfacecolor="none",
        label=METHODS[method],
    )


def _plot_held_out(axis: Any, series: dict[str, list[tuple[int, float, int]]], styles: dict, env_name: str) -> None:
    """The held-out curves of `held_out_series` on `axis`, each trained method joined to the starter's step 0."""
    start = series.get("starter", [])
    tasks = max(point[2] for points in series.values() for point in points)
    for method, points in series.items():
        style = styles.get(method) or curve_styles([method])[method]
        if method == "starter":
            axis.axhline(points[0][1], color=style["color"], linestyle=":", linewidth=1.0, label=METHODS[method])
            continue
        points = [*start, *points]
        _plot_method(axis, method, style, [step for step, _, _ in points], [success for _, success, _ in points])
    axis.set(
        xlabel="optimizer step",
        ylabel=f"held-out success ({tasks} tasks)",
        title=f"{env_name}: held-out curve (mean over seeds)",
        ylim=(0, 1),
    )
    axis.legend(fontsize=7)
