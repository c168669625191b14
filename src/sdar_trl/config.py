"""`SDARConfig`: `GRPOConfig` plus the teacher branch, the gated distillation term and method presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments
from trl import GRPOConfig

from ._config_checks import (
    DISTILL_LOSSES,
    SDAR_FIELD_KINDS,
    TEACHER_MODES,
    TRL_FIELD_KINDS,
    check_env_boundary_fields,
    check_sdar_fields,
    check_trl_fields,
)
from ._config_checks import PRIVILEGED_CONTEXT_SOURCES as PRIVILEGED_CONTEXT_SOURCES
from ._validation import check_field_types
from .unpadded import UNPADDED_LOGPS_MODES

__all__ = ["CHECKPOINTING_FIELD", "DISTILL_LOSSES", "METHOD_PRESETS", "TEACHER_MODES", "SDARConfig"]

# The accepted values, field kinds and range checks live in sdar_trl._config_checks; PRIVILEGED_CONTEXT_SOURCES,
# SDAR_FIELD_KINDS and TRL_FIELD_KINDS stay importable from here.

#: What each `method` preset sets (docs/methods.md). A field the user sets explicitly wins over the preset.
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
    policy prompted with privileged context (docs/trainer.md, "The loss"). `L_GRPO` is TRL's own loss for the
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
        unpadded_logps (`str`, *optional*, defaults to `"auto"`):
            Run the log-prob forwards one row at a time on the row's real tokens instead of as one padded batch:
            `"auto"` (row by row when the model is on CPU and rows hold 384+ real tokens on average, batched
            otherwise), `"always"` or `"never"`
            (TRL's batched forward). Same log-probs up to float rounding for rotary-position models; multimodal
            and MoE aux-loss forwards stay batched (docs/trainer.md).
        distill_empty_context (`bool`, *optional*, defaults to `False`):
            Keep rows with an empty privileged context in the distillation term (their teacher equals
            the student). By default they are left out of it (never arises in the reference).
        privileged_context_column (`str`, *optional*, defaults to `"privileged_context"`):
            Dataset column holding each row's privileged context (same name as TRL's SDPO/SDFT).

        > Gate diagnostics (docs/gate.md)

        gate_diagnostics (`bool`, *optional*, defaults to `False`):
            Split the gate (`distill_loss="gated"`) by token class (`reasoning`, `action`, `format`, `other`) and by
            outcome (`success`, `failure`): logs `sdar/gate_mean/<x>` and `sdar/gate_active_ratio/<x>`, and dumps
            a few samples' tokens with their gate and Δ (`gate_tokens.jsonl`, `gate_tokens.html` in `output_dir`).
        gate_diagnostics_every (`int`, *optional*, defaults to `10`):
            Dump the tokens on the first optimizer step and every this many steps; `0` dumps none.

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
        skill_retrieval (`str`, *optional*, defaults to `"rules"`):
            Which skills of the `skill_bank` the teacher sees per episode: `"rules"` (SDAR reference: general +
            task-type skills), `"all"` (the whole bank, the paper's "Full"), `"bm25"` (top `skill_retrieval_k`
            skills under BM25 for the task description), `"kmeans"` (the TF-IDF k-means cluster nearest the task
            description; needs scikit-learn, `pip install "sdar-trl[retrieval]"`) or `"ucb"` (a UCB1 bandit per
            task type rewarded by the gated teacher gap; saved in checkpoints). See `sdar_trl.retrieval` and
            docs/methods.md.
        skill_retrieval_k (`int`, *optional*, defaults to `8`):
            Skills per episode for `"bm25"` and `"ucb"`; `"kmeans"` makes `max(1, round(len(bank) / k))` clusters.
        skill_ucb_c (`float`, *optional*, defaults to `0.1`):
            Exploration constant c of `skill_retrieval="ucb"` (index `mean + c·sqrt(ln N / n)`).

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
    unpadded_logps: str = field(
        default="auto",
        metadata={
            "help": "Run the log-prob forwards (the loss's, and the old, reference and teacher log-probs) one row at "
            "a time on the row's real tokens instead of as one padded batch: 'auto' (row by row when the model is "
            "on CPU and rows hold 384+ real tokens on average: there every padding position costs a full token, "
            "while shorter rows pay more for the separate forwards; batched on accelerators), 'always' or 'never' "
            "(TRL's batched forward). Same log-probs up to float rounding for rotary-position models "
            "(Llama, Qwen). Multimodal and MoE load-balancing (aux loss) forwards always run batched.",
            "choices": list(UNPADDED_LOGPS_MODES),
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
    gate_diagnostics: bool = field(
        default=False,
        metadata={
            "help": "Split the gate by token class and outcome (distill_loss='gated'): log sdar/gate_mean/<x> and "
            "sdar/gate_active_ratio/<x> for x in reasoning, action, format, other (tokens inside <think>, inside the "
            "action tags, tags/EOS, the rest) and success, failure (agent mode: the episode won; single-turn: the "
            "advantage is positive/negative), and dump a few samples' tokens with gate and Δ every "
            "gate_diagnostics_every steps (gate_tokens.jsonl / .html in output_dir). See docs/gate.md."
        },
    )
    gate_diagnostics_every: int = field(
        default=10,
        metadata={
            "help": "With gate_diagnostics: write the tokens of 4 samples with their gate and Δ on the first "
            "optimizer step and every this many steps (output_dir/gate_tokens.jsonl and gate_tokens.html); 0 "
            "writes none (the split metrics are still logged)."
        },
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
    skill_retrieval: str = field(
        default="rules",
        metadata={
            "help": "Agent mode: which skills of skill_bank the teacher sees per episode: 'rules' (SDAR reference: "
            "the general skills plus those of the episode's task type), 'all' (the whole bank, the paper's 'Full'), "
            "'bm25' (the skill_retrieval_k skills scoring highest under BM25 for the task description), 'kmeans' "
            "(the TF-IDF k-means cluster nearest the task description; needs pip install 'sdar-trl[retrieval]'), "
            "'ucb' (a UCB1 bandit per task type over all skills, rewarded by the episode's gated teacher gap; its "
            "state is saved in checkpoints).",
            "choices": ["rules", "all", "bm25", "kmeans", "ucb"],
        },
    )
    skill_retrieval_k: int = field(
        default=8,
        metadata={
            "help": "Agent mode: skills shown per episode by skill_retrieval='bm25' and 'ucb'; 'kmeans' makes "
            "max(1, round(bank size / k)) clusters (about k skills each). Unused by 'rules' and 'all'."
        },
    )
    skill_ucb_c: float = field(
        default=0.1,
        metadata={
            "help": "Agent mode, skill_retrieval='ucb': exploration constant c of the index mean + c·sqrt(ln N / n). "
            "The reward (the gated teacher gap) is about 0.01-0.1 nats per token, so c is on that scale."
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
        check_trl_fields(self)
        super().__post_init__()
        check_sdar_fields(self)
        check_env_boundary_fields(self)

    @property
    def needs_teacher(self) -> bool:
        """Whether a teacher forward runs each generation batch (distillation or RLSD reweighting)."""
        return self.distill_coef > 0 or self.rlsd_weight > 0

    @property
    def needs_privileged_context(self) -> bool:
        """Whether rows must carry a privileged context (teacher branch or skills in the student prompt)."""
        return self.needs_teacher or bool(self.skills_in_student_prompt)
