"""Lock-step rollouts with a scripted environment and a scripted "model"."""

from __future__ import annotations

import time

import pytest
import torch

from sdar_trl.rollout import (
    TRUNCATION_MARKER,
    build_step_batch,
    compute_step_rewards,
    length_grouped_parts,
    play_episodes,
    render_history,
    render_step_prompt,
    rendered_history_actions,
    split_rows,
    summarize_episodes,
    trim_left_padding,
    truncate_observation,
)
from sdar_trl.testing import ScriptedEnv

VALID_GO = "<think>keep going</think><action>go</action>"
VALID_WIN = "<think>done</think><action>win</action>"


def scripted(responses):
    """A generate function answering call k, prompt i with responses[k][i]; ids are fake but distinct."""
    calls = []

    def generate(prompts):
        k = len(calls)
        calls.append(list(prompts))
        return [([k, i], [100 + k, 200 + i], responses[k][i]) for i in range(len(prompts))]

    return generate, calls


def test_control_characters_never_reach_the_environment():
    # A NUL byte in a command crashes native engines (TextWorld) and the process with them: every action is cleaned.
    env = ScriptedEnv(length=3)
    responses = [["<think>x</think><action>g\x00o</action>"], ["\x00\x01garbage\x7f\x9b\x00"], ["w\x00in"]]
    generate, _ = scripted(responses)
    result = play_episodes([env], [{"seed": 1}], generate, group_ids=[0], max_steps=3, history_length=2)
    assert env.actions == ["go", "garbage", "win"]  # "go" now parses; the invalid ones send their cleaned tail
    assert [s.valid for s in result.steps] == [True, False, False]
    assert all("\x00" not in s.action for s in result.steps)


@pytest.mark.parametrize("invalid_action", ["", "look"])
def test_invalid_action_sends_the_configured_text(invalid_action):
    env = ScriptedEnv(length=2)
    generate, _ = scripted([["no tags at all"], [VALID_GO]])
    result = play_episodes(
        [env], [{"seed": 1}], generate, group_ids=[0], max_steps=2, history_length=2, invalid_action=invalid_action
    )
    assert env.actions == [invalid_action, "go"]
    assert result.steps[0].action == invalid_action and not result.steps[0].valid


def test_render_history_numbering():
    assert render_history([("o1", "a1"), ("o2", "a2")], first_step=3) == (
        "[Observation 3: 'o1', Action 3: 'a1']\n[Observation 4: 'o2', Action 4: 'a2']"
    )


def test_rendered_history_actions_read_back_what_render_history_wrote():
    history = [("a page, 'quoted'", "click[b06qx1f2b5]"), ("x", "search[men's boots]"), ("y", "click[it's [odd]]")]
    prompt = render_step_prompt(
        task="t", observation="o", history=history, step_count=3, history_length=2, admissible_actions=["look"]
    )
    assert rendered_history_actions(prompt) == ["search[men's boots]", "click[it's [odd]]"]
    assert rendered_history_actions(render_history(history, first_step=1)) == [a for _, a in history]
    assert rendered_history_actions("no history here") == []


def test_rendered_history_actions_edge_cases_match_the_line_format():
    # The action runs from the line's first ", Action N: '" (N: the line's own step) to its closing "']"; lines
    # that do not close are skipped.
    text = "\n".join(
        [
            "[Observation 1: 'o', Action 1: 'a', Action 2: 'b']",  # first marker wins: the rest is the action
            "[Observation 2: 'o', Action 2: 'no close'",  # no closing "']": not a history line
            "[Observation 3: 'o', Action 3: '']",  # an empty action is still an action
            "x, Action 4: ']",  # the marker's quote cannot double as the closing quote
            "[Observation 5: 'o', Action 55: 'go']",  # another step's number: not this line's action marker
            "[Observation 6: 'it said, Action 1: 'x'', Action 6: 'go']",  # an observation quoting an old marker
            "[Observation 7: 'o', Action 7: 'say, Action 7: 'hi'']",  # the step's first marker opens the action
        ]
    )
    assert rendered_history_actions(text) == ["a', Action 2: 'b", "", "go", "say, Action 7: 'hi'"]
    assert rendered_history_actions("[Observation 1: 'o', Action 1: 'go']\n") == ["go"]


def test_rendered_history_actions_is_linear_on_a_long_unclosed_line():
    # Many action markers and no closing "']": a backtracking pattern rescans the line from every marker
    # (about 3.7 s for this line), a linear scan reads it once.
    line = ", Action 1: 'x" * 7700  # (107,800 characters)
    start = time.perf_counter()
    assert rendered_history_actions(line) == []
    # A history line with thousands of other steps' markers before its own: one scan too.
    closed = "[Observation 3: 'o" + ", Action 1: 'x" * 7700 + ", Action 3: 'go']"
    assert rendered_history_actions(closed) == ["go"]
    assert time.perf_counter() - start < 0.5


def test_step_prompt_shows_only_the_history_window():
    history = [("obs A", "go"), ("obs B", "take x"), ("obs C", "look")]
    prompt = render_step_prompt(
        task="find x",
        observation="obs D",
        history=history,
        step_count=3,
        history_length=2,
        admissible_actions=["look", "go to room 2"],
    )
    expected = (
        "You are an expert agent acting in an interactive environment.\n"
        "Your task is: find x\n"
        "Prior to this step, you have already taken 3 step(s). Below are the most recent 2 observations and the "
        "corresponding actions you took:\n"
        "[Observation 2: 'obs B', Action 2: 'take x']\n"
        "[Observation 3: 'obs C', Action 3: 'look']\n"
        "You are now at step 4 and your current observation is:\nobs D\n"
        "Your admissible actions of the current situation are: ['look', 'go to room 2'].\n"
        "Now it's your turn to take an action. First reason step by step about the current situation inside "
        "<think> </think> tags. Then give exactly one action inside <action> </action> tags."
    )
    assert prompt == expected
    assert "obs A" not in prompt


def test_first_step_prompt_has_no_history_and_search_has_no_admissible_list():
    prompt = render_step_prompt(
        task="q?",
        observation="q?",
        history=[],
        step_count=0,
        history_length=4,
        admissible_actions=None,
        action_format="search_answer",
    )
    assert "Prior to this step" not in prompt
    assert "admissible" not in prompt
    assert prompt.startswith("Answer the given question.")


def test_environment_template_is_used():
    prompt = render_step_prompt(
        task="t",
        observation="o",
        history=[("o0", "a0")],
        step_count=1,
        history_length=1,
        admissible_actions=["a"],
        template="{task}|{current_step}|{history}|{observation}|{admissible_actions}",
    )
    assert prompt == "t|2|[Observation 1: 'o0', Action 1: 'a0']|o|'a'"


def test_truncate_observation_keeps_the_end():
    text = "a" * 50 + "END"
    out = truncate_observation(text, 20)
    assert out.startswith(TRUNCATION_MARKER) and out.endswith("END")
    assert truncate_observation("short", 20) == "short"
    assert truncate_observation(text, None) == text


def test_lockstep_rollout_samples_rewards_and_history():
    # Two trajectories of one task (group 0) and one of another (group 1); episodes last 3 steps unless won.
    envs = [ScriptedEnv(length=3) for _ in range(3)]
    rows = [{"seed": 4}, {"seed": 4}, {"seed": 5}]
    responses = [
        [VALID_GO, "garbage", VALID_GO],  # step 1: trajectory 1 is invalid
        [VALID_WIN, VALID_GO, "<action>go</action>"],  # step 2: trajectory 0 wins; trajectory 2 lacks <think>
        [VALID_GO, VALID_GO],  # step 3: only trajectories 1 and 2 are still live
    ]
    generate, calls = scripted(responses)
    result = play_episodes(envs, rows, generate, group_ids=[0, 0, 1], max_steps=None, history_length=1)

    assert [len(c) for c in calls] == [3, 3, 2]  # one batched call per step with every live prompt
    assert [(s.trajectory, s.step, s.valid) for s in result.steps] == [
        (0, 0, True), (1, 0, False), (2, 0, True),
        (0, 1, True), (1, 1, True), (2, 1, False),
        (1, 2, True), (2, 2, True),
    ]  # fmt: skip
    won = [e.won for e in result.episodes]
    assert won == [True, False, False]
    assert [e.length for e in result.episodes] == [2, 3, 3]
    assert [e.invalid_steps for e in result.episodes] == [0, 1, 1]
    assert envs[1].actions == ["garbage", "go", "go"]  # an unparseable response is still sent (its tail)
    # Step 3 of trajectory 1 shows only the last step (history_length=1): step 2's observation and action.
    third = calls[2][0]
    assert "[Observation 2: 'obs 4-1', Action 2: 'go']" in third and "Observation 1" not in third
    assert "current observation is:\nobs 4-2" in third
    rewards = compute_step_rewards(result, invalid_action_penalty=0.1)
    assert rewards == pytest.approx([1.0, -0.1, 0.0, 1.0, 0.0, -0.1, 0.0, 0.0])


def test_max_steps_truncates_and_summaries():
    envs = [ScriptedEnv(length=10) for _ in range(2)]
    generate, calls = scripted([[VALID_GO, VALID_GO]] * 4)
    result = play_episodes(envs, [{"seed": 0}, {"seed": 1}], generate, group_ids=[0, 1], max_steps=4,
                           history_length=2)  # fmt: skip
    assert len(calls) == 4 and len(result.steps) == 8
    assert all(e.truncated and not e.terminated for e in result.episodes)
    metrics = summarize_episodes(result.episodes)
    assert metrics["env/success"] == 0.0
    assert metrics["env/episode_length"] == 4.0
    assert metrics["env/success/type0"] == 0.0 and metrics["env/success/type1"] == 0.0
    assert metrics["env/invalid_action_rate"] == 0.0 and metrics["env/errors"] == 0.0


@pytest.mark.parametrize("fault", ["fail_on_step", "garbage_on_step"])
def test_environment_faults_end_only_that_trajectory(fault):
    envs = [ScriptedEnv(length=3, **{fault: 2}), ScriptedEnv(length=3)]
    generate, _ = scripted([[VALID_GO, VALID_GO]] * 2 + [[VALID_WIN]])
    result = play_episodes(envs, [{"seed": 0}, {"seed": 0}], generate, group_ids=[0, 0], max_steps=None,
                           history_length=2)  # fmt: skip
    broken, healthy = result.episodes
    assert broken.env_error is not None and not broken.won and broken.length == 2
    assert healthy.env_error is None and healthy.won and healthy.length == 3
    assert summarize_episodes(result.episodes)["env/errors"] == 1.0


def test_reset_failure_yields_no_samples():
    envs = [ScriptedEnv(fail_on_reset=True), ScriptedEnv(length=1)]
    generate, _calls = scripted([[VALID_GO]])
    result = play_episodes(envs, [{"seed": 0}, {"seed": 1}], generate, group_ids=[0, 1], max_steps=None,
                           history_length=2)  # fmt: skip
    assert [s.trajectory for s in result.steps] == [1]
    assert "scripted reset failure" in result.episodes[0].env_error


def test_long_observations_are_truncated_in_prompts():
    envs = [ScriptedEnv(length=2, long_observation=100_000)]
    generate, calls = scripted([[VALID_GO], [VALID_GO]])
    play_episodes(envs, [{"seed": 0}], generate, group_ids=[0], max_steps=None, history_length=2,
                  max_observation_length=500)  # fmt: skip
    assert all(len(prompt) < 3000 for call in calls for prompt in call)
    assert TRUNCATION_MARKER in calls[1][0]


def test_keep_going_lets_an_idle_process_keep_generating():
    # With keep_going=True past the end (another process still playing), generate is called with no prompts.
    envs = [ScriptedEnv(length=1)]
    generate, calls = scripted([[VALID_GO], [], []])
    ticks = iter([True, True, True, False])
    play_episodes(envs, [{"seed": 0}], generate, group_ids=[0], max_steps=None, history_length=2,
                  keep_going=lambda live: next(ticks))  # fmt: skip
    assert [len(c) for c in calls] == [1, 0, 0]


def test_build_step_batch_padding_and_masks():
    from sdar_trl.rollout import StepRecord

    steps = [
        StepRecord(0, 0, 0, "p", [1, 2, 3], [7], "r", "a", True),
        StepRecord(1, 0, 0, "p", [4], [8, 9], "r", "a", True),
        StepRecord(2, 0, 0, "p", [5, 6], [], "r", "a", False),
    ]
    batch = build_step_batch(steps, pad_token_id=0)
    assert batch["prompt_ids"].tolist() == [[1, 2, 3], [0, 0, 4], [0, 5, 6]]  # left-padded
    assert batch["prompt_mask"].tolist() == [[1, 1, 1], [0, 0, 1], [0, 1, 1]]
    assert batch["completion_ids"].tolist() == [[7, 0], [8, 9], [0, 0]]  # right-padded
    assert batch["completion_mask"].tolist() == [[1, 0], [1, 1], [0, 0]]
    assert batch["prompt_ids"].dtype == torch.long


def test_length_grouped_parts_keeps_similar_lengths_together():
    parts = length_grouped_parts(torch.tensor([30, 5, 20, 6, 31, 19, 4]), 3)
    assert parts == [[6, 1, 3], [5, 2], [0, 4]]  # lengths (4, 5, 6), (19, 20), (30, 31)
    assert length_grouped_parts(torch.tensor([], dtype=torch.long), 2) == [[], []]


def test_trim_left_padding_drops_only_columns_padded_in_every_row():
    batch = {
        "prompt_ids": torch.tensor([[0, 0, 0, 7, 8], [0, 0, 5, 6, 9]]),
        "prompt_mask": torch.tensor([[0, 0, 0, 1, 1], [0, 0, 1, 1, 1]]),
        "completion_ids": torch.tensor([[1], [2]]),
    }
    trimmed = trim_left_padding(batch)
    assert trimmed["prompt_ids"].tolist() == [[0, 7, 8], [5, 6, 9]]
    assert trimmed["prompt_mask"].tolist() == [[0, 1, 1], [1, 1, 1]]
    assert trimmed["completion_ids"] is batch["completion_ids"]
    empty = trim_left_padding({"prompt_ids": torch.zeros(2, 3), "prompt_mask": torch.zeros(2, 3)})
    assert empty["prompt_ids"].shape == (2, 0)


def test_split_rows():
    assert [list(r) for r in split_rows(7, 3)] == [[0, 1, 2], [3, 4], [5, 6]]
    assert [len(r) for r in split_rows(2, 4)] == [1, 1, 0, 0]
    with pytest.raises(ValueError):
        split_rows(3, 0)
