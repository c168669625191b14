"""Step-time cost of the SDAR teacher branch relative to plain GRPO, on a tiny offline model.

Runs the same training set-up twice in one process (method="grpo", then method="sdar"), times the
optimizer steps after a warm-up, and prints one JSON line (the last line on stdout, starting with
`{"benchmark"`) plus a human table on stderr:

    OMP_NUM_THREADS=1 python benchmarks/teacher_overhead.py --hidden-size 256 --steps 8

Timings on a shared CPU swing; compare the ratio measured in one run, not absolute seconds across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import torch
from datasets import Dataset

from sdar_trl import SDARConfig, SDARTrainer
from sdar_trl.callbacks import StepTimeCallback
from sdar_trl.testing import build_tiny_model, build_tiny_tokenizer


def reward(completions, **kwargs):
    return [len(c[0]["content"]) / 10.0 for c in completions]


def run(method: str, options: argparse.Namespace, tokenizer) -> list[float]:
    dataset = Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": f"Step {i}: what should the agent do next?"}],
                "privileged_context": "Always check the admissible actions before acting. " * options.context_repeats,
            }
            for i in range(options.batch_size * (options.steps + options.warmup))
        ]
    )
    with tempfile.TemporaryDirectory() as output_dir:
        args = SDARConfig(
            output_dir=output_dir,
            method=method,
            per_device_train_batch_size=options.batch_size,
            num_generations=options.num_generations,
            max_completion_length=options.completion_length,
            max_steps=options.steps + options.warmup,
            learning_rate=1e-5,
            report_to="none",
            bf16=False,
            save_strategy="no",
            disable_tqdm=True,
            logging_steps=10_000,
            seed=options.seed,
        )
        timer = StepTimeCallback()
        model = build_tiny_model(
            tokenizer, hidden_size=options.hidden_size, num_hidden_layers=options.layers, seed=options.seed
        )
        trainer = SDARTrainer(
            model, reward_funcs=reward, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=[timer]
        )
        trainer.train()
    return timer.seconds[options.warmup :]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden-size", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--completion-length", type=int, default=32)
    parser.add_argument("--context-repeats", type=int, default=4, help="length of the privileged context")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args(argv)

    tokenizer = build_tiny_tokenizer()
    results = {method: run(method, options, tokenizer) for method in ("grpo", "sdar")}
    grpo, sdar = (statistics.median(results[m]) for m in ("grpo", "sdar"))
    record = {
        "benchmark": "teacher_overhead",
        "hidden_size": options.hidden_size,
        "layers": options.layers,
        "batch_size": options.batch_size,
        "completion_length": options.completion_length,
        "steps": options.steps,
        "torch_threads": torch.get_num_threads(),
        "grpo_step_s": grpo,
        "sdar_step_s": sdar,
        "ratio": sdar / grpo,
    }
    print(json.dumps(record))
    print(f"{'method':<8}{'median step (s)':>18}{'min':>10}{'max':>10}", file=sys.stderr)
    for method, times in results.items():
        print(f"{method:<8}{statistics.median(times):>18.4f}{min(times):>10.4f}{max(times):>10.4f}", file=sys.stderr)
    print(f"SDAR / GRPO step-time ratio: {record['ratio']:.3f}", file=sys.stderr)


if __name__ == "__main__":
    main()
