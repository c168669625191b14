"""Checkpoints: SDAR's own trainer state saved and restored, partial checkpoints detected on resume."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from datasets import Dataset

from sdar_trl import SDARTrainer
from sdar_trl.checkpoint import SDAR_STATE_NAME, find_missing_checkpoint_files, resolve_resume_checkpoint
from sdar_trl.testing import build_tiny_model, tiny_single_turn_config

TEACHER_METHODS = ("sdar", "grpo_opsd", "opsd", "skill_sd", "rlsd")
#: Every method with every teacher mode it can use (methods without a teacher ignore teacher_mode).
RESUME_CASES = [(method, mode) for method in TEACHER_METHODS for mode in ("live", "base", "ema")] + [
    ("grpo", "live"),
    ("skill_grpo", "live"),
]
#: The quick suite runs every method once and the EMA teacher with every teacher method; the rest is slow.
QUICK_CASES = {(method, "ema") for method in TEACHER_METHODS} | {
    ("sdar", "live"),
    ("sdar", "base"),
    ("grpo", "live"),
    ("skill_grpo", "live"),
}
COMPARED = ("loss", "grad_norm", "sdar/distill_loss", "sdar/teacher_gap_mean", "sdar/rlsd_weight")


def length_reward(completions, **kwargs):
    return [len(c[0]["content"]) / 10.0 for c in completions]  # varied rewards: non-zero advantages


def make_dataset(n: int = 8) -> Dataset:
    context = "Add the two numbers; the answer is twice the number."
    return Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": f"What is {i} + {i}?"}], "privileged_context": context}
            for i in range(n)
        ]
    )


def run(output_dir, tokenizer, *, resume=None, max_steps=3, save_steps=2, **config):
    config = {"teacher_ema_rate": 0.5, "rlsd_decay_steps": 4, **config}
    trainer = SDARTrainer(
        build_tiny_model(tokenizer),
        reward_funcs=length_reward,
        args=tiny_single_turn_config(
            output_dir, max_steps=max_steps, save_strategy="steps", save_steps=save_steps, **config
        ),
        train_dataset=make_dataset(),
        processing_class=tokenizer,
    )
    trainer.train(resume_from_checkpoint=resume)
    return trainer, {entry["step"]: entry for entry in trainer.state.log_history if "loss" in entry}


@pytest.mark.parametrize(
    ("method", "teacher_mode"),
    [
        pytest.param(*case, id="-".join(case), marks=() if case in QUICK_CASES else pytest.mark.slow)
        for case in RESUME_CASES
    ],
)
def test_resumed_run_matches_the_uninterrupted_run(tmp_path, tiny_tokenizer, method, teacher_mode):
    _, full = run(tmp_path / "full", tiny_tokenizer, method=method, teacher_mode=teacher_mode)
    checkpoint = tmp_path / "full" / "checkpoint-2"
    _, resumed = run(
        tmp_path / "resumed", tiny_tokenizer, resume=str(checkpoint), method=method, teacher_mode=teacher_mode
    )
    assert set(resumed) == {1, 2, 3}
    for key in COMPARED:
        if key in full[3]:
            assert resumed[3][key] == pytest.approx(full[3][key], rel=1e-5, abs=1e-7), key


def test_checkpoint_holds_the_ema_teacher(tmp_path, tiny_tokenizer):
    trainer, _ = run(tmp_path, tiny_tokenizer, teacher_mode="ema", max_steps=2)
    state = torch.load(tmp_path / "checkpoint-2" / SDAR_STATE_NAME, weights_only=True)
    assert state["teacher_mode"] == "ema"
    saved = state["ema"]["shadow"]
    assert len(saved) == len(trainer._sdar_ema.shadow)
    for stored, live in zip(saved, trainer._sdar_ema.shadow, strict=True):
        torch.testing.assert_close(stored, live.cpu())


def test_ema_resume_from_a_checkpoint_without_its_state_is_an_error(tmp_path, tiny_tokenizer):
    run(tmp_path / "live", tiny_tokenizer, max_steps=2, teacher_mode="live")
    checkpoint = tmp_path / "live" / "checkpoint-2"
    with pytest.raises(ValueError, match=r"teacher_mode='ema'.*'live'"):
        run(tmp_path / "ema", tiny_tokenizer, resume=str(checkpoint), teacher_mode="ema")


# ------------------------------------------------------------------------------------------ partial checkpoints
@pytest.fixture(scope="module")
def saved_run(tmp_path_factory, tiny_tokenizer):
    """A finished run with checkpoint-1 and checkpoint-2 (EMA teacher, so both hold SDAR state)."""
    path = tmp_path_factory.mktemp("saved_run")
    run(path, tiny_tokenizer, teacher_mode="ema", max_steps=2, save_steps=1)
    return path


def copy_run(saved_run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(saved_run, target)
    return target


def test_complete_checkpoints_have_nothing_missing(saved_run):
    for step in (1, 2):
        assert find_missing_checkpoint_files(saved_run / f"checkpoint-{step}", needs_sdar_state=True) == []


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        (lambda path: (path / "trainer_state.json").unlink(), "trainer_state.json"),
        (lambda path: (path / "trainer_state.json").write_text('{"global_step": '), "trainer_state.json"),
        (lambda path: (path / "model.safetensors").unlink(), "model weights"),
        (lambda path: _truncate(path / "model.safetensors"), "model.safetensors"),
        (lambda path: (path / SDAR_STATE_NAME).unlink(), SDAR_STATE_NAME),
    ],
    ids=["no-trainer-state", "truncated-trainer-state", "no-model", "truncated-model", "no-sdar-state"],
)
def test_partial_checkpoint_is_detected(saved_run, tmp_path, damage, needle):
    checkpoint = copy_run(saved_run, tmp_path) / "checkpoint-2"
    damage(checkpoint)
    missing = find_missing_checkpoint_files(checkpoint, needs_sdar_state=True)
    assert any(needle in item for item in missing), missing


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_sdar_state_is_required_only_when_there_is_state_to_restore(saved_run, tmp_path):
    checkpoint = copy_run(saved_run, tmp_path) / "checkpoint-2"
    (checkpoint / SDAR_STATE_NAME).unlink()
    assert find_missing_checkpoint_files(checkpoint, needs_sdar_state=False) == []


def test_resume_true_falls_back_to_the_newest_complete_checkpoint(saved_run, tmp_path):
    output_dir = copy_run(saved_run, tmp_path)
    (output_dir / "checkpoint-2" / "trainer_state.json").unlink()
    (output_dir / "checkpoint-3").mkdir()  # killed right after creating the directory
    with pytest.warns(UserWarning, match=r"checkpoint-3.*checkpoint-2.*trainer_state.json") as record:
        chosen = resolve_resume_checkpoint(True, str(output_dir), needs_sdar_state=True)
    assert chosen == str(output_dir / "checkpoint-1")
    assert len(record) == 1


def test_resume_true_without_a_complete_checkpoint_names_the_partial_ones(saved_run, tmp_path):
    output_dir = copy_run(saved_run, tmp_path)
    for step in (1, 2):
        (output_dir / f"checkpoint-{step}" / "model.safetensors").unlink()
    with pytest.raises(ValueError, match=r"no complete checkpoint.*checkpoint-2.*model weights"):
        resolve_resume_checkpoint(True, str(output_dir), needs_sdar_state=False)


def test_explicit_partial_checkpoint_is_a_clear_error(saved_run, tmp_path):
    output_dir = copy_run(saved_run, tmp_path)
    (output_dir / "checkpoint-2" / "trainer_state.json").unlink()
    with pytest.raises(ValueError, match=r"checkpoint-2.*incomplete.*trainer_state.json.*checkpoint-1"):
        resolve_resume_checkpoint(str(output_dir / "checkpoint-2"), str(output_dir), needs_sdar_state=True)


def test_explicit_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"not a directory"):
        resolve_resume_checkpoint(str(tmp_path / "checkpoint-9"), str(tmp_path), needs_sdar_state=False)


def test_train_resumes_from_the_newest_complete_checkpoint(saved_run, tmp_path, tiny_tokenizer):
    output_dir = copy_run(saved_run, tmp_path)
    (output_dir / "checkpoint-2" / "model.safetensors").unlink()
    with pytest.warns(UserWarning, match="checkpoint-2"):
        trainer, logs = run(output_dir, tiny_tokenizer, resume=True, teacher_mode="ema", max_steps=2, save_steps=1)
    assert trainer.state.global_step == 2
    assert json.loads((output_dir / "checkpoint-2" / "trainer_state.json").read_text())["global_step"] == 2
    assert set(logs) == {1, 2}
