"""webshop-mini's catalogue and goals: vocabulary rules, goal space, the title-rule guarantee, search, routing."""

from __future__ import annotations

import itertools
import random
import re

import pytest

pytest.importorskip("bm25s", reason="webshop-mini needs bm25s")
pytest.importorskip("rapidfuzz", reason="webshop-mini needs rapidfuzz")
from rapidfuzz import fuzz, utils

from sdar_trl.environments.webshop import WEBSHOP_CATEGORIES, build_catalog, compute_webshop_reward, parse_goal
from sdar_trl.environments.webshop import route_webshop_category as route
from sdar_trl.environments.webshop._vocab import CATEGORY_SPECS
from sdar_trl.environments.webshop.catalog import title_words

BUTTONS = {"back to search", "< prev", "next >", "description", "features", "reviews", "buy now", "search"}
TYPES = [spec for category in CATEGORY_SPECS for spec in category.types]


# -- vocabulary rules ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", TYPES, ids=lambda spec: spec.name)
def test_vocabulary_follows_the_parsing_rules(spec):
    for phrase in (*spec.attributes, spec.name):
        words = phrase.split()
        assert "and" not in words and "with" not in words and "," not in phrase, phrase
        assert words[0] not in ("a", "an"), phrase
    assert len(set(spec.attributes)) == len(spec.attributes) == 12
    for a, b in itertools.combinations(spec.attributes, 2):
        assert fuzz.token_set_ratio(a, b, processor=utils.default_process) <= 85, (a, b)
    values = [value for palette in spec.options.values() for value in palette]
    assert len(values) == len(set(values)), spec.options
    assert not set(values) & BUTTONS
    assert all(value == value.lower() and ", and " not in value for value in values)


def test_categories_are_the_routing_keys():
    assert [c.name for c in CATEGORY_SPECS] == list(WEBSHOP_CATEGORIES[:-1])
    for category in CATEGORY_SPECS:
        for spec in category.types:
            assert route(f"i need a {spec.name}") == category.name, spec.name


# -- products --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("difficulty", "count"), [("full", 1000), ("easy", 112)])
def test_catalogue_size_ids_and_fields(difficulty, count):
    catalog = build_catalog(0, difficulty)
    assert len(catalog.products) == count
    asins = [p.asin for p in catalog.products]
    assert len(set(asins)) == count
    assert all(re.fullmatch(r"B0[0-9A-Z]{8}", asin) for asin in asins)
    for product in catalog.products:
        assert all(attribute in product.title.lower() for attribute in product.title_attributes)
        assert product.price_text == f"${product.price:.2f}" and 1.0 <= product.price < 960.0
        assert product.options and all(len(values) >= 2 for values in product.options.values())
        assert len(product.reviews) == 2 and product.bullets and product.description


def test_catalogue_is_deterministic_and_seeded():
    from sdar_trl.environments.webshop.catalog import _Builder

    first = _Builder(5, "full").build("full")
    again = _Builder(5, "full").build("full")
    other = _Builder(6, "full").build("full")
    assert [p.title for p in first] == [p.title for p in again]
    assert [p.title for p in first] != [p.title for p in other]


def test_full_catalogue_has_near_duplicate_distractors():
    catalog = build_catalog(0, "full")
    families: dict[int, list] = {}
    for product in catalog.products:
        families.setdefault(product.family, []).append(product)
    multi = [members for members in families.values() if len(members) > 1]
    assert len(multi) >= 150
    for members in multi:
        for member in members:
            assert member.type_name == members[0].type_name
            assert any(
                len(set(member.title_attributes) & set(other.title_attributes)) >= 2
                for other in members
                if other is not member
            )


# -- goals -----------------------------------------------------------------------------------------------------


def test_full_goal_space_exceeds_a_million_distinct_goals():
    catalog = build_catalog(0, "full")
    assert catalog.num_goals >= 1_000_000
    rng = random.Random(0)
    sample = rng.sample(range(catalog.num_goals), 20_000)
    texts = {catalog.goal(i).text for i in sample}
    assert len(texts) == len(sample)


@pytest.mark.parametrize("difficulty", ["full", "easy"])
def test_goal_text_round_trips_and_follows_webshop_style(difficulty):
    catalog = build_catalog(0, difficulty)
    for index in range(0, catalog.num_goals, max(1, catalog.num_goals // 1500)):
        goal = catalog.goal(index)
        parsed = parse_goal(goal.text)
        assert parsed.request == " ".join([*goal.attributes, goal.target.type_name]).replace(",", "")
        assert parsed.options == goal.options
        assert parsed.budget == goal.price_upper
        assert re.fullmatch(r".+ a?n? .+, and price lower than \d+\.00 dollars", goal.text)
        assert len(goal.attributes) == (1 if difficulty == "easy" else len(goal.attributes))
        if difficulty == "full":
            assert len(goal.attributes) in (2, 3) and [n for n, _ in goal.options] == list(goal.target.options)
        else:
            assert len(goal.attributes) == 1 and len(goal.options) == 1
        above = [10.0 * k for k in range(1, 100) if 10.0 * k > goal.target.price]
        assert goal.price_upper in above[1:4]
        assert route(goal.text) == goal.category


def test_every_title_rule_match_scores_one():
    # The guarantee behind the expert: any product whose title has every request word and whose price is under the
    # budget scores 1.0 when bought with the goal's options.
    catalog = build_catalog(0, "full")
    rng = random.Random(1)
    for index in rng.sample(range(catalog.num_goals), 600):
        goal = catalog.goal(index)
        words = title_words(goal.query)
        matches = [p for p in catalog.products if words <= p.words and p.price < goal.price_upper]
        assert goal.target in matches
        for product in matches:
            details = compute_webshop_reward(goal.to_record(), product.to_record(), dict(goal.options))
            assert details["reward"] == 1.0, (goal.text, product.title)


def test_goal_index_bounds():
    catalog = build_catalog(0, "easy")
    with pytest.raises(IndexError, match="out of range"):
        catalog.goal(catalog.num_goals)
    with pytest.raises(ValueError, match="difficulty"):
        build_catalog(0, "medium")


# -- search --------------------------------------------------------------------------------------------------


def test_search_ranks_matching_titles_first():
    catalog = build_catalog(0, "full")
    engine = catalog.search_engine
    results = engine.search("waterproof hiking boots")
    assert len(results) == 50
    top = catalog.products[results[0]]
    assert {"waterproof", "hiking", "boots"} <= top.words
    assert engine.search("the and of") == ()
    assert engine.search("WATERPROOF Hiking boots") == results


def test_easy_target_ranks_first_for_its_natural_query():
    catalog = build_catalog(0, "easy")
    firsts = [catalog.search_engine.search(catalog.goal(i).query)[0] for i in range(0, catalog.num_goals, 97)]
    targets = [catalog.products.index(catalog.goal(i).target) for i in range(0, catalog.num_goals, 97)]
    hits = sum(a == b for a, b in zip(firsts, targets, strict=True))
    assert hits / len(targets) >= 0.97


# -- routing ------------------------------------------------------------------------------------------------------

ROUTING_CASES = [
    (
        "i need a long clip-in hair extension which is natural looking, and price lower than 40.00 dollars",
        "beauty_health",
    ),
    ("i want a makeup bag for travel", "accessories"),
    ("i am looking for a queen sized bed that is black, and price lower than 130.00 dollars", "home_decor"),
    ("i need a gluten free, dairy free vanilla cake mix, and price lower than 40.00 dollars", "grocery"),
    ("i want a wireless bluetooth speaker for my phone", "electronics"),
    ("i need slim fit jeans with belt loops", "apparel"),
    ("find me a pair of non slip running shoes in size 9", "footwear"),
    ("i would like a tea tree oil and sulfate free shampoo with scent: lavender", "beauty_health"),
    ("i want a usb port and dimmable table lamp with color: white", "home_decor"),
    ("i need a smart watch with a leather band", "electronics"),
    ("i need something nice", "other"),
    ("", "other"),
]


@pytest.mark.parametrize(("goal", "category"), ROUTING_CASES)
def test_routing_table(goal, category):
    assert route(goal) == category


def test_routing_rejects_non_strings():
    with pytest.raises(TypeError, match="str"):
        route(None)  # type: ignore[arg-type]
