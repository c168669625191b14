"""The `webshop-mini` expert: a fixed rule over what the agent's step prompt shows.

The expert reads only the goal text, the current observation and its own previous action (all three
are in the step prompt), so a model can imitate it. Its rules:

1. Search page: search for the *request* — the goal's words between the article ("a"/"an") and
   " with " (or ", and price"), without "and" and commas.
2. Results page: open the first result whose title contains every request word (case-insensitive,
   punctuation ignored) and whose price is lower than the budget. None on this page: click "Next >"
   while the page count shows more results; none at all: go back to search.
3. Item page: if the title lacks a request word or the price is not under budget, click "< Prev".
   Otherwise select the goal's options in the order the goal lists them: after selecting option k
   (the previous action), select option k+1; after any other previous action, start with the first
   option. When the previous action selected the last goal option (or the goal names none), buy.
4. Description / Features / Reviews pages: click "< Prev".

The same rules apply to real WebShop observations, so `expert_decision` also drives the adapter's
smoke tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ParsedGoal", "expert_decision", "parse_goal", "render_expert_response"]

SEP = " [SEP] "
_ARTICLE_RE = re.compile(r"\b(?:an|a)\s+(.*)$", re.S)
_BUDGET_RE = re.compile(r"price lower than\s+([0-9]+(?:\.[0-9]+)?)\s+dollars")
_ASIN_RE = re.compile(r"^B0[0-9A-Z]{8}$")
_PAGE_RE = re.compile(r"^Page (\d+) \(Total results: (\d+)\)$")
_WORD_RE = re.compile(r"[a-z0-9]+")
_MONEY_RE = re.compile(r"\$\s*([0-9]+(?:\.[0-9]+)?)")
_PER_PAGE = 10


@dataclass(frozen=True)
class ParsedGoal:
    """What the expert reads from a goal text."""

    request: str
    """The request words joined by spaces, e.g. "long lasting cruelty free lipstick" (the search query)."""
    options: tuple[tuple[str, str], ...]
    """(option name, value) pairs in the goal's order, e.g. (("color", "berry"), ("size", "0.12 ounce"))."""
    budget: float | None
    """The price limit in dollars, or None when the goal has none."""

    @property
    def words(self) -> frozenset[str]:
        return frozenset(_WORD_RE.findall(self.request))


def parse_goal(goal_text: str) -> ParsedGoal:
    """Split a WebShop-mini goal into its request, options and budget (rule 1 of the module docstring)."""
    text = goal_text.strip().lower()
    budget_match = _BUDGET_RE.search(text)
    budget = float(budget_match.group(1)) if budget_match else None
    main = text.split(", and price lower than", 1)[0]
    request_part, _, options_part = main.partition(" with ")
    article = _ARTICLE_RE.search(request_part)
    request_text = article.group(1) if article else request_part
    request_words = [w for w in request_text.replace(",", " ").split() if w != "and"]
    options = []
    if options_part:
        for chunk in options_part.split(", and "):
            name, sep, value = chunk.partition(": ")
            if sep:
                options.append((name.strip(), value.strip()))
    return ParsedGoal(request=" ".join(request_words), options=tuple(options), budget=budget)


def _money(text: str) -> float | None:
    match = _MONEY_RE.search(text)
    return float(match.group(1)) if match else None


def _under_budget(price: float | None, budget: float | None) -> bool:
    return budget is None or (price is not None and price < budget)


def _budget_text(budget: float | None) -> str:
    return "no budget" if budget is None else f"${budget:.2f}"


def click_value(action: str | None) -> str | None:
    """The lower-cased value inside `click[...]`, or None when `action` is not a click."""
    if action is None:
        return None
    match = re.match(r"^\s*click\[(.*)\]\s*$", action.strip().lower(), flags=re.S)
    return match.group(1).strip() if match else None


def _results_decision(goal: ParsedGoal, segments: list[str], page: int, total: int) -> tuple[str, str]:
    words = goal.words
    request = goal.request
    for i, segment in enumerate(segments):
        if not _ASIN_RE.match(segment) or i + 2 >= len(segments):
            continue
        title, price_text = segments[i + 1], segments[i + 2]
        price = _money(price_text)
        if words <= frozenset(_WORD_RE.findall(title.lower())) and _under_budget(price, goal.budget):
            reason = (
                f"I need a result whose title contains every word of '{request}' and whose price is below "
                f"{_budget_text(goal.budget)}. The first such result on page {page} is {segment} ({price_text}), "
                "so I open it."
            )
            return f"click[{segment.lower()}]", reason
    if page * _PER_PAGE < total:
        reason = (
            f"No result on page {page} has a title containing every word of '{request}' with a price below "
            f"{_budget_text(goal.budget)}, and there are {total} results, so I go to the next page."
        )
        return "click[next >]", reason
    reason = (
        f"No result on page {page} matches every word of '{request}' under {_budget_text(goal.budget)} and there "
        "are no more pages, so I go back to search again."
    )
    return "click[back to search]", reason


def _item_decision(goal: ParsedGoal, segments: list[str], last_action: str | None) -> tuple[str, str]:
    price_index = next((i for i, s in enumerate(segments) if s.startswith("Price:")), None)
    title = segments[price_index - 1] if price_index else ""
    price = _money(segments[price_index]) if price_index is not None else None
    request = goal.request
    if not goal.words <= frozenset(_WORD_RE.findall(title.lower())) or not _under_budget(price, goal.budget):
        reason = (
            f"This item's title does not contain every word of '{request}' or its price is not below "
            f"{_budget_text(goal.budget)}, so I go back to the results."
        )
        return "click[< prev]", reason
    start = segments.index("< Prev") + 1 if "< Prev" in segments else 0
    visible = {s.lower() for s in segments[start : price_index - 1 if price_index else len(segments)]}
    wanted = [(name, value) for name, value in goal.options if value in visible]
    listed = ", ".join(f"{name}: {value}" for name, value in goal.options) or "none"
    previous = click_value(last_action)
    values = [value for _, value in wanted]
    position = values.index(previous) + 1 if previous in values else 0
    if position < len(wanted):
        name, value = wanted[position]
        if position == 0:
            why = "my previous action was not an option selection, so I start with the first option"
        else:
            why = f"my previous action selected '{values[position - 1]}', so the next option is {name}"
        reason = (
            f"This item matches '{request}' and costs less than {_budget_text(goal.budget)}. The instruction asks "
            f"for the options {listed}; {why}: {value}."
        )
        return f"click[{value}]", reason
    if wanted:
        why = f"my previous action selected '{values[-1]}', the last option the instruction asks for ({listed})"
    else:
        why = f"the instruction asks for no option shown on this page ({listed})"
    reason = f"This item matches '{request}' and costs less than {_budget_text(goal.budget)}; {why}. So I buy it."
    return "click[buy now]", reason


def expert_decision(goal_text: str, observation: str, last_action: str | None) -> tuple[str, str]:
    """The expert's `(action, reasoning)` for a state described by visible text only.

    Args:
        goal_text: the instruction (the `task` of the episode).
        observation: the current page text, segments joined by " [SEP] ".
        last_action: the action that led to this observation (None at the start of an episode).
    """
    goal = parse_goal(goal_text)
    segments = observation.split(SEP)
    if segments and segments[0] == "WebShop":
        reason = (
            "I am on the search page. The request is the part of the instruction between the article and 'with': "
            f"I search for its words, '{goal.request}'."
        )
        return f"search[{goal.request}]", reason
    if segments and segments[-1] == "Buy Now":
        return _item_decision(goal, segments, last_action)
    for segment in segments:
        page_match = _PAGE_RE.match(segment)
        if page_match:
            return _results_decision(goal, segments, int(page_match.group(1)), int(page_match.group(2)))
    if "< Prev" in segments:
        return "click[< prev]", "This is a detail page; the rule needs the item page, so I go back with '< Prev'."
    return "click[back to search]", "This page offers nothing the rule needs, so I go back to the search page."


def render_expert_response(action: str, reasoning: str) -> str:
    """The expert's full model response: `<think>reasoning</think><action>action</action>`."""
    return f"<think>{reasoning}</think><action>{action}</action>"
