"""webshop-mini: protocol, determinism, pages and actions, expert, random policy, fuzzing, speed, skills."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("bm25s", reason="webshop-mini needs bm25s")
pytest.importorskip("rapidfuzz", reason="webshop-mini needs rapidfuzz")

from sdar_trl.actions import parse_think_action
from sdar_trl.environments import check_agent_environment, make_env
from sdar_trl.environments.base import ResetNeededError
from sdar_trl.environments.webshop import WEBSHOP_CATEGORIES, WebShopMiniEnv, route_webshop_category
from sdar_trl.environments.webshop.expert import parse_goal
from sdar_trl.environments.webshop.pages import parse_action
from sdar_trl.skills import SkillBank

SPLITS = ("train", "test")
DIFFICULTIES = ("full", "easy")


def play(env: WebShopMiniEnv, seed: int, policy=None) -> tuple[list[object], dict]:
    """One episode (expert by default); returns the transcript and the last step info."""
    obs, info = env.reset(seed=seed)
    transcript: list[object] = [obs, sorted(info.items())]
    while True:
        action = env.expert_action() if policy is None else policy(info)
        obs, reward, terminated, truncated, step_info = env.step(action)
        transcript.append((action, obs, reward, terminated, truncated, sorted(step_info.items())))
        info = step_info
        if terminated or truncated:
            return transcript, step_info


# -- protocol ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
@pytest.mark.parametrize("split", SPLITS)
def test_check_agent_environment_passes(split, difficulty):
    check_agent_environment(WebShopMiniEnv(split=split, difficulty=difficulty), seed=3)


def test_registered_names_build_the_mini_env():
    env = make_env("webshop-mini", split="test")
    assert isinstance(env, WebShopMiniEnv)
    assert env.action_format == "think_action"
    assert env.max_episode_steps == 15
    assert env.num_tasks == 500
    assert WebShopMiniEnv(split="train").num_tasks is None


def test_step_before_reset_raises_and_close_is_idempotent():
    env = WebShopMiniEnv()
    with pytest.raises(ResetNeededError):
        env.step("search[shoes]")
    with pytest.raises(ResetNeededError):
        env.expert_action()
    assert env.privileged_facts() == ""
    env.close()
    env.close()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"split": "valid"}, ValueError),
        ({"difficulty": "hard"}, ValueError),
        ({"max_episode_steps": 0}, ValueError),
        ({"seed": "1"}, TypeError),
        ({"catalog_seed": 1.5}, TypeError),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, error):
    with pytest.raises(error):
        WebShopMiniEnv(**kwargs)


def test_reset_rejects_negative_seed():
    with pytest.raises(ValueError, match="non-negative"):
        WebShopMiniEnv().reset(seed=-1)


@pytest.mark.parametrize("split", SPLITS)
def test_same_seed_same_transcript_and_different_seeds_different_tasks(split):
    env_a, env_b = WebShopMiniEnv(split=split), WebShopMiniEnv(split=split)
    for seed in (0, 7, 123):
        assert play(env_a, seed)[0] == play(env_b, seed)[0]
    tasks = {env_a.reset(seed=seed)[1]["task"] for seed in range(50)}
    assert len(tasks) == 50


def test_split_indexing():
    test_env, train_env = WebShopMiniEnv(split="test"), WebShopMiniEnv(split="train")
    assert test_env.reset(seed=3)[1]["task"] == test_env.reset(seed=503)[1]["task"]
    test_tasks = {test_env.reset(seed=i)[1]["task"] for i in range(500)}
    assert len(test_tasks) == 500
    train_tasks = {train_env.reset(seed=i)[1]["task"] for i in range(2000)}
    assert len(train_tasks) == 2000
    assert not test_tasks & train_tasks
    assert train_env.num_train_goals >= 1_000_000
    big = train_env.reset(seed=10**9)[1]["goal_index"]
    assert 500 <= big < 500 + train_env.num_train_goals


def test_options_row_seed_and_env_rng():
    env = WebShopMiniEnv(split="test")
    assert env.reset(options={"seed": 4, "prompt": "ignored"})[1]["task"] == env.reset(seed=4)[1]["task"]
    first = [WebShopMiniEnv(seed=1).reset()[1]["task"] for _ in range(2)]
    assert first[0] == first[1]
    env = WebShopMiniEnv(seed=1)
    assert len({env.reset()[1]["task"] for _ in range(5)}) > 1


def test_catalog_seed_changes_the_catalogue():
    a = WebShopMiniEnv(split="test", catalog_seed=0).reset(seed=0)[0]
    b = WebShopMiniEnv(split="test", catalog_seed=1).reset(seed=0)[0]
    assert a != b


# -- pages and actions -----------------------------------------------------------------------------------------


def test_pages_and_admissible_actions_follow_webshop():
    env = WebShopMiniEnv(split="test")
    obs, info = env.reset(seed=0)
    task = info["task"]
    assert obs == f"WebShop [SEP] Instruction: [SEP] {task} [SEP] Search"
    assert info["admissible_actions"] == ["search[<your query>]"]
    assert info["task_type"] in WEBSHOP_CATEGORIES

    obs, reward, terminated, truncated, info = env.step(f"search[{parse_goal(task).request}]")
    segments = obs.split(" [SEP] ")
    assert segments[:5] == ["Instruction:", task, "Back to Search", "Page 1 (Total results: 50)", "Next >"]
    assert len(segments) == 5 + 3 * 10
    assert info["admissible_actions"][:2] == ["click[back to search]", "click[next >]"]
    asins = segments[5::3]
    assert all(a.startswith("B0") and len(a) == 10 for a in asins)
    assert info["admissible_actions"][2:] == [f"click[{a.lower()}]" for a in asins]
    assert all(price.startswith("$") for price in segments[7::3])
    assert (reward, terminated, truncated, info["won"], info["score"]) == (0.0, False, False, False, 0.0)

    obs, *_, info = env.step("click[next >]")
    assert "Page 2 (Total results: 50) [SEP] < Prev [SEP] Next >" in obs
    assert info["admissible_actions"][:3] == ["click[back to search]", "click[< prev]", "click[next >]"]
    obs, *_ = env.step("click[< prev]")
    assert "Page 1 (Total results: 50) [SEP] Next >" in obs

    obs, *_, info = env.step(f"CLICK[{asins[0]}]".lower())  # the parser lower-cases everything
    product = env._catalog.by_asin[asins[0]]
    assert obs.startswith(f"Instruction: [SEP] {task} [SEP] Back to Search [SEP] < Prev [SEP] ")
    assert obs.endswith(
        f"{product.title} [SEP] Price: {product.price_text} [SEP] Rating: {product.rating} [SEP] Description "
        "[SEP] Features [SEP] Reviews [SEP] Buy Now"
    )
    buttons = ["back to search", "< prev", "description", "features", "reviews", "buy now"]
    values = [v for vs in product.options.values() for v in vs]
    assert info["admissible_actions"] == [f"click[{c}]" for c in [*buttons, *values]]
    for name, body in (
        ("description", [product.description]),
        ("features", list(product.bullets)),
    ):
        obs, *_ = env.step(f"click[{name}]")
        assert obs == " [SEP] ".join(["Instruction:", task, "Back to Search", "< Prev", *body])
        obs, *_ = env.step("click[< prev]")
        assert obs.endswith("Buy Now")
    obs, *_ = env.step("click[reviews]")
    assert f'"{product.reviews[0][0]}"' in obs
    obs, *_ = env.step("click[back to search]")
    assert obs.startswith("WebShop [SEP] Instruction:")


@pytest.mark.parametrize(
    "action",
    ["", "look", "click[]", "click[buy now]", "click[search]", "click[nonexistent]", "search[]", "search", "\x00"],
)
def test_invalid_actions_keep_the_page(action):
    env = WebShopMiniEnv(split="test")
    obs, _ = env.reset(seed=1)
    new_obs, reward, terminated, truncated, info = env.step(action)
    assert (new_obs, reward, terminated, truncated, info["won"]) == (obs, 0.0, False, False, False)


def test_search_works_from_any_page_and_unknown_words_give_no_results():
    env = WebShopMiniEnv(split="test")
    env.reset(seed=2)
    env.step("search[<your query>]")
    obs, *_, info = env.step("search[zzqx]")
    assert "Page 1 (Total results: 0)" in obs
    assert info["admissible_actions"] == ["click[back to search]", "click[next >]"]
    obs, *_ = env.step("search[hoodie]")
    segments = obs.split(" [SEP] ")
    assert segments[3] == "Page 1 (Total results: 36)"  # every hoodie of the catalogue, and nothing else
    assert all("Hoodie" in title for title in segments[6::3])


def test_buying_ends_the_episode_and_later_steps_are_inert():
    env = WebShopMiniEnv(split="test")
    transcript, info = play(env, 5)
    assert info["won"] and info["score"] == 1.0 and transcript[-1][2] == 10.0 and transcript[-1][3]
    assert info["admissible_actions"] == []
    obs = transcript[-1][1]
    assert obs.startswith("Thank you for shopping with us!")
    assert env.step("click[buy now]") == (obs, 0.0, True, False, {"won": True, "admissible_actions": [], "score": 1.0})


def test_wrong_purchase_scores_partially():
    env = WebShopMiniEnv(split="test")
    env.reset(seed=6)
    goal = env.goal
    env.step(f"search[{goal.query}]")
    env.step(f"click[{goal.target.asin.lower()}]")
    _obs, reward, terminated, _, info = env.step("click[buy now]")  # no options selected
    n_attrs, n_opts = len(goal.attributes), len(goal.options)
    assert terminated and reward == 0.0 and not info["won"]
    assert info["score"] == pytest.approx((n_attrs + 1) / (n_attrs + n_opts + 1))


def test_step_limit_truncates():
    env = WebShopMiniEnv(split="test", max_episode_steps=3)
    env.reset(seed=0)
    flags = [env.step("click[nothing]")[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]
    assert env.step("search[shoes]")[1:4] == (0.0, False, True)


# -- expert --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
@pytest.mark.parametrize("split", SPLITS)
def test_expert_solves_at_least_99_percent(split, difficulty):
    env = WebShopMiniEnv(split=split, difficulty=difficulty)
    wins = 0
    for seed in range(500):
        _, info = env.reset(seed=seed)
        assert info["task_type"] == env.goal.category
        while True:
            response = env.expert_response()
            action = env.expert_action()
            parsed = parse_think_action(response)
            assert parsed.valid and parsed.action == action
            _obs, _reward, terminated, truncated, info = env.step(parsed.action)
            if terminated or truncated:
                break
        wins += info["won"]
    assert wins / 500 >= 0.99


def test_expert_uses_only_visible_text():
    # The expert's decision is a function of (task, observation, previous action): replaying it from those three
    # strings alone, without the environment, gives the same actions.
    from sdar_trl.environments.webshop import expert_decision

    env = WebShopMiniEnv(split="test")
    for seed in range(30):
        obs, info = env.reset(seed=seed)
        task, last = info["task"], None
        while True:
            action = expert_decision(task, obs, last)[0]
            assert action == env.expert_action()
            obs, _, terminated, truncated, _ = env.step(action)
            last = action
            if terminated or truncated:
                break


def test_expert_recovers_from_a_wrong_item():
    env = WebShopMiniEnv(split="test")
    env.reset(seed=8)
    env.step(f"search[{env.goal.query}]")
    wrong = next(
        a for a in env._clickables if len(a) == 10 and a.startswith("b0") and a != env.goal.target.asin.lower()
    )
    env.step(f"click[{wrong}]")
    for _ in range(12):
        _obs, _reward, terminated, truncated, info = env.step(env.expert_action())
        if terminated or truncated:
            break
    assert info["won"]


def test_privileged_facts_name_the_target():
    env = WebShopMiniEnv(split="test")
    env.reset(seed=0)
    facts = env.privileged_facts()
    goal = env.goal
    assert goal.target.asin in facts and goal.target.title in facts
    assert all(value in facts for _, value in goal.options)
    assert all(attribute in facts for attribute in goal.attributes)


# -- random policy, fuzzing, speed ----------------------------------------------------------------------------


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_random_admissible_policy_rarely_wins(difficulty):
    env = WebShopMiniEnv(split="test", difficulty=difficulty)
    rng = random.Random(0)
    wins = sum(play(env, seed, lambda info: rng.choice(info["admissible_actions"]))[1]["won"] for seed in range(300))
    assert wins / 300 <= 0.02


@pytest.mark.parametrize("difficulty", DIFFICULTIES)
def test_random_clicks_after_a_good_search_rarely_win(difficulty):
    env = WebShopMiniEnv(split="test", difficulty=difficulty)
    rng = random.Random(0)
    wins = 0
    for seed in range(300):
        env.reset(seed=seed)
        _, _, _, _, info = env.step(env.expert_action())
        for _ in range(14):
            _, _, terminated, truncated, info = env.step(rng.choice(info["admissible_actions"]))
            if terminated or truncated:
                break
        wins += info["won"]
    assert wins / 300 <= 0.05 if difficulty == "full" else wins / 300 <= 0.15


def _state(env: WebShopMiniEnv) -> tuple:
    return (env._obs, env._page, env._query, env._results, env._product, dict(env._chosen), env._terminated)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    garbage=st.one_of(
        st.text(max_size=300),
        st.text(alphabet="[]<>/clicksearchbuy now>< prev", max_size=80),
        st.builds(lambda s: f"click[{s}]", st.text(max_size=40)),
        st.builds(lambda s: f"search[{s}]", st.text(max_size=40)),
        st.just("x" * 20_000),
    ),
    depth=st.integers(min_value=0, max_value=3),
)
def test_fuzzed_actions_never_raise_and_leave_state_intact(garbage, depth):
    env = _FUZZ_ENV
    env.reset(seed=11)
    for _ in range(depth):
        env.step(env.expert_action())
    before = _state(env)
    obs, reward, terminated, truncated, info = env.step(garbage)
    assert isinstance(obs, str) and isinstance(info["admissible_actions"], list) and isinstance(reward, float)
    name, argument = parse_action(garbage)
    name = name.strip().lower()
    valid_search = name == "search" and bool(argument)
    valid_click = (
        name == "click" and argument is not None and argument.strip().lower() in before_clickables(env, depth)
    )
    if not (valid_search or valid_click):
        assert _state(env) == before and reward == 0.0 and not terminated
        for _ in range(12):  # the expert still finishes the task from here
            *_, terminated, truncated, info = env.step(env.expert_action())
            if terminated or truncated:
                break
        assert info["won"]


def before_clickables(env: WebShopMiniEnv, depth: int) -> set[str]:
    """The clickables of the page reached after `depth` expert steps of seed 11 (on a scratch environment)."""
    if depth not in _CLICKABLES:
        scratch = WebShopMiniEnv(split="test")
        scratch.reset(seed=11)
        for _ in range(depth):
            scratch.step(scratch.expert_action())
        _CLICKABLES[depth] = set(scratch._clickables) - {"search"}
    return _CLICKABLES[depth]


_FUZZ_ENV = WebShopMiniEnv(split="test")
_CLICKABLES: dict[int, set[str]] = {}


def test_garbage_then_expert_still_wins():
    env = WebShopMiniEnv(split="test")
    env.reset(seed=12)
    for garbage in ("", "click[", "<action>", "search[]", "click[zzz]"):
        env.step(garbage)
    for _ in range(10):
        *_, terminated, truncated, info = env.step(env.expert_action())
        if terminated or truncated:
            break
    assert info["won"]


def test_random_policy_speed_is_at_least_2000_steps_per_second():
    env = WebShopMiniEnv(split="train")
    rng = random.Random(0)
    steps, start = 0, time.perf_counter()
    while steps < 6000:
        _, info = env.reset(seed=steps)
        for _ in range(15):
            _, _, terminated, truncated, info = env.step(rng.choice(info["admissible_actions"] or ["click[x]"]))
            steps += 1
            if terminated or truncated:
                break
    assert steps / (time.perf_counter() - start) >= 2000


# -- routing and skills --------------------------------------------------------------------------------------


def test_task_type_is_the_routed_category_for_sampled_train_goals():
    env = WebShopMiniEnv(split="train")
    for seed in range(0, 3_000_000, 1009):
        _, info = env.reset(seed=seed)
        assert info["task_type"] == route_webshop_category(info["task"]) == env.goal.category


def test_skill_bank_covers_every_task_type():
    bank = SkillBank.from_package("webshop-mini")
    assert 4 <= len(bank.general) <= 8
    assert set(bank.task_types) == set(WEBSHOP_CATEGORIES)
    assert all(2 <= len(skills) <= 4 for skills in bank.task_specific.values())
    assert bank.render("grocery").count("Principle:") == len(bank.general) + len(bank.task_specific["grocery"])
