"""The TRL internals SDARTrainer relies on (see src/sdar_trl/_compat.py) are still where we expect them.

When this fails after a TRL upgrade, the message says what moved: update _compat.py and the wrapped
methods in trainer.py, then the pin in pyproject.toml.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from trl import GRPOTrainer

from sdar_trl import _compat

ROOT = Path(__file__).resolve().parents[1]


def test_installed_trl_honours_the_contract():
    problems = _compat.check_trl_contract()
    assert not problems, "TRL changed under sdar_trl:\n- " + "\n- ".join(problems)


def test_contract_check_detects_a_moved_method(monkeypatch):
    def renamed(self, model, batch):  # a TRL release renaming `inputs` would break our wrapper
        return None

    monkeypatch.setattr(GRPOTrainer, "_compute_loss", renamed)
    problems = _compat.check_trl_contract()
    assert any("_compute_loss" in p and "signature changed" in p for p in problems)


def test_compute_loss_runs_one_logprob_forward():
    # SDARTrainer captures the student's log-probs from this single call instead of a second forward.
    source = inspect.getsource(GRPOTrainer._compute_loss)
    assert source.count("self._get_per_token_logps_and_entropies(") == 1, (
        "GRPOTrainer._compute_loss no longer makes exactly one _get_per_token_logps_and_entropies call"
    )


def test_trl_loss_is_already_scaled_for_gradient_accumulation():
    # We divide the distillation term by current_gradient_accumulation_steps because TRL does the same.
    assert GRPOTrainer.loss_is_scaled_for_ga is True
    assert "current_gradient_accumulation_steps" in inspect.getsource(GRPOTrainer._compute_loss)


def test_generation_output_keys_and_metrics_store():
    source = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    for key in _compat.GENERATION_OUTPUT_KEYS:
        assert f'"{key}"' in source, f"_generate_and_score_completions no longer returns {key!r}"
    init_source = inspect.getsource(GRPOTrainer.__init__)
    assert 'self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}' in init_source


def test_pyproject_pin_matches_tested_range():
    text = (ROOT / "pyproject.toml").read_text()
    low, high = _compat.TESTED_TRL_RANGE
    high_minor = ".".join(high.split(".")[:2])
    assert re.search(rf'"trl>={re.escape(low)},<{re.escape(high_minor)}"', text), (
        f"pyproject.toml must pin trl to [{low}, {high}) like _compat.TESTED_TRL_RANGE"
    )


# Members we only call (never override): TRL's loss, the tokenization/generation of agent-mode steps, and the run
# directory checkpoints go to.
CALLED_ONLY = {"_compute_loss", "_tokenize_prompts", "_generate_single_turn", "_get_output_dir"}
WRAPPED = [m for m in _compat.GRPO_METHODS if m.name not in CALLED_ONLY]


def test_agent_mode_relies_on_trl_generation_outputs():
    # _generate_single_turn returns (completion_ids, logprobs); _tokenize_prompts returns (ids, images, fields).
    assert "return completion_ids, logprobs" in inspect.getsource(GRPOTrainer._generate_single_turn)
    assert "return prompt_ids, images, multimodal_fields" in inspect.getsource(GRPOTrainer._tokenize_prompts)
    # training_step is where TRL counts steps; our agent-mode override keeps that counter and step_time.
    source = inspect.getsource(GRPOTrainer.training_step)
    assert "self._step += 1" in source and "_current_train_step_time" in source


@pytest.mark.parametrize("member", WRAPPED, ids=lambda m: m.name)
def test_each_wrapped_method_is_overridden_via_super(member):
    from sdar_trl import SDARTrainer

    override = SDARTrainer.__dict__.get(member.name)
    assert override is not None, f"SDARTrainer should wrap {member.name}"
    assert "super()." + member.name in inspect.getsource(override), f"{member.name} must call super()"


def test_sdar_trainer_accepts_every_grpo_trainer_argument():
    from sdar_trl import SDARTrainer

    grpo = list(inspect.signature(GRPOTrainer.__init__).parameters)
    sdar = list(inspect.signature(SDARTrainer.__init__).parameters)
    agent_mode = ["env_factory", "skill_bank", "eval_env_factory"]  # SDARTrainer's own, after GRPOTrainer's
    assert sdar == [*grpo, *agent_mode], f"GRPOTrainer.__init__ takes {grpo}, SDARTrainer.__init__ forwards {sdar}"


def test_accelerate_gradient_state_switch_used_by_agent_mode():
    # Agent mode runs several backward passes per Trainer step and switches gradient synchronisation itself, the
    # way transformers' own training loop does (GradientState._set_sync_gradients + Accelerator.no_sync).
    from accelerate import Accelerator
    from accelerate.state import GradientState

    assert callable(getattr(GradientState, "_set_sync_gradients", None))
    assert callable(getattr(Accelerator, "no_sync", None))
    import transformers.trainer

    assert "gradient_state._set_sync_gradients" in inspect.getsource(transformers.trainer)


def _fused_logps_and_grads(compact: bool, monkeypatch):
    """TRL's fused LM head on a tiny model, prompt positions masked as GRPO masks them; log-probs + gradients."""
    import torch
    import trl.trainer.utils as trl_utils

    from sdar_trl.testing import build_tiny_model, build_tiny_tokenizer

    monkeypatch.setattr(trl_utils, "_use_triton", lambda device: compact)
    model = build_tiny_model(build_tiny_tokenizer())
    _compat.add_fused_lm_head(model, temperature=0.7)
    input_ids = torch.randint(5, 100, (2, 10), generator=torch.Generator().manual_seed(0))  # (B, T)
    labels = input_ids.clone()
    labels[:, :-3] = -100  # 3 completion tokens, as GRPOTrainer._get_per_token_logps_and_entropies builds them
    outputs = model(input_ids=input_ids, labels=labels, fused_lm_head=True)
    outputs.log_probs[:, -3:].sum().backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    return outputs.log_probs.detach(), grads


def test_cpu_compaction_leaves_log_probs_and_gradients_unchanged(monkeypatch):
    import torch

    full, full_grads = _fused_logps_and_grads(False, monkeypatch)
    compact, compact_grads = _fused_logps_and_grads(True, monkeypatch)
    torch.testing.assert_close(compact, full)
    assert full[:, :-3].abs().sum() == 0  # masked positions are 0 either way
    assert len(full_grads) == len(compact_grads) > 0
    for a, b in zip(full_grads, compact_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_compact_fused_log_probs_on_cpu_widens_only_the_cpu_test(monkeypatch):
    import torch
    import trl.trainer.utils as trl_utils

    monkeypatch.setattr(trl_utils, "_use_triton", lambda device: False)
    _compat.compact_fused_log_probs_on_cpu()
    patched = trl_utils._use_triton
    assert patched(torch.device("cpu")) is True
    assert patched(torch.device("meta")) is False  # other devices keep TRL's own answer
    _compat.compact_fused_log_probs_on_cpu()  # idempotent: no second wrapper
    assert trl_utils._use_triton is patched
    assert _compat.FUSED_HEAD_COMPACTION_TEST in inspect.getsource(_compat.add_fused_lm_head)
