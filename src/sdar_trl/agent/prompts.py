"""The user message of one agent-mode step: task, recent history, current observation, admissible actions.

`render_step_prompt` renders a fresh single-message prompt at every step (docs/agents.md, "How a step flows");
`play_episodes` (`sdar_trl.agent.episodes`) calls it for every live episode. An environment may bring its own
`prompt_template`; otherwise the action format picks a default template.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..environments.base import ACTION_FORMATS

__all__ = [
    "DEFAULT_PROMPT_TEMPLATES",
    "TRUNCATION_MARKER",
    "render_admissible_actions",
    "render_history",
    "render_step_prompt",
    "rendered_history_actions",
    "truncate_observation",
]

#: Put in front of an observation whose beginning was cut off (the end, the newest text, is kept).
TRUNCATION_MARKER = "[... earlier text truncated ...] "

_THINK_ACTION_TEMPLATE = (
    "You are an expert agent acting in an interactive environment.\n"
    "Your task is: {task}\n"
    "{history_section}"
    "You are now at step {current_step} and your current observation is:\n{observation}\n"
    "{admissible_section}"
    "Now it's your turn to take an action. First reason step by step about the current situation inside "
    "<think> </think> tags. Then give exactly one action inside <action> </action> tags."
)
_SEARCH_ANSWER_TEMPLATE = (
    "Answer the given question. You can search a knowledge source as often as you need.\n"
    "Question: {task}\n"
    "{history_section}"
    "Current observation (step {current_step}):\n{observation}\n"
    "Reason inside <think> </think> tags first. To search, write <search> query </search> and the top results "
    "will be returned between <information> and </information>. When you know the answer, write it inside "
    "<answer> </answer> without explanation, for example <answer> Oslo </answer>."
)
#: The default step prompt per action format; an environment may set its own `prompt_template`.
DEFAULT_PROMPT_TEMPLATES: dict[str, str] = {
    "think_action": _THINK_ACTION_TEMPLATE,
    "search_answer": _SEARCH_ANSWER_TEMPLATE,
}


def truncate_observation(text: str, max_chars: int | None) -> str:
    """Keep the last `max_chars` characters of `text` behind `TRUNCATION_MARKER` (the newest text matters most)."""
    if max_chars is None or len(text) <= max_chars:
        return text
    return TRUNCATION_MARKER + text[-max_chars:] if max_chars > 0 else TRUNCATION_MARKER


def render_admissible_actions(actions: Sequence[str], *, max_actions: int | None = None) -> str:
    """`'a', 'b', …` with at most `max_actions` actions, then `… (N more)` for the rest (None: all of them)."""
    shown = actions if max_actions is None else actions[:max_actions]
    text = ", ".join(f"'{a}'" for a in shown)
    hidden = len(actions) - len(shown)
    return f"{text}, … ({hidden} more)" if hidden else text


def render_history(history: Sequence[tuple[str, str]], *, first_step: int) -> str:
    """`[Observation k: '…', Action k: '…']` lines, numbered from `first_step` (1-based)."""
    return "\n".join(
        f"[Observation {first_step + i}: '{obs}', Action {first_step + i}: '{action}']"
        for i, (obs, action) in enumerate(history)
    )


# A history line opens with its step number; its action follows that step's own marker, so an observation that
# quotes another step's line (`, Action 1: '…'`) is not mistaken for the action. Markers are found with str.find:
# `, Action \d+: '(.*)'\]$` as one pattern retries `.*` from every marker of a line that never closes, which is
# quadratic in the line length.
_HISTORY_LINE_START = re.compile(r"\[Observation (\d+): '")
_HISTORY_LINE_END = "']"


def rendered_history_actions(text: str) -> list[str]:
    """The actions of the `render_history` lines found in `text` (e.g. a step prompt), oldest first.

    The action is the line's last quoted field, so an action holding quotes or brackets is read back whole.
    """
    actions = []
    for line in text.split("\n"):
        start = _HISTORY_LINE_START.match(line)
        if start is None or not line.endswith(_HISTORY_LINE_END):
            continue
        # The line's first `, Action k: '` (k: its own step) opens the action and the closing `']` ends it; a marker
        # whose opening quote would overlap that closing quote does not open one (nor would a later marker).
        marker = f", Action {start.group(1)}: '"
        found = line.find(marker, start.end())
        action_start = found + len(marker)
        if found >= 0 and action_start <= len(line) - len(_HISTORY_LINE_END):
            actions.append(line[action_start : -len(_HISTORY_LINE_END)])
    return actions


def render_step_prompt(
    *,
    task: str,
    observation: str,
    history: Sequence[tuple[str, str]],
    step_count: int,
    history_length: int,
    admissible_actions: Sequence[str] | None,
    action_format: str = "think_action",
    template: str | None = None,
    max_admissible_actions: int | None = None,
) -> str:
    """The user message of one step.

    Args:
        task: the task text (`reset` info `task`).
        observation: the current observation (already truncated).
        history: all (observation, action) pairs so far; only the last `history_length` are shown.
        step_count: steps taken so far (0 at the first step).
        history_length: how many past steps to show (reference: ALFWorld/WebShop 2, Search 4).
        admissible_actions: the actions valid now, or None when the benchmark has no such list.
        action_format: picks the default template (`think_action` / `search_answer`).
        template: an environment's own `str.format` template (fields `{task}`, `{step_count}`,
            `{current_step}`, `{history_length}`, `{history}`, `{observation}`, `{admissible_actions}`).
        max_admissible_actions: show at most this many admissible actions, then `… (N more)` (None: all).
    """
    shown = list(history)[-history_length:] if history_length > 0 else []
    first_step = step_count - len(shown) + 1
    history_text = render_history(shown, first_step=first_step)
    admissible_text = (
        render_admissible_actions(admissible_actions, max_actions=max_admissible_actions)
        if admissible_actions is not None
        else ""
    )
    fields = {
        "task": task,
        "step_count": step_count,
        "current_step": step_count + 1,
        "history_length": len(shown),
        "history": history_text,
        "observation": observation,
        "admissible_actions": admissible_text,
    }
    if template is not None:
        return template.format(**fields)
    if action_format not in DEFAULT_PROMPT_TEMPLATES:
        raise ValueError(f"unknown action_format {action_format!r}; expected one of {ACTION_FORMATS}.")
    history_section = (
        f"Prior to this step, you have already taken {step_count} step(s). Below are the most recent {len(shown)} "
        f"observations and the corresponding actions you took:\n{history_text}\n"
        if shown
        else ""
    )
    admissible_section = (
        f"Your admissible actions of the current situation are: [{admissible_text}].\n"
        if admissible_actions is not None
        else ""
    )
    return DEFAULT_PROMPT_TEMPLATES[action_format].format(
        **fields, history_section=history_section, admissible_section=admissible_section
    )
