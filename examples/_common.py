# ruff: noqa: E402  (the Hugging Face environment variables must be set before transformers/TRL are imported)
"""Shared body of examples/webshop.py, examples/alfworld.py and examples/search_qa.py.

Parses (ExampleArguments, SDARConfig, ModelConfig) with TRL's parser, builds the environment, the task
datasets and the trainer, evaluates before and after training, and writes a run report. The defaults
train the package's offline starter agent on a mini environment in a few minutes on a CPU; any other model gets
the paper's settings for the benchmark (docs/recipes.md). Every default can be overridden in a YAML recipe
(`--config recipes/...yaml`) and on the command line, and the run prints the settings in force first.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _flag_value(argv: list[str], flag: str) -> str | None:
    """The value of `--flag value` or `--flag=value` in `argv` (None when absent)."""
    for index, arg in enumerate(argv):
        if arg == flag:
            return argv[index + 1] if index + 1 < len(argv) else ""
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _recipe_values(argv: list[str]) -> dict[str, Any]:
    """The mapping in the `--config` YAML file of `argv` (empty without one), read as TRL's parser reads it.

    Raises SystemExit naming the file when it is missing or not a YAML mapping.
    """
    import yaml  # a dependency of TRL and transformers; imported before them so the hub variables come first

    if "--config" not in argv:
        return {}
    index = argv.index("--config")
    path = argv[index + 1] if index + 1 < len(argv) else ""
    try:
        with open(path, encoding="utf-8") as file:
            values = yaml.safe_load(file)
    except OSError as error:
        raise SystemExit(f"--config {path!r}: cannot read it ({error}); expected a YAML recipe such as "
                         "recipes/webshop/qwen2.5-7b-instruct.yaml.") from None  # fmt: skip
    if not isinstance(values, dict):
        raise SystemExit(f"--config {path!r} holds a {type(values).__name__}, not a YAML mapping of flag: value.")
    return values


def requested_model(argv: list[str]) -> str | None:
    """The model named by `--model_name_or_path`, else by the `--config` recipe, else None (the packaged starter)."""
    value = _flag_value(argv, "--model_name_or_path")
    if value is None:
        value = _recipe_values(argv).get("model_name_or_path")
    return None if value is None else str(value)


def _local_model_requested(argv: list[str]) -> bool:
    """No model flag (the default is a packaged starter), a starter's short name or a local directory: offline."""
    value = requested_model(argv)
    return value is None or os.path.isdir(value) or value.startswith("micro:") or value == "smollm2"


if _local_model_requested(sys.argv[1:]):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never touch the hub for a model on disk
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import torch
from datasets import Dataset
from transformers import AutoTokenizer, PrinterCallback
from trl import ModelConfig, TrlParser, get_peft_config, get_quantization_config

from sdar_trl import SDARConfig, SDARTrainer
from sdar_trl.callbacks import AgentProgressCallback
from sdar_trl.config import CHECKPOINTING_FIELD, METHOD_PRESETS
from sdar_trl.environments import make_env
from sdar_trl.evaluate import parse_json_object
from sdar_trl.model_card import base_model_name
from sdar_trl.report import write_run_report
from sdar_trl.skills import SkillBank


@dataclass
class ExampleArguments:
    env: str = field(
        default="webshop-mini",
        metadata={
            "help": "Environment name for sdar_trl.environments.make_env (a '-mini' env, an adapter, or 'openenv' "
            'with --env_kwargs \'{"base_url": "http://127.0.0.1:8000"}\' for an OpenEnv server: docs/openenv.md).'
        },
    )
    env_kwargs: str = field(
        default="{}",
        metadata={
            "help": 'JSON keyword arguments for the environment, e.g. \'{"base_url": "http://localhost:3000"}\'.'
        },
    )
    difficulty: str | None = field(
        default=None,
        metadata={
            "help": "Mini environments: difficulty level (default: the starter demo's level with a packaged starter, "
            "the environment's own level with any other model)."
        },
    )
    eval_split: str | None = field(
        default=None, metadata={"help": "Split of the held-out eval tasks (default: the env's test/unseen split)."}
    )
    train_tasks: int = field(default=512, metadata={"help": "Number of training tasks (seeds K..K+N-1)."})
    first_train_seed: int = field(
        default=0,
        metadata={"help": "K: the first training seed (micro starters: 10^6, never seen in their build)."},
    )
    eval_tasks: int = field(default=4, metadata={"help": "Number of held-out eval tasks, played once each."})
    skills: str | None = field(
        default=None, metadata={"help": "Skill-bank JSON file (default: the library shipped for the environment)."}
    )
    skip_eval_before: bool = field(default=False, metadata={"help": "Do not evaluate before training."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Write into an --output_dir that already holds another run's files. Without it, a run never "
            "overwrites another: the default directory gets a numbered suffix, an explicit one is an error."
        },
    )
    cpu_threads: int = field(
        default=0,
        metadata={
            "help": "Torch threads per process when running on CPU (0: this machine's cores divided by the "
            "processes on this node). `accelerate launch` exports OMP_NUM_THREADS=1, which leaves all but one "
            "core idle in a single-process CPU run."
        },
    )


#: Per-script defaults for a CPU demo on the starter model (overridable from the command line). The starter is
#: SmolLM2-135M (LoRA-tuned): on 2 CPU cores a WebShop step sample costs seconds (a ~900-token prompt), so the
#: demo trains one step on one task's pair of trajectories, episodes stop after 6 steps (the expert needs 4-5),
#: and 4 held-out tasks are evaluated before and after (--eval_tasks): 6.5 minutes on a fresh clone (docs/starter.md).
CPU_DEMO_DEFAULTS: dict[str, Any] = {
    "max_steps": 1,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "num_generations": 2,
    "max_steps_per_episode": 6,
    "max_completion_length": 160,  # the starter's responses are up to ~135 tokens (SmolLM2 tokenizer)
    "learning_rate": 2e-5,
    "lr_scheduler_type": "constant",
    # The starter was trained to act on the environment's oracle facts (docs/starter.md), not on skills alone.
    "privileged_context_source": "facts",
    "logging_steps": 1,
    "save_strategy": "no",
    "report_to": "none",
    "disable_tqdm": True,
    "per_device_eval_batch_size": 16,
    "bf16": False,
}


#: Defaults for the micro starters (`micro:<env>`, docs/starter.md): a step of 8 tasks x 4 trajectories costs
#: ~10 s on 2 cores, so the demo trains 24 steps and evaluates 134 held-out tasks before and after within about 5
#: minutes (docs/results.md has the measured run). Training tasks start at seed 10^6:
#: the starter was built on train seeds 0-3999, and RL should meet tasks it has not seen.
MICRO_DEMO_DEFAULTS: dict[str, Any] = {
    **CPU_DEMO_DEFAULTS,
    "max_steps": 24,
    "per_device_train_batch_size": 32,  # 8 tasks x 4 trajectories per step; also the rows per training chunk
    "num_generations": 4,
    "max_completion_length": 32,  # `<think></think><action>...</action>`: ~12 tokens
    "learning_rate": 3e-4,  # chosen on valid_seen, as table1's cpu-micro preset (docs/results.md)
    "first_train_seed": 1_000_000,
    "per_device_eval_batch_size": 50,
    CHECKPOINTING_FIELD: False,  # a tiny model: its activations are small, recomputing them costs a third
}


#: What differs per environment on top of `MICRO_DEMO_DEFAULTS`: each env's own turn limit at the demo settings
#: (`DEMO_ENVS`), and as many held-out tasks as the 5-minute demo affords (docs/results.md has the timings).
MICRO_ENV_DEFAULTS: dict[str, dict[str, Any]] = {
    "alfworld-mini": {"max_steps_per_episode": 20, "eval_tasks": 134},  # all of valid_unseen: ~12 s
    "webshop-mini": {"max_steps_per_episode": 10, "eval_tasks": 200, "max_completion_length": 48},
    "searchqa-mini": {"max_steps_per_episode": 4, "eval_tasks": 200, "max_completion_length": 48},
}


def micro_defaults(env: str) -> dict[str, Any]:
    """The CPU demo defaults of `micro:<env>` (an env without its own entry gets the common ones)."""
    return {**MICRO_DEMO_DEFAULTS, **MICRO_ENV_DEFAULTS.get(env, {})}


def demo_defaults(argv: list[str], default_env: str) -> tuple[str | None, dict[str, Any]]:
    """The default model (None: the SmolLM2 starter) and the CPU defaults that fit it.

    No `--model_name_or_path`: the env's micro starter if one ships, else the SmolLM2 starter. A `micro:<env>` name
    gets the micro defaults, `smollm2` the SmolLM2-sized ones. `run_defaults` applies these to the packaged starters
    only; every other model gets `paper_defaults`.
    """
    from sdar_trl.starter import MICRO_PATH, MICRO_PREFIX

    model = _flag_value(argv, "--model_name_or_path")
    env = _flag_value(argv, "--env") or default_env
    if model is None and (MICRO_PATH / env / "model.safetensors").is_file():
        return f"{MICRO_PREFIX}{env}", micro_defaults(env)
    if model is not None and model.startswith(MICRO_PREFIX):
        return None, micro_defaults(model[len(MICRO_PREFIX) :])
    return None, CPU_DEMO_DEFAULTS


#: The paper's settings shared by its three benchmarks (arXiv 2605.15155; the GRPO part as `SDARConfig` arguments is
#: docs/deviations.md's table). One process plays `per_device_train_batch_size x gradient_accumulation_steps`
#: trajectories per optimizer step, i.e. that over `num_generations` tasks (docs/agents.md); with N processes divide
#: `gradient_accumulation_steps` by N to keep the paper's tasks per step.
PAPER_COMMON: dict[str, Any] = {
    "loss_type": "bnpo",  # token mean of the micro-batch, as the reference aggregates
    "epsilon": 0.2,
    "delta": 3.0,  # the reference's dual-clip c = 3
    "entropy_coef": 0.001,
    "learning_rate": 1e-6,
    "lr_scheduler_type": "constant",
    "weight_decay": 0.01,
    "max_grad_norm": 1.0,
    "num_generations": 8,
    "temperature": 1.0,
    "top_p": 1.0,
    "max_steps": 150,
    "max_completion_length": 512,
    "per_device_train_batch_size": 8,  # rows per training chunk; with 16 accumulation steps: 16 tasks x 8
    "privileged_context_source": "skills",  # the paper's teacher context (facts are our oracle ablation)
    "eval_temperature": 0.4,
    "logging_steps": 1,
}

#: What differs per benchmark family on top of `PAPER_COMMON` (the paper's per-benchmark settings).
PAPER_ENV_SETTINGS: dict[str, dict[str, Any]] = {
    "alfworld": {
        "beta": 0.01,  # KL (k3) to the initial model
        "max_steps_per_episode": 50,
        "history_length": 2,
        "invalid_action_penalty": 0.1,
        "gradient_accumulation_steps": 16,  # 16 tasks x 8 trajectories per step
        "max_teacher_prompt_length": 2048,  # the reference's max prompt length
        "eval_tasks": 128,
        "train_tasks": 2400,  # 150 steps x 16 tasks: no task is played twice
    },
    "webshop": {
        "beta": 0.01,
        "max_steps_per_episode": 15,
        "history_length": 2,
        "invalid_action_penalty": 0.1,
        "gradient_accumulation_steps": 16,
        "max_teacher_prompt_length": 4096,
        "eval_tasks": 128,
        "train_tasks": 2400,
    },
    "searchqa": {
        "beta": 0.001,
        "max_steps_per_episode": 4,
        "history_length": 4,
        "invalid_action_penalty": 0.01,
        "gradient_accumulation_steps": 128,  # 128 tasks x 8 trajectories per step
        "max_teacher_prompt_length": 4096,
        "lr_scheduler_type": "constant_with_warmup",
        "warmup_steps": 15,  # the reference warms up over 10 % of its 150 steps
        "eval_temperature": 0.0,  # greedy validation
        "eval_tasks": 500,  # the paper validates on 512 questions; searchqa-mini's test split has 500
        "train_tasks": 19200,  # 150 steps x 128 tasks
    },
}

#: Environment name -> benchmark family of `PAPER_ENV_SETTINGS` (other environments use their script's family).
PAPER_FAMILIES: dict[str, str] = {
    "alfworld-mini": "alfworld",
    "alfworld": "alfworld",
    "webshop-mini": "webshop",
    "webshop": "webshop",
    "searchqa-mini": "searchqa",
    "searchqa": "searchqa",
}

#: Where a setting in force came from, as the run's first lines print it.
STARTER_DEMO, PAPER, RECIPE, COMMAND_LINE = "starter demo", "paper", "recipe", "command line"
DEFAULT, METHOD_PRESET = "default", "method preset"


def paper_defaults(env: str, fallback_family: str) -> dict[str, Any]:
    """The paper's settings for `env` (its family in `PAPER_FAMILIES`, else `fallback_family`, the script's)."""
    family = PAPER_FAMILIES.get(env, fallback_family)
    if family not in PAPER_ENV_SETTINGS:
        raise ValueError(
            f"no paper settings for the benchmark family {family!r} (env {env!r}); expected one of "
            f"{sorted(PAPER_ENV_SETTINGS)}."
        )
    return {**PAPER_COMMON, **PAPER_ENV_SETTINGS[family]}


def is_starter_model(model: str | None) -> bool:
    """Whether `model` is a packaged starter: no model (the default starter), `micro:<env>` or `smollm2`."""
    from sdar_trl.starter import MICRO_PREFIX, SMOLLM2_NAME

    return model is None or model.startswith(MICRO_PREFIX) or model == SMOLLM2_NAME


def run_defaults(
    argv: list[str], default_env: str, family: str, *, demo: bool | None = None
) -> tuple[str | None, dict[str, Any], str]:
    """The default model, the defaults in force below the recipe and the command line, and their origin.

    A packaged starter (`is_starter_model`, looking at the command line, then the recipe) gets its CPU demo
    defaults (`demo_defaults`, origin `STARTER_DEMO`); any other model the paper's settings for the environment
    (`paper_defaults`, origin `PAPER`). `demo` forces the choice (an example that supplies its own demo model).
    """
    model = requested_model(argv)
    env = _flag_value(argv, "--env") or default_env
    if demo if demo is not None else is_starter_model(model):
        starter_argv = argv if _flag_value(argv, "--model_name_or_path") or model is None else [
            *argv, "--model_name_or_path", model]  # fmt: skip
        default_model, defaults = demo_defaults(starter_argv, default_env)
        return default_model, dict(defaults), STARTER_DEMO
    paper = paper_defaults(env, family)
    if model is not None and "qwen3" in model.lower():
        paper["chat_template_kwargs"] = {"enable_thinking": False}  # the paper runs Qwen3 with thinking off
    return None, paper, PAPER


def flags_given(argv: list[str]) -> set[str]:
    """The field names set on the command line (`--name value`, `--name=value`, `--name-with-dashes`)."""
    names = set()
    for arg in argv:
        if arg.startswith("--") and arg != "--config":
            names.add(arg[2:].split("=", 1)[0].replace("-", "_"))
    return names


def setting_sources(
    names: list[str], *, argv: list[str], recipe: dict[str, Any], profile: dict[str, Any], origin: str
) -> dict[str, str]:
    """Where each of `names` came from: the command line wins over the recipe, the recipe over `profile` (the
    starter demo's or the paper's defaults, labelled `origin`); anything else is the dataclass `DEFAULT`."""
    given = flags_given(argv)
    sources = {}
    for name in names:
        if name in given:
            sources[name] = COMMAND_LINE
        elif name in recipe:
            sources[name] = RECIPE
        elif name in profile:
            sources[name] = origin
        elif name in METHOD_PRESETS["sdar"]:
            sources[name] = METHOD_PRESET
        else:
            sources[name] = DEFAULT
    return sources


#: Settings always listed in the run's first lines (besides every setting the profile, recipe or command line set).
SHOWN_SETTINGS = ("model_name_or_path", "env", "method", "distill_coef", "gate_beta")


def settings_report(
    args: tuple[Any, ...], *, argv: list[str], recipe: dict[str, Any], profile: dict[str, Any], origin: str,
    recipe_path: str | None = None,
) -> str:  # fmt: skip
    """The lines a run prints first: every setting that the profile, the recipe or the command line touched (plus
    `SHOWN_SETTINGS`), its value in the parsed `args` and where it came from."""
    names = list(SHOWN_SETTINGS)
    for name in [*profile, *recipe, *sorted(flags_given(argv))]:
        if name not in names and any(hasattr(a, name) for a in args):
            names.append(name)
    sources = setting_sources(names, argv=argv, recipe=recipe, profile=profile, origin=origin)
    labels = {RECIPE: f"recipe {recipe_path}" if recipe_path else RECIPE}
    width = max(len(name) for name in names)
    lines = [f"Settings in force ({origin} defaults; see docs/recipes.md):"]
    for name in names:
        value = next(getattr(a, name) for a in args if hasattr(a, name))
        value = getattr(value, "value", value)  # an enum (lr_scheduler_type, save_strategy) as its plain value
        lines.append(f"  {name:<{width}}  {value!r:<28}  {labels.get(sources[name], sources[name])}")
    config = next((a for a in args if hasattr(a, "steps_per_generation")), None)
    if config is not None and config.steps_per_generation:
        trajectories = config.per_device_train_batch_size * config.steps_per_generation
        lines.append(
            f"  = {trajectories // config.num_generations} tasks x {config.num_generations} trajectories per "
            "optimizer step on each process (per_device_train_batch_size x steps_per_generation / num_generations)"
        )
    return "\n".join(lines)


#: Files that mark a directory as holding a finished (or started) run.
RUN_FILES = ("report.md", "metrics.json", "model.safetensors", "adapter_model.safetensors", "trainer_state.json")


def holds_a_run(path: str | os.PathLike[str]) -> bool:
    """True if `path` has a run's files (a report, a model, checkpoints)."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        return False
    return any(os.path.exists(os.path.join(path, name)) for name in RUN_FILES) or any(
        name.startswith("checkpoint-") for name in os.listdir(path)
    )


def choose_output_dir(requested: str, *, explicit: bool, overwrite: bool, resuming: bool) -> str:
    """The directory this run writes to, never silently another run's.

    A directory without a run's files, `overwrite`, or `resuming` (continuing that run) keeps `requested`. Else an
    explicit `--output_dir` is an error naming the two fixes, and the default one becomes `requested-2`,
    `requested-3`, ... (the first without a run).
    """
    if overwrite or resuming or not holds_a_run(requested):
        return requested
    if explicit:
        raise SystemExit(
            f"--output_dir {requested} already holds another run (report, model or checkpoints). Pass another "
            "--output_dir, or --overwrite_output_dir true to write over it, or --resume_from_checkpoint to "
            "continue it."
        )
    suffix = 2
    while holds_a_run(f"{requested.rstrip('/')}-{suffix}"):
        suffix += 1
    return f"{requested.rstrip('/')}-{suffix}"


def _output_dir_given(argv: list[str]) -> bool:
    return _flag_value(argv, "--output_dir") is not None or "--config" in argv


def parse_env_kwargs(text: str) -> dict:
    """`--env_kwargs` as a dict, or exit with a message naming the flag, what it got and an example."""
    try:
        return parse_json_object(text)
    except ValueError as error:
        raise SystemExit(f"--env_kwargs {error}") from None


def cpu_threads_per_process(requested: int = 0) -> int:
    """Torch CPU threads for this process: `requested` if positive, else the usable cores split evenly over the
    processes of this node (`LOCAL_WORLD_SIZE`, set by torchrun/accelerate; 1 when launched alone)."""
    if requested < 0:
        raise ValueError(f"--cpu_threads={requested} must be >= 0 (0: the cores divided by the local processes).")
    if requested:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def _starter_model() -> str:
    """The packaged starter as a model directory (merged into its base once, then cached), or exit naming the fix."""
    from sdar_trl.starter import starter_model_path

    try:
        return str(starter_model_path())
    except FileNotFoundError as error:  # not built, or its base not downloaded: the message names the fix
        sys.exit(f"No model: {error} Or pass --model_name_or_path (e.g. Qwen/Qwen2.5-1.5B-Instruct).")


def env_settings(
    env: str, *, origin: str, difficulty: str | None, eval_split: str | None, env_kwargs: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The keyword arguments of the training and the held-out environments.

    The starter demo plays a mini environment at the level its starter was built on (`DEMO_ENVS`: an easy level,
    fewer turns); the paper's settings keep the environment's own level and turn limit and take only the held-out
    split from `DEMO_ENVS`. `difficulty`, `eval_split` and `env_kwargs` (the flags) win over both.
    """
    from sdar_trl.starter import DEMO_ENVS

    demo = dict(DEMO_ENVS.get(env, {}))
    if origin != STARTER_DEMO:
        demo = {k: v for k, v in demo.items() if k == "eval_split"}
    eval_split = eval_split or demo.pop("eval_split", None)
    demo.pop("eval_split", None)
    if difficulty is not None:
        demo["difficulty"] = difficulty
    train_kwargs = {**demo, **env_kwargs}
    eval_kwargs = {**train_kwargs, **({"split": eval_split} if eval_split else {})}
    if env.endswith("-mini"):
        train_kwargs.setdefault("split", "train")
    return train_kwargs, eval_kwargs


@dataclass
class ParsedRun:
    """What `parse_run` returns: the three argument objects and where their settings came from."""

    script_args: ExampleArguments
    training_args: SDARConfig
    model_args: ModelConfig
    origin: str  # STARTER_DEMO or PAPER: which defaults apply below the recipe and the command line
    profile: dict[str, Any]
    recipe: dict[str, Any]
    recipe_path: str | None

    def report(self, argv: list[str]) -> str:
        """The settings in force and where each came from (`settings_report`)."""
        return settings_report(
            (self.script_args, self.training_args, self.model_args), argv=argv, recipe=self.recipe,
            profile=self.profile, origin=self.origin, recipe_path=self.recipe_path,
        )  # fmt: skip


#: Shown under `--help`: the defaults listed there are the ones of the model named on that command line.
HELP_EPILOG = (
    "Defaults: with no --model_name_or_path, micro:<env> or smollm2 (a packaged starter) the CPU demo's settings "
    "apply (short episodes, the oracle facts as the teacher's context); with any other model the paper's settings "
    "for the environment apply (skills, groups of 8, the benchmark's turn limit, lr 1e-6, 150 steps: "
    "docs/recipes.md). A --config recipe overrides either, and the command line overrides the recipe. Add "
    "--model_name_or_path NAME to --help to see the defaults that NAME gets."
)


def parse_run(
    argv: list[str], *, default_env: str, skills_name: str, history_length: int, invalid_action_penalty: float,
    demo: bool | None = None,
) -> ParsedRun:  # fmt: skip
    """Parse an example's command line (and its `--config` recipe) with TRL's parser; nothing is loaded or trained.

    Precedence, lowest first: the dataclass defaults, the script's (`history_length`, `invalid_action_penalty`),
    the starter demo's or the paper's defaults (`run_defaults`), the recipe, the command line.
    """
    recipe = _recipe_values(argv)
    if "env" in recipe and not isinstance(recipe["env"], dict):
        raise SystemExit(
            f"--config: the recipe sets env: {recipe['env']!r}, but TRL's parser reserves the YAML key `env` for a "
            "mapping of environment variables. Pass the environment on the command line (--env NAME) instead."
        )
    family = PAPER_FAMILIES.get(default_env, skills_name)
    default_model, profile, origin = run_defaults(argv, default_env, family, demo=demo)
    # The script's agent settings are the paper's for its benchmark; the paper profile of another env wins.
    profile = {"history_length": history_length, "invalid_action_penalty": invalid_action_penalty, **profile}
    parser = TrlParser((ExampleArguments, SDARConfig, ModelConfig), epilog=HELP_EPILOG)
    parser.set_defaults(
        env=default_env,
        # Named after the method (a recipe's `method:` comes with its own output_dir), so a baseline's run does not
        # land in an "-sdar" directory.
        output_dir=f"outputs/{default_env}-{recipe.get('method') or _flag_value(argv, '--method') or 'sdar'}",
        model_name_or_path=default_model,
        **profile,
        # Without a GPU, run on CPU; under a multi-process launcher this makes the processes join a gloo group.
        use_cpu=not torch.cuda.is_available(),
    )
    script_args, training_args, model_args = parser.parse_args_and_config(args=argv)
    recipe_path = argv[argv.index("--config") + 1] if "--config" in argv else None
    return ParsedRun(script_args, training_args, model_args, origin, profile, recipe, recipe_path)


def main(
    *, default_env: str, skills_name: str, history_length: int, invalid_action_penalty: float,
    demo: bool | None = None,
) -> None:  # fmt: skip
    """Parse (`parse_run`), print the settings in force, evaluate, train, evaluate again and write the report."""
    argv = sys.argv[1:]
    run = parse_run(argv, default_env=default_env, skills_name=skills_name, history_length=history_length,
                    invalid_action_penalty=invalid_action_penalty, demo=demo)  # fmt: skip
    script_args, training_args, model_args = run.script_args, run.training_args, run.model_args
    if int(os.environ.get("RANK", "0")) == 0:
        print(run.report(argv), flush=True)
    output_dir = choose_output_dir(
        training_args.output_dir,
        explicit=_output_dir_given(argv),
        overwrite=script_args.overwrite_output_dir,
        resuming=bool(training_args.resume_from_checkpoint),
    )
    if output_dir != training_args.output_dir:
        print(f"{training_args.output_dir} holds an earlier run: writing to {output_dir}", flush=True)
        training_args.output_dir = output_dir
    if model_args.model_name_or_path is None:
        model_args.model_name_or_path = _starter_model()
    else:  # a starter's short name (micro:<env>, smollm2) becomes its directory; other names pass unchanged
        from sdar_trl.starter import resolve_model_name

        model_args.model_name_or_path = resolve_model_name(model_args.model_name_or_path)
    if not torch.cuda.is_available() and training_args.bf16:
        training_args.bf16 = False  # TRL defaults to bf16, which CPUs cannot train in
    if not torch.cuda.is_available():
        # accelerate launch exports OMP_NUM_THREADS=1 unless --num_cpu_threads_per_process is given: on a 2-core
        # CPU that alone made the demo ~2x slower.
        torch.set_num_threads(cpu_threads_per_process(script_args.cpu_threads))

    train_kwargs, eval_kwargs = env_settings(
        script_args.env, origin=run.origin, difficulty=script_args.difficulty, eval_split=script_args.eval_split,
        env_kwargs=parse_env_kwargs(script_args.env_kwargs),
    )  # fmt: skip
    make_env(script_args.env, **train_kwargs).close()  # fail fast on a bad name or missing data
    if int(os.environ.get("RANK", "0")) == 0:
        level = "the starter demo's level" if run.origin == STARTER_DEMO else "the env's own level and turn limit"
        print(f"  environment: {script_args.env} train {train_kwargs}, eval {eval_kwargs} ({level})", flush=True)

    skill_bank = SkillBank.load(script_args.skills) if script_args.skills else SkillBank.from_package(skills_name)
    quantization_config = get_quantization_config(model_args)
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
    }
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path, padding_side="left")
    progress = AgentProgressCallback()
    trainer = SDARTrainer(
        model_args.model_name_or_path,
        args=training_args,
        train_dataset=Dataset.from_list(
            [{"seed": script_args.first_train_seed + i} for i in range(script_args.train_tasks)]
        ),
        eval_dataset=Dataset.from_list([{"seed": i} for i in range(script_args.eval_tasks)]),
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        quantization_config=quantization_config,
        callbacks=[progress],
        # partial, not lambdas: with --env_workers >= 1 the factories are pickled into the worker processes.
        env_factory=functools.partial(make_env, script_args.env, **train_kwargs),
        eval_env_factory=functools.partial(make_env, script_args.env, **eval_kwargs),
        skill_bank=skill_bank,
    )
    # With tqdm off, transformers prints every log dict; the progress callback already shows the key metrics (and
    # metrics.json keeps them all), and the dicts would break its live display.
    trainer.remove_callback(PrinterCallback)
    before = None if script_args.skip_eval_before else trainer.evaluate(metric_key_prefix="eval_before")
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    after = trainer.evaluate()
    progress.stop()
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        trainer.create_model_card(model_name=os.path.basename(training_args.output_dir.rstrip("/")))
        details = {
            "environment": f"{script_args.env} {train_kwargs}",
            "eval tasks": f"{script_args.eval_tasks} ({eval_kwargs.get('split', 'default split')})",
            "model": base_model_name(model_args.model_name_or_path),
            "method": training_args.method,
            "optimizer steps": trainer.state.global_step,
        }
        write_run_report(training_args.output_dir, trainer.state.log_history, before=before, after=after,
                         title=f"{training_args.method} on {script_args.env}", details=details)  # fmt: skip
        success_before = (before or {}).get("eval_before_env/success")
        print(
            f"\nEval success before training: {success_before if success_before is not None else 'not measured'}"
            f" | after training: {after.get('eval_env/success')}\nReport: {training_args.output_dir}/report.md"
        )
    # Leave together and destroy the process group (if any) before interpreter shutdown, which otherwise
    # can abort a gloo peer with "terminate called without an active exception".
    trainer.accelerator.wait_for_everyone()
    trainer.accelerator.end_training()
