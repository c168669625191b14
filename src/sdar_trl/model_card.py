"""The model card (`README.md`) that `SDARTrainer.create_model_card` writes beside a trained model.

TRL's card template assumes a hub base model: for a local directory (every starter, every model a user
fine-tuned first) it prints "a fine-tuned version of [None](https://huggingface.co/None)", and GRPOTrainer's
citation is DeepSeekMath's. This card names the real starting point — a hub id, a starter's short name
(`micro:alfworld-mini`, `smollm2`) or the local path — and cites SDAR and TRL.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCardData

__all__ = ["SDAR_PAPER", "base_model_name", "render_model_card"]

#: The paper, in the shape TRL's trainers keep theirs (`_paper`).
SDAR_PAPER: dict[str, str] = {
    "title": "Self-Distilled Agentic Reinforcement Learning",
    "id": "2605.15155",
    "citation": (
        "@article{lu2026sdar,\n"
        "  title   = {Self-Distilled Agentic Reinforcement Learning},\n"
        "  author  = {Lu, Zhengxi and Yao, Zhiyuan and Han, Zhuowen and Wang, Zi-Han and Wu, Jinyang and Gu, Qi and "
        "Cai, Xunliang and Lu, Weiming and Xiao, Jun and Zhuang, Yueting and others},\n"
        "  journal = {arXiv preprint arXiv:2605.15155},\n"
        "  year    = {2026}\n"
        "}"
    ),
}

_TRL_CITATION = (
    "@software{vonwerra2020trl,\n"
    "  title  = {{TRL: Transformers Reinforcement Learning}},\n"
    "  author = {von Werra, Leandro and Belkada, Younes and Tunstall, Lewis and Beeching, Edward and Thrush, Tristan "
    "and Lambert, Nathan and Huang, Shengyi and Rasul, Kashif and Gallouédec, Quentin},\n"
    "  url    = {https://github.com/huggingface/trl},\n"
    "  year   = {2020}\n"
    "}"
)

_METHODS = {
    "sdar": "SDAR (GRPO plus the gated self-distillation term from a privileged-context teacher)",
    "grpo": "GRPO (SDARTrainer with the distillation term off)",
}


def base_model_name(name_or_path: str | os.PathLike[str] | None) -> str | None:
    """What the model was trained from, as a person would name it.

    A packaged micro starter's directory becomes its short name (`micro:<env>`); the SmolLM2 starter's merged
    directory becomes `smollm2`; anything else (a hub id or another local directory) is returned as given.
    """
    if not name_or_path:
        return None
    from sdar_trl.starter import MICRO_PATH, MICRO_PREFIX, SMOLLM2_NAME, _cache_root

    path = Path(name_or_path)
    if path.parent.resolve() == MICRO_PATH.resolve():
        return f"{MICRO_PREFIX}{path.name}"
    if path.name.startswith("starter-") and path.parent.resolve() == _cache_root().resolve():
        return SMOLLM2_NAME  # starter_model_path() merges the LoRA starter into `<cache>/starter-<digest>`
    return str(name_or_path)


def _is_hub_id(name: str) -> bool:
    return not os.path.exists(name) and ":" not in name and name.count("/") == 1


def render_model_card(
    *,
    model_name: str,
    base_model: str | None,
    method: str,
    tags: Sequence[str] = (),
    details: Mapping[str, Any] | None = None,
) -> str:
    """The card's markdown: YAML metadata (the base model only when it is a hub id), what was trained from what,
    how to load it, the run's details, and the citations (SDAR, then TRL)."""
    hub_base = base_model if base_model and _is_hub_id(base_model) else None
    data = ModelCardData(
        base_model=hub_base,
        library_name="transformers",
        model_name=model_name,
        tags=["generated_from_trainer", *dict.fromkeys(tags)],
    )
    if hub_base:
        origin = f"a fine-tuned version of [{hub_base}](https://huggingface.co/{hub_base})"
    elif base_model:
        origin = f"a fine-tuned version of `{base_model}`"
    else:
        origin = "a model"
    trained_with = _METHODS.get(method, f"`method={method!r}`")
    lines = [
        "---",
        data.to_yaml(),
        "---",
        "",
        f"# {model_name}",
        "",
        f"This model is {origin}, trained with {trained_with} using "
        "[sdar_trl](https://arxiv.org/abs/2605.15155) on top of [TRL](https://github.com/huggingface/trl).",
        "",
        "## Quick start",
        "",
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f'model = AutoModelForCausalLM.from_pretrained("{model_name}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{model_name}")',
        "```",
        "",
        "Evaluate it on an environment:",
        "",
        f"    python -m sdar_trl.evaluate --model_name_or_path {model_name} --env ENV",
    ]
    if details:
        lines += ["", "## Training run", "", *(f"- {key}: {value}" for key, value in details.items())]
    lines += [
        "",
        "## Citations",
        "",
        f"Cite SDAR ([{SDAR_PAPER['title']}](https://arxiv.org/abs/{SDAR_PAPER['id']})) as:",
        "",
        "```bibtex",
        SDAR_PAPER["citation"],
        "```",
        "",
        "Cite TRL as:",
        "",
        "```bibtex",
        _TRL_CITATION,
        "```",
        "",
    ]
    return "\n".join(lines)
