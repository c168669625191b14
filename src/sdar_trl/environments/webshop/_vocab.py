"""Hand-written vocabulary of the `webshop-mini` catalogue: product types, attributes, options, brands.

The data itself is `vocab.json` beside this module (package data, shipped in the wheel), read once at import into
the frozen dataclasses below; an option whose value is a string names one of the file's shared `palettes`.
`catalog.py` turns it into products and goals. Rules the data follows (tested in
`tests/environments/test_webshop_catalog.py`):

- attribute phrases and type names never contain "and", "with", "a"/"an" or a comma, so a goal
  "i need a {attr} and {attr} {type} with color: ..." can be split back into its parts by a fixed rule;
- within a type, no attribute phrase fuzzily matches another (WebShop's token-set ratio stays <= 85);
- within a type, the option palettes of different option names are disjoint, and no option value is the
  text of a page button ("buy now", "description", ...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = ["CATEGORY_SPECS", "CategorySpec", "TypeSpec"]


@dataclass(frozen=True)
class TypeSpec:
    """One product type (the thing a goal names, e.g. "lipstick") and what its products can look like."""

    name: str
    """Lower-case type phrase used in goals and titles (also the product's WebShop `query`)."""
    path: str
    """WebShop-style `product_category` breadcrumb, levels separated by " › "."""
    price: tuple[float, float]
    """Range of the base price in dollars."""
    options: dict[str, tuple[str, ...]]
    """Option name -> palette of values (a product offers a subset of each palette)."""
    attributes: tuple[str, ...]
    """Attribute phrases a product of this type may have (12 per type)."""
    suffixes: tuple[str, ...]
    """Title endings ("for Women", "" ...)."""


@dataclass(frozen=True)
class CategorySpec:
    """A routing category (the environment's `task_type`) and its product types."""

    name: str
    brand_syllables: tuple[tuple[str, ...], tuple[str, ...]]
    """Brand names are built as first-syllable + second-syllable (capitalised)."""
    types: tuple[TypeSpec, ...]


def _type_spec(entry: dict[str, Any], palettes: dict[str, tuple[str, ...]]) -> TypeSpec:
    options = {
        name: palettes[values] if isinstance(values, str) else tuple(values)
        for name, values in entry["options"].items()
    }
    return TypeSpec(
        name=entry["name"],
        path=entry["path"],
        price=(entry["price"][0], entry["price"][1]),
        options=options,
        attributes=tuple(entry["attributes"]),
        suffixes=tuple(entry["suffixes"]),
    )


def _category_spec(entry: dict[str, Any], palettes: dict[str, tuple[str, ...]]) -> CategorySpec:
    first, second = entry["brand_syllables"]
    return CategorySpec(
        name=entry["name"],
        brand_syllables=(tuple(first), tuple(second)),
        types=tuple(_type_spec(item, palettes) for item in entry["types"]),
    )


_DATA: dict[str, Any] = json.loads(resources.files(__package__).joinpath("vocab.json").read_text(encoding="utf-8"))
_PALETTES: dict[str, tuple[str, ...]] = {name: tuple(values) for name, values in _DATA["palettes"].items()}

CATEGORY_SPECS: tuple[CategorySpec, ...] = tuple(_category_spec(entry, _PALETTES) for entry in _DATA["categories"])
"""The seven generated categories, in a fixed order (their names are the environment's task types)."""
APPAREL, FOOTWEAR, ACCESSORIES, BEAUTY, ELECTRONICS, HOME, GROCERY = CATEGORY_SPECS

# Generic sentences for descriptions, bullets and reviews. `{type}` / `{attr}` are filled in.
DESCRIPTION_OPENERS: tuple[str, ...] = tuple(_DATA["description_openers"])
DESCRIPTION_CLOSERS: tuple[str, ...] = tuple(_DATA["description_closers"])
BULLET_CLAUSES: tuple[str, ...] = tuple(_DATA["bullet_clauses"])
REVIEW_TITLES: tuple[str, ...] = tuple(_DATA["review_titles"])
REVIEW_BODIES: tuple[str, ...] = tuple(_DATA["review_bodies"])
