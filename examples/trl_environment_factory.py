"""SDAR in episode mode: a mini environment as TRL's `environment_factory`, the whole episode one completion.

CPU run (offline, about a minute: a tiny random model with the Qwen3 chat template, 2 optimizer steps):

    python examples/trl_environment_factory.py

A real tool-calling model on a GPU:

    accelerate launch examples/trl_environment_factory.py --model_name_or_path Qwen/Qwen3-0.6B --bf16 \
        --max_steps 100 --train_tasks 512 --per_device_train_batch_size 8 --num_generations 8 \
        --max_completion_length 2048 --max_tool_calling_iterations 15

Each dataset row is one task: a `prompt`, the task `seed` (read by the environment's `reset`) and a
`privileged_context` (the environment's skills for the task type, plus its oracle facts with
`--context_source skills+facts`): the teacher scores the whole completion, tool calls and tool output included,
with that context before the prompt; the tool output carries no loss (TRL's `tool_mask`). The tiny default model is
random, so it rarely writes a well-formed tool call: the run shows the wiring, not learning. Step mode (SDAR's
per-step samples) is examples/webshop.py; docs/agents.md compares the two. Every SDARConfig flag is accepted, and
`--config run.yaml` reads them from a file.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import TrlParser

from sdar_trl import SDARConfig, SDARTrainer
from sdar_trl.context import render_context
from sdar_trl.environments import episode_reward, make_env, trl_environment
from sdar_trl.skills import SkillBank
from sdar_trl.testing import build_tiny_model, build_tiny_tokenizer

TINY = "tiny"

#: Defaults for the CPU run (each overridable from the command line).
CPU_DEFAULTS: dict[str, Any] = {
    "output_dir": "outputs/trl_environment_factory",
    "max_steps": 2,
    "per_device_train_batch_size": 4,
    "num_generations": 2,
    "max_completion_length": 256,
    "max_tool_calling_iterations": 4,
    "learning_rate": 1e-4,
    "logging_steps": 1,
    "save_strategy": "no",
    "report_to": "none",
    "disable_tqdm": True,
    "bf16": False,
    "privileged_context_source": "skills+facts",
}

INSTRUCTION = (
    "You are an agent in a text environment. Act by calling the `act` tool with one admissible action per call, "
    "until the episode is over. The task and the first observation follow.\n\n"
)


@dataclass
class EpisodeArguments:
    model_name_or_path: str = field(
        default=TINY,
        metadata={"help": "A causal LM whose chat template renders tool calls, or 'tiny' (offline random model)."},
    )
    env: str = field(default="webshop-mini", metadata={"help": "Environment name for make_env (see list_envs())."})
    split: str = field(default="train", metadata={"help": "Split of the training tasks."})
    train_tasks: int = field(default=16, metadata={"help": "Number of training tasks (seeds 0..N-1)."})
    skills: str | None = field(
        default=None, metadata={"help": "Skill-bank JSON file (default: the library shipped for the environment)."}
    )


def task_rows(env_name: str, split: str, seeds: range, skill_bank: SkillBank, source: str) -> list[dict[str, Any]]:
    """One row per task: the instruction prompt, the seed, and the teacher's privileged context for that task."""
    env = make_env(env_name, split=split)
    rows = []
    for seed in seeds:
        _, info = env.reset(seed=seed)
        facts_of = getattr(env, "privileged_facts", None)
        facts = facts_of() if callable(facts_of) else ""
        context = render_context(source, skills=skill_bank.render(info["task_type"]), facts=facts)
        prompt = [{"role": "user", "content": INSTRUCTION}]
        rows.append({"prompt": prompt, "seed": seed, "privileged_context": context})
    env.close()
    return rows


def main() -> None:
    parser = TrlParser((EpisodeArguments, SDARConfig))
    parser.set_defaults(**CPU_DEFAULTS)
    script_args, config = parser.parse_args_and_config()
    if script_args.model_name_or_path == TINY:
        tokenizer = build_tiny_tokenizer()  # Qwen3's chat template (TRL's copy): it renders tool calls
        model = build_tiny_model(tokenizer, architecture="qwen3")
    else:
        tokenizer = AutoTokenizer.from_pretrained(script_args.model_name_or_path, padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(script_args.model_name_or_path, dtype="auto")
    bank = SkillBank.load(script_args.skills) if script_args.skills else SkillBank.from_package(script_args.env)
    seeds = range(script_args.train_tasks)
    dataset = Dataset.from_list(
        task_rows(script_args.env, script_args.split, seeds, bank, config.privileged_context_source)
    )
    # TRL builds one instance of the class per rollout and reuses them. The reward is the episode return, from
    # episode_reward (which also logs env/success, env/episode_length, env/failed_episodes) instead of the class's
    # get_reward(): with get_reward=True (the default) TRL would add it as a second, identical reward.
    episode_class = trl_environment(script_args.env, split=script_args.split, get_reward=False)
    trainer = SDARTrainer(
        model,
        reward_funcs=episode_reward,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        environment_factory=episode_class,
    )
    trainer.train()
    for entry in trainer.state.log_history:
        shown = {k: round(v, 4) for k, v in entry.items() if k.startswith(("sdar/", "tools/", "env/", "reward"))}
        if shown:
            print(f"step {entry['step']}: {shown}")
    print(f"failed episodes: {episode_class.failed_episodes}")
    trainer.save_model(config.output_dir)


if __name__ == "__main__":
    main()
