"""Shared by the benchmark scripts (run as `python benchmarks/<script>.py`, so this directory is on sys.path)."""

from __future__ import annotations

import os
import sys


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
