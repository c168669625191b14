"""fit_micro_tokenizer: required words are single tokens, every string round-trips, and it survives save/load."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, LlamaConfig

from sdar_trl.starter.micro_tokenizer import MICRO_SPECIAL_TOKENS, fit_micro_tokenizer, render_micro_chat

CORPUS = [
    "You arrive at cabinet 2. On the cabinet 2, you see a mug 1, and a pen 3.",
    "<think>I take the mug 1.</think><action>take mug 1 from cabinet 2</action>",
    "Instruction: [SEP] i need a grey wallet [SEP] B08T8OWQ8Z [SEP] $26.00",
    "The year Drek was founded is 1086.",
] * 5


@pytest.fixture(scope="module")
def tokenizer():
    return fit_micro_tokenizer(CORPUS, required_words=["B07K87PZEA", "b07k87pzea", "sinkbasin"], vocab_size=2000)


def pieces(tokenizer, text: str) -> list[str]:
    return [tokenizer.decode([i]) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]


def test_required_words_are_single_tokens_with_and_without_a_leading_space(tokenizer):
    for word in ("B07K87PZEA", "b07k87pzea", "sinkbasin"):
        assert pieces(tokenizer, word) == [word]
        assert pieces(tokenizer, " " + word) == [" " + word]


def test_words_split_at_punctuation_and_frequent_words_are_whole(tokenizer):
    assert pieces(tokenizer, "<action>take b07k87pzea</action>") == [
        "<", "action", ">", "take", " b07k87pzea", "<", "/", "action", ">"
    ]  # fmt: skip
    assert pieces(tokenizer, " cabinet 2.") == [" cabinet", " 2", "."]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_any_text_round_trips_exactly(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text


def test_special_tokens_chat_template_and_padding(tokenizer):
    assert tokenizer.convert_tokens_to_ids(list(MICRO_SPECIAL_TOKENS)) == [0, 1, 2]
    assert (tokenizer.eos_token, tokenizer.pad_token, tokenizer.padding_side) == (
        "<|im_end|>",
        "<|endoftext|>",
        "left",
    )
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n" == render_micro_chat("hi")
    assert tokenizer.decode(tokenizer("<|im_end|>", add_special_tokens=False)["input_ids"]) == "<|im_end|>"


def test_saved_beside_a_llama_config_it_loads_back_unchanged(tokenizer, tmp_path):
    """AutoTokenizer picks a tokenizer class from the model config: for some model types (qwen2) transformers 5
    swaps in that family's own pre-tokenizer, which splits numbers into digits. Llama keeps ours."""
    tokenizer.save_pretrained(tmp_path)
    LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2).save_pretrained(
        tmp_path
    )
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in ("The year Drek was founded is 1086.", "click[b07k87pzea]", "x  y\n\tz ünï"):
        assert (
            loaded(text, add_special_tokens=False)["input_ids"]
            == tokenizer(text, add_special_tokens=False)["input_ids"]
        )
    assert loaded.apply_chat_template(
        [{"role": "user", "content": "a"}], tokenize=False
    ) == tokenizer.apply_chat_template([{"role": "user", "content": "a"}], tokenize=False)


def test_vocab_size_below_the_byte_alphabet_is_refused():
    with pytest.raises(ValueError, match="vocab_size=100 is too small"):
        fit_micro_tokenizer(CORPUS, vocab_size=100)


def test_lowercase_tokenizer_makes_both_spellings_of_an_id_one_token():
    tokenizer = fit_micro_tokenizer(CORPUS, required_words=["b07k87pzea"], vocab_size=2000, lowercase=True)
    lower = tokenizer("click[b07k87pzea]", add_special_tokens=False)["input_ids"]
    assert pieces(tokenizer, "[SEP] B07K87PZEA [SEP]")[3] == " b07k87pzea"  # the page's id: one token
    assert pieces(tokenizer, "[B07K87PZEA]") == pieces(tokenizer, "[b07k87pzea]") == ["[", "b07k87pzea", "]"]
    assert tokenizer.decode(lower) == "click[b07k87pzea]"  # lower-case actions round-trip exactly
    chat = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)
    assert tokenizer.decode(tokenizer(chat, add_special_tokens=False)["input_ids"]) == chat.replace("Hi", "hi")


@pytest.fixture(scope="module")
def spaced():
    return fit_micro_tokenizer(CORPUS, required_words=["b07k87pzea", "grey"], vocab_size=2000, separate_spaces=True)


def test_separate_spaces_makes_a_word_the_same_token_after_a_space_and_after_a_bracket(spaced, tokenizer):
    page = pieces(spaced, "i need a grey wallet [SEP] b07k87pzea [SEP]")
    action = pieces(spaced, "search[grey wallet] click[b07k87pzea]")
    for word in ("grey", "wallet", "b07k87pzea"):
        assert word in page and word in action  # the copied word is one token, identical in both places
    # The default tokenizer keeps the leading space: the page's " grey" is not what the action spells.
    assert " grey" in pieces(tokenizer, "a grey wallet") and " grey" not in pieces(tokenizer, "search[grey]")
    assert not any(piece.startswith(" ") and piece.strip().isalnum() for piece in page)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_separate_spaces_text_round_trips_exactly(spaced, text):
    assert spaced.decode(spaced(text, add_special_tokens=False)["input_ids"]) == text
