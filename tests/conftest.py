"""Shared test set-up: offline Hugging Face stack, tiny models built in memory."""

import os

# Must be set before transformers/trl are imported: TRL pings the hub at trainer start otherwise.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from sdar_trl.testing import build_tiny_tokenizer

    return build_tiny_tokenizer()
