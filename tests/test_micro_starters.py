"""The packaged micro starters: loaded by short name, offline, their tokenizers exact on every env string."""

from __future__ import annotations

import json
import re

import pytest
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer

from sdar_trl.environments import make_env
from sdar_trl.sft import collect_expert_steps, parse_admissible
from sdar_trl.starter import DEMO_ENVS, MICRO_ENVS, MICRO_PATH, micro_starter_path, resolve_model_name
from sdar_trl.starter import load as starter_load

MB = 1024 * 1024
#: The micro starters this checkout ships (the others are built with scripts/build_micro.py, docs/starter.md).
SHIPPED = tuple(name for name in MICRO_ENVS if (MICRO_PATH / name / "model.safetensors").is_file())


def env_kwargs(name: str, split: str) -> dict:
    settings = {k: v for k, v in DEMO_ENVS[name].items() if k != "eval_split"}
    return {**settings, "split": split}


@pytest.fixture(scope="module", params=SHIPPED)
def micro(request):
    name = request.param
    path = resolve_model_name(f"micro:{name}")
    return name, path, AutoTokenizer.from_pretrained(path)


def test_the_alfworld_starter_ships():
    assert "alfworld-mini" in SHIPPED


def test_short_names_resolve_to_the_package_directories():
    for name in SHIPPED:
        assert resolve_model_name(f"micro:{name}") == str(MICRO_PATH / name)
    assert resolve_model_name("Qwen/Qwen2.5-1.5B-Instruct") == "Qwen/Qwen2.5-1.5B-Instruct"
    assert resolve_model_name("/some/dir") == "/some/dir"


def test_an_unknown_micro_name_lists_the_ones_that_exist():
    with pytest.raises(
        ValueError, match=r"no micro starter for 'toy-keys'.*alfworld-mini, webshop-mini, searchqa-mini"
    ):
        resolve_model_name("micro:toy-keys")


def test_missing_files_name_the_build_command(tmp_path, monkeypatch):
    monkeypatch.setattr(starter_load, "MICRO_PATH", tmp_path)  # where micro_starter_path reads it
    with pytest.raises(FileNotFoundError, match=r"python scripts/build_micro.py --recipe webshop-mini"):
        micro_starter_path("webshop-mini")


def test_the_three_starters_fit_the_size_budget():
    files = [f for f in MICRO_PATH.rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) <= 20 * MB


def test_model_loads_offline_as_a_plain_llama_of_0_1_to_3_million_parameters(micro):
    _, path, tokenizer = micro
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert 100_000 <= model.num_parameters() <= 3_000_000
    assert model.config.vocab_size == len(tokenizer)
    assert (
        model.generation_config.eos_token_id == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    )
    assert tokenizer.pad_token == "<|endoftext|>" and tokenizer.padding_side == "left"


def test_auto_tokenizer_keeps_the_fitted_pre_tokenizer(micro):
    """transformers may swap in a model family's own tokenizer class; the ids must be the tokenizer.json ones."""
    _, path, tokenizer = micro
    raw = Tokenizer.from_file(f"{path}/tokenizer.json")
    text = "The year Drek was founded is 1086. click[b08t8owq8z] <action>go to cabinet 12</action>"
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == raw.encode(text, add_special_tokens=False).ids


def _expert_text(name: str, split: str, seeds: range) -> tuple[list[str], list[str]]:
    """The admissible actions and expert responses of a few expert episodes (with and without the facts)."""
    env = make_env(name, **env_kwargs(name, split))
    steps = collect_expert_steps(env, name, seeds) + collect_expert_steps(env, name, seeds, context_source="facts")
    actions = sorted({a for step in steps for a in parse_admissible(step.prompt)})
    return actions, [step.response for step in steps]


@pytest.mark.parametrize("split_kind", ["train", "eval"])
def test_every_action_and_expert_response_round_trips_exactly(micro, split_kind):
    name, _, tokenizer = micro
    split = "train" if split_kind == "train" else DEMO_ENVS[name]["eval_split"]
    actions, responses = _expert_text(name, split, range(500, 506))
    if tokenizer.decode(tokenizer("Q", add_special_tokens=False)["input_ids"]) == "q":
        # A lower-casing tokenizer (webshop-mini: the page's "B07..." id and the action's "b07..." are one token):
        # its actions are lower case already, and its model writes no reasoning (`build_micro.py --reasoning empty`).
        responses = [re.sub(r"<think>.*?</think>", "<think></think>", r, flags=re.S) for r in responses]
        assert all(r == r.lower() for r in [*actions, *responses])
    for text in [*actions, *responses]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text


def _single(tokenizer, word: str) -> bool:
    """One token as the word appears after a space: with its space (the default) or, for a tokenizer fitted with
    `separate_spaces=True` (the space is its own token), without it."""
    spaced = tokenizer(" " + word, add_special_tokens=False)["input_ids"]
    if tokenizer.decode(spaced[:1]) == " ":
        spaced = spaced[1:]
    return len(spaced) == 1


def test_closed_vocabularies_are_single_tokens_on_held_out_tasks(micro):
    """ALFWorld's object and receptacle types (not necessarily the commands' verbs) and WebShop's product ids and
    option words: one token each, also on the held-out split (which the tokenizer was not fitted on)."""
    name, _, tokenizer = micro
    if name == "searchqa-mini":
        pytest.skip("searchqa-mini's names are invented per world (an open set): spelt with pieces by design")
    actions, _ = _expert_text(name, DEMO_ENVS[name]["eval_split"], range(12))
    if name == "alfworld-mini":
        words = {w for a in actions for w in re.findall(r"([a-z]+) \d+", a)}  # entities are "<type> <number>"
    else:
        words = {w for a in actions for w in re.findall(r"click\[(.*)\]", a)[:1] for w in re.findall(r"[a-z0-9]+", w)}
    assert words and [w for w in sorted(words) if not _single(tokenizer, w)] == []


def test_recorded_success_band(micro):
    """metrics.json (written by the build on the whole held-out split): student in 15-50 %, the teacher's view
    (facts) at least 20 points higher, valid actions >= 90 %."""
    name, _, _ = micro
    metrics = json.loads((MICRO_PATH / name / "metrics.json").read_text())
    contexts = metrics["eval"]["by_context"]
    student, facts = contexts["none"], contexts["facts"]
    assert student["tasks"] >= (134 if name == "alfworld-mini" else 200)
    assert 0.15 <= student["success"] <= 0.50
    assert facts["success"] >= student["success"] + 0.20
    assert student["valid_action_rate"] >= 0.90 and facts["valid_action_rate"] >= 0.90
