"""benchmarks/table1.py's presets: the methods and envs of the table, each budget, and one run's config.

`PRESETS` names the training/evaluation budgets (`cpu-small`, `cpu-micro`, `paper`); `build_config` turns a
(env, method, seed) and a preset into the run's `SDARConfig`; `eval_plan` / `held_out_rows` / `model_for` say
which held-out tasks and which model a run uses. The runs themselves are table1_runner.py's.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
from pathlib import Path
from typing import Any

#: Row order and labels of the paper's Table 1 (our preset names → the paper's names).
METHODS: dict[str, str] = {
    "starter": "Starter (no training)",
    "grpo": "GRPO",
    "skill_grpo": "Skill-GRPO",
    "grpo_opsd": "GRPO+OPSD",
    "opsd": "OPSD",
    "skill_sd": "Skill-SD",
    "rlsd": "RLSD",
    "sdar": "SDAR",
}
ENVS = ("alfworld-mini", "webshop-mini", "searchqa-mini")
#: Methods whose loss has the gated distillation term (the ones gate diagnostics can describe).
GATED_METHODS = ("sdar", "grpo_opsd", "opsd")
#: The reference's per-benchmark agent settings (docs/trainer.md's configuration table): history length,
#: invalid-action penalty, KL coefficient, skill library.
ENV_SETTINGS: dict[str, dict[str, Any]] = {
    "alfworld-mini": {"history_length": 2, "invalid_action_penalty": 0.1, "beta": 0.01, "skills": "alfworld"},
    "webshop-mini": {"history_length": 2, "invalid_action_penalty": 0.1, "beta": 0.01, "skills": "webshop"},
    "searchqa-mini": {"history_length": 4, "invalid_action_penalty": 0.01, "beta": 0.001, "skills": "searchqa"},
}


#: The preset fields an env's own budget (`Preset.budget_by_env`) may change.
BUDGET_FIELDS = ("max_steps", "tasks_per_step", "num_generations", "learning_rate", "temperature")


@dataclasses.dataclass(frozen=True)
class Preset:
    """A training/evaluation budget shared by every method of a table."""

    description: str
    max_steps: int  # optimizer steps per run
    tasks_per_step: int  # tasks per rollout (each played num_generations times)
    num_generations: int
    per_device_train_batch_size: int  # trajectories per accumulation slice; also the step samples per chunk
    learning_rate: float
    max_completion_length: int
    eval_tasks: int | None  # None: the whole held-out split
    use_demo_envs: bool  # the starter's demo settings (easy difficulty, short episodes) vs the full benchmark
    context: str  # privileged_context_source of the teacher
    seeds: int = 3
    # First held-out task index: the starter's builds were chosen on held-out tasks 0-23 (docs/starter.md), so the
    # table evaluates on later ones (eval splits wrap around modulo their size).
    eval_first_seed: int = 24
    # The reference's KL coefficient per env (ENV_SETTINGS) or none: with a handful of updates the policy stays next
    # to the starter anyway, and no KL means no reference forward (a sixth of a CPU step).
    kl: bool = True
    gradient_checkpointing: bool = True  # TRL's default; off trades activation memory for a sixth less step time
    bf16: bool = False  # bf16 autocast (fp32 master weights); on a CPU with AVX512-BF16/AMX it halves forward+backward
    # Smaller training chunks where prompts are long (same rollout and loss, less activation memory per backward).
    per_device_train_batch_size_by_env: dict[str, int] = dataclasses.field(default_factory=dict)
    # The model of every run, `{env}` replaced by the env's name (e.g. "micro:{env}"); None: `--model`, or the
    # packaged SmolLM2 starter.
    model: str | None = None
    # A held-out learning curve: every `eval_every` optimizer steps, `curve_eval_tasks` held-out tasks (0: none).
    eval_every: int = 0
    curve_eval_tasks: int = 0
    # Token-level gate diagnostics (docs/gate.md) for the methods with a gated term: split gate curves in every
    # run's curve, and a run report with the token heatmap under <output_dir>/gate/ (table1_runner.run_one).
    gate_diagnostics: bool = False
    # The split of the final evaluation and the curve (None: the env's held-out split). `table1.py --eval_split
    # train --eval_first_seed ...` evaluates on training tasks no run trains on, to choose a budget (see
    # `active_preset`): the held-out split is never used to choose anything.
    eval_split: str | None = None
    # Sampling temperature of the training rollouts (GRPOConfig's `temperature`; evaluation keeps its own 0.4).
    temperature: float = 1.0
    # One env's own training budget (any of BUDGET_FIELDS), where the shared one does not let GRPO learn it; each
    # chosen on training tasks no run trains on (docs/results.md). A command-line override wins over it.
    budget_by_env: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for env_name, budget in self.budget_by_env.items():
            unknown = sorted(set(budget) - set(BUDGET_FIELDS))
            if unknown:
                raise ValueError(
                    f"budget_by_env[{env_name!r}] sets {unknown}: an env's own budget may set only {BUDGET_FIELDS}"
                )

    def batch_size(self, env_name: str) -> int:
        """Step samples per forward/backward chunk (and trajectories per accumulation slice) on `env_name`."""
        return self.per_device_train_batch_size_by_env.get(env_name, self.per_device_train_batch_size)

    def for_env(self, env_name: str) -> Preset:
        """The budget `env_name`'s runs train with: this one, with the env's `budget_by_env` entry applied."""
        return dataclasses.replace(self, **self.budget_by_env.get(env_name, {}))


PRESETS: dict[str, Preset] = {
    # 2-core CPU, the packaged starter: sized so that 8 methods x 3 seeds of searchqa-mini take about an hour
    # (docs/results.md has the measured wall time per env). A step of 8 trajectories takes over a minute there, so
    # this budget shows the pipeline and its timing, not the methods' asymptotic ranking: that is `paper`.
    "cpu-small": Preset(
        description=(
            "packaged starter, demo envs, 2 optimizer steps of 2 tasks x 4 trajectories, no KL, bf16 autocast, "
            "held-out tasks 24-35"
        ),
        max_steps=2,
        tasks_per_step=2,
        num_generations=4,
        per_device_train_batch_size=8,
        learning_rate=5e-5,
        max_completion_length=160,  # the starter's responses are up to ~135 tokens (as examples/_common.py)
        eval_tasks=12,
        use_demo_envs=True,
        # The starter was taught to act on the oracle facts, and its context gain is measured with them alone
        # (docs/starter.md); skills do not change its behaviour and would add ~800 prefix tokens per row.
        context="facts",
        kl=False,
        gradient_checkpointing=False,  # costs 7-12 GB per run at the peak (docs/results.md): --jobs 2 needs ~24 GB
        bf16=True,
        # WebShop prompts (search results, product pages) reach ~1,000 tokens: 8 rows of them took a run past 17 GB
        # and the OOM killer, i.e. ~2 MB of activations per token; 2 rows per chunk need about a quarter of that.
        # ALFWorld's ~400-token rows: 4 per chunk.
        per_device_train_batch_size_by_env={"webshop-mini": 2, "alfworld-mini": 4},
    ),
    # 1 CPU core per run, the micro starters (docs/starter.md): steps of seconds, so that learning curves and
    # 5 seeds fit. The budget (lr, steps, tasks per step) was chosen on alfworld-mini's valid_seen split, never on
    # the held-out valid_unseen (docs/results.md).
    "cpu-micro": Preset(
        description=(
            "micro starters, demo envs, 100 optimizer steps of 8 tasks x 4 trajectories, lr 3e-4, no KL, fp32, "
            "teacher context: facts; held-out curve every 10 steps (50 tasks), final evaluation on the whole split"
        ),
        max_steps=100,
        # On valid_seen (140 tasks), 30 GRPO steps of 8 x 4 at lr 3e-4 gained 5 points where 60 steps of 4 x 4
        # lost 1 and lr 1e-3 lost 12 (docs/results.md).
        tasks_per_step=8,
        num_generations=4,
        per_device_train_batch_size=32,
        learning_rate=3e-4,
        max_completion_length=32,  # `<think></think><action>...</action>`: ~12 tokens
        eval_tasks=None,
        use_demo_envs=True,
        # The micro starters gain 20+ points from the oracle facts and nothing from skills, which they never saw.
        context="facts",
        seeds=5,
        eval_first_seed=0,
        kl=False,
        gradient_checkpointing=False,
        model="micro:{env}",
        eval_every=10,
        curve_eval_tasks=50,
        gate_diagnostics=True,
        # searchqa-mini: at 8 x 4 GRPO gained nothing clear; 16 x 8 for 300 steps (+16.0 points, +8.5 to +23.0) was
        # the first budget to meet the validity bar on 200 training tasks no run trains on, but those were two
        # worlds: on one question per world it, 500 steps and lr 5e-4 all stay under +15 (docs/results.md).
        budget_by_env={"searchqa-mini": {"max_steps": 300, "tasks_per_step": 16, "num_generations": 8}},
    ),
    # The reference hyperparameters (docs/methods.md, "Reproducing each paper row") for an instruct model on a GPU.
    "paper": Preset(
        description="reference hyperparameters: 150 steps of 16 tasks x 8 trajectories, lr 1e-6, full held-out split",
        max_steps=150,
        tasks_per_step=16,
        num_generations=8,
        per_device_train_batch_size=8,
        learning_rate=1e-6,
        max_completion_length=512,
        eval_tasks=None,
        use_demo_envs=False,
        context="skills",
        eval_first_seed=0,  # the whole split
    ),
}
_FULL_EPISODE_STEPS = {"alfworld-mini": 50, "webshop-mini": 15, "searchqa-mini": 4}
_HELD_OUT_SPLIT = {"alfworld-mini": "valid_unseen", "webshop-mini": "test", "searchqa-mini": "test"}
_SPLIT_SIZE = {"alfworld-mini": 134, "webshop-mini": 500, "searchqa-mini": 500}


def env_kwargs(env_name: str, preset: Preset, split: str) -> dict[str, Any]:
    from sdar_trl.starter import DEMO_ENVS

    if preset.use_demo_envs:
        kwargs = {k: v for k, v in DEMO_ENVS[env_name].items() if k != "eval_split"}
    else:
        kwargs = {"max_episode_steps": _FULL_EPISODE_STEPS[env_name]}
    return {**kwargs, "split": split}


def env_budgets(preset: Preset) -> str:
    """The envs' own budgets in words for a table's header (empty when every env trains with the shared one)."""
    parts = [
        f"{env_name}: " + ", ".join(f"{name} {value}" for name, value in budget.items())
        for env_name, budget in preset.budget_by_env.items()
        if budget
    ]
    return f"; own budget on {'; '.join(parts)}" if parts else ""


def build_config(
    env_name: str, method: str, seed: int, preset: Preset, options: argparse.Namespace, output_dir: str
) -> Any:
    """The `SDARConfig` of one (env, method, seed) run: the preset's budget, the env's reference settings."""
    import torch

    from sdar_trl import SDARConfig
    from sdar_trl.config import CHECKPOINTING_FIELD

    settings = ENV_SETTINGS[env_name]
    preset = preset.for_env(env_name)
    trajectories = preset.tasks_per_step * preset.num_generations  # one rollout per optimizer step
    # A smaller rollout (a --tasks_per_step override) is one chunk: a chunk larger than the rollout would never fill,
    # and the trainer would stop at step 0.
    batch_size = min(preset.batch_size(env_name), trajectories)
    if trajectories % batch_size:
        raise ValueError(
            f"{preset.tasks_per_step} tasks x {preset.num_generations} trajectories = {trajectories} per step is not "
            f"a multiple of the preset's {batch_size} trajectories per chunk on {env_name}: choose --tasks_per_step "
            f"and --num_generations whose product is a multiple of {batch_size} (or smaller than it)"
        )
    return SDARConfig(
        output_dir=output_dir,
        method="grpo" if method == "starter" else method,
        seed=seed,
        max_steps=options.max_steps if options.max_steps is not None else preset.max_steps,
        per_device_train_batch_size=batch_size,
        # One rollout of tasks_per_step x num_generations trajectories per optimizer step.
        gradient_accumulation_steps=trajectories // batch_size,
        num_generations=preset.num_generations,
        max_completion_length=preset.max_completion_length,
        temperature=preset.temperature,
        learning_rate=preset.learning_rate,
        lr_scheduler_type="constant",
        beta=settings["beta"] if preset.kl else 0.0,
        # Under the name this transformers reads: the deprecated `gradient_checkpointing` warns from 5.23.
        **{CHECKPOINTING_FIELD: preset.gradient_checkpointing},
        history_length=settings["history_length"],
        invalid_action_penalty=settings["invalid_action_penalty"],
        privileged_context_source=options.context or preset.context,
        per_device_eval_batch_size=32,
        # The held-out curve (make_trainer's eval_dataset holds its tasks); the final evaluation is run_one's.
        eval_strategy="steps" if preset.eval_every else "no",
        eval_steps=preset.eval_every or None,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        bf16=options.bf16,
        # A CPU run stays on the CPU; bf16 there is autocast, which accelerate supports on CPU.
        use_cpu=not torch.cuda.is_available(),
        shuffle_dataset=True,
        # Sensitivity overrides touch SDAR only; None keeps the method's paper default (resolved from `method`).
        distill_coef=options.sdar_distill_coef if method == "sdar" else None,
        gate_beta=options.sdar_gate_beta if method == "sdar" else None,
        gate_diagnostics=preset.gate_diagnostics and method in GATED_METHODS,
    )


def eval_plan(env_name: str, preset: Preset, options: argparse.Namespace) -> tuple[str, int]:
    """The held-out split a run is evaluated on and how many of its tasks (from `preset.eval_first_seed` on)."""
    from sdar_trl.starter import DEMO_ENVS

    split = DEMO_ENVS[env_name]["eval_split"] if preset.use_demo_envs else _HELD_OUT_SPLIT[env_name]
    if preset.eval_split is not None:
        split = preset.eval_split
    tasks = options.eval_tasks or preset.eval_tasks or _SPLIT_SIZE.get(env_name)
    if split == "train" and not (options.eval_tasks or preset.eval_tasks):
        raise ValueError(f"--eval_split train on {env_name} needs --eval_tasks N (the train split has no fixed size)")
    return split, tasks


def model_for(env_name: str, preset: Preset, options: argparse.Namespace) -> str:
    """The model directory (or hub id) of `env_name`'s runs: `--model`, else the preset's per-env model."""
    if options.model is not None:
        return options.model
    if preset.model is None:
        raise ValueError(f"no --model and preset {options.preset!r} names none")
    from sdar_trl.starter import resolve_model_name

    return resolve_model_name(preset.model.format(env=env_name))


def model_label(env_name: str, preset: Preset, options: argparse.Namespace) -> str:
    """What a run records as its model: `--model` as given, else the preset's short name (`micro:<env>`), not the
    directory it resolves to on this machine."""
    if options.model is not None:
        return options.model
    if preset.model is None:
        raise ValueError(f"no --model and preset {options.preset!r} names none")
    return preset.model.format(env=env_name)


def model_fingerprint(model: str) -> str | None:
    """sha256 of a local model directory's weights and tokenizer (`*.safetensors`, `tokenizer.json`: names and
    bytes, in name order), so that a rebuilt starter is told from the one earlier runs used; None for a hub id or
    a directory without them."""
    path = Path(model)
    files = (
        sorted(f for f in path.iterdir() if f.suffix == ".safetensors" or f.name == "tokenizer.json")
        if path.is_dir()
        else []
    )
    if not files:
        return None
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode("utf-8") + b"\0")
        digest.update(file.read_bytes())
    return digest.hexdigest()


def model_conflict(runs: list[dict[str, Any]], env_name: str, fingerprint: str | None) -> str | None:
    """Why `env_name`'s recorded runs cannot share a table with new runs from a model with `fingerprint` (they
    were made from other weights or another tokenizer), or None. Runs that recorded no fingerprint are taken at
    their word."""
    other = [r for r in runs if r["env"] == env_name and r.get("model_sha256") not in (None, fingerprint)]
    if not other:
        return None
    recorded = sorted({r["model_sha256"][:12] for r in other})
    now = fingerprint[:12] if fingerprint else "none (a hub id)"
    return (
        f"table1.json holds {len(other)} {env_name} run(s) made from model files with sha256 {', '.join(recorded)}, "
        f"but {other[0].get('model', 'the model')} is now {now} (rebuilt since?): one table compares methods "
        f"trained from one starter. Give this call its own --output_dir, or --fresh, or delete the {env_name} runs "
        "from table1.json to redo them"
    )


#: Seed stride of budget-selection tasks (`--eval_split train`). searchqa-mini's train task i is question i % 100 of
#: world i // 100, and success hangs on copying each world's invented names: 200 consecutive tasks are 2 worlds, a
#: sample far smaller than its 200 tasks suggest. A stride of 101 takes one question from each of 200 worlds (and
#: not always the same question of each).
SELECTION_STRIDE = {"searchqa-mini": 101}


def held_out_rows(env_name: str, preset: Preset, options: argparse.Namespace) -> list[dict[str, int]]:
    """The held-out task rows of the final evaluation (the same for every run of the env); on the train split
    (budget selection), `SELECTION_STRIDE` apart."""
    split, eval_tasks = eval_plan(env_name, preset, options)
    stride = SELECTION_STRIDE.get(env_name, 1) if split == "train" else 1
    return [{"seed": preset.eval_first_seed + i * stride} for i in range(eval_tasks)]


#: The preset fields `table1.py` may override for one call, to choose a budget on training tasks.
OVERRIDABLE_FIELDS = (
    "tasks_per_step",
    "num_generations",
    "learning_rate",
    "temperature",
    "eval_split",
    "eval_first_seed",
)
#: Training tasks from this seed on are played by no run: starter builds choose on seeds 10,000,000+
#: (docs/starter.md) and run `seed` trains on 1,000,000 × (seed + 1) + i (table1_runner.make_trainer).
FIRST_SELECTION_SEED = 20_000_000


def active_preset(options: argparse.Namespace) -> Preset:
    """`options.preset`'s budget with this call's overrides (`OVERRIDABLE_FIELDS` given on the command line).

    Evaluating on the train split is only allowed from `FIRST_SELECTION_SEED` on, so that a budget search never
    evaluates on tasks a run trained on, nor on the held-out split a table reports.
    """
    preset = PRESETS[options.preset]
    changes = {name: getattr(options, name) for name in OVERRIDABLE_FIELDS if getattr(options, name, None) is not None}
    if changes.get("eval_split") == "train" and changes.get("eval_first_seed", 0) < FIRST_SELECTION_SEED:
        raise ValueError(
            f"--eval_split train evaluates on training tasks: pass --eval_first_seed >= {FIRST_SELECTION_SEED:,} "
            f"(got {changes.get('eval_first_seed')}), seeds no run trains on and no starter build chose on"
        )
    # The command line wins over an env's own budget too (`--max_steps` is read from `options` by build_config).
    overridden = {*changes, *(["max_steps"] if getattr(options, "max_steps", None) is not None else [])}
    budget_by_env = {
        env_name: {name: value for name, value in budget.items() if name not in overridden}
        for env_name, budget in preset.budget_by_env.items()
    }
    return dataclasses.replace(preset, **changes, budget_by_env=budget_by_env)
