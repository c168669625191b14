"""The value checks of `SDARConfig` (sdar_trl.config): accepted values, field kinds and ranges, with messages that
name the value, what was expected and the fix.

Kept apart so that config.py reads as the list of fields and their help; `SDARConfig.__post_init__` runs these
after the method preset has filled the unset fields. `DISTILL_LOSSES`, `TEACHER_MODES` and
`PRIVILEGED_CONTEXT_SOURCES` are re-exported by `sdar_trl.config`.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

from ._validation import FieldKind
from .retrieval import SKILL_RETRIEVAL_MODES, require_scikit_learn
from .unpadded import UNPADDED_LOGPS_MODES

if TYPE_CHECKING:
    from .config import SDARConfig

#: `distill_loss` values: the SDAR gated term, the sampled-token OPSD surrogate, Skill-SD's ρ·k3.
DISTILL_LOSSES: tuple[str, ...] = ("gated", "sampled_token", "k3")
#: `teacher_mode` values accepted by this release.
TEACHER_MODES: tuple[str, ...] = ("live", "base", "ema")
#: `privileged_context_source` values (agent mode): skills (SDAR), oracle facts (ablation), or both.
PRIVILEGED_CONTEXT_SOURCES: tuple[str, ...] = ("skills", "facts", "skills+facts")

#: Every SDAR field's kind, whether None is allowed, and an example for error messages (sdar_trl._validation).
SDAR_FIELD_KINDS: dict[str, FieldKind] = {
    "method": ("str", False, "sdar"),
    "distill_coef": ("number", False, 0.01),
    "gate_beta": ("number", False, 5.0),
    "distill_loss": ("str", False, "gated"),
    "use_policy_loss": ("bool", False, True),
    "skills_in_student_prompt": ("bool", False, False),
    "rlsd_weight": ("number", False, 0.5),
    "rlsd_decay_steps": ("int", False, 100),
    "rlsd_clip_eps": ("number", False, 0.2),
    "teacher_mode": ("str", False, "live"),
    "teacher_ema_rate": ("number", False, 0.05),
    "teacher_ema_sync_steps": ("int", False, 1),
    "teacher_context_header": ("str", False, "[Privileged Skill Information]\n"),
    "teacher_context_separator": ("str", False, "\n\n"),
    "max_teacher_prompt_length": ("int", True, 2048),
    "teacher_prefix_cache": ("bool", False, True),
    "unpadded_logps": ("str", False, "auto"),
    "distill_empty_context": ("bool", False, False),
    "privileged_context_column": ("str", False, "privileged_context"),
    "gate_diagnostics": ("bool", False, True),
    "gate_diagnostics_every": ("int", False, 10),
    "max_steps_per_episode": ("int", True, 50),
    "history_length": ("int", False, 2),
    "invalid_action_penalty": ("number", False, 0.1),
    "eval_temperature": ("number", False, 0.4),
    "max_observation_length": ("int", True, 4096),
    "privileged_context_source": ("str", False, "skills"),
    "skill_retrieval": ("str", False, "rules"),
    "skill_retrieval_k": ("int", False, 8),
    "skill_ucb_c": ("number", False, 0.1),
    "env_step_timeout": ("number", True, 30.0),
    "max_abs_reward": ("number", False, 1e6),
    "max_failed_episode_share": ("number", False, 0.5),
    "max_admissible_actions": ("int", True, 100),
    "invalid_action_text": ("str", True, "look"),
    "env_workers": ("int", False, 2),
}
#: TRL fields whose wrong type or value would otherwise fail late (mid-training) or train silently wrong.
TRL_FIELD_KINDS: dict[str, FieldKind] = {
    "num_generations": ("int", False, 8),
    "num_generations_eval": ("int", True, 8),
    "max_completion_length": ("int", True, 256),
    "num_iterations": ("int", False, 1),
    "beta": ("number", False, 0.0),
    "epsilon": ("number", False, 0.2),
    "temperature": ("number", False, 1.0),
    "top_p": ("number", False, 1.0),
}


def check_trl_fields(config: SDARConfig) -> None:
    """TRL fields whose bad value would fail late (mid-training) or train silently wrong; before TRL's own checks."""
    if config.num_generations < 2:
        raise ValueError(
            f"num_generations={config.num_generations} must be >= 2: GRPO scores each completion against the "
            "other completions of its prompt, so a group needs at least 2. Set num_generations=2 or more (TRL's "
            "default is 8)."
        )
    if config.num_generations_eval is not None and config.num_generations_eval < 1:
        raise ValueError(
            f"num_generations_eval={config.num_generations_eval} must be >= 1 or None (None: num_generations). "
            "Set it to the completions per eval prompt, or leave it unset."
        )
    if config.max_completion_length is not None and config.max_completion_length < 1:
        raise ValueError(
            f"max_completion_length={config.max_completion_length} must be >= 1 token. Set it to the longest "
            "completion to sample (TRL's default is 256)."
        )
    if config.num_iterations < 1:
        raise ValueError(
            f"num_iterations={config.num_iterations} must be >= 1 (optimisation passes per generation batch). Set "
            "num_iterations=1 (TRL's default)."
        )
    if not math.isfinite(config.beta) or config.beta < 0:
        raise ValueError(
            f"beta={config.beta} must be a finite number >= 0: it is the coefficient of the KL term towards the "
            "reference model, and a negative value would push the policy away from it. Set beta=0.0 (TRL's "
            "default; no reference model is loaded) or a small positive value such as 0.04."
        )
    if not math.isfinite(config.epsilon) or config.epsilon < 0:
        raise ValueError(
            f"epsilon={config.epsilon} must be a finite number >= 0 (the clip range of the policy ratio). Set "
            "epsilon=0.2 (TRL's default)."
        )
    if not math.isfinite(config.temperature) or config.temperature <= 0:
        raise ValueError(
            f"temperature={config.temperature} must be a finite number > 0: training completions are sampled at "
            "it and TRL divides the logits by it. Set temperature=1.0 (TRL's default); for greedy evaluation "
            "in agent mode set eval_temperature=0 instead."
        )
    if not math.isfinite(config.top_p) or not 0.0 < config.top_p <= 1.0:
        raise ValueError(f"top_p={config.top_p} must lie in (0, 1]. Set top_p=1.0 (TRL's default: no nucleus cut).")


def check_sdar_fields(config: SDARConfig) -> None:
    """The SDAR fields' ranges and the combinations that cannot train (after the method preset filled them)."""
    if not math.isfinite(config.distill_coef) or config.distill_coef < 0:
        raise ValueError(
            f"distill_coef={config.distill_coef} must be a finite number >= 0 (it is λ, the weight of the "
            "distillation term; the paper uses 0.01). Set distill_coef=0 or method='grpo' to disable distillation."
        )
    if not math.isfinite(config.gate_beta) or config.gate_beta < 0:
        raise ValueError(
            f"gate_beta={config.gate_beta} must be a finite number >= 0 (it is β of the gate sigmoid(β·Δ); the "
            "paper uses 5.0, and 0 gives the constant gate 0.5)."
        )
    if config.distill_loss not in DISTILL_LOSSES:
        raise ValueError(
            f"distill_loss={config.distill_loss!r} is not supported; expected one of {list(DISTILL_LOSSES)} "
            "('gated' is SDAR)."
        )
    if not math.isfinite(config.rlsd_weight) or not 0.0 <= config.rlsd_weight <= 1.0:
        raise ValueError(
            f"rlsd_weight={config.rlsd_weight} must lie in [0, 1] (reference 0.5; 0 disables RLSD reweighting)."
        )
    if config.rlsd_decay_steps < 0:
        raise ValueError(
            f"rlsd_decay_steps={config.rlsd_decay_steps} must be >= 0 (reference 100; 0 keeps the weight constant)."
        )
    if not math.isfinite(config.rlsd_clip_eps) or not 0.0 <= config.rlsd_clip_eps < 1.0:
        raise ValueError(f"rlsd_clip_eps={config.rlsd_clip_eps} must lie in [0, 1) (reference 0.2).")
    if config.teacher_mode not in TEACHER_MODES:
        raise ValueError(
            f"teacher_mode={config.teacher_mode!r} is not supported; expected one of {list(TEACHER_MODES)} "
            "('live' is SDAR)."
        )
    if not math.isfinite(config.teacher_ema_rate) or not 0.0 < config.teacher_ema_rate <= 1.0:
        raise ValueError(
            f"teacher_ema_rate={config.teacher_ema_rate} must lie in (0, 1] (TRL SDPO uses 0.05; 1 copies the live "
            "weights at every sync)."
        )
    if config.teacher_ema_sync_steps < 1:
        raise ValueError(f"teacher_ema_sync_steps={config.teacher_ema_sync_steps} must be >= 1 optimizer step.")
    if config.unpadded_logps not in UNPADDED_LOGPS_MODES:
        raise ValueError(
            f"unpadded_logps={config.unpadded_logps!r} is not supported; expected one of {list(UNPADDED_LOGPS_MODES)} "
            "('auto': row by row for long rows on CPU, batched otherwise; 'never': TRL's batched forward)."
        )
    if config.max_teacher_prompt_length is not None and config.max_teacher_prompt_length < 1:
        raise ValueError(
            f"max_teacher_prompt_length={config.max_teacher_prompt_length} must be a positive number of tokens or "
            "None (no truncation)."
        )
    if config.gate_diagnostics and (config.distill_coef == 0 or config.distill_loss != "gated"):
        warnings.warn(
            f"gate_diagnostics=True has no effect with method={config.method!r} (distill_coef={config.distill_coef}, "
            f"distill_loss={config.distill_loss!r}): only the gated distillation term has a gate. Use a gated method "
            "('sdar', 'grpo_opsd', 'opsd'), or leave gate_diagnostics off.",
            UserWarning,
            stacklevel=3,
        )
    if config.gate_diagnostics_every < 0:
        raise ValueError(
            f"gate_diagnostics_every={config.gate_diagnostics_every} must be >= 0 optimizer steps (10 by default; 0 "
            "logs the split gate metrics without writing token dumps)."
        )
    if not config.privileged_context_column:
        raise ValueError("privileged_context_column must name a dataset column, got an empty string.")
    if config.max_steps_per_episode is not None and config.max_steps_per_episode < 1:
        raise ValueError(
            f"max_steps_per_episode={config.max_steps_per_episode} must be >= 1 or None (use the environment's "
            "own limit)."
        )
    if config.history_length < 0:
        raise ValueError(f"history_length={config.history_length} must be >= 0 (reference: 2, Search 4).")
    if not math.isfinite(config.invalid_action_penalty) or config.invalid_action_penalty < 0:
        raise ValueError(
            f"invalid_action_penalty={config.invalid_action_penalty} must be a finite number >= 0 (reference 0.1)."
        )
    if not math.isfinite(config.eval_temperature) or config.eval_temperature < 0:
        raise ValueError(f"eval_temperature={config.eval_temperature} must be >= 0 (0 = greedy; reference 0.4).")
    if config.max_observation_length is not None and config.max_observation_length < 64:
        raise ValueError(
            f"max_observation_length={config.max_observation_length} must be >= 64 characters or None (no limit)."
        )
    if config.privileged_context_source not in PRIVILEGED_CONTEXT_SOURCES:
        raise ValueError(
            f"privileged_context_source={config.privileged_context_source!r} is not supported; expected one of "
            f"{list(PRIVILEGED_CONTEXT_SOURCES)} ('skills' is SDAR)."
        )
    if config.skill_retrieval not in SKILL_RETRIEVAL_MODES:
        raise ValueError(
            f"skill_retrieval={config.skill_retrieval!r} is not supported; expected one of "
            f"{list(SKILL_RETRIEVAL_MODES)} ('rules' is SDAR's reference routing)."
        )
    if config.skill_retrieval_k < 1:
        raise ValueError(
            f"skill_retrieval_k={config.skill_retrieval_k} must be >= 1 (skills shown per episode by 'bm25' and "
            "'ucb'; the cluster size of 'kmeans'). Set skill_retrieval_k=8 (the default)."
        )
    if config.skill_retrieval == "kmeans":
        require_scikit_learn()  # an ImportError naming the extra now, rather than when the trainer is built
    if not math.isfinite(config.skill_ucb_c) or config.skill_ucb_c < 0:
        raise ValueError(
            f"skill_ucb_c={config.skill_ucb_c} must be a finite number >= 0 (the UCB exploration constant; 0 always "
            "exploits). Set skill_ucb_c=0.1 (the default)."
        )
    if config.skill_retrieval == "ucb" and not config.needs_teacher:
        raise ValueError(
            f"skill_retrieval='ucb' learns from the teacher's gap, but method={config.method!r} runs no teacher "
            f"(distill_coef={config.distill_coef}, rlsd_weight={config.rlsd_weight}). Use 'rules', 'all', 'bm25' or "
            "'kmeans', or a method with a teacher branch (e.g. method='sdar')."
        )
    if config.skills_in_student_prompt and config.needs_teacher:
        raise ValueError(
            f"skills_in_student_prompt=True (method={config.method!r}) with a teacher branch (distill_coef="
            f"{config.distill_coef}, rlsd_weight={config.rlsd_weight}) shows the privileged context to the student "
            "and again to the teacher, so the teacher knows nothing more. Use method='skill_grpo' without "
            "distillation, or a distillation method with skills_in_student_prompt=False."
        )
    if not config.use_policy_loss and config.distill_coef == 0:
        raise ValueError(
            "use_policy_loss=False with distill_coef=0 leaves nothing to train the policy. Set distill_coef > 0 "
            "(the opsd preset uses 0.01) or use_policy_loss=True."
        )


def check_env_boundary_fields(config: SDARConfig) -> None:
    """The limits put on what environments return (time, rewards, failures, action lists) and their workers."""
    timeout = config.env_step_timeout
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not math.isfinite(timeout) or timeout <= 0):  # fmt: skip
        raise ValueError(f"env_step_timeout={timeout!r} must be a positive number of seconds or None (no limit).")
    bound = config.max_abs_reward
    if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not 0 < bound <= 1e30:
        raise ValueError(
            f"max_abs_reward={bound!r} must be a number in (0, 1e30] (rewards must stay finite in float32, whose "
            "largest value is ~3.4e38); the default 1e6 suits every shipped environment."
        )
    share = config.max_failed_episode_share
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 <= share <= 1.0:
        raise ValueError(
            f"max_failed_episode_share={share!r} must lie in [0, 1] (0.5 by default; 1 never stops training)."
        )
    workers = config.env_workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(
            f"env_workers={workers!r} must be an int >= 0 (0: environments in this process; N: N worker processes)."
        )
    limit = config.max_admissible_actions
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"max_admissible_actions={limit!r} must be an int >= 1 or None (show all).")
