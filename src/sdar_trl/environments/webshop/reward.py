"""WebShop's task score, computed from structured product and goal fields.

The formula is the one of `web_agent_site/engine/goal.py` in princeton-nlp/WebShop (re-implemented here):

    R = r_type · (matched_attributes + matched_options + [price ≤ budget]) / (|attributes| + |options| + 1)

- attribute match: a goal attribute matches when its fuzzy token-set ratio with one of the product's
  attributes is > 85, or when it is a substring of the product's title, bullet points or description
  (all lower-cased);
- option match: each goal option value matches when the token-set ratio with one of the chosen option
  values is > 85, both sides first passed through `normalize_color` (the first colour word contained
  in the text replaces it);
- type factor `r_type`: 1.0 when the products match by query, by ≥ 2 shared category levels, or by a
  title-noun overlap > 0.2; 0.5 when none of the three holds; then 0.1 when the overlap is < 0.1 and
  0.0 when it is 0 (the later rules override the earlier ones, as in the reference).

Deviation (documented in docs/environments/webshop-mini.md): the reference finds title nouns with spaCy's
part-of-speech tagger; we use `extract_title_nouns`, a fixed-lexicon heuristic (content words minus
stop words and common adjectives), so the package needs no spaCy model.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "COLOR_WORDS",
    "compute_attribute_matches",
    "compute_option_matches",
    "compute_type_reward",
    "compute_webshop_reward",
    "extract_title_nouns",
    "normalize_color",
]

FUZZY_THRESHOLD = 85
"""A fuzzy score must be strictly greater than this to count as a match (as in the reference)."""

COLOR_WORDS: tuple[str, ...] = (
    "aqua",
    "beige",
    "black",
    "blue",
    "blush",
    "brass",
    "bronze",
    "brown",
    "burgundy",
    "camel",
    "charcoal",
    "chocolate",
    "coffee",
    "copper",
    "coral",
    "cream",
    "denim",
    "gold",
    "gray",
    "green",
    "grey",
    "indigo",
    "ivory",
    "khaki",
    "lavender",
    "lilac",
    "lime",
    "magenta",
    "maroon",
    "mauve",
    "mint",
    "mustard",
    "navy",
    "nude",
    "olive",
    "orange",
    "peach",
    "pink",
    "plum",
    "purple",
    "red",
    "rose",
    "rust",
    "sage",
    "sand",
    "silver",
    "tan",
    "taupe",
    "teal",
    "turquoise",
    "violet",
    "white",
    "wine",
    "yellow",
)
"""Colour words in alphabetical order; `normalize_color` returns the first one contained in its input."""


def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


_STOP_WORDS = _word_set(
    """a about after all also an and any are as at be been but by can do does each for from has have if in into is it
    its just more most no nor not of off on only or other our out over own same so some such than that the their them
    then there these they this those through to too under up very was we were what when which while who will with
    without you your new"""
)
# Words that are (almost) never nouns in product titles: adjectives and participles common in listings.
_NON_NOUN_WORDS = _word_set(
    """adjustable all-natural anti automatic baby big black blue bold breathable brown brushed casual classic clean
    closed compact cozy cute dark decorative deep delicious double dual durable easy elastic empire ergonomic extra
    fast faux flexible floral foldable free fresh freshly full genuine gentle glossy gold green grey gray hands heavy
    heavyweight hidden high highly hot large lasting light lightweight little long loose low lined matte maxi
    minimalist modern moisturizing natural non one open organic original oversized padded perfect pink plush polarized
    portable pre premium purple quick raw red relaxed removable resistant retro reversible right ribbed round royal
    safe scratch sensitive short shrunk single slim slip small smooth soft special stainless stretch strong super
    sweet tapered thermal tiered triple ultra unisex vintage warm waterproof white whole wide wireless
    yellow"""
)
_WORD_RE = re.compile(r"[a-z][a-z0-9]*(?:['-][a-z0-9]+)*")


def extract_title_nouns(title: str) -> list[str]:
    """The (approximate) nouns of a product title, lower-cased, in order, duplicates kept.

    A heuristic stand-in for spaCy's NOUN/PROPN tags: alphabetic words of two or more characters that
    are neither stop words nor common listing adjectives. Title-cased words such as brand names count
    as nouns (spaCy tags most of them PROPN).
    """
    words = _WORD_RE.findall(title.lower())
    return [word for word in words if len(word) > 1 and word not in _STOP_WORDS and word not in _NON_NOUN_WORDS]


def normalize_color(text: str) -> str:
    """Replace `text` by the first word of `COLOR_WORDS` it contains (substring test), else return it unchanged."""
    for color in COLOR_WORDS:
        if color in text:
            return color
    return text


def _fuzz():
    try:
        from rapidfuzz import fuzz, utils
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ImportError(
            "the WebShop reward needs `rapidfuzz` for fuzzy matching; install it with `pip install rapidfuzz`."
        ) from error
    return fuzz, utils


def _token_set_ratio(a: str, b: str) -> float:
    fuzz, utils = _fuzz()
    return fuzz.token_set_ratio(a, b, processor=utils.default_process)


def _field(record: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    for name in names:
        if name in record:
            return record[name]
    return default


def compute_type_reward(goal: Mapping[str, Any], product: Mapping[str, Any]) -> dict[str, Any]:
    """The type factor of the reward: `{"r_type", "query_match", "category_match", "title_score"}`.

    Args:
        goal: needs `query`, `product_category` (levels separated by "›") and `name` (the target's title).
        product: the bought product, same keys (`name` falls back to `Title`).
    """
    query_match = _field(product, "query", default=None) == _field(goal, "query", default=None)
    bought_levels = {level.strip() for level in str(_field(product, "product_category", default="")).split("›")}
    goal_levels = {level.strip() for level in str(_field(goal, "product_category", default="")).split("›")}
    bought_levels.discard("")
    goal_levels.discard("")
    category_match = len(bought_levels & goal_levels) >= 2

    bought_nouns = set(extract_title_nouns(str(_field(product, "name", "Title", "title", default=""))))
    goal_nouns = extract_title_nouns(str(_field(goal, "name", "Title", "title", default="")))
    title_score = 0.2 if not goal_nouns else len(bought_nouns & set(goal_nouns)) / len(goal_nouns)

    r_type = 1.0
    if not (query_match or category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return {"r_type": r_type, "query_match": query_match, "category_match": category_match, "title_score": title_score}


def compute_attribute_matches(goal_attributes: Sequence[str], product: Mapping[str, Any]) -> int:
    """How many goal attributes the product has (fuzzy match on its attributes, else substring of its text)."""
    product_attributes = list(_field(product, "Attributes", "attributes", default=[]) or [])
    title = str(_field(product, "Title", "title", "name", default="")).lower()
    bullets = " ".join(_field(product, "BulletPoints", "bullet_points", "bullets", default=[]) or []).lower()
    description = str(_field(product, "Description", "description", default="")).lower()
    matches = 0
    for attribute in goal_attributes:
        fuzzy = any(_token_set_ratio(candidate, attribute) > FUZZY_THRESHOLD for candidate in product_attributes)
        if fuzzy or attribute in title or attribute in bullets or attribute in description:
            matches += 1
    return matches


def compute_option_matches(goal_options: Iterable[str], chosen_options: Iterable[str]) -> int:
    """How many goal option values are matched by a chosen value (after colour normalisation)."""
    chosen = [normalize_color(str(value)) for value in chosen_options]
    matches = 0
    for goal_value in goal_options:
        target = normalize_color(str(goal_value))
        if any(_token_set_ratio(value, target) > FUZZY_THRESHOLD for value in chosen):
            matches += 1
    return matches


def _option_values(options: Mapping[str, str] | Iterable[str] | None) -> list[str]:
    if options is None:
        return []
    if isinstance(options, Mapping):
        return [str(value) for value in options.values()]
    if isinstance(options, str):
        return [options]
    return [str(value) for value in options]


def compute_webshop_reward(
    goal: Mapping[str, Any],
    product: Mapping[str, Any],
    chosen_options: Mapping[str, str] | Sequence[str] | None,
    *,
    price: float | None = None,
) -> dict[str, Any]:
    """WebShop's task score of buying `product` with `chosen_options` for `goal`, with every term.

    Args:
        goal: `attributes` (list of str), `goal_options` (dict name -> value, or list of values),
            `price_upper` (float; <= 0 means "no budget"), and the type fields `query`,
            `product_category`, `name` (see `compute_type_reward`).
        product: WebShop item fields `Title`, `Attributes`, `BulletPoints`, `Description`, `query`,
            `product_category`, and `price` (float) unless `price=` is given.
        chosen_options: the options selected before buying (dict name -> value, or list of values).
        price: the price paid; defaults to `product["price"]`.

    Returns:
        `{"reward", "r_type", "query_match", "category_match", "title_score", "num_attr_matches", "r_att",
        "num_option_matches", "r_option", "r_price", "price"}`; `r_option` is None when the goal has no
        options and `r_price` is None when it has no budget (as in the reference's verbose info).
    """
    for key in ("attributes", "price_upper"):
        if key not in goal:
            raise KeyError(
                f"goal has no {key!r} field; got keys {sorted(goal)}. See compute_webshop_reward's docstring."
            )
    if price is None:
        if "price" not in product:
            raise KeyError(
                f"product has no 'price' field (keys {sorted(product)}); pass price= explicitly or add the field."
            )
        price = float(product["price"])
    attributes = list(goal["attributes"])
    goal_options = _option_values(goal.get("goal_options"))
    type_info = compute_type_reward(goal, product)
    num_attr = compute_attribute_matches(attributes, product)
    num_option = compute_option_matches(goal_options, _option_values(chosen_options))
    price_upper = float(goal["price_upper"])
    r_price = (price <= price_upper) if price_upper > 0 else None
    denominator = len(attributes) + len(goal_options) + 1
    reward = (num_attr + num_option + (1 if r_price else 0)) / denominator * type_info["r_type"]
    return {
        "reward": reward,
        **type_info,
        "num_attr_matches": num_attr,
        "r_att": num_attr / len(attributes) if attributes else None,
        "num_option_matches": num_option,
        "r_option": num_option / len(goal_options) if goal_options else None,
        "r_price": r_price,
        "price": price,
    }
