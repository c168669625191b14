"""Shared by the benchmark scripts (run as `python benchmarks/<script>.py`, so this directory is on sys.path)."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any


def resolve_model(model: str | None) -> str:
    """`--model`, or the packaged starter when none is given; a local directory switches the hub off."""
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


def machine_info() -> dict[str, Any]:
    """Where a run was made. Results from different CPUs differ in speed and, through floating-point rounding in the
    kernels, in which tokens get sampled: two machines play different rollouts from the same seed and weights."""
    import torch
    import transformers
    import trl

    cpu = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            cpu = cpu_model_name(file.read())
    except OSError:  # not Linux: platform's (coarser) answer below
        pass
    return {
        "cpu": cpu or platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
    }
