"""WebShop's pages as text, and its action grammar.

Observations follow WebShop's "text" mode: the visible strings of the HTML page joined by " [SEP] ".
Clickables follow `WebAgentTextEnv.get_available_actions`: the page's buttons and product links
(lower-cased), then the option values of an item page. Admissible actions follow verl-agent's
rendering: "search[<your query>]" when the page has a search bar, then one "click[...]" per clickable.
"""

from __future__ import annotations

import re

__all__ = [
    "BACK_TO_SEARCH",
    "BUY_NOW",
    "NEXT_PAGE",
    "PREV_PAGE",
    "SEARCH_PLACEHOLDER",
    "SEP",
    "SUB_PAGES",
    "parse_action",
    "render_admissible_actions",
]

SEP = " [SEP] "
BUY_NOW = "Buy Now"
NEXT_PAGE = "Next >"
PREV_PAGE = "< Prev"
BACK_TO_SEARCH = "Back to Search"
SUB_PAGES = ("Description", "Features", "Reviews")
SEARCH_PLACEHOLDER = "search[<your query>]"
RESULTS_PER_PAGE = 10

# WebShop's action pattern: a name, "[", an argument, "]" (`re.match`, so trailing text is ignored).
_ACTION_RE = re.compile(r"(.+)\[(.+)\]")


def parse_action(action: str) -> tuple[str, str | None]:
    """`"click[Buy Now]"` -> `("click", "Buy Now")`; text without brackets -> `(text, None)`."""
    match = _ACTION_RE.match(action)
    if match is None:
        return action, None
    return match.group(1), match.group(2)


def render_admissible_actions(has_search_bar: bool, clickables: list[str]) -> list[str]:
    """verl-agent's list: the search placeholder if there is a search bar, then `click[...]` per clickable."""
    actions = [SEARCH_PLACEHOLDER] if has_search_bar else []
    actions.extend(f"click[{name}]" for name in clickables if name != "search")
    return actions


def render_search_page(instruction: str) -> str:
    return SEP.join(["WebShop", "Instruction:", instruction, "Search"])


def render_results_page(instruction: str, page: int, total: int, rows: list[tuple[str, str, str]]) -> str:
    parts = ["Instruction:", instruction, BACK_TO_SEARCH, f"Page {page} (Total results: {total})"]
    if page > 1:
        parts.append(PREV_PAGE)
    parts.append(NEXT_PAGE)
    for asin, title, price in rows:
        parts.extend((asin, title, price))
    return SEP.join(parts)


def render_item_page(
    instruction: str, options: dict[str, tuple[str, ...]], title: str, price: str, rating: str
) -> str:
    parts = ["Instruction:", instruction, BACK_TO_SEARCH, PREV_PAGE]
    for name, values in options.items():
        parts.append(name)
        parts.extend(values)
    parts.extend((title, f"Price: {price}", f"Rating: {rating}", *SUB_PAGES, BUY_NOW))
    return SEP.join(parts)


def render_sub_page(instruction: str, body: list[str]) -> str:
    return SEP.join(["Instruction:", instruction, BACK_TO_SEARCH, PREV_PAGE, *body])


def render_done_page(score: float) -> str:
    return SEP.join(["Thank you for shopping with us!", "Your score (min 0.0, max 1.0)", f"{score}"])
