"""`StepTimeCallback`: driven by hand with a fake clock, and on a tiny model trained for real."""

from __future__ import annotations

import math

import torch
from datasets import Dataset
from transformers import TrainerControl, TrainerState

from sdar_trl import SDARTrainer
from sdar_trl import callbacks as callbacks_module
from sdar_trl.callbacks import StepTimeCallback
from sdar_trl.testing import build_tiny_model, tiny_single_turn_config


def _drive(callback: StepTimeCallback, steps: int) -> None:
    state, control = TrainerState(), TrainerControl()
    for _ in range(steps):
        callback.on_step_begin(None, state, control)
        callback.on_step_end(None, state, control)


def test_step_seconds_run_from_step_begin_to_step_end(monkeypatch):
    clock = iter([10.0, 10.5, 11.0, 12.25, 20.0, 20.125])  # begin, end of three steps
    monkeypatch.setattr(callbacks_module.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    callback = StepTimeCallback()
    _drive(callback, 3)
    assert callback.seconds == [0.5, 1.25, 0.125]
    assert callback.peak_memory_bytes is None  # no CUDA: no memory figure rather than a misleading 0


def test_peak_memory_is_the_largest_reading_over_the_step_ends(monkeypatch):
    # Per step end: (free, total) of the device and torch's peak reserved bytes.
    readings = iter([((60, 100), 30), ((90, 100), 50), ((80, 100), 45)])
    current = {}

    def mem_get_info():
        current["reading"] = next(readings)
        return current["reading"][0]

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda: current["reading"][1])
    callback = StepTimeCallback()
    _drive(callback, 1)
    assert callback.peak_memory_bytes == 40  # the device's 100 - 60 used beats torch's 30 reserved
    _drive(callback, 2)
    assert callback.peak_memory_bytes == 50  # step 2's reserved 50; step 3's readings (20 used, 45) are lower
    assert len(callback.seconds) == 3


def test_one_entry_per_optimizer_step_of_a_real_run(tmp_path, tiny_tokenizer):
    # Two micro-batches per optimizer step: the callback times the optimizer step, not each micro-batch.
    args = tiny_single_turn_config(tmp_path, per_device_train_batch_size=2, gradient_accumulation_steps=2, max_steps=3)
    dataset = Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": f"What is {i} + {i}?"}], "privileged_context": "Twice."}
            for i in range(8)
        ]
    )
    callback = StepTimeCallback()
    trainer = SDARTrainer(
        build_tiny_model(tiny_tokenizer),
        reward_funcs=lambda completions, **kwargs: [len(c[0]["content"]) / 10.0 for c in completions],
        args=args,
        train_dataset=dataset,
        processing_class=tiny_tokenizer,
        callbacks=[callback],
    )
    trainer.train()
    assert trainer.state.global_step == 3
    assert len(callback.seconds) == 3
    assert all(math.isfinite(s) and s > 0 for s in callback.seconds)
    assert (callback.peak_memory_bytes is None) == (not torch.cuda.is_available())
