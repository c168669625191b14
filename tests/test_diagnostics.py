"""Gate diagnostics, pure part (sdar_trl.diagnostics): token classes, split statistics, records and the HTML page.

Every expected value is worked out by hand in the comments.
"""

from __future__ import annotations

import math

import pytest
import torch

from sdar_trl.diagnostics import (
    OUTCOME_FAILURE,
    OUTCOME_SUCCESS,
    OUTCOME_UNKNOWN,
    TOKEN_CLASSES,
    char_classes,
    colour_ranges,
    finish_split_stats,
    gate_split_names,
    gate_split_stats,
    gate_token_record,
    read_gate_records,
    render_gate_html,
    token_classes,
    won_outcome,
)

R, A, F, X = (TOKEN_CLASSES.index(name) for name in ("reasoning", "action", "format", "other"))


def _names(ids: list[int]) -> list[str]:
    return [TOKEN_CLASSES[i] for i in ids]


def test_char_classes_of_a_think_action_response():
    text = "<think>ab</think><action>go</action>"
    # 7 tag chars, "ab", 8 tag chars, 8 tag chars, "go", 9 tag chars.
    assert char_classes(text, "think_action") == [F] * 7 + [R] * 2 + [F] * 8 + [F] * 8 + [A] * 2 + [F] * 9


def test_think_action_tags_match_case_insensitively_like_the_parser():
    # parse_think_action lower-cases the response: "<Action>GO</Action>" is the action "go".
    labels = char_classes("<Action>GO</Action>", "think_action")
    assert labels == [F] * 8 + [A] * 2 + [F] * 9


def test_an_unclosed_action_or_think_block_runs_to_the_end():
    assert char_classes("<think>hm", "think_action") == [F] * 7 + [R] * 2
    assert char_classes("x<action>op", "think_action") == [X] + [F] * 8 + [A] * 2


def test_search_answer_action_is_the_first_closed_block_and_the_rest_is_ignored():
    text = "<think>q</think><search>oslo</search> tail"
    labels = char_classes(text, "search_answer")
    assert labels == [F] * 7 + [R] + [F] * 8 + [F] * 8 + [A] * 4 + [F] * 9 + [X] * 5
    # After the first closing tag the parser reads nothing: a second block is `other`, tags included.
    labels = char_classes("<answer>a</answer><answer>b</answer>", "search_answer")
    assert labels == [F] * 8 + [A] + [F] * 9 + [X] * 18
    # A block cut short (max_completion_length) is still the action being written.
    assert char_classes("<search>osl", "search_answer") == [F] * 8 + [A] * 3


def test_single_turn_recognises_only_think_blocks():
    # action_format=None: "<action>" has no meaning, so it is plain text.
    assert char_classes("<think>a</think>4<action>", None) == [F] * 7 + [R] + [F] * 8 + [X] * 9


def test_an_unknown_action_format_names_the_value():
    with pytest.raises(ValueError, match="action_format='xml'"):
        char_classes("x", "xml")


def test_token_classes_take_the_most_content_bearing_class_of_their_characters():
    pieces = ["<think>ok</", "think><action>g", "o</action>", "", "<|im_end|>"]
    # piece 1: "<think>" format + "ok" reasoning + "</" format -> reasoning; piece 2: format + "g" action -> action;
    # piece 3: "o" action + format -> action; piece 4 (empty: part of a character) -> the previous token's class;
    # piece 5: a special token (EOS) -> format whatever its text.
    classes = token_classes(pieces, "think_action", special=[False, False, False, False, True])
    assert _names(classes) == ["reasoning", "action", "action", "action", "format"]


def test_token_classes_tag_tokens_alone_are_format():
    pieces = ["<think>", "a", "b", "</think>", "<", "action", ">", "go", "</action>"]
    # "<", "action", ">" are all characters of the "<action>" tag.
    assert _names(token_classes(pieces, "think_action")) == [
        "format",
        "reasoning",
        "reasoning",
        "format",
        "format",
        "format",
        "format",
        "action",
        "format",
    ]
    # Text outside every block (a malformed response) is `other`.
    assert _names(token_classes(["garbage", " in"], "think_action")) == ["other", "other"]


def test_token_classes_check_the_special_flags_length():
    with pytest.raises(ValueError, match="special has 1 entries for 2 pieces"):
        token_classes(["a", "b"], None, special=[True])


def _split_example() -> tuple[torch.Tensor, ...]:
    gate = torch.tensor([[0.2, 0.6, 0.9, math.nan], [0.4, 0.8, 0.1, 0.0]])  # nan on a masked position must not leak
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    classes = torch.tensor([[R, A, F, A], [R, R, A, -1]])
    outcomes = torch.tensor([OUTCOME_SUCCESS, OUTCOME_FAILURE])
    return gate, mask, classes, outcomes


def test_gate_split_stats_by_hand():
    sums, counts = gate_split_stats(*_split_example())
    stats = dict(zip(gate_split_names(), zip(sums.tolist(), counts.tolist(), strict=True), strict=True))
    # reasoning: 0.2, 0.4, 0.8 (sum 1.4, one > 0.5); action: 0.6, 0.1 (0.7, one); format: 0.9; other: none.
    # success (row 0): 0.2, 0.6, 0.9 (1.7, two > 0.5); failure (row 1): 0.4, 0.8, 0.1, 0.0 (1.3, one).
    # The unmasked 0.0 of row 1 has no class but still counts for its row's outcome.
    expected = {
        "gate_mean/reasoning": (1.4, 3),
        "gate_mean/action": (0.7, 2),
        "gate_mean/format": (0.9, 1),
        "gate_mean/other": (0.0, 0),
        "gate_mean/success": (1.7, 3),
        "gate_mean/failure": (1.3, 4),
        "gate_active_ratio/reasoning": (1.0, 3),
        "gate_active_ratio/action": (1.0, 2),
        "gate_active_ratio/format": (1.0, 1),
        "gate_active_ratio/other": (0.0, 0),
        "gate_active_ratio/success": (2.0, 3),
        "gate_active_ratio/failure": (1.0, 4),
    }
    assert set(stats) == set(expected)
    for name, (total, count) in expected.items():
        assert stats[name] == (pytest.approx(total), count), name
    means = finish_split_stats(sums.tolist(), counts.tolist())
    assert means["gate_mean/reasoning"] == pytest.approx(1.4 / 3)
    assert means["gate_active_ratio/failure"] == pytest.approx(0.25)
    assert math.isnan(means["gate_mean/other"])  # no token: undefined


def test_gate_split_stats_add_up_over_rows_and_ignore_unknown_outcomes():
    gate, mask, classes, outcomes = _split_example()
    # Split the batch in two, as two processes would: the summed (sum, count) pairs equal the whole batch's.
    whole = gate_split_stats(gate, mask, classes, outcomes)
    parts = [
        gate_split_stats(gate[i : i + 1], mask[i : i + 1], classes[i : i + 1], outcomes[i : i + 1]) for i in (0, 1)
    ]
    torch.testing.assert_close(parts[0][0] + parts[1][0], whole[0])
    torch.testing.assert_close(parts[0][1] + parts[1][1], whole[1])
    # A row of unknown outcome counts in its token classes only.
    _, counts = gate_split_stats(gate, mask, classes, torch.tensor([OUTCOME_UNKNOWN, OUTCOME_FAILURE]))
    names = gate_split_names()
    assert counts[names.index("gate_mean/success")] == 0
    assert counts[names.index("gate_mean/reasoning")] == 3


def test_gate_split_stats_reject_mismatched_shapes():
    gate, mask, classes, _ = _split_example()
    with pytest.raises(ValueError, match=r"outcomes \(3,\) must be \(B,\)"):
        gate_split_stats(gate, mask, classes, torch.tensor([1, 0, 1]))


def test_won_outcome():
    assert [won_outcome(True), won_outcome(False), won_outcome(None)] == [1, 0, -1]


def test_gate_token_record_and_jsonl_round_trip(tmp_path):
    record = gate_token_record(
        ["<action>", "go", "</action>"], [F, A, F], [0.5, 0.75, 0.25], [0.0, 0.2197, -0.2197], step=3, outcome=1
    )
    assert record == {
        "step": 3,
        "outcome": "success",
        "prompt_tail": "",
        "tokens": ["<action>", "go", "</action>"],
        "classes": ["format", "action", "format"],
        "gate": [0.5, 0.75, 0.25],
        "delta": [0.0, 0.2197, -0.2197],
    }
    import json

    path = tmp_path / "gate_tokens.jsonl"
    path.write_text(json.dumps(record) + "\n" + '{"step": 4, "outc', encoding="utf-8")  # a line cut by a killed run
    assert read_gate_records(path) == [record]
    with pytest.raises(ValueError, match=r"pieces \(1\), classes \(2\)"):
        gate_token_record(["a"], [X, X], [0.5], [0.0], step=1, outcome=0)


def test_render_gate_html_colours_and_hover_values():
    record = gate_token_record(
        ["<think>", "x", "\n"], [F, R, R], [1.0, 0.0, 0.5], [2.5, -3.0, 0.0], step=7, outcome=0, prompt_tail="obs <b>"
    )
    old = gate_token_record(["y"], [X], [0.5], [0.0], step=2, outcome=-1)
    page = render_gate_html([old, record], title="run <1>", max_steps=1, delta_range=2.0)
    assert "<title>run &lt;1&gt;</title>" in page
    assert "Step 7" in page and "Step 2" not in page  # only the newest step
    assert "&lt;think&gt;" in page and "obs &lt;b&gt;" in page  # tokens and prompt are escaped
    # gate 1 -> full green, 0 -> full red, 0.5 -> white; Δ saturates at ±2.
    assert 'style="background:rgb(0,255,0)" title="format · gate 1.000 · Δ +2.500' in page
    assert 'style="background:rgb(255,0,0)" title="reasoning · gate 0.000 · Δ -3.000' in page
    assert page.count("rgb(255,255,255)") == 2  # the newline token: gate 0.5 and Δ 0
    assert "outcome: failure" in page
    assert "mean gate 0.500" in page
    assert "saturating at 0.5 ± 0.5)" in page and "saturating at ±2)" in page


def test_colour_ranges_follow_the_largest_deviation():
    small = gate_token_record(["a", "b"], [X, X], [0.49, 0.53], [-0.04, 0.024], step=1, outcome=1)
    assert colour_ranges([small]) == (pytest.approx(0.03), pytest.approx(0.04))
    flat = gate_token_record(["a"], [X], [0.5], [0.0], step=1, outcome=1)
    assert colour_ranges([flat]) == (1e-3, 1e-3)  # no deviation: floors, not a division by zero
    # With the page's own scale, the token with Δ = -0.04 is full red and gate 0.53 full green.
    page = render_gate_html([small])
    assert 'background:rgb(255,0,0)" title="other · gate 0.490 · Δ -0.040' in page
    assert 'background:rgb(0,255,0)" title="other · gate 0.530 · Δ +0.024' in page
