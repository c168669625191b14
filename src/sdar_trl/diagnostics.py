"""Token-level views of the SDAR gate (docs/gate.md): token classes, split statistics, token dumps, an HTML page.

The gate `g = sigmoid(β · Δ)`, `Δ = lT − lS`, should open on the tokens the privileged teacher endorses. Batch means
(`sdar/gate_mean`) hide *where* it opens; this module splits it:

- `char_classes` / `token_classes`: each completion token is `reasoning` (inside `<think>…</think>`), `action` (the
  text the environment receives: inside `<action>…</action>`, or the `<search>`/`<answer>` block Search-R1 responses
  end with; see `sdar_trl.actions`), `format` (a token made only of tags, or a special token such as EOS) or `other`
  (text outside every block, e.g. a malformed response);
- `gate_split_stats`: gate mean and active ratio (`g > 0.5`) per token class and per episode outcome, as (sum, count)
  pairs so that processes and micro-batches can be combined token-weighted;
- `gate_token_record` / `render_gate_html`: a few samples' tokens with their gate and Δ, as JSON lines and as an
  HTML page (tokens coloured by gate and by Δ, values on hover).

Everything here is pure (strings and tensors in, strings and tensors out); `SDARTrainer` only wires it
(`sdar_trl.gate_branch`).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "GATE_HTML_STEPS",
    "GATE_TOKENS_FILE",
    "GATE_TOKENS_HTML",
    "OUTCOMES",
    "OUTCOME_FAILURE",
    "OUTCOME_SUCCESS",
    "OUTCOME_UNKNOWN",
    "TOKEN_CLASSES",
    "char_classes",
    "colour_ranges",
    "finish_split_stats",
    "gate_split_names",
    "gate_split_stats",
    "gate_token_record",
    "read_gate_records",
    "render_gate_html",
    "token_classes",
    "won_outcome",
]

#: Token classes, in the order of their ids (`token_classes` returns indices into this tuple).
TOKEN_CLASSES: tuple[str, ...] = ("reasoning", "action", "format", "other")
REASONING, ACTION, FORMAT, OTHER = range(len(TOKEN_CLASSES))
#: Per-sample outcome codes (`gate_outcome` column): the episode won (agent mode) / the completion scored above its
#: group (single-turn), the opposite, or neither (a tie with the group mean, a padding row).
OUTCOME_SUCCESS, OUTCOME_FAILURE, OUTCOME_UNKNOWN = 1, 0, -1
OUTCOMES: tuple[str, ...] = ("success", "failure")
#: File names in `output_dir`.
GATE_TOKENS_FILE = "gate_tokens.jsonl"
GATE_TOKENS_HTML = "gate_tokens.html"
#: Dump steps `render_gate_html` shows by default (the newest; the JSONL keeps them all).
GATE_HTML_STEPS = 20

_ACTION_FORMATS = ("think_action", "search_answer", None)
# A token that straddles classes takes the one that carries the most content: a token "go</" is part of the
# action, a token "</" alone is format.
_PRIORITY = (ACTION, REASONING, OTHER, FORMAT)


def _mark_blocks(text: str, labels: list[int], opening: str, closing: str, label: int) -> None:
    """Label every `opening…closing` block's content `label` and its tags FORMAT; an unclosed block runs to the end."""
    at = text.find(opening)
    while at != -1:
        start = at + len(opening)
        end = text.find(closing, start)
        stop = len(text) if end == -1 else end
        labels[start:stop] = [label] * (stop - start)
        labels[at:start] = [FORMAT] * len(opening)
        if end == -1:
            return
        labels[end : end + len(closing)] = [FORMAT] * len(closing)
        at = text.find(opening, end + len(closing))


def _mark_tags(text: str, labels: list[int], tags: Iterable[str]) -> None:
    for tag in tags:
        at = text.find(tag)
        while at != -1:
            labels[at : at + len(tag)] = [FORMAT] * len(tag)
            at = text.find(tag, at + len(tag))


def char_classes(text: str, action_format: str | None) -> list[int]:
    """The class id (index into `TOKEN_CLASSES`) of every character of a response.

    Args:
        text: the response as decoded from its tokens.
        action_format: how the environment parses it (`sdar_trl.actions`): `"think_action"` (the action is the text
            between the first `<action>` and the next `</action>`; tags are matched case-insensitively, as the
            parser scan-cases), `"search_answer"` (the action is the `<search>`/`<answer>` block closed by the first
            closing tag; the text after it is ignored by the parser and counted `other`), or `None` (single-turn: no
            action, only `<think>` blocks are recognised).
    """
    if action_format not in _ACTION_FORMATS:
        raise ValueError(
            f"action_format={action_format!r} is not supported; expected 'think_action', 'search_answer' or None "
            "(single-turn text). Pass the environment's action_format attribute."
        )
    # The think_action parser scan-cases the response before it looks for tags; Search-R1's parser does not.
    scan = text.lower() if action_format == "think_action" else text
    labels = [OTHER] * len(text)
    _mark_blocks(scan, labels, "<think>", "</think>", REASONING)
    if action_format == "think_action":
        start = scan.find("<action>")
        if start != -1:
            content = start + len("<action>")
            end = scan.find("</action>", content)
            stop = len(text) if end == -1 else end
            labels[content:stop] = [ACTION] * (stop - content)
        _mark_tags(scan, labels, ("<think>", "</think>", "<action>", "</action>"))
    elif action_format == "search_answer":
        closers = [(at, kind) for kind in ("search", "answer") if (at := scan.find(f"</{kind}>")) != -1]
        if closers:
            at, kind = min(closers)
            cut = at + len(f"</{kind}>")
            opening = scan.rfind(f"<{kind}>", 0, at)
            if opening != -1:
                content = opening + len(f"<{kind}>")
                labels[content:at] = [ACTION] * (at - content)
        else:
            cut = len(text)
            openings = [at for kind in ("search", "answer") if (at := scan.find(f"<{kind}>")) != -1]
            if openings:  # an unfinished block (truncated response): still what the model was writing as its action
                content = scan.find(">", min(openings)) + 1
                labels[content:] = [ACTION] * (len(text) - content)
        _mark_tags(scan, labels, ("<think>", "</think>", "<search>", "</search>", "<answer>", "</answer>"))
        labels[cut:] = [OTHER] * (len(text) - cut)  # the parser never reads past the first closing tag
    else:
        _mark_tags(scan, labels, ("<think>", "</think>"))
    return labels


def token_classes(
    pieces: Sequence[str], action_format: str | None, *, special: Sequence[bool] | None = None
) -> list[int]:
    """The class id of every token of a completion from its decoded pieces (one string per token).

    A token's characters are the span its piece covers in `"".join(pieces)`; the token takes the highest-priority
    class among them (action, then reasoning, then other, then format: a token is `format` only if it is all
    markup). A token that decodes to nothing (part of a multi-byte character) takes the previous token's class.
    `special[i]` marks special tokens (EOS, padding): always `format`.
    """
    if special is not None and len(special) != len(pieces):
        raise ValueError(f"special has {len(special)} entries for {len(pieces)} pieces; pass one flag per token.")
    labels = char_classes("".join(pieces), action_format)
    out: list[int] = []
    offset = 0
    for index, piece in enumerate(pieces):
        span = labels[offset : offset + len(piece)]
        offset += len(piece)
        if special is not None and special[index]:
            out.append(FORMAT)
        elif span:
            out.append(next(label for label in _PRIORITY if label in span))
        else:
            out.append(out[-1] if out else OTHER)
    return out


def gate_split_names() -> list[str]:
    """The statistic names `gate_split_stats` returns, in order (logged as `sdar/<name>`)."""
    groups = [*TOKEN_CLASSES, *OUTCOMES]
    return [f"gate_mean/{group}" for group in groups] + [f"gate_active_ratio/{group}" for group in groups]


def gate_split_stats(
    gate: torch.Tensor, mask: torch.Tensor, classes: torch.Tensor, outcomes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums and token counts of the gate and of `g > 0.5` per token class and per outcome.

    Args:
        gate: (B, T) gate values (detached).
        mask: (B, T) 1 on the tokens of the distillation term.
        classes: (B, T) class ids (`TOKEN_CLASSES` indices; anything else, e.g. -1 on padding, is in no class).
        outcomes: (B,) `OUTCOME_SUCCESS`, `OUTCOME_FAILURE` or `OUTCOME_UNKNOWN` per row.

    Returns:
        `(sums, counts)`, each (K,) float32 in the order of `gate_split_names()`: the mean of statistic k is
        `sums[k] / counts[k]` (undefined when `counts[k] == 0`; see `finish_split_stats`). Sums, not means, so that
        several processes or micro-batches add up to a token-weighted mean.
    """
    if not (gate.shape == mask.shape == classes.shape) or outcomes.shape != gate.shape[:1]:
        raise ValueError(
            f"gate {tuple(gate.shape)}, mask {tuple(mask.shape)} and classes {tuple(classes.shape)} must share one "
            f"(B, T) shape and outcomes {tuple(outcomes.shape)} must be (B,); pass the completion tensors of one "
            "batch."
        )
    with torch.no_grad():
        keep = mask.bool()  # (B, T)
        gate = torch.where(keep, gate.detach().float(), torch.zeros_like(gate, dtype=torch.float32))  # (B, T)
        class_ids = torch.arange(len(TOKEN_CLASSES), device=gate.device)  # (Kc,)
        in_class = (classes.unsqueeze(0) == class_ids.view(-1, 1, 1)) & keep  # (Kc, B, T)
        codes = torch.tensor([OUTCOME_SUCCESS, OUTCOME_FAILURE], device=gate.device)  # (Ko,)
        in_outcome = (outcomes.view(1, -1, 1) == codes.view(-1, 1, 1)) & keep  # (Ko, B, T)
        groups = torch.cat([in_class, in_outcome]).float()  # (G, B, T), G = Kc + Ko
        counts = groups.sum(dim=(1, 2))  # (G,)
        gate_sums = (groups * gate).sum(dim=(1, 2))  # (G,)
        active_sums = (groups * (gate > 0.5).float()).sum(dim=(1, 2))  # (G,)
        return torch.cat([gate_sums, active_sums]), torch.cat([counts, counts])  # (2G,) each


def finish_split_stats(sums: Sequence[float], counts: Sequence[float]) -> dict[str, float]:
    """`{name: sum / count}` in `gate_split_names()` order; NaN where no token counted."""
    return {
        name: (total / count if count > 0 else math.nan)
        for name, total, count in zip(gate_split_names(), sums, counts, strict=True)
    }


def won_outcome(won: bool | None) -> int:
    """The outcome code of a sample whose episode won (`True`), lost (`False`) or is unknown (`None`: padding)."""
    if won is None:
        return OUTCOME_UNKNOWN
    return OUTCOME_SUCCESS if won else OUTCOME_FAILURE


def gate_token_record(
    pieces: Sequence[str],
    classes: Sequence[int],
    gate: Sequence[float],
    delta: Sequence[float],
    *,
    step: int,
    outcome: int,
    prompt_tail: str = "",
) -> dict[str, Any]:
    """One sample's tokens with their class, gate and Δ, as a JSON-ready dict (a line of `gate_tokens.jsonl`)."""
    if not len(pieces) == len(classes) == len(gate) == len(delta):
        raise ValueError(
            f"pieces ({len(pieces)}), classes ({len(classes)}), gate ({len(gate)}) and delta ({len(delta)}) must have "
            "one entry per token of the same completion."
        )
    outcome_name = {OUTCOME_SUCCESS: "success", OUTCOME_FAILURE: "failure"}.get(outcome, "unknown")
    return {
        "step": int(step),
        "outcome": outcome_name,
        "prompt_tail": prompt_tail,
        "tokens": list(pieces),
        "classes": [TOKEN_CLASSES[c] for c in classes],
        "gate": [round(float(g), 5) for g in gate],
        "delta": [round(float(d), 5) for d in delta],
    }


def read_gate_records(path: str | Path) -> list[dict[str, Any]]:
    """The records of a `gate_tokens.jsonl` file (a line cut short by a killed run is skipped)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _colour(value: float, *, low: float, high: float) -> str:
    """Diverging red (low) → white (middle) → green (high) background for `value` clipped to [low, high]."""
    middle = (low + high) / 2
    half = (high - low) / 2
    t = max(-1.0, min(1.0, (value - middle) / half)) if math.isfinite(value) else 0.0
    fade = round(255 * (1 - abs(t)))
    return f"rgb({fade},255,{fade})" if t > 0 else f"rgb(255,{fade},{fade})"


def _token_html(token: str) -> str:
    shown = token.replace("\n", "⏎\n")
    return html.escape(shown) if shown.strip() else html.escape(shown).replace(" ", "&nbsp;") or "∅"


def colour_ranges(records: Sequence[Mapping[str, Any]]) -> tuple[float, float]:
    """Half-widths `(gate_range, delta_range)` that make the largest deviation of `records` saturate.

    The gate is shown as 0.5 ± gate_range, Δ as 0 ± delta_range. Early in training teacher and student nearly agree
    (|Δ| of order 0.01–0.1, gate within a few hundredths of 0.5), so a fixed scale would show every token white.
    Floors of 1e-3 keep an all-agreeing dump white rather than amplifying rounding.
    """
    gates = [abs(g - 0.5) for record in records for g in record["gate"] if math.isfinite(g)]
    deltas = [abs(d) for record in records for d in record["delta"] if math.isfinite(d)]
    return max([*gates, 1e-3]), max([*deltas, 1e-3])


def render_gate_html(
    records: Sequence[Mapping[str, Any]],
    *,
    title: str = "SDAR gate",
    gate_range: float | None = None,
    delta_range: float | None = None,
    max_steps: int = GATE_HTML_STEPS,
) -> str:
    """A self-contained HTML page: per sample, its tokens coloured by gate (row 1) and by Δ (row 2), values on hover.

    Shows the newest `max_steps` dump steps, newest first. The gate is coloured red (closed) → white (0.5) → green
    (open), saturating at 0.5 ± `gate_range`; Δ red (< 0, the teacher rejects the token) → white (0) → green (> 0,
    it endorses it), saturating at ±`delta_range`. None (default): the largest deviation on the page
    (`colour_ranges`), stated in the page's header.
    """
    steps: dict[int, list[Mapping[str, Any]]] = {}
    for record in records:
        steps.setdefault(int(record["step"]), []).append(record)
    shown = sorted(steps, reverse=True)[:max_steps]
    auto_gate, auto_delta = colour_ranges([record for step in shown for record in steps[step]])
    gate_range = auto_gate if gate_range is None else gate_range
    delta_range = auto_delta if delta_range is None else delta_range
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em;max-width:70em}"
        ".row{font-family:monospace;white-space:pre-wrap;line-height:1.9;margin:.2em 0 .6em}"
        ".row span{padding:1px 0;border-bottom:2px solid transparent}"
        ".c-action{border-bottom-color:#1f5fbf!important}.c-reasoning{border-bottom-color:#aaa!important}"
        ".c-format{opacity:.55}.sample{border-top:1px solid #ccc;padding-top:.5em}"
        ".prompt{color:#666;font-size:.85em;white-space:pre-wrap}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p>Each sample shows its completion twice: coloured by the gate g = sigmoid(β·Δ) (red closed → white 0.5 → "
        f"green open, saturating at 0.5 ± {gate_range:.3g}), then by Δ = lT − lS (red negative → white 0 → green "
        f"positive, saturating at ±{delta_range:.3g}). Hover a token for its values. Underline: blue = action "
        "tokens, grey = reasoning; faded = format tokens.</p>",
    ]
    for step in shown:
        parts.append(f"<h2>Step {step}</h2>")
        for number, record in enumerate(steps[step], start=1):
            gates, deltas = record["gate"], record["delta"]
            mean = sum(gates) / len(gates) if gates else math.nan
            parts.append(
                f'<div class="sample"><b>sample {number}</b> — outcome: {html.escape(str(record["outcome"]))}, '
                f"{len(gates)} tokens, mean gate {mean:.3f}"
            )
            if record.get("prompt_tail"):
                parts.append(f'<div class="prompt">… {html.escape(str(record["prompt_tail"]))}</div>')
            for label, values, low, high in (
                ("gate", gates, 0.5 - gate_range, 0.5 + gate_range),
                ("Δ", deltas, -delta_range, delta_range),
            ):
                spans = []
                for token, kind, g, d, value in zip(
                    record["tokens"], record["classes"], gates, deltas, values, strict=True
                ):
                    tip = f"{kind} · gate {g:.3f} · Δ {d:+.3f} · {token!r}"
                    spans.append(
                        f'<span class="c-{html.escape(kind)}" style="background:{_colour(value, low=low, high=high)}" '
                        f'title="{html.escape(tip)}">{_token_html(token)}</span>'
                    )
                parts.append(f'<div><small>by {label}</small><div class="row">{"".join(spans)}</div></div>')
            parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
