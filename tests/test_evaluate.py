"""`python -m sdar_trl.evaluate`: the Wilson interval, the summary of played episodes, argument errors, and real runs
on a tiny random model (one through the command in a subprocess, the reproducibility check in-process)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from importlib.util import find_spec

import pytest

import sdar_trl.starter as starter
from sdar_trl import SDARConfig
from sdar_trl.environments import make_env
from sdar_trl.evaluate import (
    DEFAULT_TASKS,
    batch_seed,
    default_task_count,
    evaluate_model,
    load_skill_retriever,
    main,
    parse_args,
    resolve_env_kwargs,
    summarize_evaluation,
    wilson_interval,
)
from sdar_trl.retrieval import SkillRetriever, flat_skills
from sdar_trl.rollout import EpisodeRecord, StepRecord
from sdar_trl.skills import SkillBank
from sdar_trl.testing import build_tiny_model, build_tiny_tokenizer

#: skill_retrieval="kmeans" needs scikit-learn (the `retrieval` extra, which CI installs: .ci/run).
needs_sklearn = pytest.mark.skipif(find_spec("sklearn") is None, reason='pip install "sdar-trl[retrieval]"')
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}


# -- Wilson interval ------------------------------------------------------------------------------------------------
# With z = 1.96, z² = 3.8416. For n = 10: z²/n = 0.38416, so the denominator is 1 + z²/n = 1.38416,
# z / 1.38416 = 1.4160213, z²/(2n) = 0.19208 and z²/(4n²) = 0.009604.
#   0 of 10: center = 0.19208 / 1.38416 = 0.1387701;  half = 1.4160213 · sqrt(0 + 0.009604)
#            = 1.4160213 · 0.098 = 0.1387701  ->  [0, 0.2775402]
#   5 of 10: center = (0.5 + 0.19208) / 1.38416 = 0.5;  half = 1.4160213 · sqrt(0.025 + 0.009604)
#            = 1.4160213 · 0.1860215 = 0.2634104  ->  [0.2365896, 0.7634104]
#  10 of 10: the mirror image of 0 of 10  ->  [1 − 0.2775402, 1] = [0.7224598, 1]
@pytest.mark.parametrize(
    ("successes", "expected"),
    [(0, (0.0, 0.2775402)), (5, (0.2365896, 0.7634104)), (10, (0.7224598, 1.0))],
)
def test_wilson_interval_matches_hand_computed_values(successes, expected):
    low, high = wilson_interval(successes, 10)
    assert low == pytest.approx(expected[0], abs=1e-6)
    assert high == pytest.approx(expected[1], abs=1e-6)


def test_wilson_interval_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)  # no tasks: no information
    assert wilson_interval(0, 7)[0] == 0.0 and wilson_interval(7, 7)[1] == 1.0  # clamped, never outside [0, 1]
    low, high = wilson_interval(3, 17)
    mirror_low, mirror_high = wilson_interval(14, 17)
    assert (low, high) == pytest.approx((1 - mirror_high, 1 - mirror_low))
    for successes, n in ((-1, 5), (6, 5), (0, -1)):
        with pytest.raises(ValueError, match="0 <= successes <= n"):
            wilson_interval(successes, n)


def test_wilson_interval_always_contains_the_rate():
    # 6/6 gave an upper bound of 1 - 1.1e-16 and 0/11 a lower bound of 2.8e-17: below (above) the rate, so the
    # report's error bars (rate - low, high - rate) went negative and matplotlib refused to draw them, which
    # crashed a table1.py run after its training.
    for n in range(1, 301):
        for successes in range(n + 1):
            low, high = wilson_interval(successes, n)
            assert 0.0 <= low <= successes / n <= high <= 1.0, (successes, n)
        assert wilson_interval(0, n)[0] == 0.0 and wilson_interval(n, n)[1] == 1.0


# -- summarize_evaluation --------------------------------------------------------------------------------------------
def _steps(trajectory: int, valid: list[bool]) -> list[StepRecord]:
    return [
        StepRecord(trajectory, trajectory, t, "prompt", [1], [2], "response", "action", ok)
        for t, ok in enumerate(valid)
    ]


def test_summarize_evaluation_on_hand_built_records():
    episodes = [
        EpisodeRecord(0, 0, task_type="a", won=True, length=2),
        EpisodeRecord(1, 1, task_type="a", won=False, length=4, env_error="RuntimeError: boom"),
        EpisodeRecord(2, 2, task_type="b", won=True, length=3),
        EpisodeRecord(3, 3, task_type="", won=False, length=1),
    ]
    steps = [
        *_steps(0, [True, True]),
        *_steps(1, [True, False, False, True]),
        *_steps(2, [True, True, False]),
        *_steps(3, [True]),
    ]
    summary = summarize_evaluation(episodes, steps)
    # 2 of 4: z²/n = 0.9604, center 0.5, half = 1.96 / 1.9604 · sqrt(0.0625 + 0.060025) = 0.349964.
    assert summary["success_ci95"] == [0.15, 0.85]
    assert {k: v for k, v in summary.items() if k != "success_ci95"} == {
        "success": 0.5,
        "successes": 2,
        "tasks": 4,
        "valid_action_rate": 0.7,  # 7 of 10 steps parsed
        "steps": 10,
        "mean_steps": 2.5,  # (2 + 4 + 3 + 1) / 4
        "score": None,  # no episode reported a score
        "env_errors": 1,
        "success_by_type": {
            "a": {"success": 0.5, "successes": 1, "tasks": 2},
            "b": {"success": 1.0, "successes": 1, "tasks": 1},
            "unknown": {"success": 0.0, "successes": 0, "tasks": 1},
        },
    }


def test_summarize_evaluation_scores_and_rounding():
    episodes = [EpisodeRecord(i, i, task_type="t", won=i == 0, length=1) for i in range(3)]
    episodes[0].score = 0.5  # the others never scored: they count 0, as in env/score
    summary = summarize_evaluation(episodes, _steps(0, [True, False, False]))
    assert summary["score"] == 0.1667  # 0.5 / 3, rounded to 4 decimals
    assert summary["success"] == 0.3333 and summary["valid_action_rate"] == 0.3333
    assert summarize_evaluation(episodes, [])["valid_action_rate"] is None  # no step: no rate
    with pytest.raises(ValueError, match="at least one episode"):
        summarize_evaluation([], [])


# -- settings ------------------------------------------------------------------------------------------------------
def test_env_settings_and_default_task_count():
    assert resolve_env_kwargs("searchqa-mini") == {
        "split": "test",
        "difficulty": "easy",
    }  # the starter's eval settings
    assert resolve_env_kwargs(
        "webshop-mini", split="train", difficulty="full", env_kwargs={"max_episode_steps": 5, "split": "test"}
    ) == {"split": "train", "difficulty": "full", "max_episode_steps": 5}  # the flags win over --env_kwargs
    assert resolve_env_kwargs("toy-keys") == {}  # not a mini env: nothing unless given
    assert default_task_count(make_env("searchqa-mini", split="test")) == 500
    assert default_task_count(make_env("searchqa-mini", split="train")) == DEFAULT_TASKS  # unbounded split
    assert default_task_count(make_env("toy-keys")) == DEFAULT_TASKS  # no num_tasks at all
    assert batch_seed(0, 1) == batch_seed(0, 1) and batch_seed(0, 1) != batch_seed(1, 0)


# -- argument errors -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--env", "nope"], r"unknown environment 'nope'; expected one of .*searchqa-mini"),
        (["--env", "searchqa-mini", "--privileged_context_source", "oracle"], r"invalid choice: 'oracle'"),
        (["--env", "searchqa-mini", "--tasks", "0"], r"--tasks: must be at least 1, got 0"),
        (["--env", "searchqa-mini", "--env_kwargs", "[1]"], r"JSON list, not an object; expected e\.g\."),
        (["--env", "searchqa-mini", "--env_kwargs", "{bad"], r"not valid JSON .*expected a JSON object"),
    ],
)
def test_bad_arguments_are_argparse_errors(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--model_name_or_path", str(tmp_path), *extra])
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_missing_model_path_is_named(tmp_path, capsys):
    missing = tmp_path / "no-such-model"
    with pytest.raises(SystemExit):
        parse_args(["--model_name_or_path", str(missing), "--env", "searchqa-mini"])
    assert f"'{missing}' does not exist; expected a directory written by save_pretrained" in capsys.readouterr().err


def test_skills_without_a_bank_fail_before_loading_the_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit, match=r"'toy-keys' ships none .*Use 'none' or 'facts'"):
        main(["--model_name_or_path", str(tmp_path), "--env", "toy-keys", "--privileged_context_source", "skills"])


# -- real runs -----------------------------------------------------------------------------------------------------
@pytest.mark.integration
def test_command_prints_one_json_line(tmp_path):
    tokenizer = build_tiny_tokenizer()
    model_dir = tmp_path / "model"
    build_tiny_model(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    completed = subprocess.run(
        [sys.executable, "-m", "sdar_trl.evaluate", "--model_name_or_path", str(model_dir), "--env", "searchqa-mini",
         "--tasks", "3", "--max_new_tokens", "8", "--batch_size", "2", "--threads", "1"],
        capture_output=True, text=True, env=ENV, timeout=300, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    (line,) = completed.stdout.splitlines()  # stdout holds the JSON line and nothing else
    result = json.loads(line)
    assert result["tasks"] == 3 and result["model"] == str(model_dir)
    assert isinstance(result["success"], float) and 0 <= result["success"] <= 1
    low, high = result["success_ci95"]
    assert 0 <= low <= result["success"] <= high <= 1
    assert isinstance(result["successes"], int) and isinstance(result["env_errors"], int)
    assert isinstance(result["valid_action_rate"], float) and isinstance(result["mean_steps"], float)
    assert result["score"] is None or isinstance(result["score"], float)
    assert sum(t["tasks"] for t in result["success_by_type"].values()) == 3
    assert result["env"] == "searchqa-mini" and result["split"] == "test" and result["difficulty"] == "easy"
    assert result["first_seed"] == 0 and result["seed"] == 0 and result["privileged_context_source"] == "none"
    assert result["temperature"] == next(
        f.default for f in dataclasses.fields(SDARConfig) if f.name == "eval_temperature"
    )
    assert isinstance(result["seconds"], float)
    assert "[evaluate] batch 2/2: 3/3 episodes" in completed.stderr  # stderr is a pipe: plain per-batch lines


def test_same_seed_gives_the_same_episodes(tiny_tokenizer, monkeypatch):
    model = build_tiny_model(tiny_tokenizer)
    responses: list[str] = []
    play = starter.play_with_model

    def recording_play(*args, **kwargs):
        result = play(*args, **kwargs)
        responses.extend(step.response for step in result.steps)
        return result

    monkeypatch.setattr(starter, "play_with_model", recording_play)

    def run(seed: int) -> tuple[dict, list[str]]:
        responses.clear()
        result = evaluate_model(
            model, tiny_tokenizer, "searchqa-mini", tasks=3, batch_size=2, max_new_tokens=8, temperature=1.0,
            max_steps=2, seed=seed,
        )  # fmt: skip
        result.pop("seconds")
        return result, list(responses)

    first, second, other = run(0), run(0), run(1)
    assert first == second  # same numbers, and the very same sampled responses
    assert len(first[1]) == first[0]["steps"] > 0
    assert first[0]["tasks"] == 3 and first[0]["temperature"] == 1.0 and first[0]["max_steps"] == 2
    assert other[1] != first[1]  # the seed does reach the sampling


# -- skill retrieval -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    tokenizer = build_tiny_tokenizer()
    model_dir = tmp_path_factory.mktemp("evaluate") / "model"
    build_tiny_model(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir, tokenizer


def _expected_skills(mode: str, task_type: str, task: str) -> list[str]:
    """The titles each mode shows, worked out without `sdar_trl.evaluate`: "rules" is the bank's own routing."""
    bank = SkillBank.from_package("searchqa")
    if mode == "rules":
        return [skill.title for skill in bank.retrieve(task_type)]
    if mode == "all":
        return [skill.title for skill in flat_skills(bank)]
    return [skill.title for skill in SkillRetriever(bank, mode, k=3).chosen(task_type, task)]


@pytest.mark.parametrize("mode", ["rules", "all", "bm25", pytest.param("kmeans", marks=needs_sklearn)])
def test_skill_retrieval_reaches_the_prompt_and_the_json(tiny_model_dir, monkeypatch, capsys, mode):
    model_dir, tokenizer = tiny_model_dir
    played: list = []
    play = starter.play_with_model

    def recording_play(*args, **kwargs):
        result = play(*args, **kwargs)
        played.append(result)
        return result

    monkeypatch.setattr(starter, "play_with_model", recording_play)
    argv = ["--model_name_or_path", str(model_dir), "--env", "searchqa-mini", "--tasks", "3", "--batch_size", "3",
            "--max_new_tokens", "4", "--max_steps", "1", "--privileged_context_source", "skills",
            "--skill_retrieval", mode, "--skill_retrieval_k", "3"]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["skill_retrieval"], result["skill_retrieval_k"]) == (mode, 3)
    assert result["tasks"] == 3 and result["privileged_context_source"] == "skills"
    (rollout,) = played
    header = next(f.default for f in dataclasses.fields(SDARConfig) if f.name == "teacher_context_header")
    counts = []
    for episode in rollout.episodes:
        (step,) = [s for s in rollout.steps if s.trajectory == episode.trajectory]  # --max_steps 1
        prompt = tokenizer.decode(step.prompt_ids)
        titles = _expected_skills(mode, episode.task_type, episode.task)
        assert prompt.startswith(header)
        shown = [title for title in _expected_skills("all", "", "") if f". {title}\n" in prompt]
        assert shown == titles  # exactly the mode's skills, in bank order
        counts.append(len(titles))
    assert result["skills_per_episode"] == pytest.approx(sum(counts) / 3, abs=1e-4)
    # The three tasks are two "compare" questions and one attribute lookup (seeds 0-2 of the test split).
    expected_counts = {"rules": [9, 10, 10], "all": [18] * 3, "bm25": [3] * 3}
    if mode in expected_counts:
        assert sorted(counts) == expected_counts[mode]


def test_skill_retrieval_is_checked_before_loading_the_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    base = ["--model_name_or_path", str(tmp_path), "--env", "searchqa-mini"]
    with pytest.raises(SystemExit):
        parse_args([*base, "--skill_retrieval", "ucb"])
    assert "'ucb' is learnt during training" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args([*base, "--skill_retrieval", "dense"])
    assert "unknown mode 'dense'; expected one of rules, all, bm25, kmeans" in capsys.readouterr().err
    # tmp_path holds no model: each of these fails on the settings, before the model would fail to load.
    with pytest.raises(SystemExit, match=r"shows no skills\. Use privileged_context_source='skills'"):
        main([*base, "--skill_retrieval", "bm25"])  # the default context "none" shows no skills to choose
    monkeypatch.setitem(sys.modules, "sklearn", None)  # as without scikit-learn
    with pytest.raises(SystemExit, match=r"--skill_retrieval kmeans: .*pip install \"sdar-trl\[retrieval\]\""):
        main([*base, "--privileged_context_source", "skills", "--skill_retrieval", "kmeans"])
    with pytest.raises(ValueError, match="skill_retrieval='ucb' cannot be evaluated"):
        load_skill_retriever("searchqa-mini", "skills", "ucb")
    assert load_skill_retriever("searchqa-mini", "skills", "rules") is None  # the bank's own routing
    config_k = next(f.default for f in dataclasses.fields(SDARConfig) if f.name == "skill_retrieval_k")
    assert parse_args(base).skill_retrieval_k == config_k == 8  # the command's default is the trainer's
