"""benchmarks/table1.py's runner: one (env, method, seed) run, and all of a table's runs, in order or in parallel.

`make_trainer` builds a run's `SDARTrainer` from its preset (table1_presets.py), `run_one` trains and evaluates it
and returns its record (the entries of table1.json), `_run_all` yields the records one after the other or from
`--jobs` spawned processes. With `--jobs N` each run is spawned from this file: do not edit it while a table is
being made.
"""

from __future__ import annotations

import argparse
import io
import logging
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from _common import machine_info
from table1_presets import (
    ENV_SETTINGS,
    Preset,
    active_preset,
    build_config,
    env_kwargs,
    eval_plan,
    held_out_rows,
    model_fingerprint,
    model_for,
    model_label,
)

logger = logging.getLogger(__name__)


def make_trainer(
    env_name: str,
    method: str,
    seed: int,
    preset: Preset,
    options: argparse.Namespace,
    output_dir: str,
    *,
    train_tasks: int | None = None,
    callbacks: Sequence[Any] = (),
) -> Any:
    """The `SDARTrainer` of one (env, method, seed) run, from the starter model (seeds set, nothing trained yet).

    `train_tasks` is the number of training rows (default: `tasks_per_step` for each of the run's optimizer
    steps). TRL's sampler shuffles them with the run's seed, so a shorter run over the same rows (first_update.py,
    `--max_steps 1`) plays exactly the first steps of the full one.
    """
    from datasets import Dataset
    from transformers import AutoTokenizer, set_seed

    from sdar_trl import SDARTrainer
    from sdar_trl.environments import make_env
    from sdar_trl.skills import SkillBank

    eval_split, _ = eval_plan(env_name, preset, options)
    train_kwargs, eval_kwargs = env_kwargs(env_name, preset, "train"), env_kwargs(env_name, preset, eval_split)
    set_seed(seed)
    model = model_for(env_name, preset, options)
    tokenizer = AutoTokenizer.from_pretrained(model, padding_side="left")
    args = build_config(env_name, method, seed, preset, options, output_dir)
    if train_tasks is None:
        train_tasks = max(1, args.max_steps) * preset.for_env(env_name).tasks_per_step
    # Training tasks differ per seed; the held-out tasks are the same for every run.
    train_rows = [{"seed": 1_000_000 * (seed + 1) + i} for i in range(train_tasks)]
    eval_rows = held_out_rows(env_name, preset, options)
    if preset.eval_every:  # the curve's tasks: the first of the final evaluation's
        eval_rows = eval_rows[: preset.curve_eval_tasks]
    return SDARTrainer(
        model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows),
        processing_class=tokenizer,
        env_factory=lambda: make_env(env_name, **train_kwargs),
        eval_env_factory=lambda: make_env(env_name, **eval_kwargs),
        skill_bank=SkillBank.from_package(ENV_SETTINGS[env_name]["skills"]),
        callbacks=list(callbacks),
    )


def write_gate_report(
    output_dir: Path, env_name: str, method: str, seed: int, log_history: list, after: dict, scratch: str
) -> None:
    """The run's report with its gate diagnostics (split gate curves, token heatmap, the token dumps and their
    HTML page) under `<output_dir>/gate/<env>-<method>-seed<seed>/` (docs/gate.md)."""
    import shutil

    from sdar_trl.report import GATE_TOKENS_FILE, write_run_report

    run_dir = Path(output_dir) / "gate" / f"{env_name}-{method}-seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    if (Path(scratch) / GATE_TOKENS_FILE).is_file():
        # Only the dumps: write_run_report reads them from run_dir and renders the token page itself.
        shutil.copy(Path(scratch) / GATE_TOKENS_FILE, run_dir / GATE_TOKENS_FILE)
    write_run_report(
        run_dir,
        log_history,
        after=after,
        title=f"{method} on {env_name}, seed {seed} (cpu-micro)",
        details={"env": env_name, "method": method, "seed": seed},
    )


def run_one(env_name: str, method: str, seed: int, preset: Preset, options: argparse.Namespace) -> dict[str, Any]:
    """Train one (env, method, seed) from the starter model and evaluate it on held-out tasks."""
    eval_split, eval_tasks = eval_plan(env_name, preset, options)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = make_trainer(env_name, method, seed, preset, options, scratch)
        args = trainer.args
        start = time.perf_counter()
        if method != "starter":
            trainer.train()
        train_s = time.perf_counter() - start
        # Skill-GRPO is evaluated without the skills it trained with (the paper's "Skill-GRPO", not "*").
        trainer.args.skills_in_student_prompt = False
        # The held-out curve (every `eval_every` steps) is in the log; the final evaluation is not part of it.
        held_out_curve = [
            {"step": entry["step"], "success": entry["eval_env/success"], "tasks": entry.get("eval_env/episodes")}
            for entry in trainer.state.log_history
            if "eval_env/success" in entry
        ]
        from datasets import Dataset

        metrics = trainer.evaluate(Dataset.from_list(held_out_rows(env_name, preset, options)))
        wall_s = time.perf_counter() - start
        curve = [
            {k: v for k, v in entry.items() if k == "step" or k.startswith(("env/", "sdar/"))}
            for entry in trainer.state.log_history
            if "env/success" in entry
        ]
        trainer.close_environments()
        gate_report_error = None
        if args.gate_diagnostics:
            try:
                write_gate_report(
                    options.output_dir, env_name, method, seed, trainer.state.log_history, metrics, scratch
                )
            except Exception as error:  # whatever breaks the report, the trained run (hours of CPU) is recorded
                gate_report_error = f"{type(error).__name__}: {error}"
                logger.warning(
                    "%s %s seed %d: the run is recorded, but its gate report failed (%s)",
                    env_name,
                    method,
                    seed,
                    gate_report_error,
                    exc_info=True,
                )
    prefix = "eval_env/success/"
    return {
        "env": env_name,
        "method": method,
        "seed": seed,
        "success": metrics["eval_env/success"],
        "success_by_task_type": {k[len(prefix) :]: v for k, v in metrics.items() if k.startswith(prefix)},
        "score": metrics.get("eval_env/score"),
        "valid_action_rate": 1.0 - metrics["eval_env/invalid_action_rate"],
        "steps": trainer.state.global_step,
        "wall_s": round(wall_s, 1),
        "train_s": round(train_s, 1),
        "eval_tasks": eval_tasks,
        "eval_first_seed": preset.eval_first_seed,
        "eval_split": eval_split,
        # Per held-out task: the runs of one seed play the same tasks, so methods can be compared task by task.
        "eval_outcomes": [
            {"seed": episode.row.get("seed"), "task_type": episode.task_type, "won": episode.won}
            for episode in trainer.eval_episodes
        ],
        "distill_coef": args.distill_coef,
        "gate_beta": args.gate_beta,
        "gate_report_error": gate_report_error,  # None, or why <output_dir>/gate/ lacks this run's report
        "curve": curve,
        "held_out_curve": held_out_curve,
        "model": model_label(env_name, preset, options),
        "model_sha256": model_fingerprint(model_for(env_name, preset, options)),
        # The same seed plays different rollouts on another CPU (kernel rounding), and runs at another speed.
        "machine": machine_info(),
    }


def _run_in_worker(job: tuple[tuple[str, str, int], argparse.Namespace, int]) -> dict[str, Any]:
    import torch

    key, options, threads = job
    # A spawned worker would inherit OMP_NUM_THREADS (the whole machine) and oversubscribe the cores.
    torch.set_num_threads(threads)
    # Redirected to a log, stdout is block-buffered: each optimizer step's metrics would appear only when the run
    # ends, an hour later. Line buffering shows them as they are logged.
    if isinstance(sys.stdout, io.TextIOWrapper):  # None when the parent had no stdout (pythonw)
        sys.stdout.reconfigure(line_buffering=True)
    return run_one(*key, active_preset(options), options)


def _worker_main(work: Callable[[Any], dict[str, Any]], job: Any, connection: Any) -> None:
    """A spawned run: send `("ok", record)` or `("error", traceback text)` back to the parent."""
    try:
        record = work(job)
    except Exception:
        connection.send(("error", traceback.format_exc()))  # the parent stops the table with it
        raise
    connection.send(("ok", record))
    connection.close()


def _run_all(
    todo: list[tuple[str, str, int]],
    options: argparse.Namespace,
    work: Callable[[Any], dict[str, Any]] = _run_in_worker,
) -> Iterator[dict[str, Any]]:
    """Yield each run's record as it finishes: one after the other, or `--jobs` at once in fresh processes.

    Each parallel run gets its own spawned process (a fresh interpreter, no forked torch thread pools, its memory
    freed when it ends). A failing run stops the table at once: the other runs are terminated, the runs recorded
    so far stay in table1.json, and the error carries the run's traceback. A worker that dies without a word
    (killed by a signal, typically the kernel's OOM killer) stops it too, rather than leaving the table waiting
    for a run that will never report, as `multiprocessing.Pool` would.
    """
    if options.jobs == 1 or len(todo) <= 1:
        for key in todo:
            yield run_one(*key, active_preset(options), options)
        return
    import multiprocessing
    from multiprocessing.connection import wait

    import torch

    threads = max(1, torch.get_num_threads() // options.jobs)
    context = multiprocessing.get_context("spawn")
    pending = list(todo)
    running: dict[Any, tuple[Any, tuple[str, str, int]]] = {}  # receiving end of its pipe -> (process, key)
    try:
        while pending or running:
            while pending and len(running) < options.jobs:
                key = pending.pop(0)
                receiver, sender = context.Pipe(duplex=False)
                process = context.Process(target=_worker_main, args=(work, (key, options, threads), sender))
                process.start()
                sender.close()  # the child holds the only sending end: its death closes the pipe
                running[receiver] = (process, key)
            # A connection becomes ready when its run sends its record, or when its process dies (end of file).
            for receiver in wait(list(running)):
                process, key = running.pop(receiver)
                try:
                    status, payload = receiver.recv()
                except EOFError:
                    status, payload = "died", None
                process.join()
                receiver.close()
                if status == "ok":
                    yield payload
                    continue
                name = " ".join(map(str, key))
                if status == "error":
                    raise RuntimeError(f"run {name} failed in its worker process:\n{payload}")
                code = process.exitcode
                if code is not None and code < 0:
                    cause = f"killed by signal {-code}"
                    if code == -signal.SIGKILL:
                        cause += ", usually the kernel's OOM killer: see dmesg"
                else:
                    cause = f"exit code {code}"
                raise RuntimeError(
                    f"run {name}: its worker process died without a result ({cause}). The runs finished so far are "
                    "in table1.json and a rerun resumes; if memory ran out, use fewer --jobs."
                )
    finally:
        for receiver, (process, _) in running.items():
            process.terminate()
            process.join()
            receiver.close()
