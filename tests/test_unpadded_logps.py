"""Row-by-row log-prob forwards without padding (`unpadded_logps`, sdar_trl.unpadded): spans, values, training."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from trl import GRPOTrainer

from agent_constants import EVEN, GO, WIN, skill_bank
from sdar_trl import SDARConfig, SDARTrainer
from sdar_trl.testing import (
    ScriptedEnv,
    build_tiny_model,
    patch_generation,
    save_tiny,
    tiny_agent_config,
    tiny_single_turn_config,
)
from sdar_trl.unpadded import UNPADDED_AUTO_MIN_TOKENS, RowSpan, reassemble_rows, row_spans, use_unpadded_logps

BANK = skill_bank(type0=[EVEN])


# ------------------------------------------------------------------ the pure helpers
def test_row_spans_on_a_hand_built_mask():
    # 4 prompt columns (left-padded) + 3 completion columns (right-padded): logits_to_keep=3, completion from col 4.
    mask = torch.tensor(
        [
            [0, 0, 1, 1, 1, 1, 0],  # prompt 2, completion 2: real columns 2..5
            [1, 1, 1, 1, 1, 1, 1],  # no padding at all
            [0, 1, 1, 1, 1, 0, 0],  # prompt 3, completion 1
            [0, 0, 0, 1, 0, 0, 0],  # completion fully masked (truncated / padding row): keeps one completion column
            [0, 0, 0, 0, 0, 0, 0],  # nothing real: still one prompt and one completion column
        ]
    )
    assert row_spans(mask, 3) == [
        RowSpan(start=2, stop=6, keep=2),
        RowSpan(start=0, stop=7, keep=3),
        RowSpan(start=1, stop=5, keep=1),
        RowSpan(start=3, stop=5, keep=1),
        RowSpan(start=3, stop=5, keep=1),
    ]


def test_row_spans_rejects_bad_input():
    with pytest.raises(ValueError, match=r"logits_to_keep=5 must lie in \[1, 4\]"):
        row_spans(torch.ones(2, 5), 5)
    with pytest.raises(ValueError, match="logits_to_keep=0"):
        row_spans(torch.ones(2, 5), 0)
    with pytest.raises(ValueError, match=r"must be 2-D .* got shape \(5,\)"):
        row_spans(torch.ones(5), 2)


def test_reassemble_rows_right_fills_with_zeros_and_keeps_gradients():
    spans = [RowSpan(0, 4, 2), RowSpan(0, 5, 3), RowSpan(1, 3, 1)]
    pieces = [
        torch.tensor([[-1.0, -2.0]], requires_grad=True),
        torch.tensor([[-3.0, -4.0, -5.0]], requires_grad=True),
        torch.tensor([[-6.0]], requires_grad=True),
    ]
    out = reassemble_rows(pieces, spans, 3)
    assert torch.equal(out, torch.tensor([[-1.0, -2.0, 0.0], [-3.0, -4.0, -5.0], [-6.0, 0.0, 0.0]]))
    (out * torch.arange(1.0, 10.0).view(3, 3)).sum().backward()
    assert torch.equal(pieces[0].grad, torch.tensor([[1.0, 2.0]]))
    assert torch.equal(pieces[1].grad, torch.tensor([[4.0, 5.0, 6.0]]))
    assert torch.equal(pieces[2].grad, torch.tensor([[7.0]]))
    with pytest.raises(ValueError, match=r"shape \(1, 3\), expected \(1, 2\)"):
        reassemble_rows([pieces[1], pieces[1], pieces[2]], spans, 3)
    with pytest.raises(ValueError, match="Got 2 row outputs for 3 row spans"):
        reassemble_rows(pieces[:2], spans, 3)


def test_use_unpadded_logps_modes():
    cpu, meta = torch.device("cpu"), torch.device("meta")  # meta stands for any non-CPU device
    long = torch.ones(2, UNPADDED_AUTO_MIN_TOKENS)  # (2, 384): 384 real tokens a row
    short = long.clone()
    short[1, 0] = 0  # 383.5 real tokens a row on average
    assert use_unpadded_logps("auto", cpu, long) and not use_unpadded_logps("auto", cpu, short)
    assert not use_unpadded_logps("auto", meta, long)  # accelerators: batched
    assert not use_unpadded_logps("auto", cpu, long[:1])  # one row: nothing to cut
    for mask in (long, short, long[:1]):
        assert use_unpadded_logps("always", cpu, mask) and use_unpadded_logps("always", meta, mask)
        assert not use_unpadded_logps("never", cpu, mask) and not use_unpadded_logps("never", meta, mask)
    with pytest.raises(ValueError, match="unpadded_logps='cpu' is not supported"):
        use_unpadded_logps("cpu", cpu, long)


def test_config_rejects_unknown_value(tmp_path):
    assert SDARConfig(output_dir=str(tmp_path), bf16=False, use_cpu=True).unpadded_logps == "auto"
    with pytest.raises(ValueError, match=r"unpadded_logps='on' is not supported; expected one of \['auto', 'always'"):
        SDARConfig(output_dir=str(tmp_path), bf16=False, use_cpu=True, unpadded_logps="on")


# ------------------------------------------------------------------ the trainer's forward
def _trainer(tmp_path, tokenizer, **config) -> SDARTrainer:
    args = tiny_single_turn_config(tmp_path, **config)
    rows = [
        {"prompt": [{"role": "user", "content": f"What is {i} + {i}?"}], "privileged_context": "x"} for i in range(4)
    ]
    return SDARTrainer(
        build_tiny_model(tokenizer),
        reward_funcs=lambda completions, **kwargs: [0.0] * len(completions),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )


def _ragged_batch(vocab_size: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Rows of prompt lengths 3, 7, 5, 6 (left-padded to 7) and completion lengths 2, 6, 4, 1 (right-padded to 6)."""
    generator = torch.Generator().manual_seed(0)
    prompts, completions, width_p, width_c = (3, 7, 5, 6), (2, 6, 4, 1), 7, 6
    input_ids = torch.randint(10, vocab_size, (4, width_p + width_c), generator=generator)  # (4, 13)
    attention_mask = torch.zeros_like(input_ids)  # (4, 13)
    for row, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        attention_mask[row, width_p - p : width_p + c] = 1
    input_ids = input_ids.masked_fill(attention_mask == 0, 0)  # padding token id
    return input_ids, attention_mask, width_c


def test_per_row_logps_entropies_and_gradients_equal_batched(tmp_path, tiny_tokenizer, monkeypatch):
    trainer = _trainer(tmp_path, tiny_tokenizer)
    trainer.model.train()
    input_ids, attention_mask, keep = _ragged_batch(trainer.model.config.vocab_size)
    completion_mask = attention_mask[:, -keep:].float()  # (4, 6)
    rows_seen = []
    original = GRPOTrainer._get_per_token_logps_and_entropies

    def spy(self, model, ids, *args, **kwargs):
        rows_seen.append(tuple(ids.shape))
        return original(self, model, ids, *args, **kwargs)

    monkeypatch.setattr(GRPOTrainer, "_get_per_token_logps_and_entropies", spy)
    results = {}
    for mode in ("never", "always"):
        trainer.args.unpadded_logps = mode
        trainer.model.zero_grad()
        logps, entropies, aux = trainer._get_per_token_logps_and_entropies(
            trainer.model, input_ids, attention_mask, keep, compute_entropy=True
        )  # (4, 6) each
        # A loss touching log-probs and entropies with different weights per position.
        weights = torch.linspace(0.5, 1.5, logps.numel()).view_as(logps)  # (4, 6)
        ((logps + 0.1 * entropies) * weights * completion_mask).sum().backward()
        grads = {name: p.grad.clone() for name, p in trainer.model.named_parameters() if p.grad is not None}
        results[mode] = (logps.detach(), entropies.detach(), aux, grads)
    # Batched: one (4, 13) forward. Per row: one forward per row on its real columns only.
    assert rows_seen == [(4, 13), (1, 5), (1, 13), (1, 9), (1, 7)]
    batched, per_row = results["never"], results["always"]
    real = completion_mask.bool()
    assert real.sum() == 13 and (~real).sum() == 11  # the comparison covers real and padding positions
    torch.testing.assert_close(per_row[0], batched[0], atol=1e-5, rtol=0)  # padding: 0 in both
    torch.testing.assert_close(per_row[1], batched[1], atol=1e-5, rtol=0)
    assert torch.all(per_row[0][~real] == 0) and torch.all(per_row[1][~real] == 0)
    assert per_row[2] is None and batched[2] is None
    assert per_row[3].keys() == batched[3].keys() and len(batched[3]) > 0
    for name, grad in batched[3].items():
        torch.testing.assert_close(per_row[3][name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_dispatch_auto_multimodal_and_aux_loss(tmp_path, tiny_tokenizer, monkeypatch):
    trainer = _trainer(tmp_path, tiny_tokenizer)
    calls = []

    def fake(self, model, input_ids, attention_mask, logits_to_keep, **kwargs):
        calls.append((input_ids.size(0), logits_to_keep, kwargs.get("compute_aux_loss", False)))
        logps = torch.zeros(input_ids.size(0), logits_to_keep)  # (b, keep)
        return logps, None, torch.zeros(()) if kwargs.get("compute_aux_loss") else None

    monkeypatch.setattr(GRPOTrainer, "_get_per_token_logps_and_entropies", fake)
    input_ids, attention_mask, keep = _ragged_batch(trainer.model.config.vocab_size)
    model = trainer.model

    def run(**kwargs):
        calls.clear()
        trainer._get_per_token_logps_and_entropies(model, input_ids, attention_mask, keep, **kwargs)
        return list(calls)

    trainer.args.unpadded_logps = "always"
    assert run() == [(1, 2, False), (1, 6, False), (1, 4, False), (1, 1, False)]
    # The MoE aux loss pools router statistics over the batch, and multimodal inputs are indexed per image: batched.
    assert run(compute_aux_loss=True) == [(4, 6, True)]
    assert run(pixel_values=torch.zeros(4, 3, 2, 2)) == [(4, 6, False)]
    assert run(pixel_values=None, token_type_ids=None)[0][0] == 1  # absent multimodal inputs do not count
    trainer.args.unpadded_logps = "never"
    assert run() == [(4, 6, False)]
    # The default, "auto", on CPU: batched for these short rows, per row once they reach the threshold on average.
    trainer.args.unpadded_logps = "auto"
    assert run() == [(4, 6, False)]
    width = UNPADDED_AUTO_MIN_TOKENS
    input_ids = torch.randint(10, 100, (2, width + 6))  # (2, 390)
    attention_mask = torch.ones_like(input_ids)  # (2, 390)
    attention_mask[0, width + 1 :] = 0  # row 0: 1 completion token, row 1: 6
    assert run() == [(1, 1, False), (1, 6, False)]
    # FSDP / ZeRO-3 (simulated): "auto" decides per process from its own rows, so it stays batched there.
    monkeypatch.setattr(SDARTrainer, "_weights_sharded", lambda self: True)
    assert run() == [(2, 6, False)]
    trainer.args.unpadded_logps = "always"
    assert run() == [(1, 1, False), (1, 6, False)]


# ------------------------------------------------------------------ training: "always" trains like "never"
@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a fixed reduction order, so the tolerance below measures the layouts only
    yield
    torch.set_num_threads(threads)


def _logged(trainer: SDARTrainer) -> list[dict[str, float]]:
    keep = ("loss", "grad_norm", "entropy")
    return [
        {k: v for k, v in record.items() if k in keep or k.startswith(("sdar/", "env/"))}
        for record in trainer.state.log_history
        if "loss" in record
    ]


def _agent_run(tmp_path, tokenizer, mode: str, monkeypatch) -> tuple[list[dict[str, float]], set[int]]:
    rows_seen: set[int] = set()
    original = GRPOTrainer._get_per_token_logps_and_entropies

    def spy(self, model, ids, *args, **kwargs):
        rows_seen.add(ids.size(0))
        return original(self, model, ids, *args, **kwargs)

    monkeypatch.setattr(GRPOTrainer, "_get_per_token_logps_and_entropies", spy)
    trainer = SDARTrainer(
        str(save_tiny(tmp_path / "model")),  # a path: TRL loads the reference model (beta > 0) from it
        # Old log-probs kept (2 slices), a reference model, the teacher through the full forward: every forward kind.
        args=tiny_agent_config(
            tmp_path / "out",
            per_device_train_batch_size=3,
            gradient_accumulation_steps=2,
            num_generations=2,
            beta=0.04,
            teacher_prefix_cache=False,
            unpadded_logps=mode,
        ),
        train_dataset=Dataset.from_list([{"seed": i} for i in range(8)]),
        processing_class=tokenizer,
        env_factory=lambda: ScriptedEnv(length=3),
        skill_bank=BANK,
    )

    def respond(text: str, call: int, position: int) -> str:  # responses of different lengths: ragged completions
        return [GO, WIN, "garbage", GO, WIN, GO][(call + 2 * position) % 6]

    patch_generation(trainer, respond)
    trainer.train()
    return _logged(trainer), rows_seen


def test_agent_training_always_matches_never(tmp_path, tiny_tokenizer, one_thread, monkeypatch):
    batched, batched_rows = _agent_run(tmp_path / "never", tiny_tokenizer, "never", monkeypatch)
    per_row, per_row_rows = _agent_run(tmp_path / "always", tiny_tokenizer, "always", monkeypatch)
    assert per_row_rows == {1} and max(batched_rows) > 1  # the two runs really took different paths
    assert len(batched) == len(per_row) == 2
    for got, want in zip(per_row, batched, strict=True):
        assert sorted(got) == sorted(want) and "sdar/distill_loss" in want and "env/success" in want
        for key, value in want.items():
            # Float rounding only: log-probs differ by ~1e-7 (different matmul shapes), grad_norm by ~1e-6 relative.
            assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


def _single_turn_run(tmp_path, tokenizer, mode: str) -> list[dict[str, float]]:
    # The run of tests/test_layout_pin.py's single-turn pin: generation, old/teacher log-probs, loss on 8 rows.
    rows = [
        {
            "prompt": [{"role": "user", "content": f"What is {i} + {i}?"}],
            "privileged_context": "" if i % 3 == 0 else "Add the two numbers; the answer is twice the number.",
        }
        for i in range(8)
    ]
    args = tiny_single_turn_config(tmp_path, per_device_train_batch_size=8, unpadded_logps=mode)
    trainer = SDARTrainer(
        build_tiny_model(tokenizer),
        reward_funcs=lambda completions, **kwargs: [len(c[0]["content"]) / 10.0 for c in completions],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )
    trainer.train()
    return _logged(trainer)


def test_single_turn_training_always_matches_never(tmp_path, tiny_tokenizer, one_thread):
    batched = _single_turn_run(tmp_path / "never", tiny_tokenizer, "never")
    per_row = _single_turn_run(tmp_path / "always", tiny_tokenizer, "always")
    assert len(batched) == len(per_row) == 2
    for got, want in zip(per_row, batched, strict=True):
        assert sorted(got) == sorted(want) and "sdar/teacher_gap_mean" in want
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
