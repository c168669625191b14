"""SFT warm-start data: agent-mode prompts byte for byte, the teacher prefix on context rows, valid expert actions."""

from __future__ import annotations

import dataclasses

import pytest
from datasets import Dataset

from sdar_trl import SDARConfig, SDARTrainer
from sdar_trl.actions import parse_action
from sdar_trl.environments import make_env
from sdar_trl.rollout import rendered_history_actions
from sdar_trl.sft import (
    CONTEXT_SOURCES,
    build_sft_dataset,
    collect_expert_steps,
    context_aware_response,
    parse_admissible,
    render_context,
    render_sft_prompt,
)
from sdar_trl.skills import SkillBank
from sdar_trl.testing import ScriptedEnv, build_tiny_model, patch_generation

ENVS = {
    "alfworld-mini": {"difficulty": "easy", "max_episode_steps": 20},
    "webshop-mini": {"difficulty": "easy"},
    "searchqa-mini": {"difficulty": "easy"},
}
BANKS = {"alfworld-mini": "alfworld", "webshop-mini": "webshop", "searchqa-mini": "searchqa"}
DEFAULTS = {f.name: f.default for f in dataclasses.fields(SDARConfig)}


def _env(name, split="train"):
    return make_env(name, split=split, **ENVS[name])


@pytest.mark.parametrize("name", list(ENVS))
def test_prompts_are_byte_identical_to_agent_mode(tmp_path, tiny_tokenizer, name):
    seeds = [0, 1]
    trainer = SDARTrainer(
        build_tiny_model(tiny_tokenizer),
        args=SDARConfig(
            output_dir=str(tmp_path),
            per_device_train_batch_size=2,
            per_device_eval_batch_size=1,
            num_generations=2,
            max_completion_length=8,
            report_to="none",
            bf16=False,
            save_strategy="no",
            disable_tqdm=True,
        ),
        train_dataset=Dataset.from_list([{"seed": s} for s in seeds]),
        eval_dataset=Dataset.from_list([{"seed": s} for s in seeds]),
        processing_class=tiny_tokenizer,
        env_factory=lambda: _env(name),
        skill_bank=SkillBank.from_package(BANKS[name]),
    )
    # The scripted "model" plays the expert of the (single, pooled) evaluation environment.
    seen = patch_generation(trainer, lambda text, call, position: trainer._envs.train[0].expert_response())
    trainer.evaluate()

    steps = collect_expert_steps(_env(name), name, seeds)
    rows = build_sft_dataset(steps, tiny_tokenizer, shuffle_seed=None)
    assert len(rows) == len(seen) > len(seeds)
    assert rows["prompt"] == seen  # what agent mode tokenized and fed to generation, decoded
    # The text agent mode wraps is exactly the step's user message.
    for step, row in zip(steps, rows, strict=True):
        assert row["prompt"] == render_sft_prompt(tiny_tokenizer, step.prompt)
        assert row["completion"] == step.response + tiny_tokenizer.eos_token


@pytest.mark.parametrize("name", list(ENVS))
@pytest.mark.parametrize("source", ["skills", "facts", "skills+facts"])
def test_context_rows_carry_exactly_the_teacher_prefix(tiny_tokenizer, name, source):
    bank = SkillBank.from_package(BANKS[name])
    steps = collect_expert_steps(_env(name), name, [3], context_source=source)
    rows = build_sft_dataset(steps, tiny_tokenizer, shuffle_seed=None)
    env = _env(name)
    env.reset(seed=3, options={"seed": 3})
    parts = {"skills": bank.render(steps[0].task_type), "facts": env.privileged_facts()}
    context = "\n\n".join(parts[key] for key in ("skills", "facts") if key in source)
    assert steps[0].context == context
    for step, row in zip(steps, rows, strict=True):
        templated = tiny_tokenizer.apply_chat_template(
            [{"role": "user", "content": step.prompt}], add_generation_prompt=True, tokenize=False
        )
        prefix = DEFAULTS["teacher_context_header"] + context + DEFAULTS["teacher_context_separator"]
        assert row["prompt"] == prefix + templated
        # Token level: the SFT row tokenizes as the teacher builds its input (prefix ids + student prompt ids).
        tokens = tiny_tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
        pieces = [tiny_tokenizer(text, add_special_tokens=False)["input_ids"] for text in (prefix, templated)]
        assert tokens == pieces[0] + pieces[1]


@pytest.mark.parametrize("name", list(ENVS))
@pytest.mark.parametrize("source", CONTEXT_SOURCES)
def test_expert_data_parse_as_valid_actions_and_win(name, source):
    steps = collect_expert_steps(_env(name), name, range(20), context_source=source)
    action_format = _env(name).action_format
    for step in steps:
        parsed = parse_action(step.response, action_format)
        assert parsed.valid, (step.response, parsed.error)
        admissible = parse_admissible(step.prompt)
        if admissible and not parsed.action.startswith("search["):  # WebShop lists 'search[<your query>]'
            assert parsed.action in admissible, (parsed.action, admissible)
    assert all(step.won for step in steps)


@pytest.mark.parametrize("name", list(ENVS))
def test_facts_make_the_expert_act_better(name):
    plain = collect_expert_steps(_env(name), name, range(30))
    informed = collect_expert_steps(_env(name), name, range(30), context_source="facts")
    cites = [step for step in informed if "privileged information" in step.response]
    assert cites, "the context-aware expert never used the facts"
    assert len(informed) <= len(plain)  # never longer: it goes straight to the target where the facts say where
    if name != "webshop-mini":  # WebShop's expert already opens the target first; facts change the reasoning
        assert len(informed) < len(plain)


def test_searchqa_gold_facts_answer_at_once():
    name = "searchqa-mini"
    informed = collect_expert_steps(_env(name), name, range(40), context_source="facts")
    assert [step.step for step in informed] == [0] * 40  # one answer per episode, no search
    assert all(step.won for step in informed)
    assert all(step.response.startswith("<think>The privileged information states that ") for step in informed)
    compared = [step for step in informed if step.task_type == "compare"]
    assert compared and all(" wins over " in step.response for step in compared)
    # Facts without the gold-facts line (a bridge only) still fall back to skipping a hop, not to answering.
    env = _env(name)
    env.reset(seed=3)
    assert "<answer>" not in context_aware_response(env, name, facts="Gold passages: X.", prompt=env.question)


def test_webshop_facts_copy_the_previous_action_before_every_decision_after_the_search():
    name = "webshop-mini"
    plain = collect_expert_steps(_env(name), name, range(30))
    informed = collect_expert_steps(_env(name), name, range(30), context_source="facts")
    # Same actions as the plain expert (it already opens the target and selects in order); the reasoning differs.
    assert [s.response.split("<action>")[1] for s in informed] == [s.response.split("<action>")[1] for s in plain]
    after_search = [s for s in informed if s.step > 0]
    assert len(after_search) >= 90  # open the product, at least one option, the purchase, per episode
    for step in after_search:
        last_action = rendered_history_actions(step.prompt)[-1]
        assert step.response.startswith(f"<think>My previous action was {last_action}"), step.response
        # The copied action names the page: a search leads to a results page, a click to the item page.
        page = "so this is a results page" in step.response
        assert page == last_action.startswith("search["), (last_action, step.response)
    assert sum("so I buy it" in s.response for s in after_search) == 30
    assert sum("so I select the first: " in s.response for s in after_search) == 30
    for step in after_search:
        if "so I select the next: " in step.response:
            previous = rendered_history_actions(step.prompt)[-1][len("click[") : -1]
            assert f"; it selected {previous}. " in step.response


def test_webshop_option_reasoning_needs_the_previous_action_in_the_prompt():
    # The quoted action is read from the prompt's history; a prompt without history cannot be quoted from, so
    # the plain expert's reasoning is used instead of inventing an action the model never sees.
    name = "webshop-mini"
    blind = collect_expert_steps(_env(name), name, range(5), context_source="facts", history_length=0)
    plain = collect_expert_steps(_env(name), name, range(5), history_length=0)
    assert not any("My previous action was " in s.response for s in blind)
    assert [s.response.split("<action>")[1] for s in blind] == [s.response.split("<action>")[1] for s in plain]


def test_noise_steps_are_played_but_not_recorded():
    name = "alfworld-mini"
    clean = collect_expert_steps(_env(name), name, range(10))
    noisy = collect_expert_steps(_env(name), name, range(10), noise=0.3, rng_seed=1)
    assert all(parse_action(step.response, "think_action").valid for step in noisy)
    assert all("random exploration" not in step.response for step in noisy)
    assert [s.prompt for s in noisy] != [s.prompt for s in clean]


def test_hasty_webshop_episodes_skip_the_options_and_lose_only_without_facts():
    name = "webshop-mini"
    careful = collect_expert_steps(_env(name), name, range(40))
    hasty = collect_expert_steps(_env(name), name, range(40), hasty=0.5, rng_seed=3)
    won = {s.seed: s.won for s in hasty}
    lost = sorted(seed for seed, ok in won.items() if not ok)
    assert 10 <= len(lost) <= 30, lost  # about half of the 40 episodes, every one of them a loss
    for seed in lost:
        ours = [s for s in hasty if s.seed == seed]
        theirs = [s for s in careful if s.seed == seed]
        # The same search and the same product, then "Buy Now" where the expert selects the first option.
        assert [s.response for s in ours[:2]] == [s.response for s in theirs[:2]]
        assert ours[2].response.endswith("<action>click[buy now]</action>"), ours[2].response
        assert not theirs[2].response.endswith("<action>click[buy now]</action>")
        assert len(ours) == 3
    for seed in set(won) - set(lost):  # the careful episodes are the expert's own
        assert [s.response for s in hasty if s.seed == seed] == [s.response for s in careful if s.seed == seed]
    # With the facts in the prompt the expert is never hasty: the facts name the options to select.
    informed = collect_expert_steps(_env(name), name, range(40), context_source="facts", hasty=0.5, rng_seed=3)
    assert all(s.won for s in informed)
    # hasty=0 draws nothing: the noise stream (and so every earlier build's data) is unchanged.
    assert collect_expert_steps(_env(name), name, range(10), noise=0.2, rng_seed=1) == collect_expert_steps(
        _env(name), name, range(10), noise=0.2, hasty=0.0, rng_seed=1
    )


def test_hasty_searchqa_episodes_answer_one_fact_early_only_where_a_second_fact_is_needed():
    name = "searchqa-mini"
    careful = collect_expert_steps(_env(name), name, range(30))
    hasty = collect_expert_steps(_env(name), name, range(30), hasty=1.0, rng_seed=3)
    assert all(s.won for s in careful)
    for seed in range(30):
        ours = [s for s in hasty if s.seed == seed]
        theirs = [s for s in careful if s.seed == seed]
        # One fact to read (or both read off the first search's results): nothing to skip.
        if ours[0].task_type in ("direct_retrieval", "entity_attribute_lookup") or len(theirs) < 3:
            assert [s.response for s in ours] == [s.response for s in theirs]
            continue
        # The same first search, then an answer where the expert searches for the second fact.
        assert ours[0].response == theirs[0].response and "<search>" in theirs[1].response
        assert len(ours) == 2 and ours[1].response.endswith("</answer>"), ours[1].response
        assert "I have no turns left" not in ours[1].response and " now.</think>" in ours[1].response
        if ours[0].task_type == "multi_hop_reasoning":  # the bridge entity is never a chain's answer
            assert not ours[1].won
    assert {s.task_type for s in hasty if not s.won} == {"compare", "multi_hop_reasoning"}
    # With the facts in the prompt the expert answers from them at once and is never hasty.
    informed = collect_expert_steps(_env(name), name, range(30), context_source="facts", hasty=1.0, rng_seed=3)
    assert all(s.won for s in informed)


def test_context_aware_response_falls_back_to_the_expert():
    env = _env("webshop-mini")
    observation, _ = env.reset(seed=0)
    assert context_aware_response(env, "webshop-mini", facts="", prompt=observation) == env.expert_response()


def test_render_context_and_bad_arguments(tiny_tokenizer):
    assert render_context("skills+facts", skills="S", facts="F") == "S\n\nF"
    assert render_context("none", skills="S", facts="F") == ""
    with pytest.raises(ValueError, match="expected one of"):
        render_context("oracle", skills="S", facts="F")
    with pytest.raises(ValueError, match="context_source='oracle'"):
        collect_expert_steps(_env("webshop-mini"), "webshop-mini", [0], context_source="oracle")
    with pytest.raises(ValueError, match=r"noise=1\.5"):
        collect_expert_steps(_env("webshop-mini"), "webshop-mini", [0], noise=1.5)
    with pytest.raises(ValueError, match=r"hasty=1\.5"):
        collect_expert_steps(_env("webshop-mini"), "webshop-mini", [0], hasty=1.5)
    with pytest.raises(ValueError, match="'alfworld-mini' has none"):
        collect_expert_steps(_env("alfworld-mini"), "alfworld-mini", [0], hasty=0.5)
    with pytest.raises(TypeError, match="no expert_response"):
        collect_expert_steps(ScriptedEnv(), "scripted", [0])
