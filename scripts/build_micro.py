"""Build a micro starter: a tiny transformer trained from scratch on one mini environment's expert episodes.

    python scripts/build_micro.py --env alfworld-mini   # ~11 min on one core (7 training, 4 evaluating)

writes the package data (`src/sdar_trl/starter/micro/<env>/`, or `--output_dir`). That is one *stage*; the shipped
starters of webshop-mini and searchqa-mini took several, each continuing the previous one (`--init_from`), and a
closing evaluation. One command runs a starter's whole build (`RECIPES`; docs/starter.md):

    python scripts/build_micro.py --recipe webshop-mini [--work_dir DIR] [--output_dir DIR] [--dry_run]

Every stage runs as the documented command in a process of its own, the stages before the last one write to
`<work_dir>/<stage>` (default `build/micro/<env>/`), the last to the package (or `--output_dir`). A stage's marker
`<work_dir>/<stage>.done.json` is written when its process exits 0; a rerun skips the stages whose marker still
matches (same arguments, same input model, its model unchanged), so a stopped build resumes. `--dry_run` prints
the commands.

Steps (all seeded; the same command on the same torch build gives the same files):
1. expert episodes on the environment's *train* split at the demo settings (`sdar_trl.starter.DEMO_ENVS`),
   played through the agent-mode loop (`sdar_trl.sft.collect_expert_steps`), with and without the privileged
   context (the teacher's view); 10 % of the expert's actions are replaced by random admissible ones while
   playing (not recorded) so that the model also sees states off the expert's path;
   with `--reasoning empty` (the default) the responses keep an empty `<think></think>` before the action
   (~10 tokens a step instead of ~45, so RL steps stay cheap; `--reasoning expert` keeps the expert's text);
2. a byte-level BPE tokenizer fitted to that text (`sdar_trl.starter.micro_tokenizer`), every entity name,
   product id and option value a single token;
3. a Llama-shaped decoder built from a config (tied embeddings, float32);
4. supervised training on the rows (teacher prefix + chat-templated prompt, then the expert response + EOS):
   the loss is the mean cross-entropy on the response tokens plus `--prompt_loss_weight` times that on the
   prompt tokens (next-token prediction on prompts, which repeat names all the time, is what teaches a small
   model to attend back and copy);
5. evaluation on held-out tasks (`--eval_tasks` of the eval split) with and without each context, at the
   trainer's evaluation temperature, written to `metrics.json` beside the model.

docs/starter.md has the commands and the measured numbers of the shipped files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

#: Vocabulary caps. alfworld-mini and webshop-mini have closed vocabularies and stop below their cap with every
#: word one token. searchqa-mini's names are invented per world (an open set): uncapped, the training worlds'
#: names would become single tokens and held-out names ~2.6 pieces; at 3,000 both are spelt with ~2.8 pieces,
#: so the copying the model learns in training is the copying held-out questions need.
#: Tokens per response when the build evaluates (the expert's responses are at most ~80 tokens with these
#: tokenizers; a model that does not stop is cut here).
MAX_NEW_TOKENS = 128
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
#: Optimizer steps of the shipped builds (batches of 8 rows; docs/starter.md has their wall time). alfworld-mini's
#: 180k-parameter model (noise 0.1) won 13 % of the held-out tasks alone after 2,000 steps, 26 % after 3,000 and 53 %
#: after 6,000; with noise 0.25, 30 % after 3,000: inside the 15-50 % band where RL has room to show.
MAX_STEPS = {"alfworld-mini": 3000, "webshop-mini": 1000, "searchqa-mini": 3000}
#: Share of random expert actions (followed by the expert's recovery, which is recorded). alfworld-mini's expert
#: knows where everything is, so without noise the student never sees a wrong guess and has no good action after
#: one: it loops, and GRPO only sharpens its lucky guesses (docs/results.md). At 0.25 the student has seen many
#: recoveries: 29.9 % alone / 62.7 % with the facts on valid_unseen, and GRPO lifts it (docs/results.md).
NOISE = {"alfworld-mini": 0.25, "webshop-mini": 0.1, "searchqa-mini": 0.1}
#: Share of the no-context episodes played by a hasty expert (`sdar_trl.sft.HASTY_RULES`). webshop-mini's expert
#: reads all it needs off the goal and the page and wins every task, so without haste the facts change no action and
#: the model learns to ignore them (80.0 % alone, 80.5 % with the facts after ws1, docs/starter.md); with half the
#: no-context episodes skipping the options, the facts' "Options to select" is what the teacher knows better.
HASTY = {"webshop-mini": 0.5}
#: Environments whose actions are lower case while their pages show names in upper case (product ids): their
#: tokenizer lower-cases text, so that the id on the page and the id in the action are the same token.
LOWERCASE_ENVS = ("webshop-mini",)
#: Environments whose actions put a copied word right after a bracket (`search[tea tree oil]`, `click[grey]`,
#: `click[b07e4273ok]`): their tokenizer keeps words apart from spaces, so the word on the page and the word in
#: the action are one token (`fit_micro_tokenizer(separate_spaces=True)`). With leading-space words, a 333k model
#: copied 3 of 30 held-out option values and 11 of 30 search queries right (webshop-mini, teacher-forced).
SEPARATE_SPACES_ENVS = ("webshop-mini", "searchqa-mini")
#: Shorter sequences (docs/starter.md, "Shorter sequences"; benchmarks/token_lengths.py): strings kept as one
#: pre-tokenizer piece (`fit_micro_tokenizer(atomic_pieces=...)`; webshop-mini's " [SEP] " is 3 tokens otherwise), and
#: the environments whose single space between two words is no token (`implicit_spaces=True`, needs
#: `SEPARATE_SPACES_ENVS`). webshop-mini's prompts are 36 % shorter with both, and its model copies ids and options
#: far sooner. searchqa-mini keeps its spaces: a rebuild with implicit spaces did not learn to copy its invented
#: names (35.6 % with the facts on the test split, against 77.8 % shipped).
ATOMIC_PIECES: dict[str, tuple[str, ...]] = {"webshop-mini": (" [SEP] ",)}
IMPLICIT_SPACES_ENVS: tuple[str, ...] = ("webshop-mini",)
#: The examples' and benchmarks' first RL train seed: the build must stay below it, so RL meets unseen tasks.
FIRST_RL_SEED = 1_000_000
#: Seed stride of the SFT episodes (see collect_rows). searchqa-mini's task i is question i % 100 of world i // 100.
TASK_STRIDE = {"searchqa-mini": 100}
#: Copy warm-up. searchqa-mini's answers and queries copy invented names of ~2.8 pieces out of the prompt. On its
#: SFT rows alone a 64-wide, 2-layer model never learnt that (6,000 steps: teacher-forced, the second piece of a
#: name right 55 % of the time, 1 % success); on random strings repeated once it learns to copy in ~300 steps
#: (20 s), so the build starts there and keeps a small copy batch in every SFT step. With the facts rows first
#: (their answer is a copy) the shipped build copies (docs/starter.md, "Measured: searchqa-mini").
COPY_STEPS = {"searchqa-mini": 400}
COPY_WEIGHT = {"searchqa-mini": 0.2}
#: Rows and length of the copy batches.
COPY_BATCH = (8, 32)
VOCAB_SIZES = {"alfworld-mini": 4096, "webshop-mini": 8192, "searchqa-mini": 3000}


@dataclass(frozen=True)
class Stage:
    """One run of this script in a build recipe.

    `args` are its arguments besides `--env`, the recipe's shared ones, `--init_from` and `--output_dir` (the
    runner adds those). The stage writes to `<work_dir>/<name>`, except the recipe's last training stage, which
    writes the final model (the package's `micro/<env>/`, or the recipe's `--output_dir`).
    """

    name: str
    args: tuple[str, ...]
    note: str
    # the name of the earlier stage whose model this one continues
    init_from: str | None = field(default=None, kw_only=True)
    # a closing `--eval_only --write_eval` run on the final model (no training)
    eval_only: bool = field(default=False, kw_only=True)


@dataclass(frozen=True)
class Recipe:
    env: str
    shared: tuple[str, ...]  # arguments of every training stage (after `--env`)
    stages: tuple[Stage, ...]
    summary: str  # the total cost, printed first by --dry_run


#: The build recipes of the shipped micro starters: the commands that wrote the files in `sdar_trl/starter/micro/`
#: (their `metrics.json` records every stage's arguments, `build_chain`; tests/test_build_recipes.py checks the two
#: agree, and that docs/starter.md shows `--recipe <env> --dry_run`'s output). The per-stage evaluations measure
#: unseen *train* tasks (seeds from 10,000,000), never the held-out split, which only the closing run measures.
RECIPES: dict[str, Recipe] = {
    "alfworld-mini": Recipe(
        env="alfworld-mini",
        shared=(),
        stages=(Stage("alfworld", (), "3,000 steps, then the whole valid_unseen split with each context"),),
        summary="11 min on one core (7 training, 4 evaluating)",
    ),
    "webshop-mini": Recipe(
        env="webshop-mini",
        shared=(
            *("--eval_split", "train", "--eval_first_seed", "10000000", "--eval_tasks", "200"),
            *("--eval_sources", "none,facts"),
        ),
        stages=(
            Stage("ws1", ("--hasty", "0", "--max_steps", "2000"), "the expert alone (15 min)"),
            Stage(
                "ws2",
                ("--hasty", "0.5", "--max_steps", "800", "--learning_rate", "1e-3", "--warmup_steps", "50"),
                "half the no-context episodes by the hasty expert (6 min)",
                init_from="ws1",
            ),
            Stage(
                "ws3",
                ("--hasty", "0.6", "--max_steps", "800", "--learning_rate", "1e-3", "--warmup_steps", "50"),
                "60 % hasty: the facts now decide the options (6 min); writes the final model",
                init_from="ws2",
            ),
            Stage(
                "eval",
                ("--eval_only", "--write_eval", "--eval_sources", "none,facts"),
                "all 500 test tasks, recorded as metrics.json's 'eval' (1 min)",
                eval_only=True,
            ),
        ),
        summary="28 min of training on one core, 1 min of evaluation",
    ),
    "searchqa-mini": Recipe(
        env="searchqa-mini",
        shared=(),
        stages=(
            Stage(
                "sq1",
                (
                    *("--sources", "facts", "--max_steps", "2000"),
                    *("--eval_split", "train", "--eval_first_seed", "10000000", "--eval_tasks", "100"),
                    *("--eval_sources", "facts"),
                ),
                "copy warm-up, then the facts rows (5 min)",
            ),
            Stage(
                "sq2",
                (
                    *("--sources", "facts", "--episodes", "6000", "--copy_steps", "0", "--max_steps", "4000"),
                    *("--learning_rate", "1.5e-3", "--warmup_steps", "50"),
                    *("--eval_split", "train", "--eval_first_seed", "10000000", "--eval_tasks", "100"),
                    *("--eval_sources", "facts"),
                ),
                "the facts rows, 6,000 worlds (10 min)",
                init_from="sq1",
            ),
            Stage(
                "sq3",
                (
                    *("--copy_steps", "0", "--max_steps", "3000", "--learning_rate", "1.5e-3", "--warmup_steps", "50"),
                    *("--eval_split", "train", "--eval_first_seed", "10000000", "--eval_tasks", "200"),
                    *("--eval_sources", "none,facts"),
                ),
                "both sources (15 min); writes the final model",
                init_from="sq2",
            ),
            Stage(
                "eval",
                ("--eval_only", "--write_eval", "--eval_sources", "none,facts"),
                "all 500 test tasks, recorded as metrics.json's 'eval' (~20 s)",
                eval_only=True,
            ),
        ),
        summary="30 min of training on one core, 20 s of evaluation",
    ),
}
#: Where --recipe keeps the stages before the last one (and its progress markers) unless --work_dir is given.
DEFAULT_WORK_DIR = Path("build") / "micro"
#: The options of a recipe run; every other option of this script belongs to a single stage.
RECIPE_OPTIONS = ("--recipe", "--work_dir", "--output_dir", "--dry_run")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", required=True, choices=("alfworld-mini", "webshop-mini", "searchqa-mini"))
    parser.add_argument("--output_dir", type=Path, default=None, help="default: the package's micro/<env>/")
    parser.add_argument("--episodes", type=int, default=2000, help="expert episodes per context source")
    parser.add_argument(
        "--task_stride",
        type=int,
        default=None,
        help="distance between the train seeds of consecutive episodes (default: per environment, TASK_STRIDE)",
    )
    parser.add_argument(
        "--sources", default="none,facts", help="context sources of the episodes, comma-separated (sdar_trl.sft)"
    )
    parser.add_argument(
        "--noise", type=float, default=None, help="share of random (unrecorded) expert actions (default: NOISE)"
    )
    parser.add_argument(
        "--hasty",
        type=float,
        default=None,
        help="share of no-context episodes played by a hasty expert (default: HASTY, 0 where not listed)",
    )
    parser.add_argument(
        "--reasoning",
        choices=("empty", "expert"),
        default="empty",
        help="'empty': responses keep the format with an empty <think></think> (4x shorter completions, so RL "
        "steps cost seconds); 'expert': the expert's written reasoning",
    )
    parser.add_argument(
        "--vocab_size", type=int, default=None, help="BPE vocabulary cap (default: per environment, VOCAB_SIZES)"
    )
    # 180k parameters with alfworld-mini's vocabulary: an RL step costs ~5x less than at hidden 128 x 4 layers
    # (950k), and with more SFT steps the small model acts as well (docs/starter.md).
    parser.add_argument("--hidden_size", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv_heads", type=int, default=2)
    parser.add_argument("--intermediate_size", type=int, default=192)
    parser.add_argument("--max_length", type=int, default=1024, help="rows longer than this are dropped")
    parser.add_argument(
        "--max_steps", type=int, default=None, help="optimizer steps (default: per environment, MAX_STEPS)"
    )
    parser.add_argument(
        "--minutes", type=float, default=60.0, help="stop training after this wall time even before --max_steps"
    )
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--learning_rate", type=float, default=3e-3)
    parser.add_argument("--warmup_steps", type=int, default=100)
    parser.add_argument("--prompt_loss_weight", type=float, default=0.25)
    parser.add_argument(
        "--copy_steps",
        type=int,
        default=None,
        help="steps of the copy warm-up before SFT: random token strings, then the same string again, loss on "
        "the repeat (teaches the attention to copy; default: per environment, COPY_STEPS)",
    )
    parser.add_argument(
        "--copy_task",
        choices=("repeat", "recall"),
        default="repeat",
        help="the synthetic copy batches (CopyTask): 'repeat' a random token string, or 'recall' the value of a key",
    )
    parser.add_argument(
        "--copy_weight",
        type=float,
        default=None,
        help="weight of a copy batch added to every SFT step, so the copying is kept (default: per environment, "
        "COPY_WEIGHT)",
    )
    parser.add_argument("--eval_tasks", type=int, default=0, help="held-out tasks per context (0: the whole split)")
    parser.add_argument("--eval_sources", default="none,facts,skills")
    parser.add_argument(
        "--eval_split",
        default=None,
        help="split of the evaluation (default: the held-out split). Choose between candidate builds on "
        "'train' with --eval_first_seed beyond the SFT episodes (unseen tasks), never on the held-out split",
    )
    parser.add_argument("--eval_first_seed", type=int, default=0, help="first task index of the evaluation")
    parser.add_argument("--eval_batch_size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init_from", type=Path, default=None, help="continue training this micro model")
    parser.add_argument("--eval_only", action="store_true", help="re-measure the model in --output_dir")
    parser.add_argument(
        "--write_eval",
        action="store_true",
        help="with --eval_only: write the measurement into --output_dir's metrics.json (as 'eval'; an earlier "
        "measurement on another split is kept as 'selection')",
    )
    args = parser.parse_args(argv)
    if args.max_steps is None:
        args.max_steps = MAX_STEPS[args.env]
    if args.vocab_size is None:
        args.vocab_size = VOCAB_SIZES[args.env]
    if args.noise is None:
        args.noise = NOISE[args.env]
    if args.hasty is None:
        args.hasty = HASTY.get(args.env, 0.0)
    if args.task_stride is None:
        args.task_stride = TASK_STRIDE.get(args.env, 1)
    if args.copy_steps is None:
        args.copy_steps = COPY_STEPS.get(args.env, 0)
    if args.copy_weight is None:
        args.copy_weight = COPY_WEIGHT.get(args.env, 0.0)
    return args


def env_settings(env: str) -> tuple[dict[str, Any], str]:
    from sdar_trl.starter.load import DEMO_ENVS

    settings = dict(DEMO_ENVS[env])
    eval_split = settings.pop("eval_split")
    return settings, eval_split


def required_words(env_name: str) -> list[str]:
    """Words of the environment's closed vocabularies that must be single tokens (ids, option values)."""
    from sdar_trl.environments import make_env

    settings, _ = env_settings(env_name)
    env = make_env(env_name, split="train", **settings)
    words: set[str] = set()
    if env_name == "webshop-mini":
        for product in env._catalog.products:  # the catalogue is fixed: its ids and options are a closed set
            words.update((product.asin, product.asin.lower()))
            for values in product.options.values():
                for value in values:
                    words.update(re.findall(r"[A-Za-z0-9]+", value))
    env.close()
    return sorted(words)


def collect_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    from sdar_trl.environments import make_env
    from sdar_trl.sft import collect_expert_steps

    settings, _ = env_settings(args.env)
    env = make_env(args.env, split="train", **settings)
    steps = []
    sources = [s for s in args.sources.split(",") if s]
    for index, source in enumerate(sources):
        # Distinct tasks per source; with a stride, consecutive episodes come from different tasks' neighbourhoods
        # (searchqa-mini: task i is question i % 100 of world i // 100, so a stride of 100 gives every episode a
        # world of its own and the model cannot learn the names by heart: it has to copy them).
        first = index * args.episodes * args.task_stride + index
        seeds = range(first, first + args.episodes * args.task_stride, args.task_stride)
        if seeds[-1] >= FIRST_RL_SEED:
            raise SystemExit(
                f"--episodes {args.episodes} x --task_stride {args.task_stride} reaches train seed {seeds[-1]}, but "
                f"seeds from {FIRST_RL_SEED:,} on are the RL runs' (examples' --first_train_seed): lower one of them."
            )
        steps += collect_expert_steps(
            env, args.env, seeds, context_source=source, noise=args.noise, hasty=args.hasty, rng_seed=index
        )
    env.close()
    return [
        {
            "prompt": s.prompt,
            "context": s.context,
            "response": s.response if args.reasoning == "expert" else without_reasoning(s.response),
            "source": s.context_source,
        }
        for s in steps
    ]


def without_reasoning(response: str) -> str:
    """The expert's response with the text inside <think></think> removed (the tags stay: the format requires
    them). A micro model writes ~10 tokens a step instead of ~45; it reads the state off the prompt instead."""
    return _THINK.sub("<think></think>", response, count=1)


def render_rows(rows: list[dict[str, Any]], tokenizer) -> list[tuple[list[int], list[int]]]:
    from sdar_trl.sft import render_sft_prompt

    encoded = []
    for row in rows:
        prompt = render_sft_prompt(tokenizer, row["prompt"], row["context"])
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        completion_ids = tokenizer(row["response"] + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        encoded.append((prompt_ids, completion_ids))
    return encoded


def make_tokenizer(
    args: argparse.Namespace,
    rows: list[dict[str, Any]],
    *,
    atomic_pieces: tuple[str, ...] | None = None,
    implicit_spaces: bool | None = None,
):
    """The tokenizer fitted to `rows`; `atomic_pieces` and `implicit_spaces` override `ATOMIC_PIECES` and
    `IMPLICIT_SPACES_ENVS` (benchmarks/token_lengths.py measures candidates that way)."""
    from sdar_trl.sft import _HEADER, _SEPARATOR, SKILL_BANKS
    from sdar_trl.skills import SkillBank
    from sdar_trl.starter.micro_tokenizer import fit_micro_tokenizer, render_micro_chat
    from sdar_trl.teacher import render_teacher_prefix

    # The fitting text is what the model reads and writes: templated prompts with their context, responses,
    # and the skill texts (the teacher's other context).
    texts = [
        render_teacher_prefix(r["context"], header=_HEADER, separator=_SEPARATOR)
        + render_micro_chat(r["prompt"])
        + r["response"]
        for r in rows
    ]
    bank = SkillBank.from_package(SKILL_BANKS[args.env])
    texts += [bank.render(task_type) for task_type in bank.task_types] * 20
    return fit_micro_tokenizer(
        texts,
        required_words=required_words(args.env),
        vocab_size=args.vocab_size,
        lowercase=args.env in LOWERCASE_ENVS,
        separate_spaces=args.env in SEPARATE_SPACES_ENVS,
        atomic_pieces=ATOMIC_PIECES.get(args.env, ()) if atomic_pieces is None else atomic_pieces,
        implicit_spaces=args.env in IMPLICIT_SPACES_ENVS if implicit_spaces is None else implicit_spaces,
    )


def make_model(args: argparse.Namespace, tokenizer):
    from sdar_trl.testing import build_tiny_model

    return build_tiny_model(
        tokenizer,
        architecture="llama",
        hidden_size=args.hidden_size,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        intermediate_size=args.intermediate_size,
        max_position_embeddings=2048,
        seed=args.seed,
    )


def batches(encoded: list[tuple[list[int], list[int]]], batch_size: int, rng: random.Random):
    """Endless length-bucketed batches: shuffle, cut into chunks of 50 batches, sort each chunk by length."""
    order = list(range(len(encoded)))
    while True:
        rng.shuffle(order)
        chunk = batch_size * 50
        for start in range(0, len(order), chunk):
            part = sorted(order[start : start + chunk], key=lambda i: len(encoded[i][0]) + len(encoded[i][1]))
            groups = [part[k : k + batch_size] for k in range(0, len(part), batch_size)]
            rng.shuffle(groups)
            yield from groups


def collate(encoded, indices, pad_id: int, prompt_weight: float) -> dict[str, torch.Tensor]:
    rows = [encoded[i][0] + encoded[i][1] for i in indices]
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)  # (B, T) right-padded
    attention = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
    weights = torch.zeros((len(rows), width), dtype=torch.float32)  # (B, T) loss weight of predicting token t
    for row, i in enumerate(indices):
        prompt, completion = encoded[i]
        n = len(prompt) + len(completion)
        input_ids[row, :n] = torch.tensor(prompt + completion)
        attention[row, :n] = 1
        weights[row, 1 : len(prompt)] = prompt_weight
        weights[row, len(prompt) : n] = 1.0
    return {"input_ids": input_ids, "attention_mask": attention, "weights": weights}


class CopyTask:
    """Synthetic batches that teach a small model to copy multi-token strings out of its prompt.

    `repeat`: a random token string, then the same string again; the loss covers the repeat after its first token.
    `recall`: eight `key = value` pairs of the environment's own words (names of one or two words), then one key
    again; the loss covers its value. The first token of the value is only predictable by matching the key, which
    is what an agent does when it answers with the name a passage gives for the entity it asked about.
    """

    def __init__(self, mode: str, tokenizer, words: list[str], first_id: int, seed: int) -> None:
        self.mode, self.tokenizer, self.words, self.first_id = mode, tokenizer, words, first_id
        self.generator = torch.Generator().manual_seed(seed)
        self.rng = random.Random(seed)

    def loss(self, model) -> torch.Tensor:
        if self.mode == "repeat":
            return self._repeat_loss(model)
        return self._recall_loss(model)

    def _repeat_loss(self, model) -> torch.Tensor:
        rows, length = COPY_BATCH
        vocab = model.get_input_embeddings().num_embeddings
        x = torch.randint(self.first_id, vocab, (rows, length), generator=self.generator)  # (B, L)
        ids = torch.cat([x, x], dim=1)  # (B, 2L)
        logits = model(input_ids=ids).logits[:, length:-1]  # (B, L-1, V) predicting ids[:, L+1:]
        return torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), ids[:, length + 1 :].reshape(-1))

    def _name(self) -> str:
        return " ".join(self.rng.sample(self.words, self.rng.choice((1, 2))))

    def _recall_loss(self, model) -> torch.Tensor:
        rows, _ = COPY_BATCH
        encoded = []
        for _ in range(rows):
            pairs = [(self._name(), self._name()) for _ in range(8)]
            key, value = self.rng.choice(pairs)
            prompt = "; ".join(f"{k} = {v}" for k, v in pairs) + f". {key} ="
            prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
            target_ids = self.tokenizer(f" {value}.", add_special_tokens=False)["input_ids"]
            encoded.append((prompt_ids, target_ids))
        width = max(len(p) + len(t) for p, t in encoded)
        ids = torch.zeros((rows, width), dtype=torch.long)  # (B, T) right-padded
        attention = torch.zeros((rows, width), dtype=torch.long)  # (B, T)
        labels = torch.full((rows, width), -100, dtype=torch.long)  # (B, T) the value's tokens only
        for row, (p, t) in enumerate(encoded):
            ids[row, : len(p) + len(t)] = torch.tensor(p + t)
            attention[row, : len(p) + len(t)] = 1
            labels[row, len(p) : len(p) + len(t)] = torch.tensor(t)
        logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1]  # (B, T-1, V)
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
        )


def copy_words(rows: list[dict[str, Any]]) -> list[str]:
    """The distinct words of four or more letters in the SFT prompts (the environment's names and vocabulary)."""
    words: set[str] = set()
    for row in rows:
        words.update(re.findall(r"[A-Za-z]{4,}", row["prompt"]))
    return sorted(words)


def copy_warmup(args: argparse.Namespace, model, task: CopyTask) -> dict[str, Any]:
    """`args.copy_steps` steps on the copy task alone (constant learning rate after a short warm-up).

    The warm-up has its own AdamW, dropped when it returns: `train` starts a fresh one, so its moments are not carried
    into SFT. Their estimates describe the copy task's gradients, not the SFT loss's, and a fresh optimizer gives the
    SFT stage the same warm-up and schedule with or without this warm-up (the shipped starters were built so).
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, betas=(0.9, 0.95), weight_decay=0.01)
    model.train()
    start, losses = time.perf_counter(), []
    for step in range(args.copy_steps):
        for group in optimizer.param_groups:
            group["lr"] = args.learning_rate * min(1.0, (step + 1) / max(1, args.warmup_steps))
        loss = task.loss(model)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if (step + 1) % 100 == 0:
            print(f"copy step {step + 1} {time.perf_counter() - start:.0f}s loss {sum(losses) / len(losses):.3f}")
            losses = []
    return {"steps": args.copy_steps, "seconds": round(time.perf_counter() - start, 1), "final_loss": loss.item()}


def train(args: argparse.Namespace, model, encoded, pad_id: int, task: CopyTask | None = None) -> dict[str, Any]:
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, betas=(0.9, 0.95), weight_decay=0.01)
    budget = args.minutes * 60.0
    # The schedule follows --max_steps, so a build is the same whatever the machine's speed; without it (a quick
    # exploration) the total is estimated from the first 20 steps' speed and the result depends on the machine.
    expected = args.max_steps or None
    model.train()
    start, step, log, losses = time.perf_counter(), 0, [], []
    for indices in batches(encoded, args.batch_size, rng):
        batch = collate(encoded, indices, pad_id, args.prompt_loss_weight)
        if expected is None and step == 20:
            per_step = (time.perf_counter() - start) / 20
            expected = max(21, int(budget / per_step))
        total = expected or 10**9
        warm = min(1.0, (step + 1) / max(1, args.warmup_steps))
        progress = min(1.0, step / total)
        lr = args.learning_rate * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        for group in optimizer.param_groups:
            group["lr"] = lr
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (B, T, V)
        targets = batch["input_ids"][:, 1:]  # (B, T-1)
        weights = batch["weights"][:, 1:]  # (B, T-1)
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
        ).view_as(targets)  # (B, T-1)
        completion = (weights == 1.0).float()  # (B, T-1)
        prompt = weights.lt(1.0).float() * weights.gt(0).float()  # (B, T-1)
        completion_loss = (nll * completion).sum() / completion.sum().clamp(min=1)
        prompt_loss = (nll * prompt).sum() / prompt.sum().clamp(min=1)
        loss = completion_loss + args.prompt_loss_weight * prompt_loss
        if task is not None and args.copy_weight > 0:
            loss = loss + args.copy_weight * task.loss(model)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        losses.append((completion_loss.item(), prompt_loss.item()))
        elapsed = time.perf_counter() - start
        if step % 100 == 0:
            c = sum(x for x, _ in losses) / len(losses)
            p = sum(y for _, y in losses) / len(losses)
            log.append({"step": step, "seconds": round(elapsed, 1), "completion_loss": c, "prompt_loss": p, "lr": lr})
            print(f"step {step} {elapsed:.0f}s completion {c:.3f} prompt {p:.3f} lr {lr:.2e}", flush=True)
            losses = []
        if elapsed >= budget or (args.max_steps and step >= args.max_steps):
            break
    model.eval()
    return {"steps": step, "seconds": round(time.perf_counter() - start, 1), "log": log}


def evaluate(args: argparse.Namespace, model, tokenizer) -> dict[str, Any]:
    """`sdar_trl.evaluate.evaluate_model` on the held-out split, once per context source (the student, the teacher)."""
    from sdar_trl.evaluate import evaluate_model

    _, eval_split = env_settings(args.env)
    eval_split = args.eval_split or eval_split
    results, temperature = {}, None
    for source in [s for s in args.eval_sources.split(",") if s]:
        result = evaluate_model(
            model,
            tokenizer,
            args.env,
            split=eval_split,
            tasks=args.eval_tasks or None,
            first_seed=args.eval_first_seed,
            privileged_context_source=source,
            batch_size=args.eval_batch_size,
            max_new_tokens=MAX_NEW_TOKENS,
            seed=args.seed,
        )
        keep = ("success", "success_ci95", "successes", "tasks", "valid_action_rate", "mean_steps", "score")
        results[source] = {key: result[key] for key in keep}
        results[source]["success_by_type"] = result["success_by_type"]
        results[source]["seconds"] = result["seconds"]
        temperature = result["temperature"]
        print(f"eval {args.env} {eval_split} context={source}: {json.dumps(results[source])}", flush=True)
    return {"split": eval_split, "first_seed": args.eval_first_seed, "temperature": temperature, "by_context": results}


def earlier_stages(init_from: Path | None) -> list[dict[str, Any]]:
    """The build settings of every stage before this one (oldest first), read from `init_from`'s metrics.json."""
    if init_from is None or not (init_from / "metrics.json").is_file():
        return []
    previous = json.loads((init_from / "metrics.json").read_text(encoding="utf-8"))
    return [*previous.get("build_chain", []), previous["build"]]


def parse_recipe_args(argv: list[str]) -> argparse.Namespace:
    """The options of `--recipe <env>`; a per-stage option among them is an error (the recipe fixes those)."""
    parser = argparse.ArgumentParser(
        prog="build_micro.py",
        description="Build a micro starter with all its stages (RECIPES), then its closing evaluation.",
        allow_abbrev=False,
    )
    parser.add_argument("--recipe", required=True, help=f"the environment: {', '.join(RECIPES)}")
    parser.add_argument(
        "--work_dir",
        type=Path,
        default=None,
        help=f"where the stages before the last one write their models, and every stage its marker (default: "
        f"{DEFAULT_WORK_DIR}/<env>)",
    )
    parser.add_argument("--output_dir", type=Path, default=None, help="the final model (default: the package's)")
    parser.add_argument("--dry_run", action="store_true", help="print the stages' commands and exit")
    args, rest = parser.parse_known_args(argv)
    if args.recipe not in RECIPES:
        parser.error(
            f"--recipe {args.recipe!r}: no build recipe for it; expected one of {', '.join(RECIPES)} (the micro "
            f"starters' environments). A new environment is built stage by stage with --env."
        )
    if rest:
        parser.error(
            f"--recipe {args.recipe} runs fixed stages, but got the per-stage option(s) {' '.join(rest)}. Drop them "
            f"(a recipe run takes only {', '.join(RECIPE_OPTIONS)}), or run the stages yourself: --dry_run prints "
            f"their commands."
        )
    if args.work_dir is None:
        args.work_dir = DEFAULT_WORK_DIR / args.recipe
    return args


def stage_commands(recipe: Recipe, work_dir: Path, output_dir: Path | None) -> list[tuple[Stage, list[str], Path]]:
    """Each stage with its arguments to this script and the directory its model ends up in.

    The last training stage (and the closing evaluation) use `output_dir`, or no `--output_dir` at all when it is
    None (this script's default, the package's `micro/<env>/`), as the documented commands do.
    """
    from sdar_trl.starter.load import MICRO_PATH

    training = [stage for stage in recipe.stages if not stage.eval_only]
    final = output_dir if output_dir is not None else MICRO_PATH / recipe.env
    where: dict[str, Path] = {}
    commands = []
    for stage in recipe.stages:
        last = stage.eval_only or stage is training[-1]
        argv = ["--env", recipe.env, *(() if stage.eval_only else recipe.shared), *stage.args]
        if stage.init_from is not None:
            if stage.init_from not in where:
                raise ValueError(
                    f"recipe {recipe.env}: stage {stage.name!r} continues {stage.init_from!r}, which is not an "
                    f"earlier stage ({', '.join(where) or 'none'}); list the stages in the order they run."
                )
            argv += ["--init_from", str(where[stage.init_from])]
        out = final if last else work_dir / stage.name
        if not last or output_dir is not None:
            argv += ["--output_dir", str(out)]
        where[stage.name] = out
        commands.append((stage, argv, out))
    return commands


def shell_line(argv: list[str], width: int = 110) -> str:
    """`python scripts/build_micro.py <argv>` for a shell, cut with backslashes between options past `width`."""
    groups: list[str] = []
    for token in argv:
        if token.startswith("--") or not groups:
            groups.append(shlex.quote(token))
        else:
            groups[-1] += " " + shlex.quote(token)
    lines, line = [], "python scripts/build_micro.py"
    for group in groups:
        if len(line) + 1 + len(group) > width:
            lines.append(line + " \\")
            line = "    " + group
        else:
            line += " " + group
    return "\n".join([*lines, line])


def dry_run_text(recipe: Recipe, work_dir: Path, output_dir: Path | None) -> str:
    """What --dry_run prints (and docs/starter.md shows): a comment line and the command of every stage."""
    text = f"# {recipe.env}: {recipe.summary}\n"
    for stage, argv, _ in stage_commands(recipe, work_dir, output_dir):
        text += f"# {stage.name}: {stage.note}\n{shell_line(argv)}\n"
    return text


def model_digest(directory: Path) -> str | None:
    """SHA-256 over a model directory's weights, config and tokenizer; None when one of them is missing."""
    digest = hashlib.sha256()
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        path = directory / name
        if not path.is_file():
            return None
        digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def file_digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def stage_state(argv: list[str], init_from: Path | None, output: Path, eval_only: bool) -> dict[str, Any]:
    """What a finished stage's marker records: a stage is finished when all of it still holds."""
    return {
        "argv": argv,
        # The model it started from (an evaluation's is the one it measures): when an earlier stage is rebuilt
        # differently, the later ones run again.
        "input": model_digest(output if eval_only else init_from) if eval_only or init_from else None,
        # What it wrote: replaced or half-written files run it again. An evaluation writes only metrics.json, which a
        # rerun of the stage before it overwrites (with that stage's own measurement): then it runs again too.
        "output": file_digest(output / "metrics.json") if eval_only else model_digest(output),
    }


def read_marker(path: Path) -> dict[str, Any] | None:
    """A marker's recorded state (as `stage_state` returns it); None for one that is not a marker of this script."""
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(recorded, dict):
        return None
    return {key: recorded.get(key) for key in ("argv", "input", "output")}


def unfinished(output: Path) -> str | None:
    """Why the training stage that wrote `output` (and exited 0) did not build the recipe's model, or None.

    A stage stopped by its wall-clock cap (`--minutes`) before `--max_steps` is not the recipe's model: the
    learning-rate schedule follows --max_steps, so only a machine fast enough builds the documented files.
    """
    path = output / "metrics.json"
    if not path.is_file():
        return f"wrote no {path}"
    metrics = json.loads(path.read_text(encoding="utf-8"))
    steps, planned = metrics["training"]["steps"], metrics["build"]["max_steps"]
    if planned and steps < planned:
        return (
            f"stopped at its --minutes wall-clock cap after {steps:,} of {planned:,} steps (a slow or busy machine; "
            f"run the recipe where a stage fits in the cap, docs/starter.md gives each stage's time on one core, or "
            f"run this stage's command with a larger --minutes and continue by hand)"
        )
    return None


def duration(seconds: float) -> str:
    """'12 s', '25 min 3 s'."""
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def run_recipe(recipe: Recipe, work_dir: Path, output_dir: Path | None) -> int:
    """Run the recipe's stages in order, each as `python build_micro.py <argv>` in a process of its own (the
    documented command itself, so a recipe build is the same as running the stages by hand).

    A stage is finished when `<work_dir>/<stage>.done.json`, written after the stage's process exited 0, records the
    same arguments, the same input model and the model its output directory holds now; finished stages are skipped.
    The first failing stage stops the chain and its exit code is returned.
    """
    commands = stage_commands(recipe, work_dir, output_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    print(f"recipe {recipe.env}: {len(commands)} stages, work_dir {work_dir} ({recipe.summary})", flush=True)
    outputs = {stage.name: out for stage, _, out in commands}
    times: list[tuple[str, str]] = []
    for number, (stage, argv, out) in enumerate(commands, 1):
        init_from = outputs[stage.init_from] if stage.init_from else None
        marker = work_dir / f"{stage.name}.done.json"
        header = f"[{number}/{len(commands)}] {stage.name}"
        if marker.is_file():
            if read_marker(marker) == stage_state(argv, init_from, out, stage.eval_only):
                print(f"{header}: finished earlier ({marker}), skipped", flush=True)
                times.append((stage.name, "skipped"))
                continue
            marker.unlink()  # stale: another recipe, another input, or its output was replaced
        print(f"{header}: {stage.note}\n{shell_line(argv)}", flush=True)
        start = time.perf_counter()
        completed = subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv], check=False)
        seconds = time.perf_counter() - start
        if completed.returncode != 0:
            print(
                f"{header} failed with exit code {completed.returncode} after {duration(seconds)}; the chain stops "
                f"here. Fix the cause and run the same command again: the finished stages are skipped.",
                file=sys.stderr,
                flush=True,
            )
            return completed.returncode
        reason = None if stage.eval_only else unfinished(out)
        if reason is not None:
            print(
                f"{header} {reason}: its model is not the recipe's, and the chain stops here.",
                file=sys.stderr,
                flush=True,
            )
            return 1
        state = stage_state(argv, init_from, out, stage.eval_only)
        # Written to a temporary name and renamed: a marker is either whole or absent.
        partial = marker.with_suffix(".partial")
        partial.write_text(json.dumps({**state, "seconds": round(seconds, 1)}, indent=1) + "\n", encoding="utf-8")
        partial.replace(marker)
        print(f"{header} done in {duration(seconds)}", flush=True)
        times.append((stage.name, duration(seconds)))
    print("recipe " + recipe.env + " done: " + ", ".join(f"{name} {took}" for name, took in times), flush=True)
    return 0


def recipe_main(argv: list[str]) -> int:
    args = parse_recipe_args(argv)
    recipe = RECIPES[args.recipe]
    if args.dry_run:
        print(dry_run_text(recipe, args.work_dir, args.output_dir), end="")
        return 0
    return run_recipe(recipe, args.work_dir, args.output_dir)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(token == "--recipe" or token.startswith("--recipe=") for token in argv):
        return recipe_main(argv)
    for token in argv:
        if token.split("=", 1)[0] in ("--work_dir", "--dry_run"):
            raise SystemExit(
                f"{token} goes with --recipe <env> (a whole build); a single stage (--env) has no work_dir or dry run."
            )
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sdar_trl.starter.load import MICRO_PATH

    out = args.output_dir or (MICRO_PATH / args.env)
    if args.eval_only:
        model = AutoModelForCausalLM.from_pretrained(out)
        tokenizer = AutoTokenizer.from_pretrained(out, padding_side="left")
        measured = evaluate(args, model, tokenizer)
        print(json.dumps(measured))
        if args.write_eval and (out / "metrics.json").is_file():
            # A build chosen on unseen train tasks keeps that measurement as "selection"; the held-out one is "eval".
            metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
            if metrics["eval"]["split"] != measured["split"]:
                metrics["selection"] = metrics["eval"]
            metrics["eval"] = measured
            (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
        return 0
    t0 = time.perf_counter()
    rows = collect_rows(args)
    print(f"{len(rows)} rows from {args.episodes} episodes per source ({time.perf_counter() - t0:.0f}s)", flush=True)
    if args.init_from is not None:
        tokenizer = AutoTokenizer.from_pretrained(args.init_from, padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(args.init_from)
    else:
        tokenizer = make_tokenizer(args, rows)
        model = make_model(args, tokenizer)
    encoded = [e for e in render_rows(rows, tokenizer) if len(e[0]) + len(e[1]) <= args.max_length]
    lengths = sorted(len(p) + len(c) for p, c in encoded)
    params = sum(p.numel() for p in model.parameters())
    print(
        f"vocab {len(tokenizer)}, {params:,} parameters, {len(encoded)} rows, tokens per row median "
        f"{lengths[len(lengths) // 2]} max {lengths[-1]}",
        flush=True,
    )
    # The repeat copy task draws random token ids from `first_id` up, above every special token, so that no copied
    # string holds a pad or end-of-sequence token; a tokenizer without special tokens lets it draw from id 0.
    special_ids = tokenizer.all_special_ids
    first_id = max(special_ids) + 1 if special_ids else 0
    task = CopyTask(args.copy_task, tokenizer, copy_words(rows), first_id, args.seed + 1)
    copying = copy_warmup(args, model, task) if args.copy_steps > 0 else None
    training = train(args, model, encoded, tokenizer.pad_token_id, task)
    if copying is not None:
        training["copy_warmup"] = copying
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    metrics = {
        "env": args.env,
        "envs": {args.env: dict(zip(("settings", "eval_split"), env_settings(args.env), strict=True))},
        "build": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        # The earlier stages of a build continued with --init_from, oldest first (their metrics.json "build").
        "build_chain": earlier_stages(args.init_from),
        "parameters": params,
        "vocab_size": len(tokenizer),
        "rows": len(encoded),
        "training": training,
        "torch": torch.__version__,
    }
    metrics["eval"] = evaluate(args, model, tokenizer)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: metrics[k] for k in ("env", "parameters", "vocab_size", "rows", "eval")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
