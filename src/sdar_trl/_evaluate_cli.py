"""The command line of `python -m sdar_trl.evaluate`: its arguments, the progress display and `main`.

Re-exported by `sdar_trl.evaluate` (`main`, `parse_args`), whose library functions it calls through the module, so
what they are there (e.g. a test's stand-in) is what the command runs. Imports only the standard library and
`sdar_trl.environments` at load time, like `sdar_trl.evaluate`: `--help` and argument errors are instant.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import evaluate as library
from .environments import list_envs
from .evaluate import (
    CONTEXT_SOURCES,
    DEFAULT_BATCH_SIZE,
    DEFAULT_SKILL_RETRIEVAL_K,
    DEFAULT_TASKS,
    EVAL_SKILL_RETRIEVAL_MODES,
    EvaluationProgress,
    parse_json_object,
)

__all__ = ["main", "parse_args"]


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


def _skill_retrieval(text: str) -> str:
    if text == "ucb":
        raise argparse.ArgumentTypeError(
            "'ucb' is learnt during training (an untrained bandit shows the bank's first skills), so it cannot be "
            f"evaluated on its own; use one of {', '.join(EVAL_SKILL_RETRIEVAL_MODES)}"
        )
    if text not in EVAL_SKILL_RETRIEVAL_MODES:
        raise argparse.ArgumentTypeError(
            f"unknown mode {text!r}; expected one of {', '.join(EVAL_SKILL_RETRIEVAL_MODES)} (e.g. --skill_retrieval "
            "bm25)"
        )
    return text


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


def _add_skill_retrieval_arguments(parser: argparse.ArgumentParser) -> None:
    """`--skill_retrieval` and `--skill_retrieval_k`: how a skills context picks its skills, as in SDARConfig."""
    modes = ", ".join(EVAL_SKILL_RETRIEVAL_MODES)
    for flag, kind, default, help_text in (
        (
            "--skill_retrieval",
            _skill_retrieval,
            "rules",
            f"which skills a skills context shows, as SDARConfig.skill_retrieval chooses them: {modes} (default: "
            "rules; kmeans needs pip install 'sdar-trl[retrieval]')",
        ),
        (
            "--skill_retrieval_k",
            _int_at_least(1),
            DEFAULT_SKILL_RETRIEVAL_K,
            f"skills per episode of bm25; kmeans makes round(bank size / k) clusters (default "
            f"{DEFAULT_SKILL_RETRIEVAL_K})",
        ),
    ):
        parser.add_argument(flag, type=kind, default=default, help=help_text)


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
    _add_skill_retrieval_arguments(parser)
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
        kwargs = library.resolve_env_kwargs(
            args.env, split=args.split, difficulty=args.difficulty, env_kwargs=args.env_kwargs
        )
        try:
            library.load_skill_retriever(
                args.env, args.privileged_context_source, args.skill_retrieval, args.skill_retrieval_k
            )
            make_env(args.env, **kwargs).close()
        except (ValueError, TypeError, ImportError, OSError) as error:
            raise SystemExit(
                f"error: cannot evaluate on --env {args.env} with make_env arguments {kwargs}, "
                f"--privileged_context_source {args.privileged_context_source} and --skill_retrieval "
                f"{args.skill_retrieval}: {error} Fix --split, --difficulty, --env_kwargs, "
                "--privileged_context_source or --skill_retrieval."
            ) from None
        try:
            model, tokenizer = library.load_model_and_tokenizer(name)
        except (OSError, ValueError) as error:
            raise SystemExit(
                f"error: cannot load --model_name_or_path {name!r}: {error} Expected a directory written by "
                "save_pretrained (config.json and tokenizer files), micro:<env>, smollm2 or a hub id that is in the "
                "local cache (this machine may be offline)."
            ) from None
        with _ProgressDisplay() as display:
            result = library.evaluate_model(
                model,
                tokenizer,
                args.env,
                split=args.split,
                tasks=args.tasks,
                first_seed=args.first_seed,
                temperature=args.temperature,
                privileged_context_source=args.privileged_context_source,
                skill_retrieval=args.skill_retrieval,
                skill_retrieval_k=args.skill_retrieval_k,
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
