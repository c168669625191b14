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

Two options shorten the token sequences (both off by default; the shipped starters use neither, docs/starter.md
"Shorter sequences"): `atomic_pieces`, strings such as `" [SEP] "` kept as one pre-tokenizer piece so that BPE can
make each a single token, and `implicit_spaces`, with which the single space between two words is not a token at
all (the decoder puts it back).

Words that never occur in the fitting text (searchqa-mini's invented names of held-out worlds) are spelt with
smaller pieces; the tokenizer never produces an unknown token.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from ..testing import wrap_chat_tokenizer

__all__ = [
    "CONTINUATION_PREFIX",
    "MICRO_CHAT_TEMPLATE",
    "MICRO_SPECIAL_TOKENS",
    "SEPARATE_SPACES_PATTERN",
    "WORD_PATTERN",
    "fit_micro_tokenizer",
    "render_micro_chat",
    "split_pattern",
]

#: Special tokens, in id order: padding, turn start, turn end (EOS).
MICRO_SPECIAL_TOKENS: tuple[str, ...] = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
#: Pieces BPE may merge within: a word with its leading space, one punctuation mark, or a run of whitespace.
WORD_PATTERN = r" ?[A-Za-z0-9]+| ?[^A-Za-z0-9\s]|\s+"
#: With `separate_spaces`: a bare word, or a run of anything else (BPE may merge frequent runs such as " [SEP] ").
SEPARATE_SPACES_PATTERN = r"[A-Za-z0-9]+|[^A-Za-z0-9]+"
#: With `implicit_spaces`: the marker BPE puts before every piece that continues a word (or a run of punctuation).
#: It lies outside the byte-level alphabet, so no piece of real text can start with it.
CONTINUATION_PREFIX = "\u2581"
#: With `implicit_spaces`: a single space with a letter or digit on both sides (the one the pre-tokenizer drops).
_INNER_SPACE = r"(?<=[A-Za-z0-9]) (?=[A-Za-z0-9])"
#: With `implicit_spaces`, in the decoder: a space the decoder inserted that does not sit between two words.
_NOT_INNER_SPACE = r"(?<![A-Za-z0-9]) | (?![A-Za-z0-9])"
#: The byte-level alphabet's character for the space byte.
_BYTE_LEVEL_SPACE = "\u0120"
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
#: Characters with a meaning in an Oniguruma pattern (the `tokenizers` regex engine), escaped in atomic pieces.
_REGEX_SPECIAL = frozenset("\\^$.|?*+()[]{}-#")
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
    atomic_pieces: Iterable[str] = (),
    implicit_spaces: bool = False,
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
        atomic_pieces: strings the pre-tokenizer keeps as one piece (tried before words and punctuation at each
            position, and a run of punctuation stops where one starts; one that starts with a letter is not found
            inside a longer word), so that BPE can make each frequent one a single token: webshop-mini's
            `" [SEP] "` is otherwise three tokens. Compared after lower-casing when `lowercase` is on.
        implicit_spaces: with `separate_spaces`, drop the single space between two words instead of making it a
            token (a quarter of webshop-mini's prompt tokens); the decoder puts it back between two tokens that
            end and start a word. A word is still the same token after a space, a bracket or a newline. Pieces
            that continue a word carry `CONTINUATION_PREFIX`, so the decoder can tell a word's second piece from
            the next word; decoding stays exact for every string.

    Returns:
        A left-padding `PreTrainedTokenizerFast` with EOS `<|im_end|>`, PAD `<|endoftext|>` and a chat template.
    """
    minimum = 256 + len(MICRO_SPECIAL_TOKENS)
    if vocab_size < minimum:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: a byte-level BPE needs at least {minimum} entries "
            f"(256 bytes + {len(MICRO_SPECIAL_TOKENS)} special tokens)."
        )
    if implicit_spaces and not separate_spaces:
        raise ValueError(
            "implicit_spaces=True needs separate_spaces=True (with leading-space words there is no lone space "
            "token to drop); pass both, or neither."
        )
    atomic = _check_atomic_pieces(atomic_pieces, lowercase=lowercase, implicit_spaces=implicit_spaces)
    prefix = CONTINUATION_PREFIX if implicit_spaces else None
    tokenizer = Tokenizer(models.BPE(continuing_subword_prefix=prefix) if prefix else models.BPE())
    if lowercase:
        tokenizer.normalizer = normalizers.Lowercase()
    splits = [pre_tokenizers.Split(Regex(split_pattern(separate_spaces, atomic)), behavior="isolated")]
    if implicit_spaces:
        # Before the word split, which could no longer see that a lone space has a word on each side.
        splits.insert(0, pre_tokenizers.Split(Regex(_INNER_SPACE), behavior="removed"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [*splits, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tokenizer.decoder = _implicit_space_decoder() if implicit_spaces else decoders.ByteLevel()
    # `tokenizers`' BPE trainer gives each continuation form of a character (prefix + character) the next free id
    # when it first meets it while iterating over a hash map of the words, so the ids, and the merges they break
    # ties between, change from one process to the next (huggingface/tokenizers#1794). Declaring all of them up
    # front, in byte order, as entries the trainer must keep fixes their ids; they are made ordinary tokens again
    # below (as special tokens they would vanish from decoding with skip_special_tokens=True).
    seeded = [prefix + char for char in _byte_level_chars()] if prefix else []
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[*MICRO_SPECIAL_TOKENS, *seeded],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
        **({"continuing_subword_prefix": prefix} if prefix else {}),
    )
    words = sorted(set(required_words))
    # " a b c" gives every word its leading-space form, "a\nb\nc" the bare form (after punctuation or a newline).
    extra = ["".join(f" {word}" for word in words), "\n".join(words)] * required_repeats if words else []
    if implicit_spaces:
        # The initial alphabet has every byte as a first piece only; BPE has no unknown token, so a byte whose
        # continuation form is missing would be dropped from the encoding.
        extra.append(_continuation_alphabet_text())
    tokenizer.train_from_iterator([*texts, *extra], trainer=trainer)
    if seeded:
        tokenizer = _unmark_special(tokenizer, set(seeded))
    if implicit_spaces:
        _check_continuation_alphabet(tokenizer, lowercase=lowercase)
    return wrap_chat_tokenizer(
        tokenizer, chat_template=MICRO_CHAT_TEMPLATE, additional_special_tokens=["<|im_start|>"]
    )


def split_pattern(separate_spaces: bool, atomic_pieces: Sequence[str] = ()) -> str:
    """The pre-tokenizer's split pattern: `SEPARATE_SPACES_PATTERN` or `WORD_PATTERN`, with `atomic_pieces` (longest
    first) tried before them; a run of punctuation or whitespace stops where an atomic piece starts."""
    if not atomic_pieces:
        return SEPARATE_SPACES_PATTERN if separate_spaces else WORD_PATTERN
    atomic = "|".join(_escape(piece) for piece in sorted(atomic_pieces, key=len, reverse=True))
    if separate_spaces:
        return rf"{atomic}|[A-Za-z0-9]+|(?:(?!{atomic})[^A-Za-z0-9])+"
    return rf"{atomic}| ?[A-Za-z0-9]+| ?[^A-Za-z0-9\s]|(?:(?!{atomic})\s)+"


def _escape(piece: str) -> str:
    return "".join(f"\\{char}" if char in _REGEX_SPECIAL else char for char in piece)


def _check_atomic_pieces(pieces: Iterable[str], *, lowercase: bool, implicit_spaces: bool) -> list[str]:
    if isinstance(pieces, str):
        raise ValueError(
            f"atomic_pieces={pieces!r} is one string; pass a list of strings, e.g. atomic_pieces=[{pieces!r}]."
        )
    checked = []
    for piece in pieces:
        if not isinstance(piece, str) or not piece:
            raise ValueError(f"atomic_pieces contains {piece!r}; every atomic piece must be a non-empty string.")
        if implicit_spaces and (piece[0] in _ALNUM or piece[-1] in _ALNUM or re.search(_INNER_SPACE, piece)):
            # A piece that ends in a letter followed by a word would get a space inserted on decoding; a space
            # between two words inside it is dropped before the pieces are split, so the piece never matches.
            raise ValueError(
                f"atomic piece {piece!r} cannot be used with implicit_spaces=True: it must start and end with a "
                "character other than a letter or digit and hold no single space between two words "
                "(e.g. ' [SEP] '). Remove it or switch implicit_spaces off."
            )
        checked.append(piece.lower() if lowercase else piece)
    return sorted(set(checked))


def _implicit_space_decoder() -> decoders.Decoder:
    """Decoder for `implicit_spaces`: WordPiece joins the pieces with a space before every piece that does not
    continue the one before (and strips the prefix); the spaces that do not sit between two words are removed
    again. Real spaces are still the byte-level 'Ġ' at that point, so only inserted ones are touched."""
    return decoders.Sequence(
        [
            decoders.WordPiece(prefix=CONTINUATION_PREFIX, cleanup=False),
            decoders.Fuse(),
            # WordPiece leaves the prefix on the first token (a sequence cut in the middle of a word).
            decoders.Replace(CONTINUATION_PREFIX, ""),
            decoders.Replace(Regex(_NOT_INNER_SPACE), ""),
            # The byte-level decoder keeps a token with a character outside its alphabet as raw text.
            decoders.Replace(" ", _BYTE_LEVEL_SPACE),
            decoders.ByteLevel(),
        ]
    )


def _utf8_bytes(lowercase: bool) -> list[int]:
    """The bytes that text can hold after normalization (valid UTF-8 never holds 0xC0, 0xC1 or 0xF5-0xFF)."""
    upper = set(range(ord("A"), ord("Z") + 1)) if lowercase else set()
    return [b for b in range(0xF5) if b not in (0xC0, 0xC1) and b not in upper]


def _continuation_alphabet_text() -> str:
    """One line in which every byte of valid UTF-8 follows another byte of its pre-tokenizer piece: letters and
    digits after 'a', every other ASCII character after '!', and characters with every lead byte and every
    continuation byte after '!' (all 64 second bytes per lead, so that lower-casing cannot remove a lead byte)."""
    alnum = "a" + "".join(sorted(_ALNUM))
    chars = [chr(c) for c in range(128) if chr(c) not in _ALNUM]
    chars += [bytes([lead, second]).decode() for lead in range(0xC2, 0xE0) for second in range(0x80, 0xC0)]
    chars += [bytes([0xE0, second, 0x80]).decode() for second in range(0xA0, 0xC0)]
    chars += [bytes([lead, second, 0x80]).decode() for lead in range(0xE1, 0xF0) for second in range(0x80, 0xA0)]
    chars += [bytes([0xF0, 0x90, 0x80, 0x80]).decode()]
    chars += [bytes([lead, 0x80, 0x80, 0x80]).decode() for lead in range(0xF1, 0xF5)]
    # 'a' between the runs ends each one, so an atomic piece or an inner space cannot swallow the next character.
    return alnum + "".join(f"a!{char}" for char in chars)


def _unmark_special(tokenizer: Tokenizer, contents: set[str]) -> Tokenizer:
    """`tokenizer` with the added (special) tokens in `contents` made ordinary vocabulary entries (same ids)."""
    state = json.loads(tokenizer.to_str())
    state["added_tokens"] = [token for token in state["added_tokens"] if token["content"] not in contents]
    return Tokenizer.from_str(json.dumps(state))


def _check_continuation_alphabet(tokenizer: Tokenizer, *, lowercase: bool) -> None:
    vocab = tokenizer.get_vocab()
    alphabet = _byte_level_chars()
    missing = [b for b in _utf8_bytes(lowercase) if CONTINUATION_PREFIX + alphabet[b] not in vocab]
    if missing:
        raise RuntimeError(
            f"implicit_spaces: the fitted vocabulary lacks the continuation form of bytes {missing[:10]}; such "
            "bytes would be dropped when encoding. This is a bug in fit_micro_tokenizer: please report it."
        )


def _byte_level_chars() -> list[str]:
    """The byte-level alphabet in byte order (GPT-2's mapping: printable Latin-1 bytes are themselves, the other
    bytes take the characters from U+0100 on, in byte order)."""
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars, extra = [], 0
    for byte in range(256):
        if byte in printable:
            chars.append(chr(byte))
        else:
            chars.append(chr(0x100 + extra))
            extra += 1
    return chars
