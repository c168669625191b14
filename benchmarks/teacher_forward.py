"""The teacher forward alone: shared-prefix cache vs one full forward per row, on real expert step samples.

Builds one agent-mode batch from expert episodes of a mini environment (`--tasks` tasks, each episode
repeated `--copies` times, as a GRPO group repeats a task), gives every row the teacher prefix SDARTrainer
builds (header + skills + facts), and times, with `OMP_NUM_THREADS=1` and no gradients:

- full: `prefix + prompt + completion` per row (`SDARConfig(teacher_prefix_cache=False)`);
- prefix only: each distinct prefix once, then `prompt + completion` per row on its key/value cache;
- cached (the default): the prefix plus the prompt tokens its rows share once, and once more the whole prompt
  of rows whose prompts are identical, then only what is each row's own (`sdar_trl.teacher.prefix_cached_logps`).
  The expert copies of a task are identical episodes, so their prompts are shared in full: the best case for
  this cache (real rollouts diverge after the first step; benchmarks/step_cost.py measures those);
- student: `prompt + completion` per row, the forward the teacher's cost adds to.

The four are interleaved `--repeats` times and their medians reported. It also checks that both caches and the
full forward give the same log-probs. Prints a human table on stderr and one JSON line on stdout with the keys
`cached_over_full`, `cached_over_student`, `cached_over_prefix_only`, `full_s`, `prefix_only_s`, `cached_s`,
`student_s`, `max_abs_logp_diff`:

    python benchmarks/teacher_forward.py                              # the packaged starter, searchqa-mini
    python benchmarks/teacher_forward.py --env alfworld-mini --tasks 2 --copies 4
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable

from _common import resolve_model

os.environ["OMP_NUM_THREADS"] = "1"  # comparable timings, as benchmarks/step_cost.py
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="searchqa-mini", help="a mini environment (demo settings of the starter)")
    parser.add_argument("--model", default=None, help="model path or hub id (default: the packaged starter)")
    parser.add_argument("--tasks", type=int, default=2, help="tasks (distinct teacher prefixes)")
    parser.add_argument("--copies", type=int, default=4, help="rows per task: each expert episode repeated")
    parser.add_argument("--context", default="skills+facts", help="the teacher's privileged_context_source")
    parser.add_argument("--batch_size", type=int, default=8, help="rows per forward")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    for name in ("tasks", "copies", "batch_size", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    return args


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    options.model = resolve_model(options.model)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sdar_trl import SDARConfig
    from sdar_trl._compat import add_fused_lm_head, compact_fused_log_probs_on_cpu
    from sdar_trl.environments import make_env
    from sdar_trl.sft import SKILL_BANKS, collect_expert_steps, render_context
    from sdar_trl.skills import SkillBank
    from sdar_trl.starter import DEMO_ENVS
    from sdar_trl.teacher import render_teacher_prefix, shared_prefix_groups, teacher_logps

    torch.set_num_threads(1)
    compact_fused_log_probs_on_cpu()  # as SDARTrainer does on CPU
    tokenizer = AutoTokenizer.from_pretrained(options.model, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(options.model, dtype=torch.float32).eval()
    add_fused_lm_head(model)
    env_kwargs = {k: v for k, v in DEMO_ENVS[options.env].items() if k != "eval_split"}
    env = make_env(options.env, split="train", **env_kwargs)
    bank = SkillBank.from_package(SKILL_BANKS[options.env])
    steps = [
        step
        for seed in range(options.tasks)
        for _ in range(options.copies)
        for step in collect_expert_steps(env, options.env, [seed], context_source="facts")
    ]
    header = SDARConfig.__dataclass_fields__["teacher_context_header"].default
    prefixes = [
        tokenizer(
            render_teacher_prefix(
                render_context(options.context, skills=bank.render(s.task_type), facts=s.context), header=header
            ),
            add_special_tokens=False,
        )["input_ids"]
        for s in steps
    ]
    prompts = tokenizer(
        [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": s.prompt}], add_generation_prompt=True, tokenize=False
            )
            for s in steps
        ],
        add_special_tokens=False,
        padding=True,
        return_tensors="pt",
    )
    completions = tokenizer(
        [s.response + tokenizer.eos_token for s in steps],
        add_special_tokens=False,
        padding=True,
        padding_side="right",
        return_tensors="pt",
    )
    prompt_ids, prompt_mask = prompts["input_ids"], prompts["attention_mask"]  # (B, P) each
    completion_ids, completion_mask = completions["input_ids"], completions["attention_mask"]  # (B, C) each
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    groups, rest = shared_prefix_groups(prefixes, prompt_mask.sum(dim=1).tolist())

    def arm(
        row_prefixes: list[list[int]], use_prefix_cache: bool, share_prompt_starts: bool = True
    ) -> Callable[[], torch.Tensor]:
        # The trainer's own teacher path (sdar_trl.teacher.teacher_logps); the trainer scores the full forward
        # through TRL's log-prob forward, which runs the same fused-head forward as fused_head_logps.
        return lambda: teacher_logps(
            model,
            row_prefixes,
            prompt_ids,
            prompt_mask,
            completion_ids,
            completion_mask,
            pad_token_id=pad,
            batch_size=options.batch_size,
            use_prefix_cache=use_prefix_cache,
            share_prompt_starts=share_prompt_starts,
        )

    # The student arm: no prefix, so every row takes the plain forward over prompt + completion.
    full, cached, student = arm(prefixes, False), arm(prefixes, True), arm([[] for _ in prefixes], False)

    prefix_only = arm(prefixes, True, share_prompt_starts=False)
    arms: dict[str, Callable[[], torch.Tensor]] = {
        "full": full,
        "prefix_only": prefix_only,
        "cached": cached,
        "student": student,
    }
    times: dict[str, list[float]] = {name: [] for name in arms}
    outputs: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for _ in range(options.repeats):
            for name, arm in arms.items():
                start = time.perf_counter()
                outputs[name] = arm()
                times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(values) for name, values in times.items()}
    mask = completion_mask.bool()
    record = {
        "benchmark": "teacher_forward",
        "env": options.env,
        "model": options.model,
        "rows": len(steps),
        "distinct_prefixes": len(groups) + int(rest.numel()),
        "prefix_tokens_mean": statistics.mean(len(p) for p in prefixes),
        "prompt_tokens_mean": float(prompt_mask.sum(1).float().mean()),
        "completion_tokens_mean": float(completion_mask.sum(1).float().mean()),
        "full_s": median["full"],
        "prefix_only_s": median["prefix_only"],
        "cached_s": median["cached"],
        "student_s": median["student"],
        "cached_over_full": median["cached"] / median["full"],
        "cached_over_student": median["cached"] / median["student"],
        "cached_over_prefix_only": median["cached"] / median["prefix_only"],
        "max_abs_logp_diff": max(
            float((outputs[name] - outputs["full"])[mask].abs().max()) for name in ("cached", "prefix_only")
        ),
    }
    print(
        f"{record['rows']} rows, {record['distinct_prefixes']} distinct prefixes; mean tokens: prefix "
        f"{record['prefix_tokens_mean']:.0f}, prompt {record['prompt_tokens_mean']:.0f}, completion "
        f"{record['completion_tokens_mean']:.0f}",
        file=sys.stderr,
    )
    print(f"{'forward (no grad)':<40}{'seconds':>10}{'vs full':>10}", file=sys.stderr)
    for label, key in (
        ("teacher, full forward per row", "full"),
        ("teacher, cache of the prefix only", "prefix_only"),
        ("teacher, cache of prefix + shared prompt", "cached"),
        ("student prompt + completion", "student"),
    ):
        print(f"{label:<40}{median[key]:>10.2f}{median[key] / median['full']:>10.3f}", file=sys.stderr)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
