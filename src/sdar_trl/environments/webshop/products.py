"""The products of the generated `webshop-mini` catalogue: the `Product` record and the seeded builder.

`_Builder` draws products from the vocabulary (`vocab.json`, read by `_vocab.py`): at the "full" difficulty in
families of near-duplicates (the same brand with one attribute swapped, or the same attributes from another brand
at about twice the price), at "easy" a few clearly different products per type. `catalog.py` builds the goals on
top and re-exports `Product` and `title_words`.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ._vocab import (
    BULLET_CLAUSES,
    CATEGORY_SPECS,
    DESCRIPTION_CLOSERS,
    DESCRIPTION_OPENERS,
    REVIEW_BODIES,
    REVIEW_TITLES,
    CategorySpec,
    TypeSpec,
)
from .reward import extract_title_nouns

__all__ = ["Product", "title_words"]

_FULL_PRODUCTS = 1000
_EASY_PRODUCTS_PER_TYPE = 4
_WORD_RE = re.compile(r"[a-z0-9]+")
_ASIN_CHARS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_UPPER_WORDS = frozenset({"usb", "uv", "spf", "id", "rfid", "led", "gmo", "mfi"})
_LOWER_WORDS = frozenset({"for", "by", "of", "x", "and", "with"})


def title_words(text: str) -> frozenset[str]:
    """The lower-cased alphanumeric words of `text` (the unit of the visible title-matching rule)."""
    return frozenset(_WORD_RE.findall(text.lower()))


def _title_case(text: str) -> str:
    def word(token: str) -> str:
        if token in _UPPER_WORDS:
            return token.upper()
        if token in _LOWER_WORDS:
            return token
        return "-".join(part[:1].upper() + part[1:] for part in token.split("-"))

    return " ".join(word(token) for token in text.split(" "))


@dataclass(frozen=True, eq=False)
class Product:
    """One catalogue item, with WebShop's item fields (see `to_record`); compared by identity."""

    asin: str
    title: str
    type_name: str
    category: str
    product_category: str
    price: float
    title_attributes: tuple[str, ...]
    attributes: tuple[str, ...]
    bullets: tuple[str, ...]
    description: str
    reviews: tuple[tuple[str, int, str], ...]
    options: dict[str, tuple[str, ...]]
    family: int

    @property
    def price_text(self) -> str:
        return f"${self.price:.2f}"

    @property
    def rating(self) -> str:
        return f"{sum(score for _, score, _ in self.reviews) / len(self.reviews):.1f}"

    @cached_property
    def words(self) -> frozenset[str]:
        return title_words(self.title)

    @cached_property
    def nouns(self) -> frozenset[str]:
        """The title's nouns as WebShop's type reward sees them (`extract_title_nouns`)."""
        return frozenset(extract_title_nouns(self.title))

    @cached_property
    def search_text(self) -> str:
        """What the search engine indexes (as in WebShop: title, description, first bullet, options)."""
        option_text = ", and ".join(f"{name}: {', '.join(values)}" for name, values in self.options.items())
        return " ".join([self.title, self.description, self.bullets[0], option_text]).lower()

    def to_record(self) -> dict[str, Any]:
        """The product as a WebShop item dict (`Title`, `Attributes`, `BulletPoints`, ...), for the reward."""
        return {
            "asin": self.asin,
            "name": self.title,
            "Title": self.title,
            "query": self.type_name,
            "category": self.category,
            "product_category": self.product_category,
            "Attributes": list(self.attributes),
            "BulletPoints": list(self.bullets),
            "Description": self.description,
            "price": self.price,
            "Price": self.price_text,
            "options": {name: list(values) for name, values in self.options.items()},
        }


def _brands(rng: random.Random, category: CategorySpec) -> list[str]:
    first, second = category.brand_syllables
    names = [a + b for a in first for b in second]
    rng.shuffle(names)
    return names


def _price(rng: random.Random, low: float, high: float) -> float:
    return max(1.0, math.floor(rng.uniform(low, high)) + rng.choice((0.99, 0.49, 0.95, 0.0)))


def _options(rng: random.Random, spec: TypeSpec) -> dict[str, tuple[str, ...]]:
    options = {}
    for name in sorted(spec.options):
        palette = spec.options[name]
        count = rng.randint(min(3, len(palette)), min(6, len(palette)))
        chosen = set(rng.sample(palette, count))
        options[name] = tuple(value for value in palette if value in chosen)
    return options


def _title(rng: random.Random, brand: str, spec: TypeSpec, attributes: tuple[str, ...], suffix: str) -> str:
    attrs = [_title_case(a) for a in attributes]
    type_title = _title_case(spec.name)
    layout = rng.randrange(3)
    if layout == 0:
        parts = [brand, *attrs, type_title, suffix]
        return " ".join(p for p in parts if p)
    if layout == 1:
        head = " ".join(p for p in [brand, type_title, suffix] if p)
        return f"{head} - {', '.join(attrs)}"
    head = " ".join([*attrs[:-1], type_title])
    tail = ", ".join(p for p in [attrs[-1], suffix] if p)
    return f"{head} by {brand}, {tail}"


def _texts(rng: random.Random, spec: TypeSpec, attributes: tuple[str, ...]):
    opener = rng.choice(DESCRIPTION_OPENERS).format(type=spec.name)
    closer = rng.choice(DESCRIPTION_CLOSERS)
    listed = ", ".join(attributes[:-1]) + " and " + attributes[-1]
    description = f"{opener} Highlights: {listed}. {closer}"
    bullets = [f"{attribute.capitalize()} - {rng.choice(BULLET_CLAUSES)}" for attribute in attributes]
    rng.shuffle(bullets)
    reviews = []
    for _ in range(2):
        body = rng.choice(REVIEW_BODIES).format(type=spec.name, attr=rng.choice(attributes))
        reviews.append((rng.choice(REVIEW_TITLES), rng.randint(3, 5), body))
    return description, tuple(bullets), tuple(reviews)


class _Builder:
    def __init__(self, seed: int, difficulty: str) -> None:
        self.rng = random.Random(f"webshop-mini/{difficulty}/{seed}")
        self.asins: set[str] = set()
        self.products: list[Product] = []
        self.family = 0

    def asin(self) -> str:
        while True:
            candidate = "B0" + self.rng.choice("6789") + "".join(self.rng.choice(_ASIN_CHARS) for _ in range(7))
            if candidate not in self.asins:
                self.asins.add(candidate)
                return candidate

    def add(self, category, spec, brand, title_attrs, feature_attr, price, options, family) -> None:
        rng = self.rng
        all_attrs = tuple(title_attrs) if feature_attr is None else (*title_attrs, feature_attr)
        description, bullets, reviews = _texts(rng, spec, all_attrs)
        self.products.append(
            Product(
                asin=self.asin(),
                title=_title(rng, brand, spec, title_attrs, rng.choice(spec.suffixes)),
                type_name=spec.name,
                category=category.name,
                product_category=spec.path,
                price=price,
                title_attributes=tuple(title_attrs),
                attributes=all_attrs,
                bullets=bullets,
                description=description,
                reviews=reviews,
                options=options,
                family=family,
            )
        )

    def full_type(self, category: CategorySpec, spec: TypeSpec, count: int, brands: list[str]) -> None:
        rng = self.rng
        made = 0
        while made < count:
            size = min(count - made, rng.choice((1, 1, 2, 3, 3, 4)))
            picked = rng.sample(spec.attributes, 4)
            title_attrs, feature = tuple(picked[:3]), picked[3]
            brand = rng.choice(brands)
            price = _price(rng, *spec.price)
            options = _options(rng, spec)
            self.family += 1
            self.add(category, spec, brand, title_attrs, feature, price, options, self.family)
            for kind in ("swap", "price", "swap")[: size - 1]:
                if kind == "price":
                    other = rng.choice([b for b in brands if b != brand])
                    twin_price = round(price * rng.uniform(1.8, 2.4) + 10, 2)
                    self.add(category, spec, other, title_attrs, feature, twin_price, options, self.family)
                else:
                    unused = [a for a in spec.attributes if a not in title_attrs and a != feature]
                    swapped = list(title_attrs)
                    swapped[rng.randrange(3)] = rng.choice(unused)
                    near_price = round(max(1.0, price * rng.uniform(0.85, 1.15)), 2)
                    self.add(category, spec, brand, tuple(swapped), feature, near_price, options, self.family)
            made += size

    def easy_type(self, category: CategorySpec, spec: TypeSpec, brands: list[str]) -> None:
        rng = self.rng
        attrs = list(spec.attributes)
        rng.shuffle(attrs)
        for k in range(_EASY_PRODUCTS_PER_TYPE):
            title_attrs = tuple(attrs[3 * k : 3 * k + 3])
            self.family += 1
            self.add(
                category,
                spec,
                rng.choice(brands),
                title_attrs,
                None,
                _price(rng, *spec.price),
                _options(rng, spec),
                self.family,
            )

    def build(self, difficulty: str) -> list[Product]:
        types = [(category, spec) for category in CATEGORY_SPECS for spec in category.types]
        brands = {category.name: _brands(self.rng, category) for category in CATEGORY_SPECS}
        for position, (category, spec) in enumerate(types):
            if difficulty == "easy":
                self.easy_type(category, spec, brands[category.name])
            else:
                count = _FULL_PRODUCTS // len(types) + (1 if position < _FULL_PRODUCTS % len(types) else 0)
                self.full_type(category, spec, count, brands[category.name])
        products = self.products
        self.rng.shuffle(products)
        return products
