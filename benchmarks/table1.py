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
own `--output_dir`: runs are keyed by env, method and seed). With `--jobs N` each run is spawned from this file:
do not edit it while a table is being made.

`table1.json` is `{"runs": [{"env", "method", "seed", "success", "success_by_task_type", "steps", "wall_s",
...}, ...]}`. docs/results.md has the committed numbers and how to read them.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import os
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from _common import cpu_native_bf16, machine_info, read_cpuinfo, resolve_model

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]

#: Row order and labels of the paper's Table 1 (our preset names → the paper's names).
METHODS: dict[str, str] = {
    "starter": "Starter (no training)",
    "grpo": "GRPO",
    "skill_grpo": "Skill-GRPO",
    "grpo_opsd": "GRPO+OPSD",
    "opsd": "OPSD",
    "skill_sd": "Skill-SD",
    "rlsd": "RLSD",
    "sdar": "SDAR",
}
ENVS = ("alfworld-mini", "webshop-mini", "searchqa-mini")
#: The reference's per-benchmark agent settings (SDAR_SPEC.md §1): history length, invalid-action penalty,
#: KL coefficient, skill library.
ENV_SETTINGS: dict[str, dict[str, Any]] = {
    "alfworld-mini": {"history_length": 2, "invalid_action_penalty": 0.1, "beta": 0.01, "skills": "alfworld"},
    "webshop-mini": {"history_length": 2, "invalid_action_penalty": 0.1, "beta": 0.01, "skills": "webshop"},
    "searchqa-mini": {"history_length": 4, "invalid_action_penalty": 0.01, "beta": 0.001, "skills": "searchqa"},
}


@dataclasses.dataclass(frozen=True)
class Preset:
    """A training/evaluation budget shared by every method of a table."""

    description: str
    max_steps: int  # optimizer steps per run
    tasks_per_step: int  # tasks per rollout (each played num_generations times)
    num_generations: int
    per_device_train_batch_size: int  # trajectories per accumulation slice; also the step samples per chunk
    learning_rate: float
    max_completion_length: int
    eval_tasks: int | None  # None: the whole held-out split
    use_demo_envs: bool  # the starter's demo settings (easy difficulty, short episodes) vs the full benchmark
    context: str  # privileged_context_source of the teacher
    seeds: int = 3
    # First held-out task index: the starter's builds were chosen on held-out tasks 0-23 (docs/starter.md), so the
    # table evaluates on later ones (eval splits wrap around modulo their size).
    eval_first_seed: int = 24
    # The reference's KL coefficient per env (ENV_SETTINGS) or none: with a handful of updates the policy stays next
    # to the starter anyway, and no KL means no reference forward (a sixth of a CPU step).
    kl: bool = True
    gradient_checkpointing: bool = True  # TRL's default; off trades activation memory for a sixth less step time
    bf16: bool = False  # bf16 autocast (fp32 master weights); on a CPU with AVX512-BF16/AMX it halves forward+backward
    # Smaller training chunks where prompts are long (same rollout and loss, less activation memory per backward).
    per_device_train_batch_size_by_env: dict[str, int] = dataclasses.field(default_factory=dict)
    # The model of every run, `{env}` replaced by the env's name (e.g. "micro:{env}"); None: `--model`, or the
    # packaged SmolLM2 starter.
    model: str | None = None
    # A held-out learning curve: every `eval_every` optimizer steps, `curve_eval_tasks` held-out tasks (0: none).
    eval_every: int = 0
    curve_eval_tasks: int = 0

    def batch_size(self, env_name: str) -> int:
        """Step samples per forward/backward chunk (and trajectories per accumulation slice) on `env_name`."""
        return self.per_device_train_batch_size_by_env.get(env_name, self.per_device_train_batch_size)


PRESETS: dict[str, Preset] = {
    # 2-core CPU, the packaged starter: sized so that 8 methods x 3 seeds of searchqa-mini take about an hour
    # (docs/results.md has the measured wall time per env). A step of 8 trajectories takes over a minute there, so
    # this budget shows the pipeline and its timing, not the methods' asymptotic ranking: that is `paper`.
    "cpu-small": Preset(
        description=(
            "packaged starter, demo envs, 2 optimizer steps of 2 tasks x 4 trajectories, no KL, bf16 autocast, "
            "held-out tasks 24-35"
        ),
        max_steps=2,
        tasks_per_step=2,
        num_generations=4,
        per_device_train_batch_size=8,
        learning_rate=5e-5,
        max_completion_length=160,  # the starter's responses are up to ~135 tokens (as examples/_common.py)
        eval_tasks=12,
        use_demo_envs=True,
        # The starter was taught to act on the oracle facts, and its context gain is measured with them alone
        # (docs/starter.md); skills do not change its behaviour and would add ~800 prefix tokens per row.
        context="facts",
        kl=False,
        gradient_checkpointing=False,  # costs 7-12 GB per run at the peak (docs/results.md): --jobs 2 needs ~24 GB
        bf16=True,
        # WebShop prompts (search results, product pages) reach ~1,000 tokens: 8 rows of them took a run past 17 GB
        # and the OOM killer, i.e. ~2 MB of activations per token; 2 rows per chunk need about a quarter of that.
        # ALFWorld's ~400-token rows: 4 per chunk.
        per_device_train_batch_size_by_env={"webshop-mini": 2, "alfworld-mini": 4},
    ),
    # 1 CPU core per run, the micro starters (docs/starter.md): steps of seconds, so that learning curves and
    # 5 seeds fit. The budget (lr, steps, tasks per step) was chosen on alfworld-mini's valid_seen split, never on
    # the held-out valid_unseen (docs/results.md).
    "cpu-micro": Preset(
        description=(
            "micro starters, demo envs, 100 optimizer steps of 8 tasks x 4 trajectories, lr 3e-4, no KL, fp32, "
            "teacher context: facts; held-out curve every 10 steps (50 tasks), final evaluation on the whole split"
        ),
        max_steps=100,
        # On valid_seen (140 tasks), 30 GRPO steps of 8 x 4 at lr 3e-4 gained 5 points where 60 steps of 4 x 4
        # lost 1 and lr 1e-3 lost 12 (docs/results.md).
        tasks_per_step=8,
        num_generations=4,
        per_device_train_batch_size=32,
        learning_rate=3e-4,
        max_completion_length=32,  # `<think></think><action>...</action>`: ~12 tokens
        eval_tasks=None,
        use_demo_envs=True,
        # The micro starters gain 20+ points from the oracle facts and nothing from skills, which they never saw.
        context="facts",
        seeds=5,
        eval_first_seed=0,
        kl=False,
        gradient_checkpointing=False,
        model="micro:{env}",
        eval_every=10,
        curve_eval_tasks=50,
    ),
    # The reference hyperparameters (SDAR_SPEC.md §1-3) for an instruct model on a GPU.
    "paper": Preset(
        description="reference hyperparameters: 150 steps of 16 tasks x 8 trajectories, lr 1e-6, full held-out split",
        max_steps=150,
        tasks_per_step=16,
        num_generations=8,
        per_device_train_batch_size=8,
        learning_rate=1e-6,
        max_completion_length=512,
        eval_tasks=None,
        use_demo_envs=False,
        context="skills",
        eval_first_seed=0,  # the whole split
    ),
}
_FULL_EPISODE_STEPS = {"alfworld-mini": 50, "webshop-mini": 15, "searchqa-mini": 4}
_HELD_OUT_SPLIT = {"alfworld-mini": "valid_unseen", "webshop-mini": "test", "searchqa-mini": "test"}
_SPLIT_SIZE = {"alfworld-mini": 134, "webshop-mini": 500, "searchqa-mini": 500}


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


def settings_conflict(stored: dict[str, Any], preset: str, bf16: bool) -> str | None:
    """Why the runs already in a table1.json cannot share a table with runs of `preset` / `bf16` (None: they can)."""
    if not stored.get("runs"):
        return None
    # A file from before these fields were recorded is taken at its word: the current call's settings.
    made = stored.get("preset", preset), stored.get("preset_settings", {}).get("bf16", bf16)
    if made == (preset, bf16):
        return None
    return (
        f"table1.json already holds {len(stored['runs'])} runs made with --preset {made[0]} and bf16={made[1]}; "
        f"this call asks --preset {preset} and bf16={bf16}, and one table compares runs of one budget and "
        "precision. Give this call its own --output_dir, or --fresh to discard the recorded runs"
    )


def env_kwargs(env_name: str, preset: Preset, split: str) -> dict[str, Any]:
    from sdar_trl.starter import DEMO_ENVS

    if preset.use_demo_envs:
        kwargs = {k: v for k, v in DEMO_ENVS[env_name].items() if k != "eval_split"}
    else:
        kwargs = {"max_episode_steps": _FULL_EPISODE_STEPS[env_name]}
    return {**kwargs, "split": split}


def build_config(
    env_name: str, method: str, seed: int, preset: Preset, options: argparse.Namespace, output_dir: str
) -> Any:
    """The `SDARConfig` of one (env, method, seed) run: the preset's budget, the env's reference settings."""
    import torch

    from sdar_trl import SDARConfig
    from sdar_trl.config import CHECKPOINTING_FIELD

    settings = ENV_SETTINGS[env_name]
    batch_size = preset.batch_size(env_name)
    return SDARConfig(
        output_dir=output_dir,
        method="grpo" if method == "starter" else method,
        seed=seed,
        max_steps=options.max_steps if options.max_steps is not None else preset.max_steps,
        per_device_train_batch_size=batch_size,
        # One rollout of tasks_per_step x num_generations trajectories per optimizer step.
        gradient_accumulation_steps=max(1, preset.tasks_per_step * preset.num_generations // batch_size),
        num_generations=preset.num_generations,
        max_completion_length=preset.max_completion_length,
        learning_rate=preset.learning_rate,
        lr_scheduler_type="constant",
        beta=settings["beta"] if preset.kl else 0.0,
        # Under the name this transformers reads: the deprecated `gradient_checkpointing` warns from 5.23.
        **{CHECKPOINTING_FIELD: preset.gradient_checkpointing},
        history_length=settings["history_length"],
        invalid_action_penalty=settings["invalid_action_penalty"],
        privileged_context_source=options.context or preset.context,
        per_device_eval_batch_size=32,
        # The held-out curve (make_trainer's eval_dataset holds its tasks); the final evaluation is run_one's.
        eval_strategy="steps" if preset.eval_every else "no",
        eval_steps=preset.eval_every or None,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        bf16=options.bf16,
        # A CPU run stays on the CPU; bf16 there is autocast, which accelerate supports on CPU.
        use_cpu=not torch.cuda.is_available(),
        shuffle_dataset=True,
        # Sensitivity overrides touch SDAR only; None keeps the method's paper default (resolved from `method`).
        distill_coef=options.sdar_distill_coef if method == "sdar" else None,
        gate_beta=options.sdar_gate_beta if method == "sdar" else None,
    )


def eval_plan(env_name: str, preset: Preset, options: argparse.Namespace) -> tuple[str, int]:
    """The held-out split a run is evaluated on and how many of its tasks (from `preset.eval_first_seed` on)."""
    from sdar_trl.starter import DEMO_ENVS

    split = DEMO_ENVS[env_name]["eval_split"] if preset.use_demo_envs else _HELD_OUT_SPLIT[env_name]
    return split, options.eval_tasks or preset.eval_tasks or _SPLIT_SIZE[env_name]


def model_for(env_name: str, preset: Preset, options: argparse.Namespace) -> str:
    """The model directory (or hub id) of `env_name`'s runs: `--model`, else the preset's per-env model."""
    if options.model is not None:
        return options.model
    if preset.model is None:
        raise ValueError(f"no --model and preset {options.preset!r} names none")
    from sdar_trl.starter import resolve_model_name

    return resolve_model_name(preset.model.format(env=env_name))


def held_out_rows(env_name: str, preset: Preset, options: argparse.Namespace) -> list[dict[str, int]]:
    """The held-out task rows of the final evaluation (the same for every run of the env)."""
    _, eval_tasks = eval_plan(env_name, preset, options)
    return [{"seed": preset.eval_first_seed + i} for i in range(eval_tasks)]


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
        train_tasks = max(1, args.max_steps) * preset.tasks_per_step
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
        "curve": curve,
        "held_out_curve": held_out_curve,
        "model": model_for(env_name, preset, options),
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
    return run_one(*key, PRESETS[options.preset], options)


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
            yield run_one(*key, PRESETS[options.preset], options)
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


def _cell(stats: dict[str, float]) -> str:
    return f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}"


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


def render_markdown(
    summary: dict[str, dict[str, dict[str, Any]]],
    header: str,
    paired: dict[str, dict[str, dict[str, Any]]] | None = None,
    baseline: str = "grpo",
    machines: dict[str, dict[str, int]] | None = None,
) -> str:
    """One table per env in the paper's layout: a row per method, a column per task type, then the overall;
    under it, where recorded, each method's held-out tasks solved against `baseline` (`paired_against`), and the
    machines the env's runs were made on (`machines_by_env`)."""
    paired = paired or {}
    machines = machines or {}
    name = METHODS[baseline]
    lines = [header, ""]
    for env_name, by_method in summary.items():
        types = sorted({t for stats in by_method.values() for t in stats["by_task_type"]})
        lines += [f"### {env_name} (success %, mean ± std over seeds)", ""]
        lines.append("| method | " + " | ".join(types) + " | **all** | seeds |")
        lines.append("|---|" + "---|" * (len(types) + 2))
        for method, stats in by_method.items():
            cells = [_cell(stats["by_task_type"][t]) if t in stats["by_task_type"] else "–" for t in types]
            overall = f"**{_cell(stats)}**" if method == "sdar" else _cell(stats)
            lines.append(f"| {METHODS[method]} | " + " | ".join(cells) + f" | {overall} | {stats['n']} |")
        lines.append("")
        if paired.get(env_name):
            lines += [
                f"Task by task against {name} (held-out task × seed pairs where both runs recorded each task's "
                f"outcome; only the discordant pairs count):",
                "",
                f"| method | pairs | solved by it, not {name} | solved by {name}, not it | exact McNemar p |",
                "|---|---|---|---|---|",
            ]
            for method, counts in paired[env_name].items():
                lines.append(
                    f"| {METHODS[method]} | {counts['pairs']} | {counts['only_method']} | {counts['only_baseline']} "
                    f"| {counts['p']:.2g} |"
                )
            lines.append("")
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


def plot_curves(runs: list[dict[str, Any]], output_dir: Path) -> list[str]:
    """Training-rollout success per optimizer step, mean over seeds, one PNG per env (needs matplotlib)."""
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
        figure, axis = plt.subplots(figsize=(7, 4))
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
            style = styles[method]
            axis.plot(
                [step + style["offset"] for step in steps],
                means,
                color=style["color"],
                marker=style["marker"],
                linestyle=style["linestyle"],
                linewidth=style["linewidth"],
                markerfacecolor="none",
                label=METHODS[method],
            )
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # optimizer steps are whole numbers
        axis.set(
            xlabel="optimizer step (points offset sideways per method)",
            ylabel="training-rollout success",
            title=f"{env_name}: learning curves (mean over seeds)",
        )
        axis.legend(fontsize=7)
        path = output_dir / f"table1_{env_name}.png"
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        plt.close(figure)
        written.append(path.name)
    return written


def _table_order(run: dict[str, Any]) -> tuple[int, int, int]:
    """The paper's order whichever run finishes (or which call made it) first: env, then seed, then method."""
    env_rank = ENVS.index(run["env"]) if run["env"] in ENVS else len(ENVS)
    return env_rank, run["seed"], list(METHODS).index(run["method"])


def _write_json(path: Path, stored: dict[str, Any]) -> None:
    path.write_text(json.dumps(stored, indent=1) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    preset = PRESETS[options.preset]
    if options.model is not None or preset.model is None:
        options.model = resolve_model(options.model)
    seeds = options.seeds if options.seeds is not None else preset.seeds
    options.output_dir.mkdir(parents=True, exist_ok=True)
    results_path = options.output_dir / "table1.json"
    stored: dict[str, Any] = {"runs": []}
    if results_path.is_file() and not options.fresh:
        stored = json.loads(results_path.read_text(encoding="utf-8"))
    conflict = settings_conflict(stored, options.preset, options.bf16)
    if conflict:
        sys.exit(f"table1.py: {conflict}")
    stored["preset"], stored["model"] = options.preset, options.model or preset.model
    # What the preset name meant when these runs were made (presets change between versions).
    stored["preset_settings"] = {**dataclasses.asdict(preset), "bf16": options.bf16}
    done = {(r["env"], r["method"], r["seed"]) for r in stored["runs"]}
    plan = [
        (env_name, method, seed)
        for env_name in options.envs.split(",")
        for seed in range(seeds)
        for method in options.methods.split(",")
    ]
    todo = [key for key in plan if key not in done]
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
    for run in _run_all(todo, options):
        finished += 1
        stored["runs"].append(run)
        stored["runs"].sort(key=_table_order)
        _write_json(results_path, stored)  # after every run: survive interruptions
        print(
            f"[{time.perf_counter() - started:7.0f}s] {finished}/{len(plan)} {run['env']} {run['method']} "
            f"seed {run['seed']}: "
            f"success {run['success']:.3f} ({run['wall_s']:.0f}s)",
            file=sys.stderr,
            flush=True,
        )
    stored["runs"].sort(key=_table_order)
    _write_json(results_path, stored)  # also when nothing ran: the current preset_settings
    # Every stored run, not only this call's plan: a table filled over several sittings (one env per call) keeps
    # all its envs in table1.md, the plots and the JSON line.
    runs = stored["runs"]
    summary = summarize(runs)
    overrides = [
        f"--{name} {getattr(options, name)}"
        for name in ("max_steps", "eval_tasks", "sdar_distill_coef", "sdar_gate_beta")
        if getattr(options, name) is not None
    ]
    overridden = f", overridden by {' '.join(overrides)}" if overrides else ""
    header = (
        f"Table 1 in miniature — preset `{options.preset}` ({preset.description}{overridden}); model "
        f"`{options.model or preset.model}`; teacher context `{options.context or preset.context}`; held-out tasks, "
        "success %."
    )
    paired = paired_against(runs, "grpo")
    markdown = render_markdown(summary, header, paired, machines=machines_by_env(runs))
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
        "results": str(results_path),
        "plots": plots,
        "wall_s": round(sum(r["wall_s"] for r in runs), 1),
    }
    print(json.dumps(record, default=lambda v: None if isinstance(v, float) and math.isnan(v) else v))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
