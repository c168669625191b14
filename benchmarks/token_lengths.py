"""Prompt lengths in tokens: the shipped micro starters' tokenizers against candidate tokenizers.

A cpu-micro optimizer step is mostly attention over the step prompts, whose cost grows with the square of their
length. This script renders the expert's step prompts of each environment (`sdar_trl.sft.collect_expert_steps` on
train seeds, the chat template applied as the trainer applies it; the teacher prompts with the privileged facts in
front) and counts their tokens with

- `shipped`: the package's `micro/<env>/tokenizer.json`;
- `refit`: a tokenizer fitted exactly as `scripts/build_micro.py` fits it (the first stage of the env's recipe:
  same corpus, vocabulary cap, required words and options), which checks that the candidates' baseline is the
  shipped one;
- the candidates, each fitted like `refit` with both options set explicitly (the one equal to the recipe's own
  settings is `refit` and is not repeated): `neither` (no option), `atomic`
  (`fit_micro_tokenizer(atomic_pieces=CANDIDATE_ATOMIC_PIECES[env])`), `implicit` (`implicit_spaces=True`,
  environments fitted with `separate_spaces` only) and `atomic+implicit`.

Nothing is built or trained; fitting one tokenizer takes seconds to a minute. Prints a human table on stderr and
one JSON line (the last line on stdout, starting with `{"benchmark"`):

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python benchmarks/token_lengths.py [--envs webshop-mini] [--fit_episodes 500]

`attn` is the summed squared student prompt length relative to `shipped` (the attention cost of a step).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENTS = ("alfworld-mini", "webshop-mini", "searchqa-mini")
#: The strings each environment repeats that a tokenizer without atomic pieces splits into several tokens:
#: webshop-mini's page separator " [SEP] " (3 tokens: ' [', 'sep', '] '; its recipe now keeps it whole).
CANDIDATE_ATOMIC_PIECES: dict[str, tuple[str, ...]] = {"webshop-mini": (" [SEP] ",)}


def percentile(values: list[int], q: float) -> int:
    """The nearest-rank `q`-th percentile (0 < q <= 100) of a non-empty list."""
    if not values:
        raise ValueError("percentile of an empty list: measure at least one prompt (check --seeds).")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def summarize(lengths: list[int]) -> dict[str, int]:
    """Median (lower), 90th percentile and maximum of token counts."""
    return {"median": percentile(lengths, 50), "p90": percentile(lengths, 90), "max": max(lengths)}


def attention_ratio(lengths: list[int], baseline: list[int]) -> float:
    """Summed squared lengths relative to the baseline's (attention cost grows with the square of the length)."""
    return sum(n * n for n in lengths) / sum(n * n for n in baseline)


def parse_seeds(text: str) -> range:
    """'1000-1099' (inclusive) as a range."""
    first, sep, last = text.partition("-")
    if not sep or not first.isdigit() or not last.isdigit() or int(last) < int(first):
        raise SystemExit(f"--seeds {text!r}: expected FIRST-LAST with FIRST <= LAST, e.g. --seeds 1000-1099")
    return range(int(first), int(last) + 1)


def load_build_micro():
    """scripts/build_micro.py as a module (its fitting code is what the candidates must follow)."""
    spec = importlib.util.spec_from_file_location("build_micro", ROOT / "scripts" / "build_micro.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_micro"] = module  # its dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def fit_args(build_micro, env: str, fit_episodes: int | None) -> argparse.Namespace:
    """The arguments of the first stage of the env's build recipe: the stage whose tokenizer the starter keeps."""
    recipe = build_micro.RECIPES[env]
    args = build_micro.parse_args(["--env", env, *recipe.shared, *recipe.stages[0].args])
    if fit_episodes is not None:
        args.episodes = fit_episodes
    return args


def measured_texts(env_name: str, seeds: range, tokenizer_for_template) -> dict[str, list[str]]:
    """The expert's step prompts (student: templated user message; teacher: facts prefix + the same) and responses
    (reasoning emptied, as the micro starters write them, with EOS)."""
    from sdar_trl.environments import make_env
    from sdar_trl.sft import collect_expert_steps, render_sft_prompt
    from sdar_trl.starter.load import DEMO_ENVS

    settings = dict(DEMO_ENVS[env_name])
    settings.pop("eval_split")
    env = make_env(env_name, split="train", **settings)
    student = collect_expert_steps(env, env_name, seeds)
    teacher = collect_expert_steps(env, env_name, seeds, context_source="facts")
    env.close()
    build_micro = sys.modules["build_micro"]
    return {
        "student": [render_sft_prompt(tokenizer_for_template, s.prompt) for s in student],
        "teacher": [render_sft_prompt(tokenizer_for_template, s.prompt, s.context) for s in teacher],
        "response": [build_micro.without_reasoning(s.response) + "<|im_end|>" for s in student],
    }


def lone_space_share(tokenizer, texts: list[str]) -> float:
    """Share of tokens that decode to a single space."""
    ids = [i for text in texts for i in tokenizer(text, add_special_tokens=False)["input_ids"]]
    spaces = {i for i in set(ids) if tokenizer.decode([i]) == " "}
    return sum(i in spaces for i in ids) / len(ids)


def measure_env(build_micro, env: str, seeds: range, fit_episodes: int | None) -> list[dict[str, Any]]:
    from transformers import AutoTokenizer

    from sdar_trl.starter import micro_starter_path

    shipped = AutoTokenizer.from_pretrained(str(micro_starter_path(env)), padding_side="left")
    texts = measured_texts(env, seeds, shipped)
    args = fit_args(build_micro, env, fit_episodes)
    started = time.perf_counter()
    rows = build_micro.collect_rows(args)
    print(f"{env}: {len(rows)} fitting rows in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    variants: dict[str, Any] = {"shipped": shipped, "refit": build_micro.make_tokenizer(args, rows)}
    atomic = CANDIDATE_ATOMIC_PIECES.get(env, ())
    candidates: dict[str, tuple[tuple[str, ...], bool]] = {"neither": ((), False)}
    if atomic:
        candidates["atomic"] = (atomic, False)
    if env in build_micro.SEPARATE_SPACES_ENVS:
        candidates["implicit"] = ((), True)
        if atomic:
            candidates["atomic+implicit"] = (atomic, True)
    recipe = (tuple(build_micro.ATOMIC_PIECES.get(env, ())), env in build_micro.IMPLICIT_SPACES_ENVS)
    for name, (pieces, implicit) in candidates.items():
        if (pieces, implicit) != recipe:  # that one is `refit`
            variants[name] = build_micro.make_tokenizer(args, rows, atomic_pieces=pieces, implicit_spaces=implicit)
    results, baseline = [], None
    for name, tokenizer in variants.items():
        lengths = {
            kind: [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in values]
            for kind, values in texts.items()
        }
        baseline = baseline or lengths["student"]
        results.append(
            {
                "env": env,
                "tokenizer": name,
                "vocab": len(tokenizer),
                "steps": len(lengths["student"]),
                **{kind: summarize(values) for kind, values in lengths.items()},
                "attention_vs_shipped": round(attention_ratio(lengths["student"], baseline), 3),
                "lone_space_share": round(lone_space_share(tokenizer, texts["student"]), 3),
            }
        )
    return results


def table(results: list[dict[str, Any]]) -> str:
    header = (
        f"{'env':<14} {'tokenizer':<16} {'vocab':>6} {'prompt med/p90/max':>19} {'teacher med/p90/max':>20} "
        f"{'resp med':>8} {'attn':>5} {'spaces':>6}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        s, t = r["student"], r["teacher"]
        lines.append(
            f"{r['env']:<14} {r['tokenizer']:<16} {r['vocab']:>6} "
            f"{s['median']:>7}/{s['p90']:>5}/{s['max']:>5} {t['median']:>8}/{t['p90']:>5}/{t['max']:>5} "
            f"{r['response']['median']:>8} {r['attention_vs_shipped']:>5.2f} {r['lone_space_share']:>6.1%}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", default=",".join(ENVIRONMENTS), help="comma-separated environments")
    parser.add_argument("--seeds", default="1000-1099", help="train seeds of the measured episodes, FIRST-LAST")
    parser.add_argument(
        "--fit_episodes",
        type=int,
        default=None,
        help="expert episodes per source for fitting the candidates (default: the build's, 2,000; fewer is faster "
        "but the candidates then differ from the shipped tokenizer for that reason too)",
    )
    args = parser.parse_args(argv)
    envs = [e for e in args.envs.split(",") if e]
    unknown = [e for e in envs if e not in ENVIRONMENTS]
    if unknown:
        raise SystemExit(f"--envs: unknown {unknown}; choose from {', '.join(ENVIRONMENTS)}")
    seeds = parse_seeds(args.seeds)
    build_micro = load_build_micro()
    results = [r for env in envs for r in measure_env(build_micro, env, seeds, args.fit_episodes)]
    print(table(results), file=sys.stderr)
    print(json.dumps({"benchmark": "token_lengths", "seeds": args.seeds, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
