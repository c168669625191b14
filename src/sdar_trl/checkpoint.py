"""What SDAR adds to a `checkpoint-N` directory, and which checkpoints are complete enough to resume from.

transformers saves the model, optimizer, scheduler, RNG states and `trainer_state.json` (written last). SDAR's own
state goes into `sdar_state.pt`, written *before* transformers' files, so a checkpoint whose `trainer_state.json`
exists holds it too. Today that state is the EMA teacher's average (teacher_mode="ema") and the skill bandit's counts
and reward sums (skill_retrieval="ucb"). The rest of SDAR's state is restored by transformers already: the RLSD weight
is a function of `global_step` (in `trainer_state.json`), the "base" teacher is rebuilt from the model given to the
trainer, a skill bank is read-only, and the BM25 index and k-means clusters are rebuilt from it deterministically.

A process killed while saving leaves a partial `checkpoint-N`: `find_missing_checkpoint_files` names what it lacks,
and `resolve_resume_checkpoint` turns `resume_from_checkpoint=True` into the newest complete checkpoint (warning
about the partial ones it skips) and rejects an explicit path to a partial one with the missing files named.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from transformers.trainer import TRAINER_STATE_NAME  # written last by `_save_checkpoint`: marks a finished save
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import (
    ADAPTER_SAFE_WEIGHTS_NAME,
    ADAPTER_WEIGHTS_NAME,
    SAFE_WEIGHTS_INDEX_NAME,
    SAFE_WEIGHTS_NAME,
    WEIGHTS_INDEX_NAME,
    WEIGHTS_NAME,
)

from .retrieval import SkillRetriever
from .teacher import EMATeacherWeights

__all__ = [
    "SDAR_STATE_NAME",
    "find_missing_checkpoint_files",
    "load_sdar_state",
    "resolve_resume_checkpoint",
    "save_sdar_state",
]

#: SDAR's trainer state inside each `checkpoint-N` directory.
SDAR_STATE_NAME = "sdar_state.pt"
#: Bumped when the layout of `sdar_state.pt` changes incompatibly.
SDAR_STATE_FORMAT = 1

_CHECKPOINT_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
_SINGLE_WEIGHT_FILES = (SAFE_WEIGHTS_NAME, WEIGHTS_NAME, ADAPTER_SAFE_WEIGHTS_NAME, ADAPTER_WEIGHTS_NAME)
_INDEX_FILES = (SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_INDEX_NAME)
#: Sub-directories in which FSDP (sharded state dict) and DeepSpeed save the model instead of single files.
_SHARDED_MODEL_DIRS = ("pytorch_model_fsdp", "global_step")


def save_sdar_state(
    checkpoint_dir: str | os.PathLike[str],
    *,
    teacher_mode: str,
    ema: EMATeacherWeights | None,
    retriever: SkillRetriever | None = None,
) -> None:
    """Write `sdar_state.pt` into `checkpoint_dir` (created if needed), atomically: a kill mid-write leaves none."""
    state: dict[str, Any] = {"format": SDAR_STATE_FORMAT, "teacher_mode": teacher_mode}
    if ema is not None:
        state["ema"] = ema.state_dict()
    retrieval_state = None if retriever is None else retriever.state_dict()
    if retrieval_state is not None:
        state["skill_retrieval"] = retrieval_state
    path = Path(checkpoint_dir)
    path.mkdir(parents=True, exist_ok=True)
    partial = path / f"{SDAR_STATE_NAME}.partial"
    torch.save(state, partial)
    os.replace(partial, path / SDAR_STATE_NAME)


def load_sdar_state(
    checkpoint_dir: str | os.PathLike[str],
    *,
    teacher_mode: str,
    ema: EMATeacherWeights | None,
    retriever: SkillRetriever | None = None,
) -> None:
    """Restore what `save_sdar_state` wrote into the trainer's objects (nothing to do without state to restore)."""
    needs_retrieval = retriever is not None and retriever.state_dict() is not None
    if ema is None and not needs_retrieval:
        return
    what = "the EMA teacher's average" if ema is not None else "the UCB skill bandit (skill_retrieval='ucb')"
    path = Path(checkpoint_dir) / SDAR_STATE_NAME
    if not path.is_file():
        raise ValueError(
            f"{checkpoint_dir} has no {SDAR_STATE_NAME}, so {what} cannot continue (it was written by an older "
            "sdar_trl or by a run without that state). Resume it with the settings it was trained with, or start a "
            "new run from its weights (model=<checkpoint path>, without resume_from_checkpoint)."
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != SDAR_STATE_FORMAT:
        raise ValueError(
            f"{path} has format {state.get('format')!r}, this sdar_trl reads format {SDAR_STATE_FORMAT}. Resume with "
            "the sdar_trl version that wrote it."
        )
    if needs_retrieval:
        if "skill_retrieval" not in state:
            raise ValueError(
                f"{checkpoint_dir} holds no skill bandit state, but this run has skill_retrieval='ucb'. Resume with "
                "the skill_retrieval it was trained with, or start a new run from its weights (model=<checkpoint "
                "path>, without resume_from_checkpoint)."
            )
        retriever.load_state_dict(state["skill_retrieval"])
    if ema is None:
        return
    if "ema" not in state:
        raise ValueError(
            f"{checkpoint_dir} was trained with teacher_mode={state.get('teacher_mode')!r} and holds no EMA average, "
            f"but this run has teacher_mode={teacher_mode!r}. Resume with teacher_mode="
            f"{state.get('teacher_mode')!r}, or start a new run from its weights (model=<checkpoint path>, without "
            "resume_from_checkpoint)."
        )
    ema.load_state_dict(state["ema"])


def find_missing_checkpoint_files(checkpoint_dir: str | os.PathLike[str], *, needs_sdar_state: bool) -> list[str]:
    """What `checkpoint_dir` lacks to be resumed from (empty when complete), one readable item per problem.

    Checks `trainer_state.json` (present and valid JSON: transformers writes it last), the model weights (a
    single file, complete when it is safetensors, or every shard of an index), and `sdar_state.pt` when
    `needs_sdar_state` (the run has SDAR state to restore: an EMA teacher or a UCB skill bandit).
    """
    path = Path(checkpoint_dir)
    missing: list[str] = []
    trainer_state = path / TRAINER_STATE_NAME
    if not trainer_state.is_file():
        missing.append(f"{TRAINER_STATE_NAME} (absent)")
    else:
        try:
            json.loads(trainer_state.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            missing.append(f"{TRAINER_STATE_NAME} (unreadable: {error})")
    missing.extend(_missing_model_files(path))
    if needs_sdar_state and not (path / SDAR_STATE_NAME).is_file():
        missing.append(f"{SDAR_STATE_NAME} (absent; it holds the EMA teacher or the skill bandit)")
    return missing


def _missing_model_files(path: Path) -> list[str]:
    for name in _INDEX_FILES:
        index = path / name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
                return [f"model weights ({name} unreadable: {error})"]
            problems = [_weight_file_problem(path / shard) for shard in shards]
            return [f"model weights ({problem})" for problem in problems if problem]
    for name in _SINGLE_WEIGHT_FILES:
        if (path / name).is_file():
            problem = _weight_file_problem(path / name)
            return [f"model weights ({problem})"] if problem else []
    if any(entry.name.startswith(_SHARDED_MODEL_DIRS) for entry in path.iterdir() if entry.is_dir()):
        return []  # FSDP / DeepSpeed layouts: their own loaders check them
    expected = ", ".join((*_SINGLE_WEIGHT_FILES, *_INDEX_FILES))
    return [f"model weights (none of {expected})"]


def _weight_file_problem(file: Path) -> str | None:
    """Why a weight file cannot be loaded (absent, or a safetensors file shorter than its header says), else None."""
    if not file.is_file():
        return f"{file.name} absent"
    if file.suffix != ".safetensors":
        return None if file.stat().st_size > 0 else f"{file.name} empty"
    # safetensors checks that its header's tensor byte ranges cover the file exactly: a save killed midway fails.
    try:
        with safe_open(file, framework="pt"):
            pass
    except (OSError, SafetensorError) as error:
        return f"{file.name} unreadable or truncated: {error}"
    return None


def list_checkpoints(output_dir: str | os.PathLike[str]) -> list[Path]:
    """The `checkpoint-N` directories of `output_dir`, newest (largest N) first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [(int(match.group(1)), entry) for entry in root.iterdir() if (match := _CHECKPOINT_NAME.match(entry.name))]
    return [entry for _, entry in sorted(found, reverse=True) if entry.is_dir()]


def resolve_resume_checkpoint(
    resume_from_checkpoint: str | os.PathLike[str] | bool | None,
    output_dir: str | os.PathLike[str],
    *,
    needs_sdar_state: bool,
) -> str | None:
    """The checkpoint `Trainer.train(resume_from_checkpoint=...)` should load, or None for a fresh start.

    `True` picks the newest complete checkpoint in `output_dir`, warning about each newer partial one it skips; an
    explicit path must be a complete checkpoint, else `ValueError` names what it lacks and the newest complete one.
    """
    if resume_from_checkpoint is None or resume_from_checkpoint is False:
        return None
    if resume_from_checkpoint is True:
        skipped: list[str] = []
        for checkpoint in list_checkpoints(output_dir):
            missing = find_missing_checkpoint_files(checkpoint, needs_sdar_state=needs_sdar_state)
            if not missing:
                if skipped:
                    warnings.warn(
                        f"resume_from_checkpoint=True: skipping incomplete checkpoints ({'; '.join(skipped)}), "
                        f"probably left by a process killed while saving; resuming from {checkpoint} instead.",
                        UserWarning,
                        stacklevel=3,
                    )
                return str(checkpoint)
            skipped.append(f"{checkpoint.name} lacks {', '.join(missing)}")
        details = f" Incomplete ones: {'; '.join(skipped)}." if skipped else ""
        raise ValueError(
            f"resume_from_checkpoint=True found no complete checkpoint in output_dir={str(output_dir)!r}.{details} "
            "Pass the path of a complete checkpoint, or train without resume_from_checkpoint."
        )
    path = Path(resume_from_checkpoint)
    if not path.is_dir():
        raise ValueError(
            f"resume_from_checkpoint={str(resume_from_checkpoint)!r} is not a directory. Pass a checkpoint-N "
            "directory written by the trainer, or resume_from_checkpoint=True for the newest one in output_dir."
        )
    missing = find_missing_checkpoint_files(path, needs_sdar_state=needs_sdar_state)
    if missing:
        complete = next(
            (
                str(other)
                for other in list_checkpoints(path.parent)
                if other != path and not find_missing_checkpoint_files(other, needs_sdar_state=needs_sdar_state)
            ),
            None,
        )
        fix = f"resume from {complete} (the newest complete one)" if complete else "start a new run"
        raise ValueError(
            f"resume_from_checkpoint={str(resume_from_checkpoint)!r} is an incomplete checkpoint: it lacks "
            f"{', '.join(missing)} (the process was probably killed while saving it). Delete it and {fix}."
        )
    return str(path)
