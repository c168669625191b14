"""Is bf16 autocast worth it on this CPU? fp32 against bf16, on one thread, for a matmul and a model step.

torch computes bf16 in hardware only on CPUs with AVX512-BF16 or AMX (x86) or the BF16 extension (ARM); elsewhere
it converts to fp32 and back, which can make a bf16 run several times *slower* than fp32. `--preset cpu-small` of
benchmarks/table1.py uses bf16 autocast, so its wall time depends on which kind of CPU runs it. This script measures:

- matmul: `x @ w.T` at the starter's MLP shape (`--rows` × hidden into the intermediate size), GFLOP/s in fp32 and
  in bf16;
- step: one forward + backward of the model (default: the packaged starter) on `--batch` rows of `--tokens`
  tokens, median seconds in fp32 and under `torch.autocast("cpu", dtype=torch.bfloat16)` as the Trainer runs it.

Prints a human table on stderr and one JSON line on stdout with the keys `cpu`, `cpu_native_bf16`,
`cpu_capability`, `matmul_gflops_fp32`, `matmul_gflops_bf16`, `matmul_bf16_speedup`, `step_s_fp32`,
`step_s_bf16`, `step_bf16_speedup` (a speedup below 1 means bf16 is slower):

    python benchmarks/cpu_bf16.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from _common import machine_info, resolve_model

os.environ["OMP_NUM_THREADS"] = "1"  # comparable timings, as the other benchmarks
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model path or hub id (default: the packaged starter)")
    parser.add_argument("--rows", type=int, default=512, help="matmul rows (tokens)")
    parser.add_argument("--batch", type=int, default=1, help="rows per model step")
    parser.add_argument("--tokens", type=int, default=128, help="tokens per row in the model step")
    parser.add_argument("--repeats", type=int, default=2, help="timed model steps per precision (after a warm-up)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time spent per matmul measurement")
    args = parser.parse_args(argv)
    for name in ("rows", "batch", "tokens", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.seconds <= 0:
        parser.error(f"--seconds must be positive, got {args.seconds}")
    return args


def matmul_gflops(rows: int, inner: int, outer: int, dtype: Any, seconds: float) -> float:
    """GFLOP/s of `x @ w.T` for (rows, inner) x (outer, inner), repeated for `seconds`."""
    import torch

    x = torch.randn(rows, inner).to(dtype)  # (rows, inner)
    w = torch.randn(outer, inner).to(dtype)  # (outer, inner)
    torch.nn.functional.linear(x, w)  # warm-up: the first call picks and caches the kernel
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.nn.functional.linear(x, w)  # (rows, outer)
        calls += 1
    return 2 * rows * inner * outer * calls / (time.perf_counter() - start) / 1e9


def _sig(value: float) -> float:
    """Four significant digits: readable, and ratios of the rounded values stay within 0.1% of the true ones."""
    return float(f"{value:.4g}")


def median_seconds(work: Callable[[], None], repeats: int) -> float:
    work()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    options.model = resolve_model(options.model)
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(options.model, dtype=torch.float32)
    model.train()
    hidden, intermediate = model.config.hidden_size, model.config.intermediate_size
    input_ids = torch.randint(0, model.config.vocab_size, (options.batch, options.tokens))  # (B, T)

    def step(autocast: bool) -> Callable[[], None]:
        def work() -> None:
            model.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = model(input_ids=input_ids, labels=input_ids).loss
            loss.backward()

        return work

    fp32 = matmul_gflops(options.rows, hidden, intermediate, torch.float32, options.seconds)
    bf16 = matmul_gflops(options.rows, hidden, intermediate, torch.bfloat16, options.seconds)
    step_fp32 = median_seconds(step(False), options.repeats)
    step_bf16 = median_seconds(step(True), options.repeats)
    machine = machine_info()
    record = {
        "cpu": machine["cpu"],
        "cpu_native_bf16": machine["cpu_native_bf16"],
        "cpu_capability": machine["cpu_capability"],
        "matmul_gflops_fp32": _sig(fp32),
        "matmul_gflops_bf16": _sig(bf16),
        "matmul_bf16_speedup": _sig(bf16 / fp32),
        "step_s_fp32": _sig(step_fp32),
        "step_s_bf16": _sig(step_bf16),
        "step_bf16_speedup": _sig(step_fp32 / step_bf16),
        "model": options.model,
        "batch": options.batch,
        "tokens": options.tokens,
        "torch": machine["torch"],
    }
    print(
        f"{record['cpu']} (native bf16: {record['cpu_native_bf16']}, torch capability {record['cpu_capability']}), "
        "one thread\n"
        f"| measurement | fp32 | bf16 | bf16 speedup |\n|---|---|---|---|\n"
        f"| matmul ({options.rows} x {hidden} -> {intermediate}), GFLOP/s | {fp32:.1f} | {bf16:.1f} | "
        f"{record['matmul_bf16_speedup']:.2f}x |\n"
        f"| forward + backward ({options.batch} x {options.tokens} tokens), s | {step_fp32:.2f} | {step_bf16:.2f} | "
        f"{record['step_bf16_speedup']:.2f}x |",
        file=sys.stderr,
    )
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
