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

__all__ = ["write_run_report"]

_SDAR_CURVES = ("sdar/gate_mean", "sdar/gate_active_ratio", "sdar/teacher_gap_mean")


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


def _plots(output_dir: Path, log_history: Sequence[Mapping[str, Any]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on training machines
    import matplotlib.pyplot as plt

    written = []
    keys = sorted({k for entry in log_history for k in entry if k.startswith("env/success")})
    if keys:
        fig, ax = plt.subplots(figsize=(7, 4))
        for key in keys:
            steps, values = _series(log_history, key)
            ax.plot(steps, values, marker="o", label=key.removeprefix("env/success").lstrip("/") or "all")
        ax.set(xlabel="optimizer step", ylabel="training-rollout success", ylim=(-0.02, 1.02))
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(output_dir / "success_by_task_type.png", dpi=120)
        plt.close(fig)
        written.append("success_by_task_type.png")
    present = [key for key in _SDAR_CURVES if any(key in entry for entry in log_history)]
    if present:
        fig, ax = plt.subplots(figsize=(7, 4))
        for key in present:
            ax.plot(*_series(log_history, key), marker="o", label=key)
        ax.axhline(0.0, color="grey", linewidth=0.5)
        ax.set(xlabel="optimizer step", ylabel="value")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(output_dir / "sdar_gate.png", dpi=120)
        plt.close(fig)
        written.append("sdar_gate.png")
    return written


def write_run_report(
    output_dir: str | Path,
    log_history: Sequence[Mapping[str, Any]],
    *,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    title: str = "SDAR run",
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write `metrics.json`, `report.md` and the PNG plots into `output_dir`; return the JSON content.

    Args:
        output_dir: where to write (created if missing).
        log_history: `trainer.state.log_history`.
        before / after: the metric dicts `trainer.evaluate()` returned before and after training.
        title: the report's heading.
        details: extra key/values shown in the report and stored in the JSON (model, env, method, ...).
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
    try:
        plots = _plots(output_dir, log_history)
        plot_note = ""
    except ImportError:
        plots, plot_note = [], 'Plots need matplotlib: `pip install "sdar-trl[examples]"`.'

    lines = [f"# {title}", ""]
    for key, value in (details or {}).items():
        lines.append(f"- **{key}**: {value}")
    if details:
        lines.append("")
    keys = sorted(set(before_env) | set(after_env), key=lambda k: (k != "env/success", k))
    if keys:
        lines += [
            "## Evaluation (held-out tasks)",
            "",
            "| metric | before training | after training |",
            "|---|---|---|",
        ]
        for key in keys:
            lines.append(f"| `{key}` | {_fmt(before_env.get(key))} | {_fmt(after_env.get(key))} |")
        lines.append("")
    train = [entry for entry in log_history if "loss" in entry]
    if train:
        last = train[-1]
        shown = [k for k in last if k.startswith(("env/", "sdar/")) or k in ("loss", "grad_norm")]
        lines += [f"## Last training step ({last.get('step', '?')})", "", "| metric | value |", "|---|---|"]
        lines += [f"| `{k}` | {_fmt(last[k])} |" for k in shown]
        lines.append("")
    if plots or plot_note:
        lines += ["## Plots", ""]
        lines += [f"![{name}]({name})" for name in plots] or [plot_note]
        lines.append("")
    (output_dir / "report.md").write_text("\n".join(lines), encoding="utf-8")
    return content


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
