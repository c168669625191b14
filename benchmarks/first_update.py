"""How far SDAR's distillation term moves Adam's first update away from GRPO's, on the same rollout.

Table 1's `cpu-small` runs make two Adam updates. Adam's first update is `lr · g / (|g| + eps)` per coordinate
(the bias-corrected moments of one gradient), about `lr · sign(g)` whatever the gradient's size, so the
λ-weighted distillation gradient matters wherever it outweighs the policy gradient *in that coordinate*, not
in proportion to λ. This script measures that on one table1 run's first optimizer step:

1. GRPO and SDAR each train one optimizer step from the same model on the same tasks with the same seed, so
   their rollouts, step samples and advantages are identical (checked: same rollout success);
2. the gradient each would hand to the optimizer is kept (`on_pre_optimizer_step`);
3. `compare_updates` reports the distillation gradient's norm relative to GRPO's, the cosine of the two
   gradients, the share of coordinates whose first Adam update changes sign, and how far the first Adam
   update moves (`‖u_SDAR − u_GRPO‖ / ‖u_GRPO‖`) against the gradient (`‖g_SDAR − g_GRPO‖ / ‖g_GRPO‖`).

One torch thread per run keeps the rollouts bit-identical between calls. Prints a table on stderr and one
JSON line on stdout:

    python benchmarks/first_update.py --env webshop-mini --seed 0   # the packaged starter, ~25 min on a CPU

docs/results.md has the measured numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from typing import Any

import torch
from _common import resolve_model
from table1 import ENVS, PRESETS, make_trainer
from table1 import parse_args as table1_args

#: AdamW's default epsilon (torch and transformers' Trainer).
ADAM_EPS = 1e-8


def compare_updates(grpo_grad: torch.Tensor, sdar_grad: torch.Tensor, eps: float = ADAM_EPS) -> dict[str, float]:
    """Compare two flat gradients and the first Adam updates they give (per unit of learning rate).

    Args:
        grpo_grad: (P,) the GRPO gradient.
        sdar_grad: (P,) the SDAR gradient on the same step samples (GRPO's plus λ · the distillation term's).
        eps: Adam's epsilon.

    Returns:
        `distill_over_grpo_norm` (‖g_SDAR − g_GRPO‖ / ‖g_GRPO‖), `cos_grad`, `cos_first_update`,
        `first_update_change` (‖u_SDAR − u_GRPO‖ / ‖u_GRPO‖), `amplification` (the ratio of the last to the
        first), `sign_flip_share` and `distill_dominates_share` (coordinates where |λ·g_D| > |g_GRPO|), each
        over the coordinates where either gradient is non-zero.
    """
    if grpo_grad.shape != sdar_grad.shape or grpo_grad.dim() != 1:
        raise ValueError(
            f"expected two flat gradients of the same length, got shapes {tuple(grpo_grad.shape)} and "
            f"{tuple(sdar_grad.shape)}; flatten and concatenate every trainable parameter's gradient."
        )
    # float64: sums over ~10^8 coordinates drift visibly in float32 (a cosine above 1).
    g0, g1 = grpo_grad.double(), sdar_grad.double()  # (P,) each
    u0, u1 = g0 / (g0.abs() + eps), g1 / (g1.abs() + eps)  # (P,) Adam's bias-corrected first step / lr
    distill = g1 - g0  # (P,) λ · the distillation term's gradient
    live = (g0 != 0) | (g1 != 0)  # (P,) coordinates either loss touches
    count = live.sum().clamp(min=1).double()
    cosine = torch.nn.functional.cosine_similarity
    distill_share = (distill.norm() / g0.norm()).item()
    update_change = ((u1 - u0).norm() / u0.norm()).item()
    return {
        "distill_over_grpo_norm": distill_share,
        "cos_grad": cosine(g0, g1, dim=0).item(),
        "cos_first_update": cosine(u0, u1, dim=0).item(),
        "first_update_change": update_change,
        "amplification": update_change / distill_share if distill_share else float("inf"),
        "sign_flip_share": ((torch.sign(g0) != torch.sign(g1)) & live).sum().item() / count.item(),
        "distill_dominates_share": ((distill.abs() > g0.abs()) & live).sum().item() / count.item(),
    }


def first_step_gradient(env_name: str, method: str, seed: int, model: str) -> tuple[torch.Tensor, dict[str, Any]]:
    """The gradient of a table1 `cpu-small` run's first optimizer step (flat, float32) and that step's log."""
    from transformers import TrainerCallback

    preset = PRESETS["cpu-small"]
    grads: list[torch.Tensor] = []

    class KeepGradient(TrainerCallback):
        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            parts = [p.grad.detach().float().flatten() for p in model.parameters() if p.grad is not None]
            grads.append(torch.cat(parts))  # (P,)

    options = table1_args(["--preset", "cpu-small", "--max_steps", "1", "--model", model])
    with tempfile.TemporaryDirectory() as scratch:
        # The full run's training rows, shuffled by the same seed: its first step plays table1's first step's tasks.
        trainer = make_trainer(
            env_name,
            method,
            seed,
            preset,
            options,
            scratch,
            train_tasks=preset.max_steps * preset.tasks_per_step,
            callbacks=[KeepGradient()],
        )
        trainer.train()
        trainer.close_environments()
    log = next(entry for entry in trainer.state.log_history if "env/success" in entry)
    return grads[0], log


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="webshop-mini", choices=ENVS)
    parser.add_argument("--seed", type=int, default=0, help="table1 seed: the tasks and sampling of its first step")
    parser.add_argument("--model", default=None, help="model path or hub id (default: the packaged starter)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    model = resolve_model(options.model)
    torch.set_num_threads(1)  # the same reduction order in both runs: identical rollouts
    grpo_grad, grpo_log = first_step_gradient(options.env, "grpo", options.seed, model)
    sdar_grad, sdar_log = first_step_gradient(options.env, "sdar", options.seed, model)
    if grpo_log["env/success"] != sdar_log["env/success"]:
        print(
            f"warning: the two rollouts differ (success {grpo_log['env/success']} vs {sdar_log['env/success']}); "
            "the comparison mixes data and method.",
            file=sys.stderr,
        )
    result = compare_updates(grpo_grad, sdar_grad)
    print(f"first optimizer step, {options.env}, seed {options.seed} (SDAR vs GRPO, same rollout)", file=sys.stderr)
    for key, value in result.items():
        print(f"  {key:<26} {value:.4g}", file=sys.stderr)
    record = {"benchmark": "first_update", "env": options.env, "seed": options.seed, **result}
    record["rollout_success"] = grpo_log["env/success"]
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
