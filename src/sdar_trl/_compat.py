"""Every TRL internal that `sdar_trl` relies on, in one place.

`SDARTrainer` subclasses `trl.GRPOTrainer` and wraps (never copies) some of its private methods.
TRL rewrites those every few releases, so each one is listed here with the parameters we pass, and
`tests/test_trl_contract.py` checks the installed TRL against this list and fails with a message
naming what moved. When you bump the TRL pin, run that test first and update this file.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import trl
import trl.trainer.utils as _trl_utils
from packaging.version import Version
from transformers import GenerationConfig
from trl import GRPOTrainer
from trl.models import prepare_deepspeed, prepare_fsdp
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import add_fused_lm_head, use_adapter

__all__ = [
    "GRPO_METHODS",
    "KV_CACHE_NAME",
    "TESTED_TRL_RANGE",
    "TRLMember",
    "add_fused_lm_head",
    "check_trl_contract",
    "compact_fused_log_probs_on_cpu",
    "disable_gradient_checkpointing",
    "prepare_deepspeed",
    "prepare_fsdp",
    "sampling_temperature",
    "use_adapter",
]

#: TRL versions this release is tested against (must agree with pyproject.toml's pin).
TESTED_TRL_RANGE: tuple[str, str] = ("1.16.0", "1.17.0")


@dataclass(frozen=True)
class TRLMember:
    """A TRL attribute we use: where it lives, the parameters we pass it, and why we need it."""

    owner: object
    name: str
    parameters: tuple[str, ...]
    why: str


#: GRPOTrainer methods/attributes SDARTrainer wraps or reads.
GRPO_METHODS: tuple[TRLMember, ...] = (
    TRLMember(
        GRPOTrainer,
        "__init__",
        (
            "self",
            "model",
            "reward_funcs",
            "args",
            "train_dataset",
            "eval_dataset",
            "processing_class",
            "reward_processing_classes",
            "callbacks",
            "optimizers",
            "quantization_config",
            "peft_config",
            "tools",
            "rollout_func",
            "environment_factory",
        ),
        "SDARTrainer.__init__ forwards exactly these arguments",
    ),
    TRLMember(
        GRPOTrainer,
        "_generate_and_score_completions",
        ("self", "inputs"),
        "wrapped: adds teacher_per_token_logps (and RLSD advantages) to the generation batch",
    ),
    TRLMember(
        GRPOTrainer,
        "_get_per_token_logps_and_entropies",
        (
            "self",
            "model",
            "input_ids",
            "attention_mask",
            "logits_to_keep",
            "batch_size",
            "compute_entropy",
            "compute_aux_loss",
        ),
        "called for the teacher forward; wrapped to capture the student's grad-carrying log-probs in _compute_loss "
        "and, with unpadded_logps, called once per row on the row's real columns (sdar_trl.unpadded)",
    ),
    TRLMember(
        GRPOTrainer,
        "compute_loss",
        ("self", "model", "inputs", "return_outputs", "num_items_in_batch"),
        "wrapped: adds distill_coef × the distillation term to TRL's loss",
    ),
    TRLMember(
        GRPOTrainer,
        "_compute_loss",
        ("self", "model", "inputs"),
        "must run exactly one grad-carrying _get_per_token_logps_and_entropies forward (the one we capture)",
    ),
    TRLMember(
        GRPOTrainer,
        "_tokenize_prompts",
        ("self", "prompts"),
        "agent mode: applies the chat template to each step prompt; returns (prompt_ids, images, multimodal_fields)",
    ),
    TRLMember(
        GRPOTrainer,
        "_generate_single_turn",
        ("self", "prompt_ids", "images", "multimodal_fields", "num_generations"),
        "agent mode: one batched generation per environment step through TRL's backends (transformers or vLLM); "
        "returns (completion_ids, logprobs)",
    ),
    TRLMember(
        GRPOTrainer,
        "_prepare_inputs",
        ("self", "generation_batch"),
        "agent mode: returns already prepared step-sample chunks unchanged (rollouts happen in training_step)",
    ),
    TRLMember(
        GRPOTrainer,
        "training_step",
        ("self", "model", "inputs", "num_items_in_batch"),
        "agent mode: one call per accumulation step; we run transformers.Trainer.training_step once per chunk",
    ),
    TRLMember(
        GRPOTrainer,
        "train",
        ("self", "resume_from_checkpoint", "trial", "ignore_keys_for_eval"),
        "wrapped (transformers.Trainer): resolves partial checkpoints and restores sdar_state.pt before resuming",
    ),
    TRLMember(
        GRPOTrainer,
        "_save_checkpoint",
        ("self", "model", "trial"),
        "wrapped (transformers.Trainer): writes sdar_state.pt into checkpoint-<step> before transformers' files",
    ),
    TRLMember(
        GRPOTrainer,
        "_get_output_dir",
        ("self", "trial"),
        "transformers.Trainer: the run directory holding checkpoint-<global_step> (where sdar_state.pt goes)",
    ),
)

#: Module-level helpers we import (name -> parameters we pass).
HELPERS: tuple[TRLMember, ...] = (
    TRLMember(use_adapter, "use_adapter", ("model", "adapter_name"), "teacher_mode='base' under PEFT"),
    TRLMember(
        disable_gradient_checkpointing,
        "disable_gradient_checkpointing",
        ("model", "gradient_checkpointing_kwargs"),
        "no-grad teacher forward without checkpointing warnings",
    ),
    TRLMember(
        add_fused_lm_head,
        "add_fused_lm_head",
        ("model", "temperature", "cast_lm_head_to_fp32"),
        "gives the frozen base-teacher copy the same fused log-prob head as the policy",
    ),
    TRLMember(prepare_deepspeed, "prepare_deepspeed", ("model", "accelerator"), "prepares the base-teacher copy"),
    TRLMember(prepare_fsdp, "prepare_fsdp", ("model", "accelerator"), "prepares the base-teacher copy"),
)

#: Keys of the dict `_generate_and_score_completions` returns that SDARTrainer reads.
GENERATION_OUTPUT_KEYS: tuple[str, ...] = (
    "prompt_ids",
    "prompt_mask",
    "completion_ids",
    "completion_mask",
    "advantages",
    "num_items_in_batch",
)


#: The test inside TRL's fused LM head (`add_fused_lm_head`) that decides whether only the labelled positions
#: are scored. `compact_fused_log_probs_on_cpu` widens it; the contract test checks the line is still there.
FUSED_HEAD_COMPACTION_TEST = "compact = _use_triton(hidden_states.device)"


def compact_fused_log_probs_on_cpu() -> None:
    """Make TRL's fused LM head score only the labelled (completion) positions on CPU too. Idempotent.

    TRL compacts to the labelled positions only on Triton devices: elsewhere (e.g. Neuron) a batch-dependent
    number of positions would recompile its kernels. A CPU compiles nothing, but without compaction every
    prompt position goes through the vocabulary projection: for SmolLM2 (49k entries) and ~1,000-token agent
    prompts that is a fifth of each log-prob forward and backward, spent on values that are masked to 0. The
    results are identical (tests/test_trl_contract.py compares log-probs and gradients); only CPU is affected.
    """
    original = _trl_utils._use_triton
    if getattr(original, "sdar_cpu_compaction", False):
        return

    def use_compaction(device: torch.device) -> bool:
        return device.type == "cpu" or original(device)

    use_compaction.sdar_cpu_compaction = True  # type: ignore[attr-defined]
    _trl_utils._use_triton = use_compaction


@contextlib.contextmanager
def sampling_temperature(trainer: Any, temperature: float) -> Iterator[None]:
    """Temporarily sample at `temperature` (0 = greedy) in a GRPOTrainer's generation backend.

    Sets TRL's `vllm_generation.temperature` with vLLM, else its `generation_config` / `generation_kwargs`.
    """
    if trainer.use_vllm:
        previous = trainer.vllm_generation.temperature
        trainer.vllm_generation.temperature = temperature
        try:
            yield
        finally:
            trainer.vllm_generation.temperature = previous
        return
    previous = trainer.generation_config, trainer.generation_kwargs
    kwargs = {**trainer.generation_kwargs, "do_sample": temperature > 0, "temperature": temperature or None}
    if temperature == 0:
        kwargs.update(top_p=None, top_k=None, min_p=None)
    trainer.generation_config, trainer.generation_kwargs = GenerationConfig(**kwargs, disable_compile=True), kwargs
    try:
        yield
    finally:
        trainer.generation_config, trainer.generation_kwargs = previous


def _kv_cache_name() -> str:
    # transformers renamed the key/value cache argument and output field `past_key_values` -> `cache` (5.2x,
    # the old name is deprecated until 5.40); we support both sides of the rename (pyproject admits 5.17).
    from transformers.models.llama.modeling_llama import LlamaModel

    return "cache" if "cache" in inspect.signature(LlamaModel.forward).parameters else "past_key_values"


#: The keyword (and model-output field) transformers uses for a key/value cache: the teacher's shared-prefix
#: cache (`sdar_trl.teacher.prefix_cached_logps`) passes it. tests/test_teacher.py runs that path.
KV_CACHE_NAME: str = _kv_cache_name()


def _parameters(obj: object) -> tuple[str, ...]:
    return tuple(inspect.signature(obj).parameters)


def check_trl_contract() -> list[str]:
    """Return a list of human-readable problems with the installed TRL (empty when all is well)."""
    problems: list[str] = []
    version = Version(trl.__version__)
    low, high = (Version(v) for v in TESTED_TRL_RANGE)
    if not low <= version < high:
        problems.append(
            f"trl {trl.__version__} is outside the tested range [{low}, {high}); sdar_trl wraps private GRPOTrainer "
            "methods that change between minor releases."
        )
    for member in GRPO_METHODS:
        attr = getattr(member.owner, member.name, None)
        if attr is None:
            problems.append(f"GRPOTrainer.{member.name} no longer exists (needed: {member.why}).")
            continue
        params = _parameters(attr)
        missing = [p for p in member.parameters if p not in params]
        if missing or params[: len(member.parameters)] != member.parameters:
            problems.append(
                f"GRPOTrainer.{member.name} signature changed: expected leading parameters {member.parameters}, "
                f"found {params} (needed: {member.why})."
            )
    if not callable(getattr(_trl_utils, "_use_triton", None)) or FUSED_HEAD_COMPACTION_TEST not in inspect.getsource(
        add_fused_lm_head
    ):
        problems.append(
            "trl.trainer.utils.add_fused_lm_head no longer decides compaction with "
            f"`{FUSED_HEAD_COMPACTION_TEST}` (needed: compact_fused_log_probs_on_cpu, a CPU speed-up)."
        )
    for member in HELPERS:
        params = _parameters(member.owner)
        missing = [p for p in member.parameters if p not in params]
        if missing:
            problems.append(f"{member.name} lost parameters {missing}; found {params} (needed: {member.why}).")
    return problems
