"""scripts/build_starter.py runs end to end (--quick: tiny data, 20 steps per phase) and writes a loadable starter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_build_writes_a_loadable_starter_with_metrics(tmp_path):
    out = tmp_path / "starter"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(ROOT / "scripts" / "build_starter.py"), "--quick", "--output_dir", str(out)]
    command += ["--backbone", "scratch", "--envs", "searchqa-mini", "--copy_steps", "20"]
    completed = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    for phase in ("copy:", "lm:", "sft:"):  # the three training phases ran, in this order
        assert phase in completed.stdout
    assert completed.stdout.index("copy:") < completed.stdout.index("lm:") < completed.stdout.index("sft:")

    from sdar_trl.starter import load_starter, load_starter_metrics

    model, tokenizer = load_starter(out)
    assert model.config.model_type == "qwen3" and tokenizer.eos_token == "<|im_end|>"
    metrics = load_starter_metrics(out)
    cell = metrics["eval"]["searchqa-mini"]["none"]
    assert 0.0 <= cell["success"] <= 1.0 and cell["tasks"] == 4
    assert set(metrics["train"]["loss_curve"]) == {"copy", "lm", "sft"}
    assert json.loads((out / "metrics.json").read_text())["model"]["parameters"] > 0


@pytest.mark.slow
def test_quick_smollm2_build_writes_a_small_adapter(tmp_path):
    """The shipped path: one LoRA SFT step on SmolLM2, the adapter saved in bfloat16 and loaded back merged."""
    from sdar_trl.starter import starter_available

    if not starter_available():
        pytest.skip("the starter's base model is not fetched (python -m sdar_trl.starter download-base)")
    out = tmp_path / "starter"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(ROOT / "scripts" / "build_starter.py"), "--quick", "--output_dir", str(out)]
    command += ["--envs", "searchqa-mini", "--max_steps", "1", "--rows_per_env", "8", "--eval_tasks", "2"]
    command += ["--threads", "2"]
    completed = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "sft: 1 steps" in completed.stdout and "lm:" not in completed.stdout

    from sdar_trl.starter import load_starter, load_starter_metrics

    assert (out / "adapter_config.json").is_file() and not (out / "config.json").exists()
    assert (out / "adapter_model.safetensors").stat().st_size < 6_000_000, "bfloat16 rank-8 adapter: ~4.9 MB"
    recorded = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert recorded == "HuggingFaceTB/SmolLM2-135M-Instruct", "the public id, not this machine's cache path"
    model, _ = load_starter(out)
    assert model.config.model_type == "llama" and not hasattr(model, "peft_config")
    metrics = load_starter_metrics(out)
    assert metrics["model"]["backbone"] == "smollm2" and metrics["eval"]["searchqa-mini"]["none"]["tasks"] == 2


def _build_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_starter", ROOT / "scripts" / "build_starter.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("num_items", [None, "count"])
def test_plain_loss_scores_only_the_completion_and_equals_the_models_cross_entropy(num_items):
    """The build's loss keeps logits from the batch's first labelled token on; the value must not change."""
    import torch

    from sdar_trl.testing import build_tiny_model, build_tiny_tokenizer

    build = _build_script()
    model = build_tiny_model(build_tiny_tokenizer())
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, 100, (3, 12), generator=generator)  # (B, T)
    labels = input_ids.clone()
    labels[:, :5] = -100  # prompts of different lengths, and right padding in the last row
    labels[0, :7] = -100
    labels[2, 10:] = -100
    count = (labels[:, 1:] != -100).sum() if num_items == "count" else None
    trainer = build.PlainLossSFTTrainer.__new__(build.PlainLossSFTTrainer)  # compute_loss reads only args
    trainer.args = type("Args", (), {"average_tokens_across_devices": False})()
    ours = trainer.compute_loss(model, {"input_ids": input_ids, "labels": labels}, num_items_in_batch=count)
    reference = model(input_ids=input_ids, labels=labels, num_items_in_batch=count).loss
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)
    # Nothing labelled before position 5: the model was asked for the last 12 - 4 = 8 positions only.
    seen = {}
    model.register_forward_hook(lambda module, args, kwargs, output: seen.update(kwargs), with_kwargs=True)
    trainer.compute_loss(model, {"input_ids": input_ids, "labels": labels})
    assert seen["logits_to_keep"] == 8


def test_per_env_counts_parse_a_default_with_exceptions_and_reject_bad_lists():
    import argparse

    build = _build_script()
    counts = build.per_env_counts("100,alfworld-mini=300")
    assert counts == {"*": 100, "alfworld-mini": 300}
    assert build.count_for(counts, "alfworld-mini") == 300 and build.count_for(counts, "webshop-mini") == 100
    assert build.per_env_counts("webshop-mini=5") == {"webshop-mini": 5, "*": 0}
    for bad in ("x", "-1", "nowhere-mini=3", "5,alfworld-mini=1,alfworld-mini=2", "alfworld-mini=x"):
        with pytest.raises(argparse.ArgumentTypeError, match="count list"):
            build.per_env_counts(bad)


def test_cap_rows_per_env_keeps_per_env_limits_and_order():
    from types import SimpleNamespace

    build = _build_script()
    steps = [SimpleNamespace(env="a", i=i) for i in range(10)] + [SimpleNamespace(env="b", i=i) for i in range(6)]
    kept = build.cap_rows_per_env(steps, {"*": 0, "a": 4}, seed=0)  # 0: every row of b
    a_rows = [s.i for s in kept if s.env == "a"]
    assert len(a_rows) == 4 and a_rows == sorted(a_rows)
    assert [s.i for s in kept if s.env == "b"] == list(range(6))
    assert len(build.cap_rows_per_env(steps, {"*": 3}, seed=0)) == 6
