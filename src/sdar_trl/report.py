"""Run reports for agent-mode training: `metrics.json`, `report.md` and PNG learning curves.

```python
before = trainer.evaluate(metric_key_prefix="eval_before")
trainer.train()
after = trainer.evaluate()
write_run_report("out", trainer.state.log_history, before=before, after=after, title="webshop-mini, SDAR")
```

Plots need matplotlib (`pip install "sdar-trl[examples]"`); without it the JSON and Markdown are still
written and the report says how to get the plots.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .diagnostics import (
    GATE_TOKENS_FILE,
    GATE_TOKENS_HTML,
    OUTCOMES,
    TOKEN_CLASSES,
    colour_ranges,
    read_gate_records,
    render_gate_html,
)

__all__ = ["write_run_report"]

_GATE_CURVES = ("sdar/gate_mean", "sdar/gate_active_ratio")


def _strip_prefix(metrics: Mapping[str, Any]) -> dict[str, float]:
    """`eval_env/success` / `eval_before_env/success` -> `env/success` (numbers only)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and "env/" in key:
            out[key[key.index("env/") :]] = float(value)
    return out


def _series(log_history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    steps, values = [], []
    for entry in log_history:
        value = entry.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value) and "step" in entry:
            steps.append(int(entry["step"]))
            values.append(float(value))
    return steps, values


def _count(metrics: Mapping[str, float], success_key: str) -> int | None:
    """Episodes behind `env/success` or `env/success/<type>` (None when the metrics predate the counts)."""
    count_key = "env/episodes" + success_key.removeprefix("env/success")
    value = metrics.get(count_key)
    return round(value) if value is not None else None


def _interval(metrics: Mapping[str, float], success_key: str) -> tuple[float, float] | None:
    from sdar_trl.evaluate import wilson_interval

    n = _count(metrics, success_key)
    if n is None or success_key not in metrics:
        return None
    return wilson_interval(round(metrics[success_key] * n), n)


def _rate(metrics: Mapping[str, float], success_key: str) -> str:
    """`33.6 % (45/134; 95 % CI 26.1–41.9)`, or `—` when the metric is absent."""
    if success_key not in metrics:
        return "—"
    rate, n = metrics[success_key], _count(metrics, success_key)
    if n is None:
        return f"{100 * rate:.1f} %"
    low, high = _interval(metrics, success_key)
    return f"{100 * rate:.1f} % ({round(rate * n)}/{n}; 95 % CI {100 * low:.1f}–{100 * high:.1f})"


def _last_step(log_history: Sequence[Mapping[str, Any]]) -> int:
    return max((int(entry["step"]) for entry in log_history if "step" in entry), default=0)


def _plots(
    output_dir: Path,
    log_history: Sequence[Mapping[str, Any]],
    before: Mapping[str, float],
    after: Mapping[str, float],
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on training machines
    import matplotlib.pyplot as plt

    written = []
    panels = [("success", "success rate")]
    if any("env/reward" in entry for entry in log_history):
        panels.append(("reward", "mean episode reward (training rollouts)"))
    if any(key in entry for entry in log_history for key in _GATE_CURVES):
        panels.append(("gate", "gate"))
    if any("sdar/teacher_gap_mean" in entry for entry in log_history):
        panels.append(("gap", "teacher gap Δ = lT − lS (mean)"))
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.6 * len(panels)), sharex=True, squeeze=False)
    last = _last_step(log_history)
    for ax, (kind, label) in zip(axes[:, 0], panels, strict=True):
        if kind == "success":
            ax.plot(*_series(log_history, "env/success"), marker=".", label="training rollouts")
            # Held-out evaluations: before training (step 0), any during training, after training (last step).
            points = [(0, before)] if "env/success" in before else []
            points += [(int(e["step"]), _strip_prefix(e)) for e in log_history if "eval_env/success" in e]
            points += [(last, after)] if "env/success" in after else []
            if points:
                xs = [x for x, _ in points]
                ys = [m["env/success"] for _, m in points]
                intervals = [_interval(m, "env/success") or (y, y) for (_, m), y in zip(points, ys, strict=True)]
                errors = [[y - lo for y, (lo, _) in zip(ys, intervals, strict=True)],
                          [hi - y for y, (_, hi) in zip(ys, intervals, strict=True)]]  # fmt: skip
                ax.errorbar(xs, ys, yerr=errors, marker="o", capsize=4, label="held-out evaluation (95 % CI)")
            ax.set_ylim(-0.02, 1.02)
        elif kind == "reward":
            ax.plot(*_series(log_history, "env/reward"), marker=".")
        elif kind == "gate":
            for key in _GATE_CURVES:
                ax.plot(*_series(log_history, key), marker=".", label=key)
        else:
            ax.plot(*_series(log_history, "sdar/teacher_gap_mean"), marker=".")
            ax.axhline(0.0, color="grey", linewidth=0.5)
        ax.set_ylabel(label, fontsize=8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("optimizer step")
    fig.tight_layout()
    fig.savefig(output_dir / "curves.png", dpi=110)
    plt.close(fig)
    written.append("curves.png")

    types = sorted({k.removeprefix("env/success/") for k in (*before, *after) if k.startswith("env/success/")})
    if types:
        fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(types)), 3.6))
        width = 0.38
        for offset, (name, metrics) in ((-width / 2, ("before", before)), (width / 2, ("after", after))):
            keys = [f"env/success/{t}" for t in types]
            ys = [metrics.get(k, math.nan) for k in keys]
            intervals = [_interval(metrics, k) for k in keys]
            errors = [[y - i[0] if i else 0 for y, i in zip(ys, intervals, strict=True)],
                      [i[1] - y if i else 0 for y, i in zip(ys, intervals, strict=True)]]  # fmt: skip
            ax.bar([i + offset for i in range(len(types))], ys, width, yerr=errors, capsize=3,
                   label=f"{name} training")  # fmt: skip
        ax.set_xticks(range(len(types)), types, rotation=20, ha="right", fontsize=7)
        ax.set(ylabel="held-out success (95 % CI)", ylim=(0, 1.05))
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(output_dir / "success_by_task_type.png", dpi=110)
        plt.close(fig)
        written.append("success_by_task_type.png")
    return written


def _split_series(log_history: Sequence[Mapping[str, Any]], groups: Sequence[str]) -> list[str]:
    return [group for group in groups if _series(log_history, f"sdar/gate_mean/{group}")[0]]


def _gate_plots(
    output_dir: Path, log_history: Sequence[Mapping[str, Any]], records: Sequence[Mapping[str, Any]]
) -> list[str]:
    """`gate_split.png` (the split gate over training) and `gate_heatmap.png` (the newest token dump), when present."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    panels = [
        (title, present)
        for title, groups in (("by token class", TOKEN_CLASSES), ("by outcome", OUTCOMES))
        if (present := _split_series(log_history, groups))
    ]
    if panels:
        fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.8 * len(panels)), sharex=True, squeeze=False)
        for ax, (title, groups) in zip(axes[:, 0], panels, strict=True):
            for index, group in enumerate(groups):
                colour = f"C{index}"
                ax.plot(*_series(log_history, f"sdar/gate_mean/{group}"), marker=".", color=colour, label=group)
                ax.plot(*_series(log_history, f"sdar/gate_active_ratio/{group}"), linestyle="--", color=colour)
            ax.axhline(0.5, color="grey", linewidth=0.5)
            ax.set_ylim(-0.02, 1.02)
            ax.set_ylabel(f"gate {title}", fontsize=8)
            ax.legend(fontsize=7, title="solid: mean gate, dashed: share g > 0.5", title_fontsize=7)
        axes[-1, 0].set_xlabel("optimizer step")
        fig.tight_layout()
        fig.savefig(output_dir / "gate_split.png", dpi=110)
        plt.close(fig)
        written.append("gate_split.png")
    if records:
        step = max(int(record["step"]) for record in records)
        newest = [record for record in records if int(record["step"]) == step]
        width = max(len(record["gate"]) for record in newest)
        fig, axes = plt.subplots(2, 1, figsize=(min(14, 2 + 0.12 * width), 1.2 + 0.9 * len(newest)), squeeze=False)
        # Colours saturate at the dump's largest deviation: early on |Δ| is a few hundredths (colour_ranges).
        gate_range, delta_range = colour_ranges(newest)
        scales = (
            ("gate", 0.5 - gate_range, 0.5 + gate_range, "gate g"),
            ("delta", -delta_range, delta_range, "Δ = lT − lS"),
        )
        for ax, (key, low, high, label) in zip(axes[:, 0], scales, strict=True):
            grid = [[*record[key], *[math.nan] * (width - len(record[key]))] for record in newest]
            image = ax.imshow(grid, aspect="auto", cmap="RdYlGn", vmin=low, vmax=high, interpolation="nearest")
            # Action tokens are the ones an agent is judged by: mark them.
            for row, record in enumerate(newest):
                xs = [i for i, kind in enumerate(record["classes"]) if kind == "action"]
                ax.scatter(xs, [row] * len(xs), marker="|", color="#1f5fbf", s=30)
            ax.set_yticks(range(len(newest)), [f"{i + 1} ({r['outcome']})" for i, r in enumerate(newest)], fontsize=7)
            ax.set_title(f"{label}, step {step} (blue ticks: action tokens)", fontsize=8)
            fig.colorbar(image, ax=ax, fraction=0.03)
        axes[-1, 0].set_xlabel("completion token")
        fig.tight_layout()
        fig.savefig(output_dir / "gate_heatmap.png", dpi=110)
        plt.close(fig)
        written.append("gate_heatmap.png")
    return written


def write_run_report(
    output_dir: str | Path,
    log_history: Sequence[Mapping[str, Any]],
    *,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    title: str = "SDAR run",
    details: Mapping[str, Any] | None = None,
    gate_tokens: str | Path | None = None,
) -> dict[str, Any]:
    """Write `metrics.json`, `report.md` and the PNG plots into `output_dir`; return the JSON content.

    With gate diagnostics (`SDARConfig.gate_diagnostics`, docs/gate.md) the report also gets the split gate curves
    (`gate_split.png`), a heatmap of the newest token dump (`gate_heatmap.png`) and a link to `gate_tokens.html`.

    Args:
        output_dir: where to write (created if missing).
        log_history: `trainer.state.log_history`.
        before / after: the metric dicts `trainer.evaluate()` returned before and after training.
        title: the report's heading.
        details: extra key/values shown in the report and stored in the JSON (model, env, method, ...).
        gate_tokens: the trainer's `gate_tokens.jsonl`; None: `output_dir/gate_tokens.jsonl` if it exists.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    before_env, after_env = _strip_prefix(before or {}), _strip_prefix(after or {})
    content = {
        "title": title,
        "details": dict(details or {}),
        "before": before_env,
        "after": after_env,
        "log_history": [dict(entry) for entry in log_history],
    }
    (output_dir / "metrics.json").write_text(json.dumps(content, indent=2, default=str) + "\n", encoding="utf-8")
    gate_path = Path(gate_tokens) if gate_tokens is not None else output_dir / GATE_TOKENS_FILE
    records = read_gate_records(gate_path) if gate_path.is_file() else []
    if records:  # re-rendered here too: the JSONL may come from another directory
        page = render_gate_html(records, title=f"{title}: gate by token")
        (output_dir / GATE_TOKENS_HTML).write_text(page, encoding="utf-8")
    try:
        plots = _plots(output_dir, log_history, before_env, after_env)
        gate_plots = _gate_plots(output_dir, log_history, records)
        plot_note = ""
    except ImportError:
        plots, gate_plots, plot_note = [], [], 'Plots need matplotlib: `pip install "sdar-trl[examples]"`.'

    lines = [f"# {title}", ""]
    for key, value in (details or {}).items():
        lines.append(f"- **{key}**: {value}")
    if details:
        lines.append("")
    if before_env or after_env:
        both = {**before_env, **after_env}
        rates = ["env/success", *sorted(k for k in both if k.startswith("env/success/"))]
        others = sorted(k for k in both if not k.startswith(("env/success", "env/episodes")))
        lines += [
            "## Evaluation (held-out tasks)",
            "",
            "Success with its task count and 95 % Wilson interval; change in points.",
            "",
            "| metric | before training | after training | change |",
            "|---|---|---|---|",
        ]
        for key in rates:
            change = (
                f"{100 * (after_env[key] - before_env[key]):+.1f}" if key in before_env and key in after_env else "—"
            )
            lines.append(f"| `{key}` | {_rate(before_env, key)} | {_rate(after_env, key)} | {change} |")
        for key in others:
            lines.append(f"| `{key}` | {_fmt(before_env.get(key))} | {_fmt(after_env.get(key))} | |")
        lines.append("")
    train = [entry for entry in log_history if "loss" in entry]
    if train:
        last = train[-1]
        shown = [
            k
            for k in last
            if (k.startswith(("env/", "sdar/")) and not k.startswith("env/episodes/")) or k in ("loss", "grad_norm")
        ]
        lines += [f"## Last training step ({last.get('step', '?')})", "", "| metric | value |", "|---|---|"]
        lines += [f"| `{k}` | {_fmt(last[k])} |" for k in shown]
        lines.append("")
    if plots or plot_note:
        lines += ["## Plots", ""]
        lines += [f"![{name}]({name})" for name in plots] or [plot_note]
        lines.append("")
    if records or gate_plots:
        lines += ["## Gate diagnostics", ""]
        lines.append(
            "Where the gate g = sigmoid(β·Δ) opens: by token class and episode outcome over training, and token by "
            "token for a few samples (docs/gate.md)."
        )
        lines.append("")
        if records:
            lines += [
                f"Tokens coloured by gate and by Δ, values on hover: [{GATE_TOKENS_HTML}]({GATE_TOKENS_HTML}).",
                "",
            ]
        lines += [f"![{name}]({name})" for name in gate_plots]
        lines.append("")
    (output_dir / "report.md").write_text("\n".join(lines), encoding="utf-8")
    return content


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
