"""The generated `webshop-mini` catalogue and its goals.

`build_catalog(seed, difficulty)` returns a `Catalog`: products (with WebShop's fields: ASIN, title, price,
options, attributes, bullet points, description, reviews, category breadcrumb, query) and an enumerable
goal space. Both are deterministic functions of `(seed, difficulty)` and cached per process.

Products come in *families* at the "full" difficulty: a base product plus near-duplicates that share
most title words — the same brand with one attribute swapped, or the same attributes from another brand
at about twice the price. Goals name a product type, some of the target's title attributes, every
option of the target and a budget, in WebShop's synthetic-goal style:

    i need a long lasting and cruelty free lipstick with color: berry, and size: 0.12 ounce, and price
    lower than 30.00 dollars

A goal is only emitted when *every* product whose title contains all of the goal's words scores 1.0
when bought under budget with the goal's options: the expert (and a careful agent) can rely on the
visible rule "open the first result whose title has every word of the request and whose price is
under the budget".
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

from .products import Product, _Builder, title_words
from .reward import extract_title_nouns

__all__ = [
    "DIFFICULTIES",
    "GOAL_LEAD_INS",
    "Catalog",
    "Goal",
    "Product",
    "build_catalog",
    "render_goal_text",
    "title_words",
]

DIFFICULTIES = ("easy", "full")
"""Named difficulty levels (see `build_catalog`)."""

GOAL_LEAD_INS = (
    "i need",
    "i want",
    "i am looking for",
    "i'm looking for",
    "find me",
    "i would like",
    "i want to buy",
    "please get me",
)
"""How goals start; the article ("a"/"an") and the request follow."""

NUM_BUDGETS = 3
"""Budgets per goal: the 2nd, 3rd or 4th multiple of $10 above the target's price (WebShop's rule)."""


@dataclass(frozen=True)
class Goal:
    """One task: the instruction and the structured fields WebShop's reward needs."""

    index: int
    text: str
    target: Product
    attributes: tuple[str, ...]
    options: tuple[tuple[str, str], ...]
    price_upper: float

    @property
    def category(self) -> str:
        return self.target.category

    @property
    def query(self) -> str:
        """The request words (attributes then type), i.e. the expert's search query."""
        return " ".join([*self.attributes, self.target.type_name])

    def to_record(self) -> dict[str, Any]:
        """The goal as a WebShop goal dict (`attributes`, `goal_options`, `price_upper`, ...)."""
        return {
            "asin": self.target.asin,
            "name": self.target.title,
            "query": self.target.type_name,
            "category": self.target.category,
            "product_category": self.target.product_category,
            "instruction_text": self.text,
            "attributes": list(self.attributes),
            "goal_options": dict(self.options),
            "price_upper": self.price_upper,
        }


def render_goal_text(
    lead_in: str,
    attributes: Sequence[str],
    type_name: str,
    options: Sequence[tuple[str, str]],
    price_upper: float,
) -> str:
    """A WebShop-style goal: "{lead_in} a {attrs} {type} with {name}: {value}, ..., and price lower than N dollars"."""
    request = attributes[0] if len(attributes) == 1 else ", ".join(attributes[:-1]) + " and " + attributes[-1]
    first = request.split(" ", 1)[0]
    article = "an" if first[0] in "aeio" or (first[0] == "u" and first not in ("usb", "uv")) else "a"
    text = f"{lead_in} {article} {request} {type_name}"
    if options:
        text += " with " + ", and ".join(f"{name}: {value}" for name, value in options)
    return f"{text}, and price lower than {price_upper:.2f} dollars"


@dataclass
class _GoalKey:
    product: int
    attributes: tuple[str, ...]
    options: tuple[tuple[str, tuple[str, ...]], ...]  # option name -> allowed values
    budgets: tuple[float, ...]

    @property
    def size(self) -> int:
        count = len(self.budgets) * len(GOAL_LEAD_INS)
        for _, values in self.options:
            count *= len(values)
        return count


@dataclass
class Catalog:
    """Products, a search engine over them, and the goal space of one `(seed, difficulty)`."""

    seed: int
    difficulty: str
    products: list[Product]
    _keys: list[_GoalKey] = field(default_factory=list, repr=False)
    _cumulative: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.by_asin = {product.asin: product for product in self.products}

    @cached_property
    def search_engine(self):
        from .search import ProductSearchEngine

        return ProductSearchEngine([product.search_text for product in self.products])

    @property
    def num_goals(self) -> int:
        """How many distinct goals the catalogue yields."""
        return self._cumulative[-1] if self._cumulative else 0

    @cached_property
    def _multiplier(self) -> int:
        n = self.num_goals
        multiplier = 2654435761 % n or 1
        while math.gcd(multiplier, n) != 1:
            multiplier += 1
        return multiplier

    def _permute(self, index: int) -> int:
        # A fixed affine bijection of [0, N): consecutive goal indices land on unrelated products.
        return (self._multiplier * index + 7919) % self.num_goals

    def goal(self, index: int) -> Goal:
        """Goal number `index` in [0, num_goals) (a bijection: distinct indices give distinct goals)."""
        if not 0 <= index < self.num_goals:
            raise IndexError(f"goal index {index} is out of range; this catalogue has {self.num_goals} goals.")
        slot = self._permute(index)
        key_index = bisect.bisect_right(self._cumulative, slot) - 1
        key = self._keys[key_index]
        rest = slot - self._cumulative[key_index]
        lead_in = GOAL_LEAD_INS[rest % len(GOAL_LEAD_INS)]
        rest //= len(GOAL_LEAD_INS)
        budget = key.budgets[rest % len(key.budgets)]
        rest //= len(key.budgets)
        options = []
        for name, values in key.options:
            options.append((name, values[rest % len(values)]))
            rest //= len(values)
        product = self.products[key.product]
        text = render_goal_text(lead_in, key.attributes, product.type_name, options, budget)
        return Goal(
            index=index,
            text=text,
            target=product,
            attributes=key.attributes,
            options=tuple(options),
            price_upper=budget,
        )


# ---------------------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------------------
def _budgets(price: float) -> tuple[float, ...]:
    above = [10.0 * k for k in range(1, 100) if 10.0 * k > price][:4]
    return tuple(above[1:4]) if len(above) >= 2 else (1_000_000.0,)


def _goal_keys(products: list[Product], difficulty: str) -> list[_GoalKey]:
    word_index: dict[str, set[int]] = {}
    for i, product in enumerate(products):
        for word in product.words:
            word_index.setdefault(word, set()).add(i)
    keys: list[_GoalKey] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()
    for i, product in enumerate(products):
        if difficulty == "easy":
            combos = [(a,) for a in product.title_attributes]
        else:
            combos = [
                *itertools.permutations(product.title_attributes, 2),
                *itertools.permutations(product.title_attributes, 3),
            ]
        for combo in combos:
            if (product.type_name, combo) in seen:
                continue
            seen.add((product.type_name, combo))
            words = title_words(" ".join([*combo, product.type_name]))
            matches = set.intersection(*(word_index.get(word, set()) for word in words))
            if not all(_acceptable(products[j], product, combo) for j in matches):
                continue
            option_names = list(product.options)[:1] if difficulty == "easy" else list(product.options)
            allowed = []
            for name in option_names:
                values = tuple(
                    v for v in product.options[name] if all(v in products[j].options[name] for j in matches)
                )
                allowed.append((name, values))
            if any(not values for _, values in allowed):
                continue
            keys.append(_GoalKey(product=i, attributes=combo, options=tuple(allowed), budgets=_budgets(product.price)))
    return keys


def _acceptable(candidate: Product, target: Product, combo: tuple[str, ...]) -> bool:
    """Would buying `candidate` (found by the title rule) satisfy a goal built from `target`? (options aside)

    Same type means the same WebShop `query`, so `r_type` is 1.0 exactly when the title-noun overlap
    is >= 0.1 (see `compute_type_reward`); attributes match because they are substrings of the title.
    """
    if candidate.type_name != target.type_name:
        return False
    title = candidate.title.lower()
    if not all(attribute in title for attribute in combo):
        return False
    goal_nouns = extract_title_nouns(target.title)
    overlap = len(set(goal_nouns) & candidate.nouns)
    return not goal_nouns or overlap / len(goal_nouns) >= 0.1


@lru_cache(maxsize=8)
def build_catalog(seed: int = 0, difficulty: str = "full") -> Catalog:
    """The catalogue of `(seed, difficulty)` (cached).

    Difficulty levels:
        "full": 1,000 products (36 per type) in families of near-duplicates; goals name 2 or 3
            attributes and every option of the target; about two million distinct goals.
        "easy": 112 products (4 per type), no near-duplicates (each title attribute belongs to one
            product of its type); goals name 1 attribute and the first option only, so the natural
            query ranks the target first and an episode takes 4 steps.
    """
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}.")
    products = _Builder(seed, difficulty).build(difficulty)
    catalog = Catalog(seed=seed, difficulty=difficulty, products=products)
    keys = _goal_keys(products, difficulty)
    cumulative = [0]
    for key in keys:
        cumulative.append(cumulative[-1] + key.size)
    catalog._keys = keys
    catalog._cumulative = cumulative
    return catalog
