"""Why a model's searchqa-mini episodes fail: a wrong answer it read off its prompt, or one it miscopied.

Plays `--tasks` searchqa-mini tasks (by default one question from each of 200 training worlds from seed 20,000,000,
which no table1 run trains on and no starter build chose on) at the evaluation temperature and sorts every episode
into one outcome:

- `won`;
- `copied_wrong`: the final answer is text the model was shown in its last prompt (question, search results or
  history), but not the right one: a choice the policy got wrong;
- `guessed`: the final answer is one of the closed set of profession / industry / genre words every world uses
  (`ATTRIBUTE_WORDS`), but not one the prompt showed: a guess, not a failed copy;
- `miscopied`: any other final answer that appears nowhere in that prompt (a name spelt with a piece too many or
  too few, an invented word): the model failed to copy;
- `no_answer`: the episode ended without an answer (turn limit, or only searches).

Prints a human table on stderr and one JSON line (`{"benchmark": "answer_errors", ...}`) on stdout, with the
counts overall, per task type and per length of the gold answer in the model's tokens:

    python benchmarks/answer_errors.py --model micro:searchqa-mini          # ~1 min on one core
    python benchmarks/answer_errors.py --model outputs/searchqa-mini-grpo   # a trained model

docs/results.md uses it to explain where GRPO's gains on searchqa-mini come from.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from typing import Any

from _common import machine_info
from table1_presets import ENV_SETTINGS, PRESETS

OUTCOMES = ("won", "copied_wrong", "guessed", "miscopied", "no_answer")
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def classify_episode(won: bool, last_response: str, last_prompt: str) -> str:
    """One of `OUTCOMES` for an episode from its outcome and its last step (the response and the prompt it saw).

    The answer counts as shown when it occurs in the prompt as a whole token sequence: `Cavo` in "capital is
    Cavo." but not in "Cavoland" (so a miscopy that happens to be a prefix of a shown name is still a miscopy).
    """
    if won:
        return "won"
    match = _ANSWER.search(last_response)
    if match is None or not match.group(1).strip():
        return "no_answer"
    answer = match.group(1).strip()
    shown = re.search(r"(?<![A-Za-z0-9])" + re.escape(answer) + r"(?![A-Za-z0-9])", last_prompt)
    if shown:
        return "copied_wrong"
    from sdar_trl.environments.searchqa.world import ATTRIBUTE_WORDS

    return "guessed" if answer.lower() in ATTRIBUTE_WORDS else "miscopied"


def count_outcomes(episodes: list[tuple[str, str]]) -> dict[str, Any]:
    """`episodes` as (task type, outcome) pairs → counts overall and per task type (every outcome present, 0 too)."""
    overall = Counter(outcome for _, outcome in episodes)
    return {
        "tasks": len(episodes),
        **{outcome: overall[outcome] for outcome in OUTCOMES},
        "by_task_type": {
            task_type: {outcome: counts[outcome] for outcome in OUTCOMES}
            for task_type, counts in _counts_by_group(episodes).items()
        },
    }


def count_by_answer_tokens(episodes: list[tuple[int, str]]) -> dict[str, dict[str, int]]:
    """`episodes` as (tokens in the gold answer, outcome) pairs → outcome counts per token count, shortest first.

    If miscopies grow with the answer's length in tokens, the tokenizer's spelling of names is what the model
    fails to copy (docs/results.md)."""
    return {
        str(length): {"tasks": sum(counts.values()), **{outcome: counts[outcome] for outcome in OUTCOMES}}
        for length, counts in _counts_by_group(episodes).items()
    }


def _counts_by_group(episodes: list[tuple[Any, str]]) -> dict[Any, Counter]:
    """(group, outcome) pairs → group → Counter of its outcomes, groups in sorted order."""
    by_group: dict[Any, Counter] = defaultdict(Counter)
    for group, outcome in episodes:
        by_group[group][outcome] += 1
    return dict(sorted(by_group.items()))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="micro:searchqa-mini", help="a model directory or micro:searchqa-mini")
    parser.add_argument("--split", default="train", help="searchqa-mini split (default: train)")
    parser.add_argument("--first_seed", type=int, default=20_000_000, help="first task (default 20,000,000)")
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument(
        "--stride",
        type=int,
        default=101,
        help="seed step between tasks (default 101: one question per world, as table1.py's budget selection)",
    )
    parser.add_argument("--temperature", type=float, default=None, help="default: SDARConfig's eval_temperature")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    args = parser.parse_args(argv)
    if args.tasks < 1:
        parser.error(f"--tasks: got {args.tasks}; expected at least 1 task")
    if args.stride < 1:
        parser.error(f"--stride: got {args.stride}; expected a seed step of at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from sdar_trl import SDARConfig
    from sdar_trl.environments import make_env
    from sdar_trl.evaluate import load_model_and_tokenizer, resolve_env_kwargs
    from sdar_trl.starter.build import play_with_model

    model, tokenizer = load_model_and_tokenizer(args.model)
    env_kwargs = resolve_env_kwargs("searchqa-mini", split=args.split)
    envs = [make_env("searchqa-mini", **env_kwargs) for _ in range(args.tasks)]
    rows = [{"seed": args.first_seed + i * args.stride} for i in range(args.tasks)]
    temperature = SDARConfig.eval_temperature if args.temperature is None else args.temperature
    # Played as the cpu-micro table's runs play searchqa-mini: its completion budget and history length.
    result = play_with_model(
        model,
        tokenizer,
        envs,
        rows,
        temperature=temperature,
        max_new_tokens=PRESETS["cpu-micro"].max_completion_length,
        history_length=ENV_SETTINGS["searchqa-mini"]["history_length"],
        seed=args.seed,
    )
    last_step = {}
    for step in result.steps:  # in play order: the last record of a trajectory is its last step
        last_step[step.trajectory] = step
    episodes, lengths = [], []
    for episode in result.episodes:
        step = last_step.get(episode.trajectory)
        outcome = classify_episode(episode.won, step.response if step else "", step.prompt if step else "")
        episodes.append((episode.task_type, outcome))
        # The env that played the episode still holds its question (none if its reset failed).
        gold = envs[episode.trajectory].golden_answers
        if gold:
            lengths.append((len(tokenizer(gold[0], add_special_tokens=False)["input_ids"]), outcome))
    record = {
        "benchmark": "answer_errors",
        "model": args.model,
        "split": args.split,
        "first_seed": args.first_seed,
        "stride": args.stride,
        "temperature": temperature,
        **count_outcomes(episodes),
        # The gold answer's length in the model's tokens: do miscopies grow with it?
        "by_answer_tokens": count_by_answer_tokens(lengths),
        "machine": machine_info(),
    }
    print(f"{'task type':<26}" + "".join(f"{o:>14}" for o in OUTCOMES), file=sys.stderr)
    for task_type, counts in [*record["by_task_type"].items(), ("all", {o: record[o] for o in OUTCOMES})]:
        print(f"{task_type:<26}" + "".join(f"{counts[o]:>14}" for o in OUTCOMES), file=sys.stderr)
    print(f"\n{'answer tokens':<26}{'tasks':>14}" + "".join(f"{o:>14}" for o in OUTCOMES), file=sys.stderr)
    for length, counts in record["by_answer_tokens"].items():
        print(f"{length:<26}{counts['tasks']:>14}" + "".join(f"{counts[o]:>14}" for o in OUTCOMES), file=sys.stderr)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
