"""The SDAR paper's Table 1 in miniature: every method × mini environment × seed, from one starter model.

Each run starts from the same model (default: the packaged offline starter), trains for the same budget
with one `method` preset of `SDARConfig`, and is evaluated once on held-out tasks (the env's unseen/test
split, never seen in training and never used to tune anything here). `starter` is the model without any
training. Results accumulate in `<output_dir>/table1.json` after every run (a rerun skips the runs already
there; `--fresh` starts over), then the script writes `table1.md` (the paper's layout, mean ± std over
seeds), one PNG of training-rollout success per env, prints a human table on stderr and one JSON line
(starting with `{"benchmark": "table1"`) on stdout. These cover every run in table1.json, so a table can be
filled one env (or a few methods) per call.

    OMP_NUM_THREADS=2 python benchmarks/table1.py --preset cpu-small --envs searchqa-mini --jobs 2  # ~1 h, 2 cores
    python benchmarks/table1.py --preset paper --model Qwen/Qwen2.5-3B-Instruct --envs alfworld-mini  # a GPU

`--sdar_gate_beta` / `--sdar_distill_coef` rerun SDAR with another β / λ for a sensitivity table (give it its
own `--output_dir`: runs are keyed by env, method and seed). With `--jobs N` each run is spawned from these files:
do not edit them while a table is being made.

`table1.json` is `{"runs": [{"env", "method", "seed", "success", "success_by_task_type", "steps", "wall_s",
"model", "model_sha256", ...}, ...]}`; `model_sha256` fingerprints the starter's weights and tokenizer, and a call
that would add runs from other files to an env's recorded runs (a rebuilt starter) stops and says so.
docs/results.md has the committed numbers and how to read them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from _common import cpu_native_bf16, read_cpuinfo, resolve_model
from table1_presets import (
    ENV_SETTINGS,
    ENVS,
    METHODS,
    OVERRIDABLE_FIELDS,
    PRESETS,
    Preset,
    active_preset,
    build_config,
    env_budgets,
    env_kwargs,
    eval_plan,
    held_out_rows,
    model_conflict,
    model_fingerprint,
    model_for,
    model_label,
)
from table1_report import curve_styles, held_out_series, plot_curves, render_markdown
from table1_runner import _run_all, make_trainer, run_one
from table1_stats import (
    bootstrap_interval,
    machines_by_env,
    mcnemar_p,
    paired_against,
    paired_outcomes,
    steps_to_reach,
    summarize,
    validity,
)

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]

# The command line's pieces live beside it (presets, runner, statistics, report); these names stay importable from
# `table1` for the other benchmarks and the tests.
__all__ = [
    "ENVS",
    "ENV_SETTINGS",
    "METHODS",
    "PRESETS",
    "Preset",
    "bf16_check",
    "bootstrap_interval",
    "build_config",
    "curve_styles",
    "env_kwargs",
    "eval_plan",
    "held_out_rows",
    "held_out_series",
    "machines_by_env",
    "main",
    "make_trainer",
    "mcnemar_p",
    "model_conflict",
    "model_fingerprint",
    "model_for",
    "model_label",
    "paired_against",
    "paired_outcomes",
    "parse_args",
    "plot_curves",
    "render_markdown",
    "run_one",
    "settings_conflict",
    "steps_to_reach",
    "summarize",
    "validity",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu-small")
    parser.add_argument("--envs", default=",".join(ENVS), help="comma-separated mini environments")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {list(METHODS)}")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default: the preset's, 3)")
    parser.add_argument("--model", default=None, help="model path or hub id (default: the packaged starter)")
    parser.add_argument("--output_dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--max_steps", type=int, default=None, help="override the preset's optimizer steps")
    parser.add_argument("--eval_tasks", type=int, default=None, help="override the preset's held-out task count")
    parser.add_argument("--learning_rate", type=float, default=None, help="override the preset's learning rate")
    parser.add_argument("--tasks_per_step", type=int, default=None, help="override the preset's tasks per rollout")
    parser.add_argument(
        "--num_generations", type=int, default=None, help="override the preset's group size (trajectories per task)"
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="override the training rollouts' sampling temperature (default 1.0; evaluation keeps its 0.4)",
    )
    parser.add_argument(
        "--eval_split",
        default=None,
        help="evaluate on this split instead of the held-out one: `train` with --eval_first_seed >= 20,000,000 and "
        "--eval_tasks N chooses a budget on training tasks no run trains on (give it its own --output_dir)",
    )
    parser.add_argument("--eval_first_seed", type=int, default=None, help="first task of --eval_split")
    parser.add_argument("--context", default=None, help="override the teacher's privileged_context_source")
    parser.add_argument(
        "--sdar_distill_coef", type=float, default=None, help="override SDAR's λ (sensitivity runs; default 0.01)"
    )
    parser.add_argument(
        "--sdar_gate_beta", type=float, default=None, help="override SDAR's gate β (sensitivity runs; default 5)"
    )
    parser.add_argument("--fresh", action="store_true", help="discard the runs already in table1.json")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at once, each in its own process with an equal share of the torch threads (on a 2-core CPU, "
        "--jobs 2 is ~1.3x faster: token-by-token decoding barely uses a second thread)",
    )
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 autocast (default: the preset's; cpu-small uses it, fast only on CPUs with AVX512-BF16, AMX or "
        "ARM BF16: elsewhere a training step is 10-15x slower than in fp32, benchmarks/cpu_bf16.py)",
    )
    args = parser.parse_args(argv)
    unknown = [m for m in args.methods.split(",") if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {unknown}; expected a comma-separated subset of {list(METHODS)}")
    bad_envs = [e for e in args.envs.split(",") if e not in ENVS]
    if bad_envs:
        parser.error(f"--envs: unknown {bad_envs}; expected a comma-separated subset of {list(ENVS)}")
    if args.num_generations is not None and args.num_generations < 2:
        parser.error(
            f"--num_generations: got {args.num_generations}; GRPO needs a group of >= 2 trajectories per task"
        )
    if args.temperature is not None and args.temperature <= 0:
        parser.error(f"--temperature: got {args.temperature}; expected a sampling temperature > 0")
    if args.jobs < 1:
        parser.error(f"--jobs: got {args.jobs}; expected a number of parallel runs >= 1")
    # The preset's default is checked against the CPU (main stops on emulated bf16); an explicit choice only warns.
    args.bf16_explicit = args.bf16 is not None
    if args.bf16 is None:
        args.bf16 = PRESETS[args.preset].bf16
    return args


def bf16_check(bf16: bool, explicit: bool, native_bf16: bool | None, cuda: bool) -> tuple[str, str] | None:
    """`("error" | "warning", message)` when bf16 autocast would run on a CPU that emulates bf16, else None.

    Emulated bf16 made a forward + backward 10-15x slower than fp32 on an AVX2-only AMD EPYC (docs/results.md):
    alfworld-mini runs that take 30-60 min elsewhere would take hours. The preset's default stops and names the
    ways out; an explicit `--bf16` is the user's informed choice and only warned about.
    """
    if not bf16 or cuda or native_bf16 is not False:  # None: cpuinfo has no flags to tell (not Linux)
        return None
    message = (
        "this CPU has no native bf16 (no AVX512-BF16, AMX or ARM BF16 in /proc/cpuinfo), so bf16 autocast is "
        "emulated: a training step runs 10-15x slower than in fp32 (measure it: python benchmarks/cpu_bf16.py)"
    )
    if explicit:
        return "warning", f"--bf16: {message}; continuing as asked"
    return "error", (
        f"the preset uses bf16 autocast, but {message}. Run the table on a CPU with native bf16 (its results are "
        "comparable to the committed ones), pass --no-bf16 with its own --output_dir (fp32: fast here, but its "
        "numbers are a different table), or pass --bf16 to accept the slowdown"
    )


def settings_conflict(
    stored: dict[str, Any], preset: str, bf16: bool, overrides: dict[str, Any] | None = None
) -> str | None:
    """Why the runs already in a table1.json cannot share a table with runs of `preset` / `bf16` / preset
    `overrides` (`OVERRIDABLE_FIELDS` set on the command line), or None when they can."""
    if not stored.get("runs"):
        return None
    # A file from before these fields were recorded is taken at its word: the current call's settings.
    made = stored.get("preset", preset), stored.get("preset_settings", {}).get("bf16", bf16)
    if made != (preset, bf16):
        return (
            f"table1.json already holds {len(stored['runs'])} runs made with --preset {made[0]} and bf16={made[1]}; "
            f"this call asks --preset {preset} and bf16={bf16}, and one table compares runs of one budget and "
            "precision. Give this call its own --output_dir, or --fresh to discard the recorded runs"
        )
    if stored.get("overrides", {}) != (overrides or {}):
        return (
            f"table1.json already holds {len(stored['runs'])} runs made with the preset overrides "
            f"{stored.get('overrides', {})}; this call asks {overrides or {}}, and one table compares runs of one "
            "budget. Give this call its own --output_dir, or --fresh to discard the recorded runs"
        )
    return None


def _table_order(run: dict[str, Any]) -> tuple[int, int, int]:
    """The paper's order whichever run finishes (or which call made it) first: env, then seed, then method."""
    env_rank = ENVS.index(run["env"]) if run["env"] in ENVS else len(ENVS)
    return env_rank, run["seed"], list(METHODS).index(run["method"])


def _write_json(path: Path, stored: dict[str, Any]) -> None:
    path.write_text(json.dumps(stored, indent=1) + "\n", encoding="utf-8")


def _run_key(run: dict[str, Any]) -> tuple[str, str, int]:
    """The (env, method, seed) a run of table1.json records: one run per key."""
    return run["env"], run["method"], run["seed"]


def _record_run(path: Path, stored: dict[str, Any], run: dict[str, Any] | None, keep_on_disk: bool = True) -> None:
    """Add `run` (if any) to `stored` and write it to `path`, keeping the runs another table1.py call filling the
    same directory has recorded there since this one read it (under a lock, so neither overwrites the other).
    `keep_on_disk=False` (--fresh, before this call's first write) replaces the file's runs instead."""
    from filelock import FileLock  # huggingface_hub's dependency

    with FileLock(f"{path}.lock"):
        if keep_on_disk and path.is_file():
            mine = {_run_key(r) for r in stored["runs"]}
            on_disk = json.loads(path.read_text(encoding="utf-8"))["runs"]
            stored["runs"] += [r for r in on_disk if _run_key(r) not in mine]
        if run is not None:
            stored["runs"] = [r for r in stored["runs"] if _run_key(r) != _run_key(run)] + [run]
        stored["runs"].sort(key=_table_order)
        _write_json(path, stored)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    try:
        preset = active_preset(options)
    except ValueError as error:
        sys.exit(f"table1.py: {error}")
    if options.model is not None or preset.model is None:
        options.model = resolve_model(options.model)
    seeds = options.seeds if options.seeds is not None else preset.seeds
    options.output_dir.mkdir(parents=True, exist_ok=True)
    results_path = options.output_dir / "table1.json"
    stored: dict[str, Any] = {"runs": []}
    if results_path.is_file() and not options.fresh:
        stored = json.loads(results_path.read_text(encoding="utf-8"))
    overrides = {name: getattr(options, name) for name in OVERRIDABLE_FIELDS if getattr(options, name) is not None}
    conflict = settings_conflict(stored, options.preset, options.bf16, overrides)
    if conflict:
        sys.exit(f"table1.py: {conflict}")
    stored["preset"], stored["model"] = options.preset, options.model or preset.model
    # What the preset name meant when these runs were made (presets change between versions).
    stored["preset_settings"] = {**dataclasses.asdict(preset), "bf16": options.bf16}
    if overrides:
        stored["overrides"] = overrides
    done = {_run_key(r) for r in stored["runs"]}
    plan = [
        (env_name, method, seed)
        for env_name in options.envs.split(",")
        for seed in range(seeds)
        for method in options.methods.split(",")
    ]
    todo = [key for key in plan if key not in done]
    for env_name in dict.fromkeys(key[0] for key in todo):
        clash = model_conflict(stored["runs"], env_name, model_fingerprint(model_for(env_name, preset, options)))
        if clash:
            sys.exit(f"table1.py: {clash}")
    if todo:  # re-rendering the recorded runs needs no particular CPU
        import torch

        cuda = torch.cuda.is_available()
        check = bf16_check(options.bf16, options.bf16_explicit, cpu_native_bf16(read_cpuinfo()), cuda)
        if check is not None:
            kind, message = check
            if kind == "error":
                sys.exit(f"table1.py: {message}")
            print(f"table1.py: warning: {message}", file=sys.stderr)
    started, finished = time.perf_counter(), len(plan) - len(todo)
    keep_on_disk = not options.fresh
    for run in _run_all(todo, options):
        finished += 1
        _record_run(results_path, stored, run, keep_on_disk)  # after every run: survive interruptions
        keep_on_disk = True
        print(
            f"[{time.perf_counter() - started:7.0f}s] {finished}/{len(plan)} {run['env']} {run['method']} "
            f"seed {run['seed']}: "
            f"success {run['success']:.3f} ({run['wall_s']:.0f}s)",
            file=sys.stderr,
            flush=True,
        )
    _record_run(results_path, stored, None, keep_on_disk)  # also when nothing ran: the current preset_settings
    # Every stored run, not only this call's plan: a table filled over several sittings (one env per call) keeps
    # all its envs in table1.md, the plots and the JSON line.
    runs = stored["runs"]
    summary = summarize(runs)
    overrides = [
        f"--{name} {getattr(options, name)}"
        for name in ("max_steps", "eval_tasks", *OVERRIDABLE_FIELDS, "sdar_distill_coef", "sdar_gate_beta")
        if getattr(options, name) is not None
    ]
    overridden = f", overridden by {' '.join(overrides)}" if overrides else ""
    header = (
        f"Table 1 in miniature — preset `{options.preset}` ({preset.description}{env_budgets(preset)}{overridden}); "
        "model "
        f"`{options.model or preset.model}`; teacher context `{options.context or preset.context}`; "
        + (
            f"**{preset.eval_split} tasks from {preset.eval_first_seed:,} (budget selection, not held out)**, "
            "success %."
            if preset.eval_split == "train"
            else "held-out tasks, success %."
        )
    )
    paired = paired_against(runs, "grpo")
    valid = validity(runs)
    reach = steps_to_reach(runs, "grpo")
    markdown = render_markdown(summary, header, paired, machines=machines_by_env(runs), validity=valid, reach=reach)
    (options.output_dir / "table1.md").write_text(markdown + "\n", encoding="utf-8")
    plots = plot_curves(runs, options.output_dir)
    print(markdown, file=sys.stderr)
    record = {
        "benchmark": "table1",
        "preset": options.preset,
        "summary": {
            env_name: {method: {"mean": s["mean"], "std": s["std"], "n": s["n"]} for method, s in by_method.items()}
            for env_name, by_method in summary.items()
        },
        "sdar_minus_grpo": {
            env_name: by_method["sdar"]["mean"] - by_method["grpo"]["mean"]
            for env_name, by_method in summary.items()
            if "sdar" in by_method and "grpo" in by_method
        },
        "sdar_vs_grpo_by_task": paired_outcomes(runs, "sdar", "grpo"),
        "vs_grpo_by_task": paired,
        # GRPO − starter per env with its 95 % interval, and whether it clears the bar (table1_stats.validity).
        "validity": valid,
        # The optimizer step at which each method's held-out curve reached GRPO's final curve value (None: never).
        "steps_to_grpo_final": reach,
        "results": str(results_path),
        "plots": plots,
        "wall_s": round(sum(r["wall_s"] for r in runs), 1),
    }
    print(json.dumps(record, default=lambda v: None if isinstance(v, float) and math.isnan(v) else v))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
