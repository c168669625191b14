"""Offline tiny models for tests, examples and smoke runs.

Nothing here touches the Hugging Face hub: the tokenizer is a byte-level BPE trained in memory on a
small built-in corpus, wrapped in `PreTrainedTokenizerFast` with TRL's shipped Qwen3 chat template,
and the model is a randomly initialised `Qwen2ForCausalLM` / `Qwen3ForCausalLM`. Both build in a
second or two on a CPU, so a whole `SDARTrainer` run fits in a unit test.

```python
from sdar_trl.testing import build_tiny_model, build_tiny_tokenizer

tokenizer = build_tiny_tokenizer()
model = build_tiny_model(tokenizer, architecture="qwen3")
```
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedModel, PreTrainedTokenizerFast, Qwen2Config, Qwen3Config

if TYPE_CHECKING:
    from .config import SDARConfig

__all__ = [
    "SPECIAL_TOKENS",
    "ScriptedEnv",
    "build_tiny_model",
    "build_tiny_tokenizer",
    "load_qwen3_chat_template",
    "patch_generation",
    "save_tiny",
    "tiny_agent_config",
    "tiny_single_turn_config",
]

#: Special tokens of the Qwen chat format (plus the reasoning/action tags agents emit), each a single id.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
)

# A small, varied corpus: enough merges for chat text, actions and digits to tokenize compactly.
_CORPUS: tuple[str, ...] = (
    "You are an agent acting in a household. Your task is to put a clean apple in the fridge.",
    "Your admissible actions of the current situation are: go to countertop 1, open fridge 1, take apple 1.",
    "<think>The apple is on the countertop, so I should go there first.</think><action>go to countertop 1</action>",
    "You are shopping on a web store. Find a pair of red running shoes under 50 dollars.",
    "search[red running shoes] click[item B07XYZ] click[buy now] click[size 9] click[back to search]",
    "Question: who wrote the novel? <search>author of the novel</search> <answer>Jane Austen</answer>",
    "[Privileged Skill Information]\nAlways check the admissible actions before acting.\n\n",
    "system user assistant tool The quick brown fox jumps over the lazy dog.",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 42 100 2048 answer: yes no true false",
    "What is 2 + 2? The answer is 4. What is the capital of France? Paris.",
    "Observation: You arrive at countertop 1. On the countertop 1, you see an apple 1 and a knife 1.",
    "Step 3 of 50. History: you opened the fridge. Current observation: the fridge is open.",
)


def load_qwen3_chat_template() -> str:
    """Return the Qwen3 chat template that TRL ships (`trl/chat_templates/qwen3.jinja`)."""
    return (importlib.resources.files("trl") / "chat_templates" / "qwen3.jinja").read_text(encoding="utf-8")


def wrap_chat_tokenizer(
    tokenizer: Tokenizer, *, chat_template: str, additional_special_tokens: Sequence[str]
) -> PreTrainedTokenizerFast:
    """Wrap a trained `tokenizers.Tokenizer` like a Qwen chat tokenizer: EOS `<|im_end|>`, PAD `<|endoftext|>`,
    no BOS or UNK, left padding and truncation (what `GRPOTrainer` expects of a prompt tokenizer), `chat_template`."""
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        padding_side="left",
        truncation_side="left",
        additional_special_tokens=list(additional_special_tokens),
    )
    wrapped.chat_template = chat_template
    return wrapped


def build_tiny_tokenizer(
    *, vocab_size: int = 512, corpus: Iterable[str] | None = None, chat_template: str | None = None
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer in memory and wrap it like a Qwen tokenizer.

    Args:
        vocab_size: Target vocabulary size (byte alphabet + special tokens + merges). Must be at
            least 256 + the number of special tokens.
        corpus: Training texts; defaults to a small built-in agent/chat corpus.
        chat_template: Jinja chat template; defaults to TRL's shipped Qwen3 template.

    Returns:
        A `PreTrainedTokenizerFast` with `<|im_start|>`/`<|im_end|>` chat tokens, `<|endoftext|>` as
        pad token, left padding and left truncation (what `GRPOTrainer` expects of a prompt tokenizer).
    """
    minimum = 256 + len(SPECIAL_TOKENS)
    if vocab_size < minimum:
        raise ValueError(
            f"vocab_size={vocab_size} is too small for a byte-level BPE tokenizer: it needs at least "
            f"{minimum} entries (256 bytes + {len(SPECIAL_TOKENS)} special tokens). Pass vocab_size >= {minimum}."
        )
    texts = list(corpus) if corpus is not None else list(_CORPUS)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Repeat the corpus so that frequent pairs clear the default min_frequency and merges are deterministic.
    tokenizer.train_from_iterator(texts * 4, trainer=trainer)
    return wrap_chat_tokenizer(
        tokenizer,
        chat_template=chat_template if chat_template is not None else load_qwen3_chat_template(),
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in ("<|endoftext|>", "<|im_end|>")],
    )


def build_tiny_model(
    tokenizer: PreTrainedTokenizerFast,
    *,
    architecture: Literal["qwen2", "qwen3", "llama"] = "qwen2",
    hidden_size: int = 64,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 2048,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> PreTrainedModel:
    """Build a randomly initialised Qwen2/Qwen3/Llama causal LM sized for CPU tests (and the micro starters).

    The vocabulary matches `tokenizer`, and generation stops on `<|im_end|>` like a Qwen chat model.
    The same `seed` always gives the same weights.
    """
    if architecture not in ("qwen2", "qwen3", "llama"):
        raise ValueError(f"architecture={architecture!r} is not supported; expected 'qwen2', 'qwen3' or 'llama'.")
    if hidden_size % num_attention_heads != 0:
        raise ValueError(
            f"hidden_size={hidden_size} must be divisible by num_attention_heads={num_attention_heads}; "
            "pick e.g. hidden_size=64 with num_attention_heads=4."
        )
    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size or 2 * hidden_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "num_key_value_heads": num_key_value_heads,
        "max_position_embeddings": max_position_embeddings,
        "tie_word_embeddings": True,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": None,
    }
    if architecture == "qwen2":
        config = Qwen2Config(**common)
        from transformers import Qwen2ForCausalLM as model_class
    elif architecture == "llama":
        # A tokenizer saved beside a llama config is loaded as it is; for qwen2, transformers 5's AutoTokenizer
        # swaps in Qwen's own pre-tokenizer (see sdar_trl.starter.micro_tokenizer).
        from transformers import LlamaConfig
        from transformers import LlamaForCausalLM as model_class

        config = LlamaConfig(**common)
    else:
        config = Qwen3Config(head_dim=hidden_size // num_attention_heads, **common)
        from transformers import Qwen3ForCausalLM as model_class
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config).to(dtype)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    return model


def save_tiny(path: str | Path, *, architecture: Literal["qwen2", "qwen3"] = "qwen2", seed: int = 0) -> Path:
    """Build a tiny tokenizer + model and save both to `path` (loadable with `from_pretrained`).

    Useful where a path is required: `beta > 0` without PEFT (TRL reloads the reference model by
    name), 4-bit loading, or vLLM.
    """
    path = Path(path)
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(tokenizer, architecture=architecture, seed=seed)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


class ScriptedEnv:
    """A configurable fake `AgentEnvironment` for tests (in the spirit of Gymnasium's test envs).

    Every episode lasts `length` steps (or until the action `win`, which wins with reward `win_reward`).
    Observations are `"obs <seed>-<t>"`, the task is `"task <seed>"`, the task type `"type<seed % 2>"`,
    the admissible actions `["go", "win"]`. Fault injection: `fail_on_step=k` raises on the k-th step
    (1-based); `garbage_on_step=k` returns malformed values (a non-str observation) on the k-th step;
    `fail_on_reset=True` raises in `reset`.
    """

    action_format = "think_action"

    def __init__(
        self,
        *,
        length: int = 3,
        win_reward: float = 1.0,
        fail_on_step: int | None = None,
        garbage_on_step: int | None = None,
        fail_on_reset: bool = False,
        long_observation: int = 0,
    ) -> None:
        self.length = length
        self.max_episode_steps = length
        self.win_reward = win_reward
        self.fail_on_step = fail_on_step
        self.garbage_on_step = garbage_on_step
        self.fail_on_reset = fail_on_reset
        self.long_observation = long_observation
        self.seed: int | None = None
        self.t = 0
        self.actions: list[str] = []
        self.close_calls = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        if self.fail_on_reset:
            raise RuntimeError("scripted reset failure")
        self.seed, self.t, self.actions = (0 if seed is None else seed), 0, []
        info = {"task": f"task {self.seed}", "task_type": f"type{self.seed % 2}", "admissible_actions": ["go", "win"]}
        return self._obs(), info

    def step(self, action: str) -> tuple:
        if self.seed is None:
            from .environments.base import ResetNeededError

            raise ResetNeededError("ScriptedEnv.step() before reset()")
        self.t += 1
        self.actions.append(action)
        if self.fail_on_step == self.t:
            raise RuntimeError(f"scripted failure on step {self.t}")
        if self.garbage_on_step == self.t:
            return (["not", "a", "string"], "NaN", None, None, [])
        won = action == "win"
        done = won or self.t >= self.length
        info = {"won": won, "admissible_actions": ["go", "win"]}
        return self._obs(), (self.win_reward if won else 0.0), won, done and not won, info

    def close(self) -> None:
        self.close_calls += 1

    def privileged_facts(self) -> str:
        return f"The answer to task {self.seed} is win."

    def _obs(self) -> str:
        return f"obs {self.seed}-{self.t}" + ("x" * self.long_observation)


def patch_generation(trainer: object, respond: Callable[[str, int, int], str]) -> list[str]:
    """Replace the trainer's batched generation by a scripted "model" (for agent-mode tests).

    `respond(prompt_text, call_index, position)` returns the response text for one prompt (`prompt_text`
    is the chat-templated prompt, `call_index` counts generation calls from 0, `position` is the prompt's
    index within the call). The response is tokenized and
    terminated with EOS, so everything after generation (decoding, parsing, log-probs) runs for real.
    Returns the list that records every prompt text seen, in order.
    """
    tokenizer = trainer.processing_class  # type: ignore[attr-defined]
    seen: list[str] = []
    calls = [0]

    def generate(prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        completions = []
        for position, ids in enumerate(prompt_ids):
            text = tokenizer.decode(ids)
            seen.append(text)
            completion = tokenizer(respond(text, calls[0], position), add_special_tokens=False)["input_ids"]
            completions.append([*completion, tokenizer.eos_token_id])
        calls[0] += 1
        return completions, None

    trainer._generate_single_turn = generate  # type: ignore[attr-defined]
    return seen


#: The training settings `tiny_agent_config` and `tiny_single_turn_config` share: two optimizer steps at a large
#: learning rate (so that a tiny model visibly moves), no checkpoints, no reporting, fp32.
_TINY_TRAINING: dict[str, object] = dict(
    max_steps=2,
    learning_rate=1e-2,
    logging_steps=1,
    report_to="none",
    bf16=False,
    seed=0,
    save_strategy="no",
    disable_tqdm=True,
)


def tiny_agent_config(output_dir: str | Path, **overrides: object) -> SDARConfig:
    """An `SDARConfig` for a few agent-mode steps of a `build_tiny_model` model on a CPU (tests, smoke runs).

    Two task groups of two trajectories a step, short completions, three steps per episode, two optimizer steps,
    a large learning rate (so a tiny model visibly moves), no checkpoints, no reporting, fp32. `overrides` replace
    any of these or set other `SDARConfig` fields.
    """
    from .config import SDARConfig

    kwargs: dict[str, object] = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=12,
        **_TINY_TRAINING,
        max_steps_per_episode=3,
    )
    kwargs.update(overrides)
    return SDARConfig(**kwargs)


def tiny_single_turn_config(
    output_dir: str | Path, *, config_class: type[Any] | None = None, **overrides: object
) -> SDARConfig:
    """An `SDARConfig` for a few single-turn steps of a `build_tiny_model` model on a CPU (tests, smoke runs).

    The single-turn twin of `tiny_agent_config`: one group of four completions a step, short completions, two
    optimizer steps, a large learning rate (so a tiny model visibly moves), no checkpoints, no reporting, fp32.
    `overrides` replace any of these or set other `SDARConfig` fields. `config_class` builds another config
    class from the same values instead (e.g. TRL's `GRPOConfig` for a plain-GRPO baseline).
    """
    from .config import SDARConfig

    kwargs: dict[str, object] = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=8,
        **_TINY_TRAINING,
    )
    kwargs.update(overrides)
    return (config_class or SDARConfig)(**kwargs)
