"""Step-time cost of the gate diagnostics (`gate_diagnostics=True`) in a tiny agent-mode run.

Two measurements in one process, on a random tiny model that really generates (no scripted responses) in
`ScriptedEnv` episodes:

1. *instrumented share*: with the diagnostics on, the time spent inside them (annotating the batch with token
   classes and outcomes; the split statistics and their all-process sum in the loss; the token dumps) divided by the
   optimizer step time. This is the number to read on a shared machine: both parts are timed in the same steps.
2. *A/B*: the median step time of the same run with the diagnostics off and on (noisy on a shared CPU).

    OMP_NUM_THREADS=1 python benchmarks/gate_overhead.py --steps 6

Prints a JSON line (the last line on stdout, starting with `{"benchmark"`) and a human summary on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import torch
from datasets import Dataset
from transformers import TrainerCallback

from sdar_trl import SDARTrainer
from sdar_trl.callbacks import StepTimeCallback
from sdar_trl.skills import SkillBank
from sdar_trl.testing import ScriptedEnv, build_tiny_model, build_tiny_tokenizer, tiny_agent_config

BANK = SkillBank.from_dict(
    {
        "general_skills": [{"title": "Finish", "principle": "Say win when ready.", "when_to_apply": "Always."}],
        "task_specific_skills": {},
    }
)


def _timed(method: Callable[..., Any], spent: list[float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - start)

    return wrapper


def run(options: argparse.Namespace, tokenizer: Any, *, diagnostics: bool) -> tuple[list[float], float]:
    """Step times after the warm-up, and the seconds spent in the diagnostics during those steps."""
    total = options.steps + options.warmup
    dataset = Dataset.from_list([{"seed": i} for i in range(options.tasks * total)])
    with tempfile.TemporaryDirectory() as output_dir:
        args = tiny_agent_config(
            output_dir,
            per_device_train_batch_size=options.tasks * options.num_generations,
            num_generations=options.num_generations,
            max_completion_length=options.completion_length,
            max_steps=total,
            logging_steps=1,
            gate_diagnostics=diagnostics,
            gate_diagnostics_every=options.every,
            seed=options.seed,
        )
        timer = StepTimeCallback()
        model = build_tiny_model(tokenizer, hidden_size=options.hidden_size, num_hidden_layers=2, seed=options.seed)
        trainer = SDARTrainer(
            model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            env_factory=lambda: ScriptedEnv(length=options.episode_length),
            skill_bank=BANK,
            callbacks=[timer],
        )
        spent: list[float] = []
        marks: list[int] = []  # diagnostics calls made before each step
        trainer._gate_annotate = _timed(trainer._gate_annotate, spent)
        trainer._gate_record = _timed(trainer._gate_record, spent)

        class Mark(TrainerCallback):
            def on_step_begin(self, args, state, control, **kwargs):
                marks.append(len(spent))

        trainer.add_callback(Mark())
        trainer.train()
    measured = sum(spent[marks[options.warmup] :]) if diagnostics else 0.0
    return timer.seconds[options.warmup :], measured


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--tasks", type=int, default=2, help="task groups per step")
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--completion-length", type=int, default=48)
    parser.add_argument("--episode-length", type=int, default=3)
    parser.add_argument("--every", type=int, default=1, help="gate_diagnostics_every (1: a token dump every step)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args(argv)

    tokenizer = build_tiny_tokenizer()
    off, _ = run(options, tokenizer, diagnostics=False)
    on, spent = run(options, tokenizer, diagnostics=True)
    record = {
        "benchmark": "gate_overhead",
        "hidden_size": options.hidden_size,
        "rows_per_step": options.tasks * options.num_generations * options.episode_length,
        "completion_length": options.completion_length,
        "every": options.every,
        "steps": options.steps,
        "torch_threads": torch.get_num_threads(),
        "diagnostics_s_per_step": spent / len(on),
        "step_s_on": statistics.median(on),
        "step_s_off": statistics.median(off),
        "instrumented_share": spent / sum(on),
        "ab_ratio": statistics.median(on) / statistics.median(off),
    }
    print(json.dumps(record))
    print(
        f"diagnostics: {1000 * record['diagnostics_s_per_step']:.1f} ms per step = "
        f"{100 * record['instrumented_share']:.2f} % of the step time ({record['step_s_on']:.2f} s median); "
        f"A/B median step time on/off: {record['ab_ratio']:.3f}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
