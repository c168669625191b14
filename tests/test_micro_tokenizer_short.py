"""fit_micro_tokenizer's shorter-sequence options: `atomic_pieces` and `implicit_spaces`.

Every string still decodes exactly, a word is the same token after a space, a bracket and a newline (the copy
property `separate_spaces` exists for), and the defaults fit the same components as the shipped tokenizer.json files.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from sdar_trl.starter.micro_tokenizer import (
    CONTINUATION_PREFIX,
    SEPARATE_SPACES_PATTERN,
    WORD_PATTERN,
    fit_micro_tokenizer,
    split_pattern,
)

ROOT = Path(__file__).resolve().parents[1]
MICRO = ROOT / "src" / "sdar_trl" / "starter" / "micro"
CORPUS = [
    "Instruction: [SEP] i need a grey wallet [SEP] B08T8OWQ8Z [SEP] $26.00",
    "<think></think><action>search[grey wallet]</action> Doc 1(Title: Drek) Drek was founded in 1086.",
] * 5
WORDS = ["grey", "wallet", "b08t8owq8z", "Drek"]


def fit(**options):
    return fit_micro_tokenizer(CORPUS, required_words=WORDS, vocab_size=2000, separate_spaces=True, **options)


@pytest.fixture(scope="module")
def short():
    return fit(atomic_pieces=[" [SEP] "], implicit_spaces=True)


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_no_atomic_pieces_keeps_the_shipped_split_patterns():
    assert split_pattern(True) == SEPARATE_SPACES_PATTERN
    assert split_pattern(False) == WORD_PATTERN


@pytest.mark.parametrize(("separate_spaces", "sep_tokens"), [(True, 3), (False, 4)])
def test_an_atomic_piece_becomes_one_token(separate_spaces, sep_tokens):
    plain = fit_micro_tokenizer(CORPUS, vocab_size=2000, separate_spaces=separate_spaces, lowercase=True)
    atomic = fit_micro_tokenizer(
        CORPUS, vocab_size=2000, separate_spaces=separate_spaces, atomic_pieces=[" [SEP] "], lowercase=True
    )
    # ' [', 'sep', '] ' (separate spaces) or ' [', 'sep', ']', ' ' (leading-space words): what the option removes
    assert len(ids(plain, " [SEP] ")) == sep_tokens
    assert len(ids(atomic, " [SEP] ")) == 1  # lower-cased like the text it is compared with
    text = "grey wallet [SEP] b08t8owq8z [SEP] grey"
    assert atomic.decode(ids(atomic, text)) == text.lower()
    if separate_spaces:  # the words around the pieces are the same tokens either way
        assert len(ids(atomic, text)) == len(ids(plain, text)) - 2 * (sep_tokens - 1)


def test_a_run_of_punctuation_stops_where_an_atomic_piece_starts(short):
    # '.' then ' [SEP] ': without the stop, the run '. [' would swallow the piece's start.
    tokens = [short.decode([i]) for i in ids(short, "26.00. [SEP] grey")]
    assert " [SEP] " in tokens


def test_implicit_spaces_drop_the_space_between_words_and_decode_it(short):
    text = "i need a grey wallet"
    assert [short.decode([i]) for i in ids(short, text)] == ["i", "need", "a", "grey", "wallet"]
    assert short.decode(ids(short, text)) == text
    plain = fit()
    assert len(ids(plain, text)) == 9  # four of them lone spaces


def test_words_of_several_pieces_and_unusual_spacing_decode_exactly(short):
    # "zqxvk" and "wpkjy" are not in the corpus: several pieces each, the later ones carrying the prefix.
    text = "zqxvk wpkjy  grey\twallet \n[Drek] , x ,y"
    pieces = short.convert_ids_to_tokens(ids(short, text))
    assert any(p.startswith(CONTINUATION_PREFIX) for p in pieces)
    assert short.decode(ids(short, text)) == text
    # A sequence cut inside a word (its first piece a continuation) decodes without the marker.
    assert short.decode(ids(short, "zqxvk")[1:]) == "zqxvk"[len(short.decode(ids(short, "zqxvk")[:1])) :]


@pytest.mark.parametrize("word", [*WORDS, "zqxvk"])
def test_a_word_is_the_same_tokens_after_a_space_a_bracket_and_a_newline(short, word):
    alone = ids(short, word)
    # After a word, the space between them is no token: "a grey" is "a" then "grey".
    for before, tokens_before in (("a ", "a"), ("[", "["), ("\n", "\n"), ("] ", "] "), ("search[", "search[")):
        assert ids(short, before + word) == ids(short, tokens_before) + alone, before


def test_required_words_stay_single_tokens(short):
    for word in WORDS:
        assert len(ids(short, word)) == 1, word


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_text_round_trips_exactly(short, text):
    assert short.decode(ids(short, text)) == text


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab Zq1 [].\n"), max_size=40))
def test_any_spacing_of_words_round_trips_exactly(short, text):
    assert short.decode(ids(short, text)) == text


def test_lower_casing_with_implicit_spaces_round_trips_every_byte():
    tokenizer = fit(lowercase=True, implicit_spaces=True)
    text = "Grey WALLET ÀÉ Ѐ а 日本 😀 [SEP]"
    assert tokenizer.decode(ids(tokenizer, text)) == text.lower()


def test_chat_template_and_special_tokens_decode_exactly(short):
    text = short.apply_chat_template([{"role": "user", "content": "a b"}], add_generation_prompt=True, tokenize=False)
    assert short.decode(ids(short, text + "x y<|im_end|>")) == text + "x y<|im_end|>"
    assert short.decode(ids(short, text + "x y<|im_end|>"), skip_special_tokens=True) == "user\na b\nassistant\nx y"
    # The documented difference: a skipped special token between two words leaves a space (docs/starter.md).
    assert short.decode(ids(short, "a<|im_end|>b"), skip_special_tokens=True) == "a b"


_FIT_IN_A_PROCESS = """
import sys
sys.path.insert(0, {tests!r})
from test_micro_tokenizer_short import fit
print(fit(atomic_pieces=[" [SEP] "], implicit_spaces=True).backend_tokenizer.to_str())
"""


def test_the_fit_is_the_same_in_every_process():
    """tokenizers' BPE trainer numbers the continuation pieces in hash-map order (a new order in every process) and
    breaks merge ties by those numbers; fit_micro_tokenizer fixes them, so a rebuilt starter gets the same file."""
    script = _FIT_IN_A_PROCESS.format(tests=str(Path(__file__).parent))
    fits = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout
        for seed in range(3)
    }
    assert len(fits) == 1
    (state,) = (json.loads(text) for text in fits)
    # The fixed continuation pieces are ordinary tokens: only the chat's three special tokens are special.
    assert [token["content"] for token in state["added_tokens"]] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def test_continuation_pieces_survive_skipping_special_tokens(short):
    text = "zqxvk wpkjy"  # spelt with continuation pieces (never in the fitting text)
    assert any(token.startswith(CONTINUATION_PREFIX) for token in short.convert_ids_to_tokens(ids(short, text)))
    assert short.decode(ids(short, text), skip_special_tokens=True) == text


def test_saved_and_reloaded_offline_it_encodes_and_decodes_the_same(short, tmp_path):
    short.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path, padding_side="left")
    text = "i need a grey wallet [SEP] zqxvk wpkjy"
    assert ids(loaded, text) == ids(short, text)
    assert loaded.decode(ids(loaded, text)) == text


def test_bad_options_name_the_value_and_the_fix():
    with pytest.raises(ValueError, match=r"implicit_spaces=True needs separate_spaces=True"):
        fit_micro_tokenizer(CORPUS, vocab_size=2000, implicit_spaces=True)
    with pytest.raises(ValueError, match=r"atomic_pieces=' \[SEP\] ' is one string.*\[' \[SEP\] '\]"):
        fit(atomic_pieces=" [SEP] ")
    with pytest.raises(ValueError, match=r"contains ''"):
        fit(atomic_pieces=[""])
    with pytest.raises(ValueError, match=r"atomic piece 'SEP\]' cannot be used with implicit_spaces"):
        fit(atomic_pieces=["SEP]"], implicit_spaces=True)
    with pytest.raises(ValueError, match=r"atomic piece ' \[a b\] ' cannot"):
        fit(atomic_pieces=[" [a b] "], implicit_spaces=True)


@pytest.mark.parametrize("env", ["webshop-mini", "searchqa-mini"])
def test_the_recipe_options_fit_the_components_of_the_shipped_tokenizer(bm, env):
    """A fit with the env's recipe options (scripts/build_micro.py: webshop-mini both, searchqa-mini none, i.e. the
    defaults) has the shipped files' normalizer, pre-tokenizer, decoder and model type (its vocabulary differs:
    another corpus)."""
    shipped = json.loads((MICRO / env / "tokenizer.json").read_text())
    options = {"atomic_pieces": bm.ATOMIC_PIECES.get(env, ()), "implicit_spaces": env in bm.IMPLICIT_SPACES_ENVS}
    recipe = ((" [SEP] ",), True) if env == "webshop-mini" else ((), False)
    assert (options["atomic_pieces"], options["implicit_spaces"]) == recipe
    fitted = json.loads(
        fit_micro_tokenizer(
            CORPUS, vocab_size=2000, separate_spaces=True, lowercase=env == "webshop-mini", **options
        ).backend_tokenizer.to_str()
    )
    for key in ("normalizer", "pre_tokenizer", "decoder"):
        assert fitted[key] == shipped[key], key
    model_options = {k: v for k, v in fitted["model"].items() if k not in ("vocab", "merges")}
    assert model_options == {k: v for k, v in shipped["model"].items() if k not in ("vocab", "merges")}


# ------------------------------------------------------------------------ the environments' own strings
_INNER_ACTION = re.compile(r"<(action|search|answer)>(.*?)</\1>", re.DOTALL)


@pytest.mark.parametrize("env", ["webshop-mini", "searchqa-mini"])
def test_every_action_of_expert_episodes_round_trips_and_words_copy(bm, env):
    """Fitted as build_micro fits them (its corpus at 40 episodes a source) with both options: every admissible
    action and every expert response and action decodes exactly; the env's required words (webshop-mini) or the
    prompts' words (searchqa-mini) are the same tokens after a space, a bracket and a newline."""
    from sdar_trl.environments import make_env
    from sdar_trl.sft import collect_expert_steps, parse_admissible

    args = bm.parse_args(["--env", env, "--episodes", "40"])
    tokenizer = bm.make_tokenizer(
        args, bm.collect_rows(args), atomic_pieces=(" [SEP] ",) if env == "webshop-mini" else (), implicit_spaces=True
    )
    settings_, _ = bm.env_settings(env)
    game = make_env(env, split="train", **settings_)
    steps = collect_expert_steps(game, env, range(1000, 1030))
    game.close()
    actions = {a for s in steps for a in parse_admissible(s.prompt)}
    actions |= {m.group(2) for s in steps for m in _INNER_ACTION.finditer(s.response)}
    responses = {s.response for s in steps}
    assert len(actions) > 50
    lower = env in bm.LOWERCASE_ENVS
    for text in sorted(actions | responses):
        assert tokenizer.decode(ids(tokenizer, text)) == (text.lower() if lower else text), text
    for action in actions:  # webshop-mini's actions are lower case already: decoding gives them back as written
        assert not lower or action == action.lower(), action
    words = bm.required_words(env) or sorted({w for s in steps for w in re.findall(r"[A-Za-z0-9]+", s.prompt)})
    assert len(words) > 50
    for word in words:
        alone = ids(tokenizer, word)
        for before, tokens_before in (("a ", "a"), ("[", "["), ("\n", "\n")):
            assert ids(tokenizer, before + word) == ids(tokenizer, tokens_before) + alone, (before, word)
    if lower:  # the closed vocabulary stays one token each
        assert [w for w in words if len(ids(tokenizer, w)) != 1] == []
