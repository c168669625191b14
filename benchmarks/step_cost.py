"""What the teacher branch costs: SDAR vs GRPO on the same agent-mode set-up, one command.

Both methods train the same model on the same tasks (same seeds, so the first rollouts are identical),
each in its own subprocess so that peak memory is measured separately, with `OMP_NUM_THREADS=1`:

- full step: wall time of an optimizer step (rollout + log-probs + forward/backward + optimizer);
- loss path: the step minus its rollout, i.e. everything that scores and trains on the step samples
  (old/reference/teacher log-probs, the chunked forward+backward passes, the optimizer step);
- peak memory: the process's peak resident memory during training above what it held before training
  (on CUDA: `torch.cuda.max_memory_allocated`);
- env time share: time inside `env.reset`/`env.step` over the rollout time.

Ratios are SDAR / GRPO of the medians over the measured steps (the first `--warmup` steps are dropped).
Prints a human table on stderr and one JSON line on stdout with the keys `full_step_ratio`,
`loss_path_ratio`, `peak_memory_ratio`, `env_time_share`:

    python benchmarks/step_cost.py --env searchqa-mini --steps 3 --warmup 1   # the packaged starter, ~45 min on a CPU
    python benchmarks/step_cost.py --env searchqa-mini --steps 3 --warmup 1 --context skills+facts  # longer context
    python benchmarks/step_cost.py --model /path/to/model --env webshop-mini --steps 10
    python benchmarks/step_cost.py --preset cpu-micro --env alfworld-mini --steps 10 --warmup 2   # the micro preset
    python benchmarks/step_cost.py --preset cpu-micro --env webshop-mini --unpadded_logps never   # padded forwards

With the packaged starter (SmolLM2-135M) a step costs minutes on one CPU thread; the default env
(alfworld-mini, the longest episodes) takes hours there. docs/results.md has the measured numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import machine_info, resolve_model

os.environ["OMP_NUM_THREADS"] = "1"  # comparable timings: one thread in both runs
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

METHODS = ("grpo", "sdar")


def default_context() -> str:
    """`SDARConfig.privileged_context_source`'s default, so that the script measures what users get."""
    from sdar_trl import SDARConfig

    return next(f.default for f in dataclasses.fields(SDARConfig) if f.name == "privileged_context_source")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="alfworld-mini", help="a mini environment (demo settings of the starter)")
    parser.add_argument("--model", default=None, help="model path or hub id (default: the packaged starter)")
    parser.add_argument("--steps", type=int, default=6, help="measured optimizer steps per method")
    parser.add_argument("--warmup", type=int, default=1, help="optimizer steps dropped before measuring")
    parser.add_argument("--tasks", type=int, default=2, help="tasks per rollout")
    parser.add_argument("--num_generations", type=int, default=4)
    parser.add_argument("--max_completion_length", type=int, default=96)
    parser.add_argument(
        "--context",
        default=default_context(),
        help="the teacher's privileged_context_source (default: SDARConfig's, the context users get)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--preset",
        default=None,
        help="take the model, tasks per step, group size, completion length, context, learning rate, KL and "
        "gradient checkpointing of a benchmarks/table1.py preset (e.g. cpu-micro); explicit flags are ignored then",
    )
    parser.add_argument(
        "--no_teacher_prefix_cache",
        action="store_true",
        help="SDAR scores every teacher prompt with a full forward (SDARConfig.teacher_prefix_cache=False)",
    )
    parser.add_argument(
        "--unpadded_logps",
        default="auto",
        choices=["auto", "always", "never"],
        help="SDARConfig.unpadded_logps for both methods: log-prob forwards row by row without padding ('auto': on "
        "CPU) or batched ('never')",
    )
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)  # internal: run one method
    options = parser.parse_args(argv)
    options.learning_rate, options.beta, options.gradient_checkpointing = 1e-5, 0.0, None
    if options.preset is not None:
        from table1_presets import PRESETS, model_for

        if options.preset not in PRESETS:
            parser.error(f"--preset {options.preset!r}: expected one of {sorted(PRESETS)}")
        preset = PRESETS[options.preset].for_env(options.env)
        options.tasks, options.num_generations = preset.tasks_per_step, preset.num_generations
        options.max_completion_length, options.context = preset.max_completion_length, preset.context
        options.learning_rate, options.gradient_checkpointing = preset.learning_rate, preset.gradient_checkpointing
        if preset.kl:
            from table1_presets import ENV_SETTINGS

            options.beta = ENV_SETTINGS[options.env]["beta"]
        if options.model is None and preset.model is not None:
            options.model = model_for(options.env, preset, options)
    return options


class TimedEnv:
    """Forwards to an environment and adds the time spent in reset/step to a shared counter."""

    def __init__(self, env: Any, clock: dict[str, float]) -> None:
        self._env, self._clock = env, clock

    def reset(self, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return self._env.reset(**kwargs)
        finally:
            self._clock["env"] += time.perf_counter() - start

    def step(self, action: str) -> Any:
        start = time.perf_counter()
        try:
            return self._env.step(action)
        finally:
            self._clock["env"] += time.perf_counter() - start

    def __getattr__(self, name: str) -> Any:  # prompt_template, action_format, privileged_facts, close, ...
        return getattr(self._env, name)


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_child(options: argparse.Namespace) -> dict[str, Any]:
    """Train `options.child` for warmup + steps optimizer steps and return its per-step timings and memory."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback

    from sdar_trl import SDARConfig, SDARTrainer
    from sdar_trl.config import CHECKPOINTING_FIELD
    from sdar_trl.environments import make_env
    from sdar_trl.sft import SKILL_BANKS
    from sdar_trl.skills import SkillBank
    from sdar_trl.starter import DEMO_ENVS

    torch.set_num_threads(1)
    clock = {"env": 0.0, "rollout": 0.0, "samples": 0}
    records: list[dict[str, float]] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            clock.update(env=0.0, rollout=0.0, samples=0, start=time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            records.append({**clock, "full": time.perf_counter() - clock["start"]})

    class TimedTrainer(SDARTrainer):
        def _agent_play(self, *args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            result = super()._agent_play(*args, **kwargs)
            clock["rollout"] += time.perf_counter() - start
            clock["samples"] = len(result.steps)
            return result

    env_kwargs = {k: v for k, v in DEMO_ENVS[options.env].items() if k != "eval_split"}
    tokenizer = AutoTokenizer.from_pretrained(options.model, padding_side="left")
    total_steps = options.warmup + options.steps
    with tempfile.TemporaryDirectory() as scratch:
        checkpointing = {}  # TRL's default unless a preset sets it
        if options.gradient_checkpointing is not None:
            checkpointing[CHECKPOINTING_FIELD] = options.gradient_checkpointing
        args = SDARConfig(
            output_dir=scratch,
            method=options.child,
            seed=options.seed,
            max_steps=total_steps,
            per_device_train_batch_size=options.tasks * options.num_generations,
            num_generations=options.num_generations,
            max_completion_length=options.max_completion_length,
            learning_rate=options.learning_rate,
            beta=options.beta,
            **checkpointing,
            privileged_context_source=options.context,
            teacher_prefix_cache=not options.no_teacher_prefix_cache,
            unpadded_logps=options.unpadded_logps,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            bf16=False,
            use_cpu=not torch.cuda.is_available(),
        )
        trainer = TimedTrainer(
            options.model,
            args=args,
            train_dataset=Dataset.from_list([{"seed": i} for i in range(options.tasks * total_steps)]),
            processing_class=tokenizer,
            env_factory=lambda: TimedEnv(make_env(options.env, split="train", **env_kwargs), clock),
            skill_bank=SkillBank.from_package(SKILL_BANKS[options.env]),
            callbacks=[Timer()],
        )
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() if cuda else _rss_bytes()
        trainer.train()
        if cuda:
            peak = torch.cuda.max_memory_allocated() - before
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
        trainer.close_environments()
    measured = records[options.warmup :]
    return {
        "method": options.child,
        "full_step_s": statistics.median(r["full"] for r in measured),
        "loss_path_s": statistics.median(r["full"] - r["rollout"] for r in measured),
        "rollout_s": statistics.median(r["rollout"] for r in measured),
        "env_time_share": sum(r["env"] for r in measured) / max(sum(r["rollout"] for r in measured), 1e-9),
        "peak_memory_bytes": max(peak, 1),
        "memory_measure": "cuda max_memory_allocated" if cuda else "peak RSS above the pre-training RSS",
        "steps": len(measured),
        "step_samples": [int(r["samples"]) for r in measured],
    }


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    options.model = resolve_model(options.model)
    if options.child:
        print("CHILD " + json.dumps(run_child(options)), flush=True)
        return 0
    results = {}
    for method in METHODS:
        command = [sys.executable, str(Path(__file__).resolve()), *(argv if argv is not None else sys.argv[1:])]
        command += ["--child", method, "--model", options.model]
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        lines = [line for line in completed.stdout.splitlines() if line.startswith("CHILD ")]
        if completed.returncode != 0 or not lines:
            sys.stderr.write(completed.stderr[-4000:])
            sys.exit(f"the {method} run failed (exit code {completed.returncode}); its stderr is above")
        results[method] = json.loads(lines[-1].removeprefix("CHILD "))
    grpo, sdar = results["grpo"], results["sdar"]
    record = {
        "benchmark": "step_cost",
        "env": options.env,
        "model": options.model,
        "full_step_ratio": sdar["full_step_s"] / grpo["full_step_s"],
        "loss_path_ratio": sdar["loss_path_s"] / grpo["loss_path_s"],
        "peak_memory_ratio": sdar["peak_memory_bytes"] / grpo["peak_memory_bytes"],
        "env_time_share": max(sdar["env_time_share"], grpo["env_time_share"]),
        "teacher_prefix_cache": not options.no_teacher_prefix_cache,
        "unpadded_logps": options.unpadded_logps,
        "context": options.context,
        "preset": options.preset,
        "tasks": options.tasks,
        "num_generations": options.num_generations,
        "machine": machine_info(),
        "runs": results,
    }
    print(f"{'':<26}{'GRPO':>12}{'SDAR':>12}{'SDAR/GRPO':>12}", file=sys.stderr)
    for label, key, scale in (
        ("full step (s, median)", "full_step_s", 1.0),
        ("loss path (s, median)", "loss_path_s", 1.0),
        ("rollout (s, median)", "rollout_s", 1.0),
        ("peak memory (MB)", "peak_memory_bytes", 1e-6),
    ):
        ratio = sdar[key] / grpo[key]
        print(f"{label:<26}{grpo[key] * scale:>12.3f}{sdar[key] * scale:>12.3f}{ratio:>12.3f}", file=sys.stderr)
    share = f"{100 * grpo['env_time_share']:.2f}%"
    print(f"{'env share of rollout':<26}{share:>12}{100 * sdar['env_time_share']:>11.2f}%", file=sys.stderr)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
