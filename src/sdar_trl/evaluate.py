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
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import inspect
import json
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .environments import list_envs

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from .environments import AgentEnvironment
    from .rollout import EpisodeRecord, StepRecord
    from .skills import SkillBank

__all__ = [
    "CONTEXT_SOURCES",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_TASKS",
    "EvaluationProgress",
    "batch_seed",
    "default_task_count",
    "evaluate_model",
    "load_model_and_tokenizer",
    "load_skill_bank",
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
    # At 0 or n successes the bound is exactly 0 or 1; clamp the float rounding that can land just outside.
    return max(0.0, center - half), min(1.0, center + half)


def summarize_evaluation(episodes: Sequence[EpisodeRecord], steps: Sequence[StepRecord]) -> dict[str, Any]:
    """The result fields of an evaluation from its episodes and step samples (`sdar_trl.rollout` records).

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
        batch_size: episodes played in lock-step per generation call (the environments are reused across batches).
        max_new_tokens: tokens per response; default `play_with_model`'s.
        max_steps: steps per episode; default the environment's `max_episode_steps`.
        seed: seeds the sampling; batch b is played with `batch_seed(seed, b)`, so the same call gives the same
            episodes on the same machine and software (the rounding of another CPU's kernels can differ).
        on_progress: called after every lock-step with an `EvaluationProgress`.

    Returns:
        `summarize_evaluation`'s fields plus the settings: `env`, `split`, `difficulty` (None when the env takes
        none), `env_kwargs` (all `make_env` arguments), `first_seed`, `temperature`, `privileged_context_source`,
        `seed`, `batch_size`, `max_new_tokens`, `max_steps` and `seconds` (wall time of the episodes).

    Raises:
        ValueError: an unknown context source, an env without a skill bank for a skills context, `tasks` or
            `batch_size` below 1, or environment arguments the environment rejects.
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


# -- command line ------------------------------------------------------------------------------------------------


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0 (0 decodes greedily), got {text!r}")
    return value


def _env_name(text: str) -> str:
    if text not in list_envs():
        raise argparse.ArgumentTypeError(
            f"unknown environment {text!r}; expected one of {', '.join(list_envs())} (e.g. --env searchqa-mini)"
        )
    return text


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


def _json_object(text: str) -> dict[str, Any]:
    """argparse `type=` for JSON-object flags: argparse reports the message with the flag's name."""
    try:
        return parse_json_object(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _looks_like_path(name: str) -> bool:
    """Whether a name that does not exist was meant as a local path rather than a hub id (`org/model`)."""
    path = Path(name).expanduser()
    if name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1:
        return True
    # "outputs/run1" where outputs/ exists is a mistyped run directory, not the hub model "outputs/run1".
    return path.parent != Path(".") and path.parent.is_dir()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line; invalid values exit with an argparse error that names the value and the fix."""
    parser = argparse.ArgumentParser(
        prog="python -m sdar_trl.evaluate",
        description="Play an environment's tasks with a model and print one JSON line of results (stdout); "
        "progress goes to stderr. See docs/evaluate.md.",
    )
    parser.add_argument(
        "--model_name_or_path",
        required=True,
        help="a directory written by save_pretrained, micro:<env> (a packaged micro starter), smollm2 (the LoRA "
        "starter) or a hub id in the local cache",
    )
    parser.add_argument("--env", required=True, type=_env_name, help=f"one of {', '.join(list_envs())}")
    parser.add_argument(
        "--split", default=None, help="the env's split (default: the starter's eval split for the mini envs)"
    )
    parser.add_argument(
        "--tasks",
        type=_int_at_least(1),
        default=None,
        help=f"tasks to play (default: the split's size, else {DEFAULT_TASKS})",
    )
    parser.add_argument(
        "--first_seed", type=_int_at_least(0), default=0, help="task index of the first task (default 0)"
    )
    parser.add_argument(
        "--temperature",
        type=_non_negative_float,
        default=None,
        help="sampling temperature, 0 for greedy (default: SDARConfig's eval_temperature)",
    )
    parser.add_argument(
        "--privileged_context_source",
        default="none",
        choices=CONTEXT_SOURCES,
        help="context put in front of every prompt, as the teacher sees it (default: none)",
    )
    parser.add_argument(
        "--batch_size",
        type=_int_at_least(1),
        default=DEFAULT_BATCH_SIZE,
        help=f"episodes played in lock-step (default {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--max_new_tokens", type=_int_at_least(1), default=None, help="tokens per response (default 160)"
    )
    parser.add_argument(
        "--max_steps", type=_int_at_least(1), default=None, help="steps per episode (default: the env's limit)"
    )
    parser.add_argument(
        "--difficulty", default=None, help="the env's difficulty (default: the starter's for mini envs)"
    )
    parser.add_argument(
        "--env_kwargs",
        type=_json_object,
        default=None,
        help="more make_env arguments as a JSON object, e.g. '{\"max_episode_steps\": 8}'",
    )
    parser.add_argument("--threads", type=_int_at_least(1), default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    args = parser.parse_args(argv)
    name = args.model_name_or_path
    if not Path(name).expanduser().exists() and _looks_like_path(name):
        parser.error(
            f"--model_name_or_path {name!r} does not exist; expected a directory written by save_pretrained "
            "(config.json and tokenizer files), micro:<env>, smollm2 or a hub id. Check the path."
        )
    return args


class _ProgressDisplay:
    """A Rich bar on stderr when it is a terminal; otherwise one plain line per batch, readable in a log file."""

    def __init__(self) -> None:
        self._started = time.perf_counter()
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _ProgressDisplay:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("episodes"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[steps]} steps"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
            )
            self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def __call__(self, progress: EvaluationProgress) -> None:
        if self._progress is not None:
            if self._task is None:
                self._task = self._progress.add_task("episodes", total=progress.episodes_total, steps=0)
            self._progress.update(self._task, completed=progress.episodes_done, steps=progress.steps)
        elif progress.batch_finished:
            print(
                f"[evaluate] batch {progress.batches_done}/{progress.batches}: {progress.episodes_done}/"
                f"{progress.episodes_total} episodes, {progress.steps} steps, {progress.successes} won, "
                f"{time.perf_counter() - self._started:.0f} s",
                file=sys.stderr,
                flush=True,
            )


def main(argv: list[str] | None = None) -> int:
    """Run the command: parse `argv`, load the model, evaluate, print the JSON line; returns the exit code."""
    args = parse_args(argv)
    name = args.model_name_or_path
    if Path(name).expanduser().is_dir():
        # Before transformers is imported: huggingface_hub reads the variable once, at import.
        os.environ["HF_HUB_OFFLINE"] = "1"
    stdout = sys.stdout
    # Anything a library prints goes to stderr, so stdout carries the JSON line alone.
    with contextlib.redirect_stdout(sys.stderr):
        import torch

        from .environments import make_env

        if args.threads is not None:
            torch.set_num_threads(args.threads)
        # Check the environment settings before the (slower) model load, so a typo fails at once.
        kwargs = resolve_env_kwargs(args.env, split=args.split, difficulty=args.difficulty, env_kwargs=args.env_kwargs)
        try:
            load_skill_bank(args.env, args.privileged_context_source)
            make_env(args.env, **kwargs).close()
        except (ValueError, TypeError, ImportError, OSError) as error:
            raise SystemExit(
                f"error: cannot evaluate on --env {args.env} with make_env arguments {kwargs} and "
                f"--privileged_context_source {args.privileged_context_source}: {error} Fix --split, --difficulty, "
                "--env_kwargs or --privileged_context_source."
            ) from None
        try:
            model, tokenizer = load_model_and_tokenizer(name)
        except (OSError, ValueError) as error:
            raise SystemExit(
                f"error: cannot load --model_name_or_path {name!r}: {error} Expected a directory written by "
                "save_pretrained (config.json and tokenizer files), micro:<env>, smollm2 or a hub id that is in the "
                "local cache (this machine may be offline)."
            ) from None
        with _ProgressDisplay() as display:
            result = evaluate_model(
                model,
                tokenizer,
                args.env,
                split=args.split,
                tasks=args.tasks,
                first_seed=args.first_seed,
                temperature=args.temperature,
                privileged_context_source=args.privileged_context_source,
                batch_size=args.batch_size,
                max_new_tokens=args.max_new_tokens,
                max_steps=args.max_steps,
                difficulty=args.difficulty,
                env_kwargs=args.env_kwargs,
                seed=args.seed,
                on_progress=display,
            )
    print(json.dumps({"model": name, **result}), file=stdout, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
