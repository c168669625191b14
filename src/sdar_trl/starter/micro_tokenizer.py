"""The micro starters' tokenizer: byte-level BPE fitted to one environment's own text.

A tiny model spends most of its parameters and time on the vocabulary (a 128-wide model with Qwen's 151,936
entries is 95 % embedding), and it cannot learn to copy a name made of several arbitrary pieces in a few
minutes of training. So each micro starter gets a tokenizer fitted to its environment:

- pre-tokenization splits text into words (letters and digits, with their leading space), single punctuation
  marks and runs of whitespace; byte-level mapping keeps every string encodable and decodes it exactly. With
  `separate_spaces=True` a word never carries its space: words are one piece and every run of other characters
  (spaces, punctuation) another, so a word is the same token after a space and after `[` (an action such as
  `search[short sleeve dress]` or `click[grey]` copies words the page shows after spaces);
- BPE merges are learnt only *inside* those pieces, from the environment's training text plus its closed word
  lists (object and receptacle names, product ids, option values: `required_words`), repeated often enough
  that each of those becomes a single token;
- the chat template is Qwen's `<|im_start|>role ... <|im_end|>` format; `<|im_end|>` is the EOS token and
  `<|endoftext|>` the padding token; prompts are left-padded, as `GRPOTrainer` expects.

Words that never occur in the fitting text (searchqa-mini's invented names of held-out worlds) are spelt with
smaller pieces; the tokenizer never produces an unknown token.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from ..testing import wrap_chat_tokenizer

__all__ = [
    "MICRO_CHAT_TEMPLATE",
    "MICRO_SPECIAL_TOKENS",
    "SEPARATE_SPACES_PATTERN",
    "WORD_PATTERN",
    "fit_micro_tokenizer",
    "render_micro_chat",
]

#: Special tokens, in id order: padding, turn start, turn end (EOS).
MICRO_SPECIAL_TOKENS: tuple[str, ...] = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
#: Pieces BPE may merge within: a word with its leading space, one punctuation mark, or a run of whitespace.
WORD_PATTERN = r" ?[A-Za-z0-9]+| ?[^A-Za-z0-9\s]|\s+"
#: With `separate_spaces`: a bare word, or a run of anything else (BPE may merge frequent runs such as " [SEP] ").
SEPARATE_SPACES_PATTERN = r"[A-Za-z0-9]+|[^A-Za-z0-9]+"
#: Qwen's chat format without a system prompt (agent mode sends one user message per step).
MICRO_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def render_micro_chat(content: str) -> str:
    """`MICRO_CHAT_TEMPLATE` applied to one user message with the generation prompt, without a tokenizer (the
    text a tokenizer is fitted on must be the text it will later be given)."""
    from jinja2 import Template  # a dependency of transformers' chat templates

    return Template(MICRO_CHAT_TEMPLATE).render(
        messages=[{"role": "user", "content": content}], add_generation_prompt=True
    )


def fit_micro_tokenizer(
    texts: Iterable[str],
    *,
    required_words: Iterable[str] = (),
    vocab_size: int = 4096,
    min_frequency: int = 2,
    required_repeats: int = 20,
    lowercase: bool = False,
    separate_spaces: bool = False,
) -> PreTrainedTokenizerFast:
    """Fit a byte-level BPE tokenizer to an environment's text and wrap it as a chat tokenizer.

    Args:
        texts: the fitting corpus (rendered prompts and responses of the training split only).
        required_words: words that must be single tokens (entity names, ids, option values). Each is added to
            the corpus `required_repeats` times, with and without a leading space, so that its merges win.
        vocab_size: upper bound on the vocabulary (byte alphabet + special tokens + merges); fitting stops
            earlier when every piece of the corpus is one token.
        min_frequency: a pair must occur this often to be merged.
        required_repeats: see `required_words`.
        lowercase: lower-case all text before tokenizing. For environments that show a name in one case and take
            it back in another (webshop-mini's pages say `B08T8OWQ8Z`, its actions `click[b08t8owq8z]`): without
            it the two spellings are unrelated tokens and the model must learn the mapping for every id. Decoding
            then gives lower-case text, so only environments whose actions are lower case may use it.
        separate_spaces: split words from the spaces and punctuation around them (`SEPARATE_SPACES_PATTERN`)
            instead of keeping a word's leading space (`WORD_PATTERN`). Needed where actions put a copied word
            right after a bracket (`search[tea tree oil shampoo]`, `click[b07e4273ok]`, `answer[Velmora]`): with
            leading spaces, " tea" on the page and "tea" in the action are unrelated tokens, and a small model cannot
            learn that mapping for words it has rarely seen. Text costs ~1.5x more tokens.

    Returns:
        A left-padding `PreTrainedTokenizerFast` with EOS `<|im_end|>`, PAD `<|endoftext|>` and a chat template.
    """
    minimum = 256 + len(MICRO_SPECIAL_TOKENS)
    if vocab_size < minimum:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: a byte-level BPE needs at least {minimum} entries "
            f"(256 bytes + {len(MICRO_SPECIAL_TOKENS)} special tokens)."
        )
    tokenizer = Tokenizer(models.BPE())
    if lowercase:
        tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(SEPARATE_SPACES_PATTERN if separate_spaces else WORD_PATTERN), behavior="isolated"
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(MICRO_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    words = sorted(set(required_words))
    # " a b c" gives every word its leading-space form, "a\nb\nc" the bare form (after punctuation or a newline).
    extra = ["".join(f" {word}" for word in words), "\n".join(words)] * required_repeats if words else []
    tokenizer.train_from_iterator([*texts, *extra], trainer=trainer)
    return wrap_chat_tokenizer(
        tokenizer, chat_template=MICRO_CHAT_TEMPLATE, additional_special_tokens=["<|im_start|>"]
    )
