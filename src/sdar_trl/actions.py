"""Parse model responses into environment actions (pure functions; never raise on model output).

Two response formats (docs/agents.md, "Implementing an environment"):

- `think_action` (ALFWorld, WebShop): `<think>reasoning</think><action>command</action>`. The
  response is lower-cased and the text between the first `<action>` and the following `</action>`
  is the command. The step is *valid* only when a `<think>…</think>` block and both action tags are
  present. An unparseable response is still sent to the environment (its last 30 characters, as
  the reference does) so the environment answers as the benchmark would ("Nothing happens.",
  same page); the step is marked invalid and its reward gets the invalid-action penalty.
  Admissibility is not checked here: that is the environment's job.
- `search_answer` (Search-QA): the response is cut after the first `</search>` or `</answer>`; it
  is valid when exactly one `<search>…</search>` or `<answer>…</answer>` block (and no other opening
  tag) remains. The action
  sent to the environment is the tagged block, e.g. `<search>capital of Norway</search>`.

Whatever the format, the action is *clean text* (`clean_action_text`): control characters other than newline and
tab are removed (small models emit NUL bytes, and native game engines such as TextWorld's crash on them, taking
the training process along) and it is at most `MAX_ACTION_CHARS` long.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "INVALID_TAIL_CHARS",
    "MAX_ACTION_CHARS",
    "ParsedAction",
    "clean_action_text",
    "parse_action",
    "parse_search_answer",
    "parse_think_action",
]

#: How much of an unparseable response is forwarded to the environment (the reference sends the tail).
INVALID_TAIL_CHARS = 30

#: The longest action sent to an environment (a search query or a command is far shorter; a runaway response
#: must not reach the environment whole).
MAX_ACTION_CHARS = 1000

_SEARCH_KINDS = ("search", "answer")
#: C0 controls but tab and newline, DEL and the C1 controls: deleted from actions.
_CONTROL_CHARS = dict.fromkeys([*(c for c in range(0x20) if chr(c) not in "\t\n"), *range(0x7F, 0xA0)])


def clean_action_text(text: str, *, max_chars: int = MAX_ACTION_CHARS) -> str:
    """`text` without control characters (newline and tab kept) and cut to `max_chars` characters."""
    return text.translate(_CONTROL_CHARS)[:max_chars]


@dataclass(frozen=True)
class ParsedAction:
    """The outcome of parsing one response.

    Attributes:
        action: the string to pass to `env.step` (always a str, possibly empty).
        valid: whether the response followed the format (invalid steps get the penalty).
        kind: `"action"`, `"search"` or `"answer"` when valid, else `None`.
        error: why the response is invalid (`None` when valid); logged, never raised.
    """

    action: str
    valid: bool
    kind: str | None = None
    error: str | None = None


def _as_text(response: object) -> str:
    # Model outputs are strings, but a broken decoding step must still yield an invalid action, not a crash.
    if isinstance(response, str):
        return response
    if isinstance(response, bytes):
        return response.decode("utf-8", errors="replace")
    return "" if response is None else str(response)


def parse_think_action(response: object) -> ParsedAction:
    """Parse a `<think>…</think><action>…</action>` response (ALFWorld / WebShop)."""
    text = _as_text(response).lower()
    start = text.find("<action>")
    end = text.find("</action>", start + len("<action>")) if start != -1 else -1
    if start == -1 or end == -1:
        return ParsedAction(text[-INVALID_TAIL_CHARS:].strip(), False, None, "missing <action>…</action>")
    action = text[start + len("<action>") : end].strip()
    # Plain `find`s keep this linear: a lazy `<think>(.*?)</think>` regex rescans the rest of the text from every
    # `<think>`, quadratic on a response of repeated tags. A closed block exists iff one follows the first opening.
    think = text.find("<think>")
    if think == -1 or text.find("</think>", think + len("<think>")) == -1:
        return ParsedAction(action, False, None, "missing <think>…</think>")
    if not action:
        return ParsedAction(action, False, None, "empty <action></action>")
    return ParsedAction(action, True, "action", None)


def parse_search_answer(response: object) -> ParsedAction:
    """Parse a Search-R1 response: exactly one `<search>…</search>` or `<answer>…</answer>` block."""
    text = _as_text(response)
    # Linear scans only (no lazy regex, which is quadratic on repeated opening tags). After the cut at the first
    # closing tag, that closer is the only one left, so the text holds a block iff it has that closer's opening tag.
    closers = [(at, kind) for kind in _SEARCH_KINDS if (at := text.find(f"</{kind}>")) != -1]
    closer_kind = None
    if closers:
        at, closer_kind = min(closers)
        # Everything after the first closing tag is ignored, as in Search-R1.
        text = text[: at + len(f"</{closer_kind}>")]
    has_block = closer_kind is not None and f"<{closer_kind}>" in text
    openings = text.count("<search>") + text.count("<answer>")
    if not has_block or openings != 1:
        reason = "more than one block" if has_block else "no <search>…</search> or <answer>…</answer> block"
        return ParsedAction(text[-INVALID_TAIL_CHARS:].strip(), False, None, reason)
    kind = closer_kind
    content = text[text.find(f"<{kind}>") + len(f"<{kind}>") : len(text) - len(f"</{kind}>")].strip()
    if not content:
        return ParsedAction(f"<{kind}></{kind}>", False, None, f"empty <{kind}></{kind}>")
    return ParsedAction(f"<{kind}>{content}</{kind}>", True, kind, None)


def parse_action(response: object, action_format: str) -> ParsedAction:
    """Dispatch on `action_format` (`"think_action"` or `"search_answer"`); the action is `clean_action_text`."""
    # Cleaning the response first keeps an invalid response's forwarded tail made of real characters.
    text = _as_text(response).translate(_CONTROL_CHARS)
    if action_format == "think_action":
        parsed = parse_think_action(text)
    elif action_format == "search_answer":
        parsed = parse_search_answer(text)
    else:
        raise ValueError(f"unknown action_format {action_format!r}; expected 'think_action' or 'search_answer'.")
    if len(parsed.action) <= MAX_ACTION_CHARS:  # the text is clean already: only the length can be over
        return parsed
    return ParsedAction(parsed.action[:MAX_ACTION_CHARS], parsed.valid, parsed.kind, parsed.error)
