"""`SDARConfig`: `GRPOConfig` plus the teacher branch, the gated distillation term and method presets."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments
from trl import GRPOConfig

from ._validation import FieldKind, check_field_types

__all__ = ["CHECKPOINTING_FIELD", "DISTILL_LOSSES", "METHOD_PRESETS", "TEACHER_MODES", "SDARConfig"]

#: What each `method` preset sets (SDAR_SPEC.md §4). A field the user sets explicitly wins over the preset.
METHOD_PRESETS: dict[str, dict[str, Any]] = {
    # The paper's method: GRPO + λ·gated distillation, λ = 0.01, β = 5.
    "sdar": {
        "distill_coef": 0.01,
        "gate_beta": 5.0,
        "distill_loss": "gated",
        "use_policy_loss": True,
        "skills_in_student_prompt": False,
        "rlsd_weight": 0.0,
    },
    # Plain GRPO: no teacher forward at all.
    "grpo": {
        "distill_coef": 0.0,
        "gate_beta": 5.0,
        "distill_loss": "gated",
        "use_policy_loss": True,
        "skills_in_student_prompt": False,
        "rlsd_weight": 0.0,
    },
    # Naive GRPO + OPSD: the same distillation term with β = 0, i.e. a constant gate of 0.5.
    "grpo_opsd": {
        "distill_coef": 0.01,
        "gate_beta": 0.0,
        "distill_loss": "gated",
        "use_policy_loss": True,
        "skills_in_student_prompt": False,
        "rlsd_weight": 0.0,
    },
    # OPSD: the reference runs the gated term with the policy-gradient term switched off (pg_loss_coef=0);
    # KL-to-reference and entropy bonus (if configured) stay.
    "opsd": {
        "distill_coef": 0.01,
        "gate_beta": 5.0,
        "distill_loss": "gated",
        "use_policy_loss": False,
        "skills_in_student_prompt": False,
        "rlsd_weight": 0.0,
    },
    # Skill-GRPO: skills in the student's own prompt, no distillation.
    "skill_grpo": {
        "distill_coef": 0.0,
        "gate_beta": 5.0,
        "distill_loss": "gated",
        "use_policy_loss": True,
        "skills_in_student_prompt": True,
        "rlsd_weight": 0.0,
    },
    # Skill-SD: λ·ρ·k3 with λ = 0.001.
    "skill_sd": {
        "distill_coef": 0.001,
        "gate_beta": 5.0,
        "distill_loss": "k3",
        "use_policy_loss": True,
        "skills_in_student_prompt": False,
        "rlsd_weight": 0.0,
    },
    # RLSD: no extra loss; token advantages reweighted by the teacher, w = 0.5 → 0 over 100 steps.
    "rlsd": {
        "distill_coef": 0.0,
        "gate_beta": 5.0,
        "distill_loss": "gated",
        "use_policy_loss": True,
        "skills_in_student_prompt": False,
        "rlsd_weight": 0.5,
    },
}

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
    "distill_empty_context": ("bool", False, False),
    "privileged_context_column": ("str", False, "privileged_context"),
    "max_steps_per_episode": ("int", True, 50),
    "history_length": ("int", False, 2),
    "invalid_action_penalty": ("number", False, 0.1),
    "eval_temperature": ("number", False, 0.4),
    "max_observation_length": ("int", True, 4096),
    "privileged_context_source": ("str", False, "skills"),
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

#: transformers >= 5.23 names activation checkpointing `activation_checkpointing` and keeps
#: `gradient_checkpointing` as a deprecated alias that warns whenever it is set; older releases have only the alias.
CHECKPOINTING_FIELD = (
    "activation_checkpointing"
    if "activation_checkpointing" in {f.name for f in dataclasses.fields(TrainingArguments)}
    else "gradient_checkpointing"
)


@dataclass
class SDARConfig(GRPOConfig):
    r"""
    Configuration for [`SDARTrainer`]: every [`trl.GRPOConfig`] field plus the SDAR teacher branch.

    The loss is `L = L_GRPO + distill_coef · token_mean(sg(sigmoid(gate_beta·Δ)) · (lT − lS))` with
    `Δ = lT − sg(lS)`, where `lT` are the log-probs of the student's sampled tokens under the same
    policy prompted with privileged context (SDAR_SPEC.md §3). `L_GRPO` is TRL's own loss for the
    configured `loss_type`.

    Parameters:
        > Method

        method (`str`, *optional*, defaults to `"sdar"`):
            Preset that fills every SDAR field left unset (`None`): `"sdar"`, `"grpo"`, `"grpo_opsd"`,
            `"opsd"`, `"skill_grpo"`, `"skill_sd"`, `"rlsd"`. See `METHOD_PRESETS` and docs/methods.md.

        > Distillation term

        distill_coef (`float`, *optional*):
            λ, weight of the distillation term. Preset value; SDAR reference 0.01, Skill-SD 0.001,
            0 for GRPO / Skill-GRPO / RLSD (then no teacher forward runs for the loss).
        gate_beta (`float`, *optional*):
            β, sharpness of the gate `sigmoid(β·Δ)`. Reference 5.0; 0 gives the constant gate 0.5 of GRPO+OPSD.
        distill_loss (`str`, *optional*):
            `"gated"` (SDAR), `"sampled_token"` (OPSD reverse-KL surrogate), `"k3"` (Skill-SD ρ·k3).
        use_policy_loss (`bool`, *optional*):
            Keep TRL's policy-gradient term. `False` (the OPSD preset) zeroes the advantages so only the
            distillation term, the KL-to-reference (`beta`) and the entropy bonus remain.
        skills_in_student_prompt (`bool`, *optional*):
            Put the privileged context into the student's own prompt (Skill-GRPO baseline).

        > RLSD token-advantage reweighting

        rlsd_weight (`float`, *optional*):
            Initial mixing weight w of RLSD token advantages (reference 0.5; 0 disables).
        rlsd_decay_steps (`int`, *optional*, defaults to `100`):
            Optimizer steps over which w decays linearly to 0 (reference 100; 0 keeps w constant).
        rlsd_clip_eps (`float`, *optional*, defaults to `0.2`):
            ε of the token-weight clip `[1 − ε, 1 + ε]` (reference 0.2).

        > Teacher branch

        teacher_mode (`str`, *optional*, defaults to `"live"`):
            `"live"`: the current policy with rollout-time weights (SDAR). `"base"`: the initial
            weights (adapter disabled under PEFT; a frozen copy otherwise). `"ema"`: an exponential
            moving average of the trainable weights (our option; not used by the paper).
        teacher_ema_rate (`float`, *optional*, defaults to `0.05`):
            EMA update rate α in `ema ← (1 − α)·ema + α·θ` (teacher_mode="ema" only; TRL SDPO's default).
        teacher_ema_sync_steps (`int`, *optional*, defaults to `1`):
            Update the EMA every this many optimizer steps (teacher_mode="ema" only).
        teacher_context_header (`str`, *optional*, defaults to `"[Privileged Skill Information]\n"`):
            Text placed before the privileged context (reference header).
        teacher_context_separator (`str`, *optional*, defaults to `"\n\n"`):
            Text placed between the privileged context and the student's prompt (reference separator).
        max_teacher_prompt_length (`int`, *optional*):
            Left-truncate teacher prompts to this many tokens (reference: the max prompt length,
            2048 for ALFWorld, 4096 for WebShop/Search). `None`: no truncation.
        teacher_prefix_cache (`bool`, *optional*, defaults to `True`):
            Encode each distinct teacher prefix (header + privileged context) once per batch, with the prompt
            tokens its rows share, and reuse its key/value cache for every row that shares it (rows with an
            identical prompt share that prompt too). Same log-probs up to float rounding; an
            implementation choice, not part of the paper. Off under FSDP and DeepSpeed ZeRO-3, whose
            processes must run the same number of forwards.
        distill_empty_context (`bool`, *optional*, defaults to `False`):
            Keep rows with an empty privileged context in the distillation term (their teacher equals
            the student). By default they are left out of it (never arises in the reference).
        privileged_context_column (`str`, *optional*, defaults to `"privileged_context"`):
            Dataset column holding each row's privileged context (same name as TRL's SDPO/SDFT).

        > Agent mode (`SDARTrainer(..., env_factory=...)`; see docs/agents.md)

        max_steps_per_episode (`int`, *optional*):
            Stop every episode after this many steps. `None`: the environment's own
            `max_episode_steps` (reference: ALFWorld 50, WebShop 15, Search 4).
        history_length (`int`, *optional*, defaults to `2`):
            Past (observation, action) pairs shown in each step prompt (reference: ALFWorld and
            WebShop 2, Search 4).
        invalid_action_penalty (`float`, *optional*, defaults to `0.1`):
            Subtracted from the reward of a step whose response did not parse (reference: ALFWorld
            and WebShop 0.1, Search 0.01).
        eval_temperature (`float`, *optional*, defaults to `0.4`):
            Sampling temperature of `evaluate()` episodes (reference 0.4; 0 = greedy).
        max_observation_length (`int`, *optional*, defaults to `4096`):
            Observations longer than this many characters keep their last characters, marked as truncated.
        privileged_context_source (`str`, *optional*, defaults to `"skills"`):
            What the teacher sees per step: `"skills"` (SDAR: general + task-type skills of the
            `skill_bank`), `"facts"` (the environment's `privileged_facts()`, an oracle ablation) or
            `"skills+facts"`.

        > Environment boundary (agent mode; see docs/faults.md)

        env_step_timeout (`float`, *optional*):
            Seconds an environment `reset`/`step` call may take; a slower call fails its episode (kind `timeout`)
            and the environment instance is abandoned and rebuilt (with `env_workers >= 1`: its worker is killed
            and restarted). `None`: no limit (calls run in the main thread).
        max_abs_reward (`float`, *optional*, defaults to `1e6`):
            Largest |reward| of one step; a larger or non-finite reward fails its episode (kind `bad_reward`).
        max_failed_episode_share (`float`, *optional*, defaults to `0.5`):
            Training stops with an error naming the environment when more than this share of a batch's episodes
            failed (1 never stops).
        max_admissible_actions (`int`, *optional*, defaults to `100`):
            Show at most this many admissible actions in a step prompt, then `… (N more)`. `None`: all.
        env_workers (`int`, *optional*, defaults to `0`):
            `0`: environments run in the training process. `N >= 1`: they run in N worker processes, so a crash of
            native environment code (segfault, `os._exit`, OOM kill) fails the episodes the worker held (kind
            `worker_died`) instead of killing training; the worker is restarted. The env factories must be
            picklable (a module-level class or function). Time-outs kill the worker. See docs/faults.md.
        invalid_action_text (`str`, *optional*):
            What a response that does not parse sends to the environment. `None` (the reference's behaviour): its
            last 30 characters, cleaned; a string (e.g. `""` or `"look"`) is sent instead.

        > TRL default applied through the field this transformers reads

        gradient_checkpointing (`bool`, *optional*):
            Unset means TRL's default, on, set through the field this transformers reads
            (`activation_checkpointing` from transformers 5.23), so an untouched config raises no deprecation
            warning. Setting it explicitly keeps transformers' behaviour, warning included; prefer
            `activation_checkpointing` there.
    """

    method: str = field(
        default="sdar",
        metadata={
            "help": "Method preset filling every SDAR field left unset: 'sdar' (paper: λ=0.01, β=5), 'grpo' (λ=0), "
            "'grpo_opsd' (β=0), 'opsd' (no policy-gradient term), 'skill_grpo' (skills in the student prompt), "
            "'skill_sd' (λ=0.001·ρ·k3), 'rlsd' (teacher-reweighted token advantages, w=0.5→0 over 100 steps).",
            "choices": list(METHOD_PRESETS),
        },
    )
    distill_coef: float | None = field(
        default=None,
        metadata={
            "help": "λ, weight of the distillation term added to TRL's loss. Unset: the preset's value (SDAR "
            "reference 0.01, Skill-SD 0.001, 0 for grpo/skill_grpo/rlsd). With 0 no teacher forward runs for the loss."
        },
    )
    gate_beta: float | None = field(
        default=None,
        metadata={
            "help": "β, sharpness of the SDAR gate sigmoid(β·(lT − sg(lS))). Unset: the preset's value (reference "
            "5.0; 0 for grpo_opsd, which makes the gate a constant 0.5)."
        },
    )
    distill_loss: str | None = field(
        default=None,
        metadata={
            "help": "Distillation term: 'gated' (SDAR, reference), 'sampled_token' (OPSD reverse-KL surrogate "
            "sg(lS−lT)·lS), 'k3' (Skill-SD ρ·k3). Unset: the preset's value.",
        },
    )
    use_policy_loss: bool | None = field(
        default=None,
        metadata={
            "help": "Keep TRL's policy-gradient term (reference pg_loss_coef=1). False (opsd preset, reference "
            "pg_loss_coef=0) zeroes the advantages: only distillation, KL (beta) and entropy bonus remain."
        },
    )
    skills_in_student_prompt: bool | None = field(
        default=None,
        metadata={
            "help": "Prepend the privileged context to the student's own prompt (the Skill-GRPO baseline of the "
            "paper). Unset: the preset's value (True only for skill_grpo)."
        },
    )
    rlsd_weight: float | None = field(
        default=None,
        metadata={
            "help": "Initial RLSD mixing weight w of token advantages A·[(1−w) + w·clip(exp(sign(A)·Δ), 1−ε, 1+ε)] "
            "(reference 0.5). 0 disables the reweighting. Unset: the preset's value (0.5 for rlsd, else 0)."
        },
    )
    rlsd_decay_steps: int = field(
        default=100,
        metadata={"help": "Optimizer steps over which the RLSD weight decays linearly to 0 (reference 100)."},
    )
    rlsd_clip_eps: float = field(
        default=0.2,
        metadata={"help": "ε of the RLSD token-weight clip [1−ε, 1+ε] (reference 0.2)."},
    )
    teacher_mode: str = field(
        default="live",
        metadata={
            "help": "Which weights score the teacher prompt: 'live' (SDAR: the policy with the weights that "
            "generated the batch), 'base' (initial weights: adapter disabled under PEFT, else a frozen copy) or "
            "'ema' (exponential moving average of the trainable weights; not in the paper).",
            "choices": list(TEACHER_MODES),
        },
    )
    teacher_ema_rate: float = field(
        default=0.05,
        metadata={
            "help": "EMA update rate α in ema ← (1 − α)·ema + α·θ, for teacher_mode='ema' (the paper has no EMA "
            "teacher; 0.05 is TRL SDPO's default)."
        },
    )
    teacher_ema_sync_steps: int = field(
        default=1,
        metadata={"help": "Update the EMA teacher every this many optimizer steps (teacher_mode='ema')."},
    )
    teacher_context_header: str = field(
        default="[Privileged Skill Information]\n",
        metadata={"help": "Header placed before the privileged context in the teacher prompt (reference header)."},
    )
    teacher_context_separator: str = field(
        default="\n\n",
        metadata={"help": "Text between the privileged context and the student prompt (reference: a blank line)."},
    )
    max_teacher_prompt_length: int | None = field(
        default=None,
        metadata={
            "help": "Left-truncate teacher prompts (header + context + student prompt) to this many tokens, as the "
            "reference truncates to its max prompt length (2048 ALFWorld, 4096 WebShop/Search). None: no truncation."
        },
    )
    teacher_prefix_cache: bool = field(
        default=True,
        metadata={
            "help": "Encode each distinct teacher prefix (header + privileged context) once per batch and reuse its "
            "key/value cache for all rows sharing it (every step of an episode and every trajectory of a task share "
            "one), together with the prompt tokens those rows share. Same log-probs up to float rounding, at a "
            "fraction of the cost when the context is longer than the prompt. Not part of the paper (an "
            "implementation choice); False: one full forward per row. Not used under FSDP or DeepSpeed ZeRO-3 (every "
            "process must run the same number of forwards)."
        },
    )
    distill_empty_context: bool = field(
        default=False,
        metadata={
            "help": "Keep rows whose privileged context is empty in the distillation term. Their teacher equals the "
            "student (Δ = 0, gate 0.5), so the term would only reinforce their own samples; by default they are "
            "left out. The reference never has such rows (every prompt gets at least the general skills)."
        },
    )
    privileged_context_column: str = field(
        default="privileged_context",
        metadata={"help": "Dataset column with each row's privileged context string (TRL's SDPO/SDFT use the same)."},
    )
    max_steps_per_episode: int | None = field(
        default=None,
        metadata={
            "help": "Agent mode: stop every episode after this many steps. None: the environment's own "
            "max_episode_steps (reference: ALFWorld 50, WebShop 15, Search 4)."
        },
    )
    history_length: int = field(
        default=2,
        metadata={
            "help": "Agent mode: past (observation, action) pairs shown in each step prompt (reference: ALFWorld and "
            "WebShop 2, Search 4)."
        },
    )
    invalid_action_penalty: float = field(
        default=0.1,
        metadata={
            "help": "Agent mode: subtracted from the reward of a step whose response did not parse (reference: "
            "ALFWorld and WebShop 0.1, Search 0.01)."
        },
    )
    eval_temperature: float = field(
        default=0.4,
        metadata={"help": "Agent mode: sampling temperature of evaluate() episodes (reference 0.4; 0 = greedy)."},
    )
    max_observation_length: int | None = field(
        default=4096,
        metadata={
            "help": "Agent mode: observations longer than this many characters keep their end, marked as truncated "
            "(so an environment dumping a huge page cannot overflow the prompt). None: no limit."
        },
    )
    privileged_context_source: str = field(
        default="skills",
        metadata={
            "help": "Agent mode: the teacher's privileged context per step: 'skills' (SDAR: general + task-type "
            "skills from skill_bank), 'facts' (the environment's privileged_facts(), an oracle ablation), "
            "'skills+facts'.",
            "choices": ["skills", "facts", "skills+facts"],
        },
    )

    env_step_timeout: float | None = field(
        default=None,
        metadata={
            "help": "Agent mode: seconds an environment reset()/step() call may take. A slower call fails its episode "
            "(counted as env/errors/timeout) and the environment instance is abandoned (never reused: its call may "
            "still run in a background thread) and rebuilt by env_factory; with env_workers >= 1 its worker process "
            "is killed and restarted instead. None: no limit."
        },
    )
    max_abs_reward: float = field(
        default=1e6,
        metadata={
            "help": "Agent mode: largest |reward| of one environment step. A larger or non-finite reward fails its "
            "episode (env/errors/bad_reward), so it can never overflow float32 and turn the weights NaN."
        },
    )
    max_failed_episode_share: float = field(
        default=0.5,
        metadata={
            "help": "Agent mode: stop training with an error naming the environment when more than this share of a "
            "batch's episodes failed (raised, returned bad values, timed out). Failed episodes are never learnt "
            "from either way. 1: never stop."
        },
    )
    max_admissible_actions: int | None = field(
        default=100,
        metadata={
            "help": "Agent mode: show at most this many admissible actions in a step prompt, followed by '… (N more)' "
            "(a state with thousands of actions would otherwise fill the prompt). None: show all."
        },
    )
    env_workers: int = field(
        default=0,
        metadata={
            "help": "Agent mode: 0 runs the environments in the training process; N >= 1 runs them in N worker "
            "processes, so an environment that crashes its process (segfault in native code, os._exit, OOM kill) "
            "fails its episodes (env/errors/worker_died) and its worker is restarted, instead of killing training. "
            "env_factory must then be picklable (a module-level class or function, or functools.partial of one)."
        },
    )
    invalid_action_text: str | None = field(
        default=None,
        metadata={
            "help": "Agent mode: what a response that does not parse sends to the environment. None (the reference "
            "code's behaviour): the response's last 30 characters, control characters removed; a string such as "
            "'' or 'look' is sent instead (for environments that should not see malformed text at all)."
        },
    )

    # TRL 1.16 declares `gradient_checkpointing=True` as its default, and transformers >= 5.23 warns about that
    # deprecated name whenever it is set: every config warned although the user had set nothing. Unset here,
    # the same default is applied in __post_init__ through the name this transformers reads.
    gradient_checkpointing: bool | None = field(
        default=None,
        metadata={
            "help": "Deprecated alias of activation_checkpointing on transformers >= 5.23. Unset: TRL's default, "
            "activation checkpointing on (trades ~20%% step time for activation memory).",
            "nargs": "?",
            "const": True,
        },
    )

    def __post_init__(self) -> None:
        if self.gradient_checkpointing is None and getattr(self, CHECKPOINTING_FIELD) is None:
            setattr(self, CHECKPOINTING_FIELD, True)
        if not isinstance(self.method, str):
            check_field_types(self, {"method": SDAR_FIELD_KINDS["method"]})
        if self.method not in METHOD_PRESETS:
            raise ValueError(
                f"method={self.method!r} is not a known SDAR method preset. Expected one of "
                f"{sorted(METHOD_PRESETS)}; for a custom mix pick the closest preset and set its fields explicitly."
            )
        for name, value in METHOD_PRESETS[self.method].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        check_field_types(self, SDAR_FIELD_KINDS)
        check_field_types(self, TRL_FIELD_KINDS)
        # Before TRL's __post_init__, which divides by num_generations (0: ZeroDivisionError).
        self._check_trl_fields()
        super().__post_init__()
        self._check_sdar_fields()
        self._check_env_boundary_fields()

    def _check_trl_fields(self) -> None:
        if self.num_generations < 2:
            raise ValueError(
                f"num_generations={self.num_generations} must be >= 2: GRPO scores each completion against the "
                "other completions of its prompt, so a group needs at least 2. Set num_generations=2 or more (TRL's "
                "default is 8)."
            )
        if self.num_generations_eval is not None and self.num_generations_eval < 1:
            raise ValueError(
                f"num_generations_eval={self.num_generations_eval} must be >= 1 or None (None: num_generations). "
                "Set it to the completions per eval prompt, or leave it unset."
            )
        if self.max_completion_length is not None and self.max_completion_length < 1:
            raise ValueError(
                f"max_completion_length={self.max_completion_length} must be >= 1 token. Set it to the longest "
                "completion to sample (TRL's default is 256)."
            )
        if self.num_iterations < 1:
            raise ValueError(
                f"num_iterations={self.num_iterations} must be >= 1 (optimisation passes per generation batch). Set "
                "num_iterations=1 (TRL's default)."
            )
        if not math.isfinite(self.beta) or self.beta < 0:
            raise ValueError(
                f"beta={self.beta} must be a finite number >= 0: it is the coefficient of the KL term towards the "
                "reference model, and a negative value would push the policy away from it. Set beta=0.0 (TRL's "
                "default; no reference model is loaded) or a small positive value such as 0.04."
            )
        if not math.isfinite(self.epsilon) or self.epsilon < 0:
            raise ValueError(
                f"epsilon={self.epsilon} must be a finite number >= 0 (the clip range of the policy ratio). Set "
                "epsilon=0.2 (TRL's default)."
            )
        if not math.isfinite(self.temperature) or self.temperature <= 0:
            raise ValueError(
                f"temperature={self.temperature} must be a finite number > 0: training completions are sampled at "
                "it and TRL divides the logits by it. Set temperature=1.0 (TRL's default); for greedy evaluation "
                "in agent mode set eval_temperature=0 instead."
            )
        if not math.isfinite(self.top_p) or not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p={self.top_p} must lie in (0, 1]. Set top_p=1.0 (TRL's default: no nucleus cut).")

    def _check_sdar_fields(self) -> None:
        if not math.isfinite(self.distill_coef) or self.distill_coef < 0:
            raise ValueError(
                f"distill_coef={self.distill_coef} must be a finite number >= 0 (it is λ, the weight of the "
                "distillation term; the paper uses 0.01). Set distill_coef=0 or method='grpo' to disable distillation."
            )
        if not math.isfinite(self.gate_beta) or self.gate_beta < 0:
            raise ValueError(
                f"gate_beta={self.gate_beta} must be a finite number >= 0 (it is β of the gate sigmoid(β·Δ); the "
                "paper uses 5.0, and 0 gives the constant gate 0.5)."
            )
        if self.distill_loss not in DISTILL_LOSSES:
            raise ValueError(
                f"distill_loss={self.distill_loss!r} is not supported; expected one of {list(DISTILL_LOSSES)} "
                "('gated' is SDAR)."
            )
        if not math.isfinite(self.rlsd_weight) or not 0.0 <= self.rlsd_weight <= 1.0:
            raise ValueError(
                f"rlsd_weight={self.rlsd_weight} must lie in [0, 1] (reference 0.5; 0 disables RLSD reweighting)."
            )
        if self.rlsd_decay_steps < 0:
            raise ValueError(
                f"rlsd_decay_steps={self.rlsd_decay_steps} must be >= 0 (reference 100; 0 keeps the weight constant)."
            )
        if not math.isfinite(self.rlsd_clip_eps) or not 0.0 <= self.rlsd_clip_eps < 1.0:
            raise ValueError(f"rlsd_clip_eps={self.rlsd_clip_eps} must lie in [0, 1) (reference 0.2).")
        if self.teacher_mode not in TEACHER_MODES:
            raise ValueError(
                f"teacher_mode={self.teacher_mode!r} is not supported; expected one of {list(TEACHER_MODES)} "
                "('live' is SDAR)."
            )
        if not math.isfinite(self.teacher_ema_rate) or not 0.0 < self.teacher_ema_rate <= 1.0:
            raise ValueError(
                f"teacher_ema_rate={self.teacher_ema_rate} must lie in (0, 1] (TRL SDPO uses 0.05; 1 copies the live "
                "weights at every sync)."
            )
        if self.teacher_ema_sync_steps < 1:
            raise ValueError(f"teacher_ema_sync_steps={self.teacher_ema_sync_steps} must be >= 1 optimizer step.")
        if self.max_teacher_prompt_length is not None and self.max_teacher_prompt_length < 1:
            raise ValueError(
                f"max_teacher_prompt_length={self.max_teacher_prompt_length} must be a positive number of tokens or "
                "None (no truncation)."
            )
        if not self.privileged_context_column:
            raise ValueError("privileged_context_column must name a dataset column, got an empty string.")
        if self.max_steps_per_episode is not None and self.max_steps_per_episode < 1:
            raise ValueError(
                f"max_steps_per_episode={self.max_steps_per_episode} must be >= 1 or None (use the environment's "
                "own limit)."
            )
        if self.history_length < 0:
            raise ValueError(f"history_length={self.history_length} must be >= 0 (reference: 2, Search 4).")
        if not math.isfinite(self.invalid_action_penalty) or self.invalid_action_penalty < 0:
            raise ValueError(
                f"invalid_action_penalty={self.invalid_action_penalty} must be a finite number >= 0 (reference 0.1)."
            )
        if not math.isfinite(self.eval_temperature) or self.eval_temperature < 0:
            raise ValueError(f"eval_temperature={self.eval_temperature} must be >= 0 (0 = greedy; reference 0.4).")
        if self.max_observation_length is not None and self.max_observation_length < 64:
            raise ValueError(
                f"max_observation_length={self.max_observation_length} must be >= 64 characters or None (no limit)."
            )
        if self.privileged_context_source not in PRIVILEGED_CONTEXT_SOURCES:
            raise ValueError(
                f"privileged_context_source={self.privileged_context_source!r} is not supported; expected one of "
                f"{list(PRIVILEGED_CONTEXT_SOURCES)} ('skills' is SDAR)."
            )
        if self.skills_in_student_prompt and self.needs_teacher:
            raise ValueError(
                f"skills_in_student_prompt=True (method={self.method!r}) with a teacher branch (distill_coef="
                f"{self.distill_coef}, rlsd_weight={self.rlsd_weight}) shows the privileged context to the student "
                "and again to the teacher, so the teacher knows nothing more. Use method='skill_grpo' without "
                "distillation, or a distillation method with skills_in_student_prompt=False."
            )
        if not self.use_policy_loss and self.distill_coef == 0:
            raise ValueError(
                "use_policy_loss=False with distill_coef=0 leaves nothing to train the policy. Set distill_coef > 0 "
                "(the opsd preset uses 0.01) or use_policy_loss=True."
            )

    def _check_env_boundary_fields(self) -> None:
        timeout = self.env_step_timeout
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not math.isfinite(timeout) or timeout <= 0):  # fmt: skip
            raise ValueError(f"env_step_timeout={timeout!r} must be a positive number of seconds or None (no limit).")
        bound = self.max_abs_reward
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not 0 < bound <= 1e30:
            raise ValueError(
                f"max_abs_reward={bound!r} must be a number in (0, 1e30] (rewards must stay finite in float32, whose "
                "largest value is ~3.4e38); the default 1e6 suits every shipped environment."
            )
        share = self.max_failed_episode_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 <= share <= 1.0:
            raise ValueError(
                f"max_failed_episode_share={share!r} must lie in [0, 1] (0.5 by default; 1 never stops training)."
            )
        workers = self.env_workers
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise ValueError(
                f"env_workers={workers!r} must be an int >= 0 (0: environments in this process; N: N worker "
                "processes)."
            )
        limit = self.max_admissible_actions
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"max_admissible_actions={limit!r} must be an int >= 1 or None (show all).")

    @property
    def needs_teacher(self) -> bool:
        """Whether a teacher forward runs each generation batch (distillation or RLSD reweighting)."""
        return self.distill_coef > 0 or self.rlsd_weight > 0

    @property
    def needs_privileged_context(self) -> bool:
        """Whether rows must carry a privileged context (teacher branch or skills in the student prompt)."""
        return self.needs_teacher or bool(self.skills_in_student_prompt)
