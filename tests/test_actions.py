"""Action parsers: the validity rules of ENVIRONMENTS.md, table-driven, plus fuzzing (never raise)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdar_trl.actions import INVALID_TAIL_CHARS, parse_action, parse_search_answer, parse_think_action

THINK_ACTION_CASES = [
    # (response, action sent to the env, valid, error substring)
    ("<think>go there</think><action>go to cabinet 1</action>", "go to cabinet 1", True, None),
    ("<think>x</think>\n<action>  Take Apple 1 from Table 1 </action>", "take apple 1 from table 1", True, None),
    ("<THINK>upper</THINK><ACTION>look</ACTION>", "look", True, None),
    ("<think>a</think><action>look</action><action>inventory</action>", "look", True, None),
    ("<action>look</action>", "look", False, "<think>"),
    ("<think>unclosed<action>look</action>", "look", False, "<think>"),
    ("<think>ok</think><action></action>", "", False, "empty"),
    ("<think>ok</think><action>look", "<think>ok</think><action>look"[-INVALID_TAIL_CHARS:], False, "<action>"),
    ("I will go to the cabinet 1 now please", "ll go to the cabinet 1 now please"[-INVALID_TAIL_CHARS:], False, None),
    ("", "", False, "<action>"),
]


@pytest.mark.parametrize(("response", "action", "valid", "error"), THINK_ACTION_CASES)
def test_think_action_table(response, action, valid, error):
    parsed = parse_think_action(response)
    assert parsed.action == action.strip()
    assert parsed.valid is valid
    assert (parsed.kind == "action") is valid
    if error is not None:
        assert error in parsed.error
    if valid:
        assert parsed.error is None


SEARCH_CASES = [
    (
        "<think>need it</think><search> capital of Varnia </search>",
        "<search>capital of Varnia</search>",
        True,
        "search",
    ),
    ("<answer> Oslo </answer>", "<answer>Oslo</answer>", True, "answer"),
    # Everything after the first closing tag is ignored, as in Search-R1.
    ("<search>a</search><answer>b</answer>", "<search>a</search>", True, "search"),
    ("<answer>b</answer> trailing <search>x</search>", "<answer>b</answer>", True, "answer"),
    ("<search>a</search", None, False, None),
    ("<search></search>", "<search></search>", False, None),
    ("<search>a<answer>b</answer>", None, False, None),
    ("plain text", "plain text", False, None),
]


@pytest.mark.parametrize(("response", "action", "valid", "kind"), SEARCH_CASES)
def test_search_answer_table(response, action, valid, kind):
    parsed = parse_search_answer(response)
    assert parsed.valid is valid
    assert parsed.kind == kind
    if action is not None:
        assert parsed.action == action


def test_non_string_outputs_are_invalid_not_crashes():
    for value in (None, b"<think>a</think><action>look</action>", 42, ["list"]):
        assert isinstance(parse_think_action(value).action, str)
        assert isinstance(parse_search_answer(value).action, str)
    assert parse_think_action(b"<think>a</think><action>look</action>").valid


def test_parse_action_dispatch_and_unknown_format():
    assert parse_action("<answer>x</answer>", "search_answer").kind == "answer"
    assert parse_action("<think>t</think><action>x</action>", "think_action").kind == "action"
    with pytest.raises(ValueError, match="unknown action_format 'json'"):
        parse_action("x", "json")


tag_soup = st.lists(
    st.sampled_from(
        ["<think>", "</think>", "<action>", "</action>", "<search>", "</search>", "<answer>", "</answer>", "<", ">"]
    )
    | st.text(),
    max_size=12,
).map("".join)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(), tag_soup, st.just(""), st.text(alphabet="行动思考😀\u0000\u200b", max_size=50)))
def test_fuzz_parsers_never_raise(response):
    for parsed in (parse_think_action(response), parse_search_answer(response)):
        assert isinstance(parsed.action, str)
        assert isinstance(parsed.valid, bool)
        assert parsed.valid == (parsed.error is None)
        if parsed.error is not None and ("missing <action>" in parsed.error or "block" in parsed.error):
            # A response without the action block forwards at most its tail to the environment.
            assert len(parsed.action) <= INVALID_TAIL_CHARS
