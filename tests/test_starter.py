"""The shipped starter agent: loads offline, fits the size budget, acts validly and better with privileged context."""

from __future__ import annotations

import pytest

from sdar_trl.actions import parse_action
from sdar_trl.environments import make_env
from sdar_trl.rollout import summarize_episodes
from sdar_trl.starter import (
    DEMO_ENVS,
    STARTER_PATH,
    load_starter,
    load_starter_metrics,
    play_with_model,
    starter_available,
)

pytestmark = pytest.mark.skipif(not starter_available(), reason="the starter model is not built in this checkout")

BANKS = {"alfworld-mini": "alfworld", "webshop-mini": "webshop", "searchqa-mini": "searchqa"}
MAX_BYTES = 10 * 1024 * 1024


def _envs(name, count):
    kwargs = {k: v for k, v in DEMO_ENVS[name].items() if k != "eval_split"}
    return [make_env(name, split=DEMO_ENVS[name]["eval_split"], **kwargs) for _ in range(count)]


@pytest.fixture(scope="module")
def starter():
    return load_starter()


def test_loads_offline_and_fits_the_size_budget(starter):
    model, tokenizer = starter
    assert model.config.model_type in ("llama", "qwen2", "qwen3")
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.chat_template
    size = sum(f.stat().st_size for f in STARTER_PATH.iterdir() if f.is_file() and f.suffix not in (".py", ".pyc"))
    assert size <= MAX_BYTES, f"the starter's files take {size / 1e6:.1f} MB; the budget is 10 MB"


def test_load_starter_names_the_fix_when_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"build_starter\.py"):
        load_starter(tmp_path)


def _recorded(name, source):
    cell = load_starter_metrics()["eval"][name][source]
    if cell is None:
        pytest.fail(f"{name} with context {source!r} was not measured for the shipped starter (docs/starter.md)")
    return cell


@pytest.mark.parametrize("source", ["none", "facts"])
@pytest.mark.parametrize("name", list(BANKS))
def test_recorded_valid_action_rate_meets_the_target(name, source):
    """The numbers measured at build time (docs/starter.md): at least 90 % of the actions parse and are admissible."""
    assert _recorded(name, source)["valid_action_rate"] >= 0.90


def _envs_xfailing(missed: dict[str, str]) -> list:
    """Every env as a parameter; those in `missed` as strict xfails with its reason (the recorded numbers)."""
    return [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=missed[name])) if name in missed else name
        for name in BANKS
    ]


#: Environments where the shipped build's student is outside the band, with the recorded numbers (strict xfail).
STUDENT_BAND_MISSED: dict[str, str] = {}  # build 8 meets it everywhere: 29 %, 58 % and 54 % (24 tasks each)


@pytest.mark.parametrize("name", _envs_xfailing(STUDENT_BAND_MISSED))
def test_recorded_student_success_is_in_the_band(name):
    """Issue target per env: student success in [15 %, 70 %] (room to improve, and a non-zero RL signal)."""
    student = _recorded(name, "none")
    assert 0.15 <= student["success"] <= 0.70, (name, student)


#: Environments where the shipped build misses the context-gain target, with the recorded numbers. Each is a strict
#: xfail, so a build that meets the target there fails loudly until its entry is removed.
CONTEXT_GAIN_SHORT: dict[str, str] = {}  # build 8 meets it everywhere: +29, +33 and +42 points


@pytest.mark.parametrize("name", _envs_xfailing(CONTEXT_GAIN_SHORT))
def test_recorded_context_gain_meets_the_target(name):
    """The precondition for self-distillation: the same weights act at least 15 points better with the context."""
    student, teacher = _recorded(name, "none"), _recorded(name, "facts")
    assert teacher["success"] >= student["success"] + 0.15, (name, student, teacher)


@pytest.mark.parametrize("name", list(BANKS))
def test_first_actions_are_valid(starter, name):
    """Fast closed-loop check: two short greedy episodes per environment, every response parses."""
    model, tokenizer = starter
    envs = _envs(name, 2)
    result = play_with_model(model, tokenizer, envs, [{"seed": 0}, {"seed": 1}], temperature=0.0, max_steps=2)
    assert result.steps
    for step in result.steps:
        assert parse_action(step.response, envs[0].action_format).valid, step.response


@pytest.mark.slow
@pytest.mark.parametrize("name", ["searchqa-mini"])
def test_success_band_on_a_sample(starter, name):
    """Closed loop on the first 12 of the build's held-out tasks (~2 min on 2 cores): the student is in a widened
    band and acts validly, and the oracle facts make it better. searchqa-mini only: its episodes are the shortest
    (alfworld-mini's 12 tasks take ~10 min)."""
    model, tokenizer = starter
    rows = [{"seed": i} for i in range(12)]
    result = play_with_model(model, tokenizer, _envs(name, len(rows)), rows, context_source="none")
    student = summarize_episodes(result.episodes)
    # 12 tasks at a fixed sampling seed: the band is checked with slack for thread-count noise (build 8: 54 % on 24).
    assert 0.10 <= student["env/success"] <= 0.80, student
    assert student["env/invalid_action_rate"] <= 0.10, student
    # The same weights with the oracle facts in front of the prompt (the teacher's input) do better.
    result = play_with_model(model, tokenizer, _envs(name, len(rows)), rows, context_source="facts")
    teacher = summarize_episodes(result.episodes)
    assert teacher["env/success"] > student["env/success"], (student, teacher)
