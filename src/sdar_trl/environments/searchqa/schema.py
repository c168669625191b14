"""The relations of the searchqa-mini world: how each is asked, described, searched and read.

Every fact in the generated world is `(subject, relation) -> value`. A relation knows

- the kinds of subject it applies to and the kind of its value (an entity kind, or an attribute);
- the question that asks for it directly ("Who founded {S}?") and, for entity-valued relations, the
  noun phrase that names its value inside a longer question ("the founder of {S}");
- the search keyword the expert appends to the subject's name ("Quellin Holdings founded");
- the regular expressions that read the value from the subject's lead passage.

The passage sentences (`world.py`) and these patterns are written together: every sentence variant
that states a fact matches its relation's pattern, and no other sentence of the subject's own
passages does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["COMPARE_TEMPLATES", "NAME", "RELATIONS", "Relation", "extract_value"]

NAME = r"[A-Z][a-z]+(?: [A-Z][a-z]+)*"
"""A capitalised name of one or more words (people, cities and countries have one or two words)."""

_YEAR = r"\d{4}"


@dataclass(frozen=True)
class Relation:
    """One relation of the world (see the module docstring)."""

    name: str
    subject_kinds: tuple[str, ...]
    value_kind: str  # an entity kind ("person", "city", "country", "place") or "year", "number", "length", "word"
    keyword: str
    questions: dict[str, str]  # subject kind -> question template with "{S}"
    phrase: str  # what the relation's value is, for the expert's reasoning: "the founder of {S}"
    descriptions: dict[str, str]  # subject kind -> noun phrase for the value (entity-valued relations only)
    patterns: tuple[str, ...]

    @property
    def is_entity(self) -> bool:
        return self.value_kind in ("person", "city", "country", "place")  # "place": a city or a country

    @property
    def is_numeric(self) -> bool:
        return self.value_kind in ("year", "number", "length")


def _relation(
    name: str,
    subject_kinds: tuple[str, ...],
    value_kind: str,
    keyword: str,
    question: str | dict[str, str],
    phrase: str,
    patterns: tuple[str, ...],
    description: str | dict[str, str] | None = None,
) -> Relation:
    questions = question if isinstance(question, dict) else dict.fromkeys(subject_kinds, question)
    if description is None:
        descriptions: dict[str, str] = {}
    elif isinstance(description, dict):
        descriptions = description
    else:
        descriptions = dict.fromkeys(subject_kinds, description)
    return Relation(name, subject_kinds, value_kind, keyword, questions, phrase, descriptions, patterns)


RELATIONS: dict[str, Relation] = {
    r.name: r
    for r in (
        _relation(
            "founder",
            ("company", "university"),
            "person",
            "founded",
            "Who founded {S}?",
            "the founder of {S}",
            (rf"founded (?:in {_YEAR} )?by ({NAME})",),
            "the founder of {S}",
        ),
        _relation(
            "founded_year",
            ("company", "university", "city"),
            "year",
            "founded",
            "In what year was {S} founded?",
            "the year {S} was founded",
            (rf"founded (?:by {NAME} )?in ({_YEAR})",),
        ),
        _relation(
            "headquarters",
            ("company",),
            "city",
            "headquartered",
            "In which city is {S} headquartered?",
            "the city where {S} is headquartered",
            (rf"headquartered in ({NAME})",),
            "the city where {S} is headquartered",
        ),
        _relation(
            "industry",
            ("company",),
            "word",
            "industry",
            "In which industry does {S} operate?",
            "the industry of {S}",
            (r"company in the ([a-z]+) industry",),
        ),
        _relation(
            "located_in",
            ("university", "city"),
            "place",
            "located",
            {"university": "In which city is {S} located?", "city": "In which country is {S} located?"},
            "the place where {S} is located",
            (rf"located in ({NAME})",),
            {"university": "the city where {S} is located", "city": "the country where {S} is located"},
        ),
        _relation(
            "lead_singer",
            ("band",),
            "person",
            "singer",
            "Who is the lead singer of {S}?",
            "the lead singer of {S}",
            (rf"lead singer is ({NAME})", rf"({NAME}) is the band's lead singer"),
            "the lead singer of {S}",
        ),
        _relation(
            "formed_in",
            ("band",),
            "city",
            "formed",
            "In which city was {S} formed?",
            "the city where {S} was formed",
            (rf"formed in (?:{_YEAR} in )?({NAME})",),
            "the city where {S} was formed",
        ),
        _relation(
            "formed_year",
            ("band",),
            "year",
            "formed",
            "In what year was {S} formed?",
            "the year {S} was formed",
            (rf"formed in (?:{NAME} in )?({_YEAR})",),
        ),
        _relation(
            "born_in",
            ("person",),
            "city",
            "born",
            "In which city was {S} born?",
            "the birthplace of {S}",
            (rf"born in (?:{_YEAR} in )?({NAME})",),
            "the birthplace of {S}",
        ),
        _relation(
            "birth_year",
            ("person",),
            "year",
            "born",
            "In what year was {S} born?",
            "the year {S} was born",
            (rf"born in (?:{NAME} in )?({_YEAR})",),
        ),
        _relation(
            "profession",
            ("person",),
            "word",
            "profession",
            "What was the profession of {S}?",
            "the profession of {S}",
            (r"was an? ([a-z]+) by profession",),
        ),
        _relation(
            "population",
            ("city",),
            "number",
            "population",
            "What is the population of {S}?",
            "the population of {S}",
            (r"population of (\d{1,3}(?:,\d{3})*)",),
        ),
        _relation(
            "capital",
            ("country",),
            "city",
            "capital",
            "What is the capital of {S}?",
            "the capital of {S}",
            (rf"capital is ({NAME})",),
            "the capital of {S}",
        ),
        _relation(
            "independence_year",
            ("country",),
            "year",
            "independence",
            "In what year did {S} gain independence?",
            "the year {S} gained independence",
            (rf"independence in ({_YEAR})",),
        ),
        _relation(
            "length",
            ("river",),
            "length",
            "length",
            "How long is the {S}?",
            "the length of the {S}",
            (r"length of (\d+ km)",),
        ),
        _relation(
            "mouth",
            ("river",),
            "city",
            "sea",
            "Near which city does the {S} reach the sea?",
            "the city where the {S} reaches the sea",
            (rf"reaches the sea near ({NAME})",),
            "the city where the {S} reaches the sea",
        ),
        _relation(
            "source",
            ("river",),
            "country",
            "rises",
            "In which country does the {S} rise?",
            "the country where the {S} rises",
            (rf"rises in ({NAME})",),
            "the country where the {S} rises",
        ),
    )
}

# `located_in` has a city value for universities and a country value for cities.
LOCATED_IN_VALUE = {"university": "city", "city": "country"}


def value_kind(relation: str, subject_kind: str) -> str:
    """The kind of `relation`'s value for a subject of `subject_kind`."""
    if relation == "located_in":
        return LOCATED_IN_VALUE[subject_kind]
    return RELATIONS[relation].value_kind


# (relation, subject kind) -> (question template with {A} and {B}, "min" or "max" wins)
COMPARE_TEMPLATES: dict[tuple[str, str], tuple[str, str]] = {
    ("founded_year", "company"): ("Which company was founded earlier, {A} or {B}?", "min"),
    ("founded_year", "university"): ("Which university was founded earlier, {A} or {B}?", "min"),
    ("founded_year", "city"): ("Which city was founded earlier, {A} or {B}?", "min"),
    ("formed_year", "band"): ("Which band was formed earlier, {A} or {B}?", "min"),
    ("birth_year", "person"): ("Which person was born earlier, {A} or {B}?", "min"),
    ("population", "city"): ("Which city has the larger population, {A} or {B}?", "max"),
    ("length", "river"): ("Which river is longer, the {A} or the {B}?", "max"),
    ("independence_year", "country"): ("Which country gained independence earlier, {A} or {B}?", "min"),
}

_COMPILED = {name: tuple(re.compile(p) for p in r.patterns) for name, r in RELATIONS.items()}


def extract_value(relation: str, text: str) -> str | None:
    """The value of `relation` stated in a passage `text` (the subject's own passage), or None."""
    for pattern in _COMPILED[relation]:
        match = pattern.search(text)
        if match:
            return match.group(1)
    return None


def numeric_value(text: str) -> int:
    """The number in a value as written in a passage: "1931", "48,200", "412 km"."""
    return int(text.split()[0].replace(",", ""))
