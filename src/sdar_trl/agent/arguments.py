"""Agent-mode argument checks of `SDARTrainer`, run before TRL builds anything (a mistake fails at construction).

The checks name the value, what agent mode expects and the fix: arguments that only single-turn training uses,
a missing or empty skill bank for a method that needs one, TRL loss types agent mode cannot chunk, task groups that
would straddle processes, and task rows whose `seed` is not an integer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..env_guard import check_task_seeds
from ..skills import SkillBank
from .chunks import TRL_LOSS_WEIGHT_KIND

if TYPE_CHECKING:  # the config imports TRL, which agent/ does not need at run time
    from ..config import SDARConfig

__all__ = ["check_agent_arguments", "check_task_datasets", "check_task_groups", "environment_reward"]


def environment_reward(*args: Any, **kwargs: Any) -> list[float]:
    """Placeholder reward function: in agent mode rewards come from the environment, never from here."""
    raise RuntimeError("agent mode computes rewards from the environment; this placeholder must never be called.")


def check_agent_arguments(
    args: SDARConfig,
    *,
    env_factory: Any,
    skill_bank: Any,
    reward_funcs: Any,
    tools: Any,
    rollout_func: Any,
    environment_factory: Any,
    eval_env_factory: Any = None,
) -> list[Callable[..., Any]]:
    """Validate the agent-mode arguments before TRL builds anything; returns the placeholder reward function."""
    if not callable(env_factory):
        raise TypeError(
            f"env_factory must be a callable returning an environment (e.g. the class MyEnv), got {env_factory!r}."
        )
    for name, value in (("reward_funcs", reward_funcs), ("tools", tools), ("rollout_func", rollout_func)):
        if value is not None:
            raise ValueError(
                f"{name} cannot be combined with env_factory: in agent mode the environment owns the episode and its "
                f"reward. Drop {name}=..., or drop env_factory to train single-turn."
            )
    if environment_factory is not None:
        raise ValueError(
            "environment_factory (TRL's tool-calling environments, one row per episode) and env_factory (SDAR's "
            "step-level agent mode) are different mechanisms; pass only one. See docs/agents.md."
        )
    if skill_bank is not None and not isinstance(skill_bank, SkillBank):
        raise TypeError(f"skill_bank must be a sdar_trl.SkillBank, got {type(skill_bank).__name__}.")
    if (
        skill_bank is not None
        and len(skill_bank) == 0
        and args.needs_teacher
        and args.privileged_context_source == "skills"
    ):
        raise ValueError(
            f"skill_bank is empty, so with privileged_context_source='skills' every teacher prompt equals the "
            f"student's: method={args.method!r} would train as plain GRPO (distill_loss = 0). Pass a bank with skills "
            "(SkillBank.load(path), or SkillBank.from_package('webshop') for a built-in environment), set "
            "privileged_context_source='facts' or 'skills+facts', or use method='grpo'."
        )
    if args.needs_privileged_context and args.privileged_context_source == "skills" and skill_bank is None:
        raise ValueError(
            f"method={args.method!r} needs a privileged context for the teacher, but no skill_bank was given and "
            "privileged_context_source='skills'. Pass skill_bank=SkillBank.load(path) (or SkillBank.from_package("
            "'webshop') for a built-in environment), set privileged_context_source='facts', or use method='grpo'."
        )
    if args.skill_retrieval != "rules" and (skill_bank is None or "skills" not in args.privileged_context_source):
        raise ValueError(
            f"skill_retrieval={args.skill_retrieval!r} chooses skills from the skill_bank for the teacher, but "
            f"skill_bank={'None' if skill_bank is None else 'given'} and privileged_context_source="
            f"{args.privileged_context_source!r}. Pass a skill_bank with privileged_context_source='skills' or "
            "'skills+facts', or leave skill_retrieval='rules'."
        )
    if args.loss_type not in TRL_LOSS_WEIGHT_KIND:
        raise ValueError(
            f"loss_type={args.loss_type!r} is not supported in agent mode; expected one of "
            f"{sorted(TRL_LOSS_WEIGHT_KIND)}."
        )
    if TRL_LOSS_WEIGHT_KIND[args.loss_type] == "global" and (args.entropy_coef != 0 or args.use_adaptive_entropy):
        raise ValueError(
            f"loss_type={args.loss_type!r} with an entropy bonus is not supported in agent mode yet (TRL adds the "
            "bonus per micro-batch, which chunking would over-count). Use loss_type='bnpo' or 'grpo' with the bonus, "
            "or set entropy_coef=0."
        )
    local_rows = args.per_device_train_batch_size * args.steps_per_generation
    if local_rows % args.num_generations != 0:
        raise ValueError(
            f"agent mode plays whole task groups on each process: per_device_train_batch_size × steps_per_generation "
            f"= {args.per_device_train_batch_size} × {args.steps_per_generation} = {local_rows} trajectories per "
            f"process must be divisible by num_generations={args.num_generations}. Adjust one of them (e.g. "
            f"gradient_accumulation_steps or generation_batch_size)."
        )
    if eval_env_factory is not None and not callable(eval_env_factory):
        raise TypeError(f"eval_env_factory must be a callable returning an environment, got {eval_env_factory!r}.")
    return [environment_reward]


def check_task_datasets(train_dataset: Any, eval_dataset: Any) -> None:
    """Check the `seed` column of the training tasks and of every evaluation split (a dataset or a dict of them)."""
    check_task_seeds(train_dataset, source="train_dataset")
    splits = eval_dataset if isinstance(eval_dataset, dict) else {"": eval_dataset}
    for name, split in splits.items():
        check_task_seeds(split, source=f"eval_dataset{f'[{name!r}]' if name else ''}")


def check_task_groups(rows: Sequence[Mapping[str, Any]], group_size: int) -> list[int]:
    """The task group of each row, after checking the rows hold whole groups of `group_size` identical copies.

    TRL's RepeatSampler gives each process `num_generations` consecutive copies of every task; agent mode plays each
    copy as one trajectory and normalises rewards within a task's copies.
    """
    if len(rows) % group_size != 0:
        raise RuntimeError(
            f"agent mode received {len(rows)} rows on this process, not a multiple of num_generations="
            f"{group_size}; every process must hold whole task groups."
        )
    for start in range(0, len(rows), group_size):
        if any(row != rows[start] for row in rows[start : start + group_size]):
            raise RuntimeError(
                "agent mode expects the num_generations copies of a task to be consecutive identical rows (TRL's "
                f"RepeatSampler); rows {start}..{start + group_size - 1} differ. Do not pass a custom sampler."
            )
    return [i // group_size for i in range(len(rows))]
