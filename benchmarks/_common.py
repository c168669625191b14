"""Shared by the benchmark scripts (run as `python benchmarks/<script>.py`, so this directory is on sys.path)."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any


def resolve_model(model: str | None) -> str:
    """`--model`, or the packaged starter when none is given; a starter's short name (`micro:<env>`, `smollm2`)
    becomes its directory, and a local directory switches the hub off."""
    if model is not None:
        from sdar_trl.starter import resolve_model_name

        model = resolve_model_name(model)
    if model is None:
        from sdar_trl.starter import starter_available, starter_model_path

        if not starter_available():
            sys.exit(
                "no --model given and the packaged starter cannot be loaded (not built, or its base model is not "
                "fetched: `python -m sdar_trl.starter download-base`); see docs/starter.md"
            )
        model = str(starter_model_path())
    if os.path.isdir(model):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return model


def cpu_model_name(cpuinfo: str) -> str | None:
    """The first `model name` in a /proc/cpuinfo text (None when there is none, as on ARM or macOS)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return None


def cpu_native_bf16(cpuinfo: str) -> bool | None:
    """Whether the CPU computes bf16 in hardware, from the `flags` (x86) or `Features` (ARM) line of a /proc/cpuinfo
    text: AVX512-BF16 or AMX-BF16 on x86, the BF16 extension on ARM. None when the text has neither line.

    Without it, torch emulates bf16 matmuls by converting to fp32 and back, which is several times slower than fp32
    itself (benchmarks/cpu_bf16.py measures it): bf16 autocast then slows a CPU run down instead of speeding it up.
    """
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return bool({"avx512_bf16", "amx_bf16", "bf16"} & set(value.split()))
    return None


def read_cpuinfo() -> str:
    """/proc/cpuinfo's text, or "" where there is none (macOS, Windows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            return file.read()
    except OSError:
        return ""


def machine_info() -> dict[str, Any]:
    """Where a run was made. Results from different CPUs differ in speed and, through floating-point rounding in the
    kernels, in which tokens get sampled: two machines play different rollouts from the same seed and weights."""
    import torch
    import transformers
    import trl

    cpuinfo = read_cpuinfo()
    return {
        "cpu": cpu_model_name(cpuinfo) or platform.processor() or platform.machine(),  # coarser, off Linux
        # bf16 autocast pays only with it: without, a training step is 10-15x slower than fp32 (docs/results.md).
        "cpu_native_bf16": cpu_native_bf16(cpuinfo),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
    }
