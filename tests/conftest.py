"""Shared test set-up: offline Hugging Face stack, tiny models built in memory."""

import importlib.util
import os
import sys
from pathlib import Path

# Must be set before transformers/trl are imported: TRL pings the hub at trainer start otherwise.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from sdar_trl.testing import build_tiny_tokenizer

    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def bm():
    """scripts/build_micro.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("build_micro", ROOT / "scripts" / "build_micro.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_micro"] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("build_micro", None)
