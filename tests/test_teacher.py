"""Tests for `sdar_trl.teacher`: the teacher prefix text and the teacher prompt ids built from student ids."""

import os
import types

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import pytest
import torch

import sdar_trl.teacher
from sdar_trl._compat import add_fused_lm_head
from sdar_trl.teacher import (
    EMATeacherWeights,
    build_teacher_prompt_ids,
    common_prompt_start,
    length_sorted_slices,
    prefix_cached_logps,
    render_teacher_prefix,
    shared_prefix_groups,
    teacher_logps,
)
from sdar_trl.testing import build_tiny_model

HEADER = "[Privileged Skill Information]\n"
PAD = 0
JUNK = 42  # value sitting under the student's padding: it must be stripped by the mask, not by its value


def student_batch(dtype=torch.long, mask_dtype=torch.long):
    # Row 0: 2 real tokens [5, 6] after 2 padding slots; row 1: 4 real tokens [7, 8, 9, 10].
    prompt_ids = torch.tensor([[JUNK, JUNK, 5, 6], [7, 8, 9, 10]], dtype=dtype)
    prompt_mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]]).to(mask_dtype)
    return prompt_ids, prompt_mask


# ---------------------------------------------------------------- render_teacher_prefix
class TestRenderTeacherPrefix:
    @pytest.mark.parametrize("context", [None, ""])
    def test_empty_context_gives_empty_prefix(self, context):
        assert render_teacher_prefix(context, header=HEADER) == ""
        assert render_teacher_prefix(context, header=HEADER, separator="---") == ""

    def test_header_context_separator(self):
        prefix = render_teacher_prefix("Look in drawers first.", header=HEADER)
        assert prefix == "[Privileged Skill Information]\nLook in drawers first.\n\n"

    def test_custom_header_and_separator(self):
        assert render_teacher_prefix("ctx", header="H:", separator="|") == "H:ctx|"
        assert render_teacher_prefix("ctx", header="", separator="") == "ctx"

    @pytest.mark.parametrize("context", [42, 0, ["skill"], {"title": "x"}, b"bytes", 1.5])
    def test_non_string_raises_type_error(self, context):
        with pytest.raises(TypeError, match=type(context).__name__):
            render_teacher_prefix(context, header=HEADER)


# ---------------------------------------------------------------- build_teacher_prompt_ids
class TestBuildTeacherPromptIds:
    def test_prefixes_of_different_lengths(self):
        prompt_ids, prompt_mask = student_batch()
        ids, mask = build_teacher_prompt_ids(prompt_ids, prompt_mask, [[1, 2, 3], [4]], pad_token_id=PAD)
        # row 0: [1, 2, 3] + [5, 6] = 5 tokens; row 1: [4] + [7, 8, 9, 10] = 5 tokens → width 5, no padding
        assert torch.equal(ids, torch.tensor([[1, 2, 3, 5, 6], [4, 7, 8, 9, 10]]))
        assert torch.equal(mask, torch.ones(2, 5, dtype=torch.long))

    def test_empty_prefix_on_one_row_is_left_padded(self):
        prompt_ids, prompt_mask = student_batch()
        ids, mask = build_teacher_prompt_ids(prompt_ids, prompt_mask, [[1, 2, 3], []], pad_token_id=PAD)
        # row 0: [1, 2, 3, 5, 6] (5 tokens); row 1: [7, 8, 9, 10] (4 tokens) → one pad on the left
        assert torch.equal(ids, torch.tensor([[1, 2, 3, 5, 6], [PAD, 7, 8, 9, 10]]))
        assert torch.equal(mask, torch.tensor([[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]]))

    def test_longer_prefix_on_longer_prompt(self):
        prompt_ids, prompt_mask = student_batch()
        ids, mask = build_teacher_prompt_ids(prompt_ids, prompt_mask, [[], [1, 2]], pad_token_id=99)
        # row 0: [5, 6]; row 1: [1, 2, 7, 8, 9, 10] → width 6, row 0 gets 4 pads of id 99
        assert torch.equal(ids, torch.tensor([[99, 99, 99, 99, 5, 6], [1, 2, 7, 8, 9, 10]]))
        assert torch.equal(mask, torch.tensor([[0, 0, 0, 0, 1, 1], [1, 1, 1, 1, 1, 1]]))

    def test_left_truncation_keeps_last_tokens(self):
        prompt_ids, prompt_mask = student_batch()
        prefixes = [[1, 2, 3], [4]]
        ids, mask = build_teacher_prompt_ids(prompt_ids, prompt_mask, prefixes, pad_token_id=PAD, max_length=3)
        # row 0: [1, 2, 3, 5, 6][-3:] = [3, 5, 6]; row 1: [4, 7, 8, 9, 10][-3:] = [8, 9, 10]
        assert torch.equal(ids, torch.tensor([[3, 5, 6], [8, 9, 10]]))
        assert torch.equal(mask, torch.ones(2, 3, dtype=torch.long))

    def test_truncation_only_hits_long_rows(self):
        prompt_ids, prompt_mask = student_batch()
        ids, mask = build_teacher_prompt_ids(prompt_ids, prompt_mask, [[1], []], pad_token_id=PAD, max_length=3)
        # row 0: [1, 5, 6] fits exactly; row 1: [7, 8, 9, 10][-3:] = [8, 9, 10]
        assert torch.equal(ids, torch.tensor([[1, 5, 6], [8, 9, 10]]))
        assert torch.equal(mask, torch.ones(2, 3, dtype=torch.long))

    def test_max_length_larger_than_rows_changes_nothing(self):
        prompt_ids, prompt_mask = student_batch()
        prefixes = [[1, 2, 3], []]
        plain = build_teacher_prompt_ids(prompt_ids, prompt_mask, prefixes, pad_token_id=PAD)
        capped = build_teacher_prompt_ids(prompt_ids, prompt_mask, prefixes, pad_token_id=PAD, max_length=100)
        assert torch.equal(plain[0], capped[0]) and torch.equal(plain[1], capped[1])

    def test_empty_prefixes_give_back_student_ids(self):
        prompt_ids, prompt_mask = student_batch()
        ids, mask = build_teacher_prompt_ids(prompt_ids, prompt_mask, [[], []], pad_token_id=PAD)
        # Same real tokens and mask; only the padding value is rewritten to pad_token_id.
        assert torch.equal(ids, torch.tensor([[PAD, PAD, 5, 6], [7, 8, 9, 10]]))
        assert torch.equal(mask, prompt_mask)

    def test_empty_prefixes_drop_surplus_padding_columns(self):
        # Both rows padded by at least 2: the re-padded batch is only as wide as its longest row (3).
        prompt_ids = torch.tensor([[JUNK, JUNK, JUNK, JUNK, 5], [JUNK, JUNK, 7, 8, 9]])
        prompt_mask = torch.tensor([[0, 0, 0, 0, 1], [0, 0, 1, 1, 1]])
        ids, mask = build_teacher_prompt_ids(prompt_ids, prompt_mask, [[], []], pad_token_id=PAD)
        assert torch.equal(ids, torch.tensor([[PAD, PAD, 5], [7, 8, 9]]))
        assert torch.equal(mask, torch.tensor([[0, 0, 1], [1, 1, 1]]))

    def test_all_empty_rows_give_one_padding_column(self):
        prompt_ids = torch.full((2, 3), JUNK)
        prompt_mask = torch.zeros(2, 3, dtype=torch.long)
        ids, mask = build_teacher_prompt_ids(prompt_ids, prompt_mask, [[], []], pad_token_id=PAD)
        assert torch.equal(ids, torch.tensor([[PAD], [PAD]]))
        assert torch.equal(mask, torch.tensor([[0], [0]]))

    def test_prefix_sequences_of_any_kind(self):
        prompt_ids, prompt_mask = student_batch()
        as_lists = build_teacher_prompt_ids(prompt_ids, prompt_mask, [[1, 2], [3]], pad_token_id=PAD)
        as_tuples = build_teacher_prompt_ids(prompt_ids, prompt_mask, ((1, 2), (3,)), pad_token_id=PAD)
        assert torch.equal(as_lists[0], as_tuples[0]) and torch.equal(as_lists[1], as_tuples[1])

    @pytest.mark.parametrize("dtype", [torch.long, torch.int32])
    @pytest.mark.parametrize("mask_dtype", [torch.long, torch.int32, torch.bool])
    def test_dtype_and_device_preserved(self, dtype, mask_dtype):
        prompt_ids, prompt_mask = student_batch(dtype=dtype, mask_dtype=mask_dtype)
        ids, mask = build_teacher_prompt_ids(prompt_ids, prompt_mask, [[1, 2, 3], []], pad_token_id=PAD)
        assert ids.dtype == dtype
        assert mask.dtype == mask_dtype
        assert ids.device == prompt_ids.device and mask.device == prompt_mask.device
        assert torch.equal(ids.long(), torch.tensor([[1, 2, 3, 5, 6], [PAD, 7, 8, 9, 10]]))
        assert torch.equal(mask.long(), torch.tensor([[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]]))

    def test_inputs_not_modified(self):
        prompt_ids, prompt_mask = student_batch()
        ids_before, mask_before = prompt_ids.clone(), prompt_mask.clone()
        build_teacher_prompt_ids(prompt_ids, prompt_mask, [[1], [2]], pad_token_id=PAD, max_length=2)
        assert torch.equal(prompt_ids, ids_before) and torch.equal(prompt_mask, mask_before)

    @pytest.mark.parametrize("prefixes", [[[1]], [[1], [2], [3]], []])
    def test_wrong_number_of_prefixes_raises(self, prefixes):
        prompt_ids, prompt_mask = student_batch()
        with pytest.raises(ValueError, match=f"Got {len(prefixes)} teacher prefixes for 2 prompts"):
            build_teacher_prompt_ids(prompt_ids, prompt_mask, prefixes, pad_token_id=PAD)

    def test_mismatched_ids_and_mask_raise(self):
        prompt_ids, prompt_mask = student_batch()
        with pytest.raises(ValueError, match=r"\(2, 4\) and \(2, 3\)"):
            build_teacher_prompt_ids(prompt_ids, prompt_mask[:, :3], [[], []], pad_token_id=PAD)

    def test_non_2d_inputs_raise(self):
        with pytest.raises(ValueError, match=r"\(4,\)"):
            build_teacher_prompt_ids(torch.arange(4), torch.ones(4), [[]], pad_token_id=PAD)

    @pytest.mark.parametrize("max_length", [0, -3])
    def test_non_positive_max_length_raises(self, max_length):
        prompt_ids, prompt_mask = student_batch()
        with pytest.raises(ValueError, match=f"max_length={max_length}"):
            build_teacher_prompt_ids(prompt_ids, prompt_mask, [[], []], pad_token_id=PAD, max_length=max_length)


# ---------------------------------------------------------------- EMA teacher weights
def _linear():
    layer = torch.nn.Linear(2, 1, bias=True)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 2.0]]))
        layer.bias.copy_(torch.tensor([0.5]))
    return layer


def test_ema_update_and_swap_by_hand():
    layer = _linear()
    ema = EMATeacherWeights(layer, update_rate=0.25)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[5.0, -2.0]]))  # an "optimizer step"
        layer.bias.copy_(torch.tensor([4.5]))
    ema.update()
    # ema = 0.75·old + 0.25·new: weight [0.75 + 1.25, 1.5 − 0.5] = [2.0, 1.0]; bias 0.375 + 1.125 = 1.5
    with ema.swapped_in():
        torch.testing.assert_close(layer.weight.detach(), torch.tensor([[2.0, 1.0]]))
        torch.testing.assert_close(layer.bias.detach(), torch.tensor([1.5]))
        out = layer(torch.tensor([[1.0, 1.0]]))
        torch.testing.assert_close(out.detach(), torch.tensor([[4.5]]))  # 2 + 1 + 1.5
    # live weights are back, untouched
    torch.testing.assert_close(layer.weight.detach(), torch.tensor([[5.0, -2.0]]))
    torch.testing.assert_close(layer.bias.detach(), torch.tensor([4.5]))


def test_ema_skips_frozen_parameters_and_rejects_bad_input():
    layer = _linear()
    layer.bias.requires_grad_(False)
    ema = EMATeacherWeights(layer, update_rate=1.0)
    assert len(ema.shadow) == 1
    with pytest.raises(ValueError, match="update_rate=0"):
        EMATeacherWeights(layer, update_rate=0)
    with pytest.raises(ValueError, match="no trainable parameters"):
        EMATeacherWeights(_linear().requires_grad_(False), update_rate=0.5)


def test_ema_swap_is_restored_after_an_exception_and_update_inside_swap_fails():
    layer = _linear()
    ema = EMATeacherWeights(layer, update_rate=0.5)
    with torch.no_grad():
        layer.weight.add_(1.0)
    with pytest.raises(RuntimeError, match="inside swapped_in"), ema.swapped_in():
        ema.update()
    torch.testing.assert_close(layer.weight.detach(), torch.tensor([[2.0, 3.0]]))


def test_ema_keeps_float32_average_for_low_precision_weights():
    # 0.05 · (1.0078125 − 1) ≈ 3.9e-4 per update: far below bf16 resolution near 1 (2^-7), so a bf16
    # average would never move. The float32 average does, and is exposed in bf16 when swapped in.
    layer = torch.nn.Linear(1, 1, bias=False).to(torch.bfloat16)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    ema = EMATeacherWeights(layer, update_rate=0.05)
    with torch.no_grad():
        layer.weight.fill_(1.0078125)  # next bf16 value above 1
    for _ in range(100):
        ema.update()
    expected = 1.0 + 0.0078125 * (1 - 0.95**100)
    assert ema.shadow[0].dtype == torch.float32
    assert ema.shadow[0].item() == pytest.approx(expected, rel=1e-6)
    with ema.swapped_in():
        assert layer.weight.dtype == torch.bfloat16
        assert layer.weight.item() == torch.tensor(expected).to(torch.bfloat16).item()
    assert layer.weight.item() == 1.0078125


# ---------------------------------------------------------------- length_sorted_slices
def test_length_sorted_slices_group_similar_rows_and_crop_padding():
    prompt_mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1], [0, 1, 1, 1]])  # lengths 2, 4, 1, 3
    completion_mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0], [0, 0, 0]])  # lengths 2, 3, 1, 0
    slices = length_sorted_slices(prompt_mask, completion_mask, batch_size=2)
    # Totals: row0 4, row1 7, row2 2, row3 3 -> order 2, 3, 0, 1.
    assert [s[0].tolist() for s in slices] == [[2, 3], [0, 1]]
    assert [(s[1], s[2]) for s in slices] == [(3, 1), (4, 3)]  # an all-empty completion still gets width 1
    covered = torch.cat([s[0] for s in slices]).sort().values
    assert covered.tolist() == [0, 1, 2, 3]


def test_length_sorted_slices_rejects_a_zero_batch_size():
    with pytest.raises(ValueError, match="batch_size=0"):
        length_sorted_slices(torch.ones(1, 2), torch.ones(1, 2), batch_size=0)


# ---------------------------------------------------------------- shared prefixes
def test_shared_prefix_groups_by_hand():
    a, b = [1, 2, 3], [4, 5]
    prefixes = [a, b, [], a, b, a, [9]]
    groups, rest = shared_prefix_groups(prefixes, [4, 4, 4, 4, 4, 4, 4])
    assert [(prefix, rows.tolist()) for prefix, rows in groups] == [((1, 2, 3), [0, 3, 5]), ((4, 5), [1, 4])]
    assert rest.tolist() == [2, 6]  # no context; a prefix only one row has


def test_shared_prefix_groups_leave_truncated_rows_to_the_full_forward():
    a = [1, 2, 3]
    # max_length 6: rows 1 and 2 (3 + 4 tokens) would be left-truncated into a different prefix.
    groups, rest = shared_prefix_groups([a, a, a, a], [3, 4, 4, 2], max_length=6)
    assert [(prefix, rows.tolist()) for prefix, rows in groups] == [((1, 2, 3), [0, 3])]
    assert rest.tolist() == [1, 2]
    groups, rest = shared_prefix_groups([a, a], [3, 3], min_rows=3)
    assert groups == [] and rest.tolist() == [0, 1]


def test_shared_prefix_groups_reject_bad_input():
    with pytest.raises(ValueError, match="2 teacher prefixes for 1 prompt lengths"):
        shared_prefix_groups([[1], [1]], [3])
    with pytest.raises(ValueError, match="min_rows=0"):
        shared_prefix_groups([[1]], [3], min_rows=0)


def _full_forward_logps(model, prefix, prompt_ids, prompt_mask, completion_ids, completion_mask):
    teacher_ids, teacher_mask = build_teacher_prompt_ids(
        prompt_ids, prompt_mask, [prefix] * len(prompt_ids), pad_token_id=PAD
    )
    ids = torch.cat([teacher_ids, completion_ids], dim=1)  # (B, P_T + C)
    mask = torch.cat([teacher_mask, completion_mask], dim=1)  # (B, P_T + C)
    width = completion_ids.size(1)
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :-width] = -100
    out = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    return out.log_probs[:, -width:] * completion_mask  # (B, C)


@pytest.mark.parametrize("architecture", ["qwen2", "qwen3"])
def test_prefix_cached_logps_equal_one_forward_per_row(tiny_tokenizer, architecture):
    model = build_tiny_model(tiny_tokenizer, architecture=architecture).eval()
    add_fused_lm_head(model, temperature=0.7)
    generator = torch.Generator().manual_seed(0)
    prompt_ids = torch.randint(3, 60, (5, 9), generator=generator)  # (5, 9)
    prompt_mask = torch.ones_like(prompt_ids)
    completion_ids = torch.randint(3, 60, (5, 6), generator=generator)  # (5, 6)
    completion_mask = torch.ones_like(completion_ids)
    for row, (padding, length) in enumerate([(0, 6), (3, 2), (5, 4), (1, 6), (0, 1)]):
        prompt_mask[row, :padding] = 0
        prompt_ids[row, :padding] = JUNK
        completion_mask[row, length:] = 0
        completion_ids[row, length:] = PAD
    prefix = torch.randint(3, 60, (13,), generator=generator).tolist()
    with torch.no_grad():
        cached = prefix_cached_logps(
            model, prefix, prompt_ids, prompt_mask, completion_ids, completion_mask, batch_size=2
        )  # (5, 6)
        full = _full_forward_logps(model, prefix, prompt_ids, prompt_mask, completion_ids, completion_mask)
    assert cached.shape == (5, 6) and cached.dtype == torch.float32
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=0)
    assert (cached[completion_mask == 0] == 0).all()
    # The prefix matters: without it (or with another one) the log-probs differ.
    with torch.no_grad():
        other = prefix_cached_logps(
            model, prefix[::-1], prompt_ids, prompt_mask, completion_ids, completion_mask, batch_size=5
        )
    assert (other - cached).abs().max() > 1e-3


def test_common_prompt_start_by_hand():
    # Left-padded rows (0 = padding): real prompts [5 6 7 8 9], [5 6 7 2], [5 6 7 8 4 4].
    ids = torch.tensor([[0, 5, 6, 7, 8, 9], [0, 0, 5, 6, 7, 2], [5, 6, 7, 8, 4, 4]])
    mask = (ids != 0).long()
    assert common_prompt_start(ids, mask) == 3  # 5 6 7; the 4th real tokens differ (8, 2, 8)
    # Identical prompts share all but their last token, which each row keeps for its first completion logit.
    same = torch.tensor([[0, 5, 6, 7], [0, 5, 6, 7]])
    assert common_prompt_start(same, (same != 0).long()) == 2
    # The shortest row caps it: [5 6] and [5 6 7 8] share at most 1 token.
    capped = torch.tensor([[0, 0, 5, 6], [5, 6, 7, 8]])
    assert common_prompt_start(capped, (capped != 0).long()) == 1
    one_token = torch.tensor([[0, 5], [5, 5]])
    assert common_prompt_start(one_token, (one_token != 0).long()) == 0
    differ = torch.tensor([[4, 6], [5, 6]])
    assert common_prompt_start(differ, torch.ones_like(differ)) == 0


def test_prefix_cached_logps_cache_shared_prompt_starts_and_identical_prompts(tiny_tokenizer):
    # Six rows under one prefix, built like the step samples of one task: every prompt starts with the same 5
    # tokens (template + task); rows 0, 2 and 5 are the same first-step prompt (three trajectories), rows 1, 3
    # and 4 have their own history. Scored with the two-level cache, every row must get the log-probs of one
    # full forward, while each row's own forward runs only its own tokens.
    model = build_tiny_model(tiny_tokenizer, architecture="qwen3").eval()
    add_fused_lm_head(model, temperature=0.9)
    generator = torch.Generator().manual_seed(3)
    start = torch.randint(3, 60, (5,), generator=generator)
    first = torch.cat([start, torch.randint(3, 60, (3,), generator=generator)])  # (8,)
    own = [torch.cat([start, torch.randint(3, 60, (n,), generator=generator)]) for n in (6, 2, 4)]
    prompts = [first, own[0], first, own[1], own[2], first]
    width = max(len(p) for p in prompts)
    prompt_ids = torch.full((6, width), JUNK)
    prompt_mask = torch.zeros(6, width, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        prompt_ids[row, width - len(prompt) :] = prompt
        prompt_mask[row, width - len(prompt) :] = 1
    completion_ids = torch.randint(3, 60, (6, 4), generator=generator)  # (6, 4)
    completion_mask = torch.ones_like(completion_ids)
    completion_mask[1, 2:] = 0
    completion_mask[5, 1:] = 0
    completion_ids[completion_mask == 0] = PAD
    prefix = torch.randint(3, 60, (7,), generator=generator).tolist()
    seen = []
    forward = model.forward

    def spy(*args, **kwargs):
        seen.append(tuple(kwargs["input_ids"].shape))
        return forward(*args, **kwargs)

    model.forward = spy
    with torch.no_grad():
        cached = prefix_cached_logps(
            model, prefix, prompt_ids, prompt_mask, completion_ids, completion_mask, batch_size=8
        )  # (6, 4)
        plain_calls = len(seen)
        prefix_only = prefix_cached_logps(
            model,
            prefix,
            prompt_ids,
            prompt_mask,
            completion_ids,
            completion_mask,
            batch_size=8,
            share_prompt_starts=False,
        )
        full = _full_forward_logps(model, prefix, prompt_ids, prompt_mask, completion_ids, completion_mask)
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=0)
    torch.testing.assert_close(prefix_only, full, atol=1e-5, rtol=0)
    assert (cached[completion_mask == 0] == 0).all()
    # prefix + 5 shared tokens once; the rest of the first-step prompt but its last token (2) once for rows 0, 2, 5;
    # those three rows then run 1 prompt token + 4 completion columns, the others the rest of their prompt
    # (at most 6 tokens) + 4: never the 7 prefix tokens nor the 5 shared ones again.
    assert seen[:plain_calls] == [(1, 7 + 5), (1, 2), (3, 1 + 4), (3, 6 + 4)]
    assert seen[plain_calls] == (1, 7)  # share_prompt_starts=False: the prefix alone


def test_prefix_cached_logps_needs_a_prefix_and_a_cache(tiny_tokenizer):
    model = build_tiny_model(tiny_tokenizer)
    ids = torch.ones(1, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="non-empty prefix"):
        prefix_cached_logps(model, [], ids, ids, ids, ids, batch_size=1)

    class NoCache(torch.nn.Module):  # a model that ignores use_cache (as some set-ups do): a clear error
        def forward(self, **kwargs):
            return types.SimpleNamespace(logits=None)

    with torch.no_grad(), pytest.raises(RuntimeError, match=r"NoCache returned no key/value cache.*=False"):
        prefix_cached_logps(NoCache(), [3, 4], ids, ids, ids, ids, batch_size=1)


def test_teacher_logps_route_rows_and_agree_with_and_without_the_cache(tiny_tokenizer, monkeypatch):
    # Seven rows: prefix A x3 (cached), prefix B x1 (lone: full forward), no prefix x2 (the student's forward),
    # and a row whose A prefix max_length truncates (full forward, its prefix cut). The cache must not change
    # any value, and it must run only for A.
    model = build_tiny_model(tiny_tokenizer).eval()
    add_fused_lm_head(model, temperature=1.0)
    generator = torch.Generator().manual_seed(1)
    prompt_ids = torch.randint(3, 60, (7, 8), generator=generator)  # (7, 8)
    prompt_mask = torch.ones_like(prompt_ids)
    prompt_mask[1, :3] = 0
    prompt_ids[1, :3] = JUNK
    completion_ids = torch.randint(3, 60, (7, 5), generator=generator)  # (7, 5)
    completion_mask = torch.ones_like(completion_ids)
    completion_mask[2, 2:] = 0
    a = torch.randint(3, 60, (10,), generator=generator).tolist()
    b = torch.randint(3, 60, (4,), generator=generator).tolist()
    prefixes = [a, a, a, b, [], [], a]
    max_length = 18  # rows 0-5 fit (10 + 8 or less); row 6 gets a longer prompt below and is truncated
    prompt_ids = torch.cat([torch.randint(3, 60, (7, 2), generator=generator), prompt_ids], dim=1)  # (7, 10)
    prompt_mask = torch.cat([torch.zeros(7, 2, dtype=torch.long), prompt_mask], dim=1)
    prompt_mask[6, :2] = 1
    calls = []

    def spy(model, prefix, *args, **kwargs):
        calls.append((tuple(prefix), args[0].size(0)))
        return prefix_cached_logps(model, prefix, *args, **kwargs)

    monkeypatch.setattr(sdar_trl.teacher, "prefix_cached_logps", spy)

    kwargs = dict(pad_token_id=PAD, batch_size=3, max_length=max_length)
    with torch.no_grad():
        cached = teacher_logps(model, prefixes, prompt_ids, prompt_mask, completion_ids, completion_mask, **kwargs)
        full = teacher_logps(
            model, prefixes, prompt_ids, prompt_mask, completion_ids, completion_mask, use_prefix_cache=False, **kwargs
        )
        student = teacher_logps(
            model, [[]] * 7, prompt_ids, prompt_mask, completion_ids, completion_mask, use_prefix_cache=False, **kwargs
        )
        one_row = [
            _full_forward_logps(
                model,
                prefixes[i],
                prompt_ids[i : i + 1],
                prompt_mask[i : i + 1],
                completion_ids[i : i + 1],
                completion_mask[i : i + 1],
            )[0]
            for i in range(6)
        ]
    assert calls == [(tuple(a), 3)]
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=0)
    torch.testing.assert_close(full[:6], torch.stack(one_row), atol=1e-5, rtol=0)
    torch.testing.assert_close(full[4:6], student[4:6], atol=0, rtol=0)  # no context: the student's forward
    assert (full[:4] - student[:4]).abs().max() > 1e-3  # a prefix changes the log-probs
    assert (cached[completion_mask == 0] == 0).all()
    with pytest.raises(ValueError, match="6 teacher prefixes for 7 rows"):
        teacher_logps(model, prefixes[:6], prompt_ids, prompt_mask, completion_ids, completion_mask, **kwargs)
