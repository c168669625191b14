"""The offline starter agent: a small Qwen3 model SFT-trained on the mini environments' expert steps.

A build writes its files into this directory (`config.json`, `model.safetensors`, the tokenizer files and
`metrics.json` with the numbers measured when it was built), so they ship as package data and load without
the hub. Build it from scratch with `python scripts/build_starter.py`; docs/starter.md has the measured
numbers (the current builds do not yet reach the success targets, so no weights are committed).

```python
from sdar_trl.starter import STARTER_PATH, load_starter

model, tokenizer = load_starter()
trainer = SDARTrainer(model=str(STARTER_PATH), processing_class=tokenizer, ...)
```
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from ..config import SDARConfig
from ..environments.base import AgentEnvironment
from ..rollout import EpisodeRecord, RolloutResult, play_episodes
from ..skills import SkillBank
from ..teacher import render_teacher_prefix

__all__ = [
    "DEMO_ENVS",
    "STARTER_PATH",
    "load_starter",
    "load_starter_metrics",
    "play_with_model",
    "starter_available",
]

#: The directory holding the shipped model, tokenizer and `metrics.json`.
STARTER_PATH: Path = Path(__file__).resolve().parent

#: The environment settings the starter was built and measured on: `make_env(name, **DEMO_ENVS[name])`
#: (the train split for RL, the `eval_split` for held-out evaluation). Rebuilding may change them: see
#: `load_starter_metrics()["envs"]` for the settings of the shipped files.
DEMO_ENVS: dict[str, dict[str, Any]] = {
    "alfworld-mini": {"difficulty": "easy", "max_episode_steps": 20, "eval_split": "valid_unseen"},
    "webshop-mini": {"difficulty": "easy", "max_episode_steps": 10, "eval_split": "test"},
    "searchqa-mini": {"difficulty": "easy", "eval_split": "test"},
}

_DEFAULTS = {f.name: f.default for f in fields(SDARConfig)}
_CONTEXT_MARK = "\x00sdar-starter-context\x00"


def starter_available(path: str | Path = STARTER_PATH) -> bool:
    """Whether `path` holds a built starter (config, weights and tokenizer)."""
    path = Path(path)
    return (path / "config.json").is_file() and (path / "tokenizer.json").is_file()


def load_starter(
    path: str | Path = STARTER_PATH, *, dtype: torch.dtype = torch.float32
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load the starter model and tokenizer offline (`local_files_only=True`).

    Raises:
        FileNotFoundError: when `path` holds no built starter; build one with `python scripts/build_starter.py`.
    """
    path = Path(path)
    if not starter_available(path):
        raise FileNotFoundError(
            f"no starter model in {path} (expected config.json, model.safetensors and tokenizer.json). Build it with "
            "`python scripts/build_starter.py`, or reinstall sdar-trl so that its package data is present."
        )
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
    return model, tokenizer


def load_starter_metrics(path: str | Path = STARTER_PATH) -> dict[str, Any]:
    """The numbers measured when the shipped starter was built (`metrics.json`)."""
    file = Path(path) / "metrics.json"
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist; build the starter with `python scripts/build_starter.py`.")
    return json.loads(file.read_text(encoding="utf-8"))


def _episode_context(episode: EpisodeRecord, source: str, skill_bank: SkillBank | None) -> str:
    """The teacher's privileged context, joined as `SDARTrainer._agent_context` joins it."""
    parts = []
    if "skills" in source and skill_bank is not None:
        parts.append(skill_bank.render(episode.task_type))
    if "facts" in source:
        parts.append(episode.privileged_facts)
    return "\n\n".join(part for part in parts if part)


@torch.no_grad()
def play_with_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    envs: Sequence[AgentEnvironment],
    rows: Sequence[Mapping[str, Any]],
    *,
    context_source: str = "none",
    skill_bank: SkillBank | None = None,
    temperature: float = _DEFAULTS["eval_temperature"],
    max_new_tokens: int = 160,
    history_length: int = _DEFAULTS["history_length"],
    max_observation_length: int | None = _DEFAULTS["max_observation_length"],
    max_steps: int | None = None,
    seed: int = 0,
) -> RolloutResult:
    """Play one episode per environment with `model.generate`, all in lock-step, through the agent-mode loop.

    Prompts are the agent-mode step prompts, chat-templated like `SDARTrainer` does. With `context_source`
    "skills", "facts" or "skills+facts", each prompt is preceded by the teacher prefix
    (`teacher_context_header + context + teacher_context_separator`) exactly as the teacher sees it, so the
    result measures the teacher's policy. `temperature=0` decodes greedily.
    """
    if context_source not in ("none", "skills", "facts", "skills+facts"):
        raise ValueError(
            f"context_source={context_source!r} is not supported; expected 'none', 'skills', 'facts' or "
            "'skills+facts'."
        )
    header, separator = _DEFAULTS["teacher_context_header"], _DEFAULTS["teacher_context_separator"]
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos

    def prefix(episode: EpisodeRecord) -> str:
        if context_source == "none":
            return ""
        return f"{_CONTEXT_MARK}{_episode_context(episode, context_source, skill_bank)}{_CONTEXT_MARK}"

    def generate(prompts: list[str]) -> list[tuple[list[int], list[int], str]]:
        texts = []
        for prompt in prompts:
            context = ""
            if prompt.startswith(_CONTEXT_MARK):
                context, _, prompt = prompt[len(_CONTEXT_MARK) :].partition(_CONTEXT_MARK)
            templated = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
            )
            texts.append(render_teacher_prefix(context, header=header, separator=separator) + templated)
        encoded = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
        width = max(len(ids) for ids in encoded)
        input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)  # (B, P) left-padded
        attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)  # (B, P)
        for row, ids in enumerate(encoded):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, width - len(ids) :] = 1
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": None}
        output = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            pad_token_id=pad,
            eos_token_id=eos,
            **(sampling if temperature > 0 else {"do_sample": False}),
        )  # (B, P + C)
        results = []
        for row, ids in enumerate(encoded):
            completion = output[row, width:].tolist()
            if eos in completion:
                completion = completion[: completion.index(eos) + 1]
            text = tokenizer.decode([t for t in completion if t not in (eos, pad)])
            results.append((ids, completion, text))
        return results

    was_training = model.training
    model.eval()
    try:
        return play_episodes(
            envs,
            rows,
            generate,
            group_ids=list(range(len(envs))),
            max_steps=max_steps,
            history_length=history_length,
            max_observation_length=max_observation_length,
            student_prefix=prefix if context_source != "none" else None,
        )
    finally:
        model.train(was_training)
        torch.random.set_rng_state(generator_state)
