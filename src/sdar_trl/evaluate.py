"""`python -m sdar_trl.evaluate`: play an environment's tasks with a saved model and print one JSON line of results.

```bash
python -m sdar_trl.evaluate --model_name_or_path micro:alfworld-mini --env alfworld-mini --tasks 100
```

Every task is played once (`{"seed": first_seed + i}`), `--batch_size` episodes at a time in lock-step, with
`sdar_trl.starter.play_with_model`. Progress goes to stderr; stdout receives exactly one JSON line (success with a
Wilson 95 % interval, per task type, valid-action rate, episode length, score, environment errors and the settings).
docs/evaluate.md describes every flag and field.

The module imports only the standard library and `sdar_trl.environments` at load time: `--help` and argument
errors are instant, and `HF_HUB_OFFLINE` can still be set for a local model before transformers reads it.

The library (`evaluate_model`, `summarize_evaluation`, `wilson_interval`, ...) is here; the command line (argument
parsing, the progress display and `main`) is in `sdar_trl._evaluate_cli`, and `main` / `parse_args` stay importable
from here.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from ._evaluate_cli import main, parse_args
    from .agent import EpisodeRecord, StepRecord
    from .environments import AgentEnvironment
    from .retrieval import SkillRetriever
    from .skills import SkillBank

__all__ = [
    "CONTEXT_SOURCES",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_SKILL_RETRIEVAL_K",
    "DEFAULT_TASKS",
    "EVAL_SKILL_RETRIEVAL_MODES",
    "EvaluationProgress",
    "batch_seed",
    "default_task_count",
    "evaluate_model",
    "load_model_and_tokenizer",
    "load_skill_bank",
    "load_skill_retriever",
    "main",
    "parse_args",
    "parse_json_object",
    "resolve_env_kwargs",
    "summarize_evaluation",
    "wilson_interval",
]

#: What the prompt is preceded by (the teacher's view): nothing, the env's oracle facts, skills, or both.
CONTEXT_SOURCES: tuple[str, ...] = ("none", "facts", "skills", "skills+facts")
#: Tasks played when `--tasks` is not given and the environment does not expose how many its split holds.
DEFAULT_TASKS = 100
DEFAULT_BATCH_SIZE = 32
#: `--skill_retrieval` values: `SDARConfig.skill_retrieval`'s modes except "ucb", whose choice is learnt in training.
EVAL_SKILL_RETRIEVAL_MODES: tuple[str, ...] = ("rules", "all", "bm25", "kmeans")
#: `--skill_retrieval_k`'s default, `SDARConfig.skill_retrieval_k`'s.
DEFAULT_SKILL_RETRIEVAL_K = 8

_DIGITS = 4  # fractions in the JSON line are rounded to this many decimals


def _round(value: float) -> float:
    return round(value, _DIGITS)


def wilson_interval(successes: int, n: int, *, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for a success rate of `successes` out of `n` (95 % for z = 1.96).

    With p = successes / n:

        center = (p + z²/(2n)) / (1 + z²/n)
        half   = z / (1 + z²/n) · sqrt(p(1 − p)/n + z²/(4n²))

    and the interval is [center − half, center + half]. Unlike the normal approximation p ± z·sqrt(p(1 − p)/n),
    it stays inside [0, 1] and does not collapse to a single point at 0 or n successes, which matters for the
    small task counts of a quick evaluation. `n = 0` carries no information and gives (0, 1).

    Raises:
        ValueError: `n` is negative or `successes` is not in [0, n].
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"wilson_interval needs 0 <= successes <= n, got successes={successes}, n={n}.")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # The interval contains p, and at 0 or n successes its bound is exactly 0 or 1; float rounding can put a bound
    # a few ulps on the wrong side of either (6/6 gave 1 - 1.1e-16), which error bars (p - low, high - p) reject.
    return min(max(0.0, center - half), p), max(min(1.0, center + half), p)


def summarize_evaluation(episodes: Sequence[EpisodeRecord], steps: Sequence[StepRecord]) -> dict[str, Any]:
    """The result fields of an evaluation from its episodes and step samples (`sdar_trl.agent` records).

    Returns a dict with `success` (won episodes / episodes), `success_ci95` (its Wilson 95 % interval),
    `successes`, `tasks` (episodes), `valid_action_rate` (steps whose response parsed / steps; None without
    steps), `steps`, `mean_steps` (mean episode length), `score` (mean env score, an episode that never scored
    counting 0, or None when no episode reported one), `env_errors` (episodes ended by an environment error) and
    `success_by_type` ({task_type: {"success", "successes", "tasks"}}, episodes without a type under
    "unknown"). Fractions are rounded to 4 decimals.

    Raises:
        ValueError: `episodes` is empty.
    """
    if not episodes:
        raise ValueError("summarize_evaluation needs at least one episode.")
    tasks = len(episodes)
    successes = sum(bool(episode.won) for episode in episodes)
    low, high = wilson_interval(successes, tasks)
    by_type: dict[str, list[bool]] = defaultdict(list)
    for episode in episodes:
        by_type[episode.task_type or "unknown"].append(bool(episode.won))
    valid = sum(bool(step.valid) for step in steps)
    scored = any(episode.score is not None for episode in episodes)
    score = sum(episode.score or 0.0 for episode in episodes) / tasks if scored else None
    return {
        "success": _round(successes / tasks),
        "success_ci95": [_round(low), _round(high)],
        "successes": successes,
        "tasks": tasks,
        "valid_action_rate": _round(valid / len(steps)) if steps else None,
        "steps": len(steps),
        "mean_steps": _round(sum(episode.length for episode in episodes) / tasks),
        "score": _round(score) if score is not None else None,
        "env_errors": sum(episode.env_error is not None for episode in episodes),
        "success_by_type": {
            task_type: {"success": _round(sum(wins) / len(wins)), "successes": sum(wins), "tasks": len(wins)}
            for task_type, wins in sorted(by_type.items())
        },
    }


def batch_seed(seed: int, batch: int) -> int:
    """The sampling seed of batch `batch` of a run seeded with `seed`.

    A hash rather than `seed + batch`, so that runs with neighbouring `--seed` values do not share batches
    (seed 0's second batch would otherwise sample exactly like seed 1's first).
    """
    digest = hashlib.sha256(f"sdar_trl.evaluate:{seed}:{batch}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # 63 bits: a valid torch.manual_seed value


def resolve_env_kwargs(
    env_name: str,
    *,
    split: str | None = None,
    difficulty: str | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The keyword arguments of `make_env(env_name, ...)` for an evaluation.

    For the mini environments the defaults are the starter's settings (`sdar_trl.starter.DEMO_ENVS`: difficulty,
    episode length, and its `eval_split` as the split); `env_kwargs` overrides them, then `split` and
    `difficulty` when given. Other environments get `env_kwargs` plus `split`/`difficulty` only when given.
    """
    from .starter import DEMO_ENVS  # heavy (torch, transformers): imported when needed

    kwargs: dict[str, Any] = {}
    if env_name in DEMO_ENVS:
        defaults = dict(DEMO_ENVS[env_name])
        kwargs["split"] = defaults.pop("eval_split")
        kwargs.update(defaults)
    kwargs.update(env_kwargs or {})
    if split is not None:
        kwargs["split"] = split
    if difficulty is not None:
        kwargs["difficulty"] = difficulty
    return kwargs


def load_skill_bank(env_name: str, context_source: str) -> SkillBank | None:
    """The shipped skill bank of `env_name` when `context_source` includes skills, else None.

    Raises:
        ValueError: `context_source` is unknown, or it needs skills and `env_name` ships no skill bank.
    """
    if context_source not in CONTEXT_SOURCES:
        raise ValueError(
            f"privileged_context_source={context_source!r} is not supported; expected one of {list(CONTEXT_SOURCES)}."
        )
    if "skills" not in context_source:
        return None
    from .sft import SKILL_BANKS
    from .skills import SkillBank

    if env_name not in SKILL_BANKS:
        raise ValueError(
            f"privileged_context_source={context_source!r} needs a skill bank, and {env_name!r} ships none (skill "
            f"banks exist for {', '.join(SKILL_BANKS)}). Use 'none' or 'facts' for this environment."
        )
    return SkillBank.from_package(SKILL_BANKS[env_name])


def load_skill_retriever(
    env_name: str, context_source: str, mode: str = "rules", k: int = DEFAULT_SKILL_RETRIEVAL_K
) -> SkillRetriever | None:
    """The `SkillRetriever` choosing each episode's skills from `env_name`'s shipped bank, or None for "rules".

    "rules" (the default) keeps `SkillBank.render`'s routing by task type, as `play_with_model` always did. "ucb" is
    refused: its choice is learnt from the teacher's gap during training, and an untrained bandit shows the first
    `k` skills of the bank, which measures nothing about the mode.

    Raises:
        ValueError: an unknown `context_source` or `mode` (or "ucb"), `k` below 1, a mode other than "rules"
            without skills in `context_source`, or an env without a skill bank for a skills context.
        ImportError: `mode="kmeans"` without scikit-learn (the `retrieval` extra).
    """
    from .retrieval import SKILL_RETRIEVAL_MODES

    if mode == "ucb":
        raise ValueError(
            "skill_retrieval='ucb' cannot be evaluated: its bandit learns which skills help from the teacher's gap "
            "during training (the state is in a training checkpoint's sdar_state.pt), and an untrained bandit shows "
            "the first skill_retrieval_k skills of the bank. Evaluate with 'rules', 'all', 'bm25' or 'kmeans'."
        )
    if mode not in SKILL_RETRIEVAL_MODES:
        raise ValueError(
            f"skill_retrieval={mode!r} is not supported; expected one of {list(EVAL_SKILL_RETRIEVAL_MODES)}."
        )
    if k < 1:
        raise ValueError(
            f"skill_retrieval_k={k} must be >= 1 (skills per episode of 'bm25', cluster size of 'kmeans'). Set 8."
        )
    bank = load_skill_bank(env_name, context_source)
    if mode == "rules":
        return None
    if bank is None:
        raise ValueError(
            f"skill_retrieval={mode!r} chooses the skills of the teacher's context, but privileged_context_source="
            f"{context_source!r} shows no skills. Use privileged_context_source='skills' or 'skills+facts', or leave "
            "skill_retrieval='rules'."
        )
    from .retrieval import SkillRetriever

    return SkillRetriever(bank, mode, k=k)


def _skills_per_episode(
    episodes: Sequence[EpisodeRecord], bank: SkillBank | None, retriever: SkillRetriever | None
) -> float | None:
    """Mean number of skills in the teacher's context per episode; None without skills in the context."""
    if bank is None:
        return None
    if retriever is None:
        counts = [len(bank.retrieve(episode.task_type)) for episode in episodes]
    else:
        counts = [len(retriever.select(episode.task_type, episode.task)) for episode in episodes]
    return _round(sum(counts) / len(counts)) if counts else None


def default_task_count(env: AgentEnvironment) -> int:
    """How many tasks to play when none is asked for: the split's size when the env exposes `num_tasks` (an int),
    else `DEFAULT_TASKS` (a train split without a fixed size, or an env that does not say)."""
    size = getattr(env, "num_tasks", None)
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return size
    return DEFAULT_TASKS


@dataclass(frozen=True)
class EvaluationProgress:
    """Where an evaluation is, passed to `evaluate_model`'s `on_progress` after every lock-step.

    `steps` counts environment steps; inside a batch it is an upper bound (an episode whose reset failed is
    counted in the batch's first step) and it is exact when `batch_finished`. `successes` counts the won
    episodes of finished batches.
    """

    episodes_done: int
    episodes_total: int
    steps: int
    successes: int
    batches_done: int
    batches: int
    batch_finished: bool


class _LockStepCounter:
    """`play_with_model`'s `on_step` for one batch: turns (lock-step, episodes still live) into progress."""

    def __init__(
        self,
        on_progress: Callable[[EvaluationProgress], None],
        done_before: int,
        batch_episodes: int,
        steps_before: int,
        successes: int,
        batch: int,
        batches: int,
        total: int,
    ) -> None:
        self.on_progress, self.done_before, self.batch_episodes = on_progress, done_before, batch_episodes
        self.steps, self.successes, self.batch, self.batches, self.total = (
            steps_before,
            successes,
            batch,
            batches,
            total,
        )
        self.live = batch_episodes

    def __call__(self, _step_index: int, live_after: int) -> None:
        self.steps += self.live  # every episode live before this lock-step took one step in it
        self.live = live_after
        self.on_progress(
            EvaluationProgress(
                episodes_done=self.done_before + self.batch_episodes - live_after,
                episodes_total=self.total,
                steps=self.steps,
                successes=self.successes,
                batches_done=self.batch,
                batches=self.batches,
                batch_finished=False,
            )
        )


def evaluate_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    env_name: str,
    *,
    split: str | None = None,
    tasks: int | None = None,
    first_seed: int = 0,
    temperature: float | None = None,
    privileged_context_source: str = "none",
    skill_retrieval: str = "rules",
    skill_retrieval_k: int = DEFAULT_SKILL_RETRIEVAL_K,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_new_tokens: int | None = None,
    max_steps: int | None = None,
    difficulty: str | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    seed: int = 0,
    on_progress: Callable[[EvaluationProgress], None] | None = None,
) -> dict[str, Any]:
    """Play tasks `first_seed`, …, `first_seed + tasks - 1` of `env_name` once each and summarize them.

    Args:
        model, tokenizer: a causal LM and its (left-padding) tokenizer; `model.generate` samples the responses.
        env_name: a `make_env` name; its keyword arguments come from `resolve_env_kwargs(env_name, split=...,
            difficulty=..., env_kwargs=...)`.
        tasks: how many tasks; default `default_task_count(env)` (the split's size, else 100).
        temperature: sampling temperature, 0 for greedy; default `SDARConfig`'s `eval_temperature`.
        privileged_context_source: one of `CONTEXT_SOURCES`; anything but "none" puts the teacher's context in
            front of every prompt (skills from the env's shipped bank, and/or the env's oracle facts).
        skill_retrieval, skill_retrieval_k: which of the bank's skills a skills context shows, as
            `SDARConfig.skill_retrieval` chooses them in training: "rules" (general + task-type skills, the
            default), "all", "bm25" or "kmeans" (`load_skill_retriever`; "ucb" is refused).
        batch_size: episodes played in lock-step per generation call (the environments are reused across batches).
        max_new_tokens: tokens per response; default `play_with_model`'s.
        max_steps: steps per episode; default the environment's `max_episode_steps`.
        seed: seeds the sampling; batch b is played with `batch_seed(seed, b)`, so the same call gives the same
            episodes on the same machine and software (the rounding of another CPU's kernels can differ).
        on_progress: called after every lock-step with an `EvaluationProgress`.

    Returns:
        `summarize_evaluation`'s fields plus the settings: `env`, `split`, `difficulty` (None when the env takes
        none), `env_kwargs` (all `make_env` arguments), `first_seed`, `temperature`, `privileged_context_source`,
        `skill_retrieval`, `skill_retrieval_k`, `skills_per_episode` (mean skills in the context; None without
        skills), `seed`, `batch_size`, `max_new_tokens`, `max_steps` and `seconds` (wall time of the episodes).

    Raises:
        ValueError: an unknown context source, an env without a skill bank for a skills context, a retrieval
            setting `load_skill_retriever` refuses, `tasks` or `batch_size` below 1, or environment arguments the
            environment rejects.
        ImportError: `skill_retrieval="kmeans"` without scikit-learn.
    """
    from .config import SDARConfig
    from .environments import make_env
    from .starter import play_with_model

    if tasks is not None and tasks < 1:
        raise ValueError(f"tasks must be at least 1, got {tasks}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    if temperature is None:
        temperature = next(f.default for f in fields(SDARConfig) if f.name == "eval_temperature")
    if max_new_tokens is None:
        max_new_tokens = inspect.signature(play_with_model).parameters["max_new_tokens"].default
    skill_bank = load_skill_bank(env_name, privileged_context_source)
    retriever = load_skill_retriever(env_name, privileged_context_source, skill_retrieval, skill_retrieval_k)
    kwargs = resolve_env_kwargs(env_name, split=split, difficulty=difficulty, env_kwargs=env_kwargs)

    started = time.perf_counter()
    envs = [make_env(env_name, **kwargs)]
    try:
        if tasks is None:
            tasks = default_task_count(envs[0])
        envs += [make_env(env_name, **kwargs) for _ in range(min(batch_size, tasks) - 1)]
        batches = math.ceil(tasks / batch_size)
        episodes: list[EpisodeRecord] = []
        steps: list[StepRecord] = []
        for batch in range(batches):
            start, stop = batch * batch_size, min(tasks, (batch + 1) * batch_size)
            rows = [{"seed": first_seed + index} for index in range(start, stop)]
            on_step = None
            if on_progress is not None:
                wins = sum(e.won for e in episodes)
                on_step = _LockStepCounter(
                    on_progress, len(episodes), len(rows), len(steps), wins, batch, batches, tasks
                )
            result = play_with_model(
                model,
                tokenizer,
                envs[: len(rows)],
                rows,
                context_source=privileged_context_source,
                skill_bank=skill_bank,
                skill_retriever=retriever,
                temperature=temperature,
                max_new_tokens=max_new_tokens,
                max_steps=max_steps,
                seed=batch_seed(seed, batch),
                on_step=on_step,
            )
            episodes += result.episodes
            steps += result.steps
            if on_progress is not None:
                on_progress(
                    EvaluationProgress(
                        episodes_done=len(episodes),
                        episodes_total=tasks,
                        steps=len(steps),
                        successes=sum(e.won for e in episodes),
                        batches_done=batch + 1,
                        batches=batches,
                        batch_finished=True,
                    )
                )
    finally:
        for env in envs:
            env.close()
    return {
        **summarize_evaluation(episodes, steps),
        "env": env_name,
        "split": kwargs.get("split"),
        "difficulty": kwargs.get("difficulty"),
        "env_kwargs": kwargs,
        "first_seed": first_seed,
        "temperature": temperature,
        "privileged_context_source": privileged_context_source,
        "skill_retrieval": skill_retrieval,
        "skill_retrieval_k": skill_retrieval_k,
        "skills_per_episode": _skills_per_episode(episodes, skill_bank, retriever),
        "seed": seed,
        "batch_size": batch_size,
        "max_new_tokens": max_new_tokens,
        "max_steps": max_steps,
        "seconds": round(time.perf_counter() - started, 1),
    }


def load_model_and_tokenizer(name: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load `name` for evaluation: a model directory, a starter name (`micro:<env>`, `smollm2`) or a hub id.

    The name goes through `sdar_trl.starter.resolve_model_name`. A local directory is read with
    `local_files_only=True` and `HF_HUB_OFFLINE=1`, so it never contacts the hub. The model is loaded in float32
    (bf16 is emulated, and much slower, on most CPUs) and the tokenizer pads on the left, as generation needs.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from .starter import resolve_model_name

    path = resolve_model_name(name)
    local = Path(path).is_dir()
    if local:
        os.environ["HF_HUB_OFFLINE"] = "1"
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left", local_files_only=local)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=local)
    return model.eval(), tokenizer


def parse_json_object(text: str) -> dict[str, Any]:
    """`text` as a JSON object (e.g. `--env_kwargs`), or `ValueError` naming what it is instead and an example."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{text!r} is not valid JSON ({error.msg}); expected a JSON object such as '{{\"max_episode_steps\": 8}}'"
        ) from None
    if not isinstance(value, dict):
        raise ValueError(
            f"{text!r} is a JSON {type(value).__name__}, not an object; expected e.g. '{{\"max_episode_steps\": 8}}'"
        )
    return value


def __getattr__(name: str) -> Any:
    # The command line (parse_args, main) lives in sdar_trl._evaluate_cli, which imports this module: it is
    # re-exported here on first access rather than at import, so the two modules do not import each other.
    if name in ("main", "parse_args"):
        from . import _evaluate_cli

        return getattr(_evaluate_cli, name)
    raise AttributeError(f"module 'sdar_trl.evaluate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "main", "parse_args"])


if __name__ == "__main__":
    # `python -m sdar_trl.evaluate`: this file runs as `__main__`, the command line imports the library as
    # `sdar_trl.evaluate` (a module of its own), so nothing here imports the command line at load time.
    raise SystemExit(importlib.import_module("sdar_trl._evaluate_cli").main())
