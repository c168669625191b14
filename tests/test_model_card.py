"""The model card SDARTrainer writes: the real base model and SDAR's citation (TRL's says "None" and DeepSeekMath)."""

from __future__ import annotations

import yaml

from sdar_trl import starter
from sdar_trl.model_card import SDAR_PAPER, base_model_name, render_model_card


def _front_matter(card: str) -> dict:
    _, meta, _ = card.split("---\n", 2)
    return yaml.safe_load(meta)


def test_starter_directories_get_their_short_names(tmp_path, monkeypatch):
    assert base_model_name(starter.MICRO_PATH / "alfworld-mini") == "micro:alfworld-mini"
    monkeypatch.setenv("SDAR_TRL_CACHE", str(tmp_path))
    assert base_model_name(tmp_path / "starter-0123456789abcdef") == "smollm2"
    assert base_model_name("Qwen/Qwen2.5-1.5B-Instruct") == "Qwen/Qwen2.5-1.5B-Instruct"
    assert base_model_name(tmp_path / "my-sft") == str(tmp_path / "my-sft")
    assert base_model_name(None) is None


def test_a_hub_base_model_is_linked_and_in_the_metadata():
    card = render_model_card(model_name="run", base_model="Qwen/Qwen2.5-1.5B-Instruct", method="sdar", tags=["sdar"])
    assert (
        "a fine-tuned version of [Qwen/Qwen2.5-1.5B-Instruct](https://huggingface.co/Qwen/Qwen2.5-1.5B-Instruct)"
        in card
    )
    assert _front_matter(card)["base_model"] == "Qwen/Qwen2.5-1.5B-Instruct"
    assert "SDAR (GRPO plus the gated self-distillation term" in card


def test_a_local_base_model_is_named_not_linked_and_never_none():
    card = render_model_card(model_name="run", base_model="micro:alfworld-mini", method="grpo", tags=["trl", "trl"])
    assert "a fine-tuned version of `micro:alfworld-mini`, trained with GRPO" in card
    assert "None" not in card and "huggingface.co/micro" not in card
    meta = _front_matter(card)
    assert "base_model" not in meta and meta["tags"] == ["generated_from_trainer", "trl"]


def test_the_card_cites_sdar_and_trl_not_deepseekmath():
    card = render_model_card(model_name="run", base_model=None, method="opsd", details={"optimizer steps": 3})
    assert SDAR_PAPER["citation"] in card and "vonwerra2020trl" in card
    assert "DeepSeekMath" not in card and "shao2024" not in card
    assert "`method='opsd'`" in card and "- optimizer steps: 3" in card
