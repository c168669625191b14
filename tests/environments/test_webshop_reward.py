"""WebShop's reward, term by term: attributes, options, price, type factor, and the combined score.

Expected values are worked out by hand from the formula in web_agent_site/engine/goal.py:
R = r_type * (attr matches + option matches + [price <= budget]) / (|attrs| + |options| + 1).
"""

from __future__ import annotations

import pytest

pytest.importorskip("rapidfuzz", reason="webshop-mini needs rapidfuzz")

from sdar_trl.environments.webshop import compute_webshop_reward
from sdar_trl.environments.webshop.reward import (
    compute_attribute_matches,
    compute_option_matches,
    compute_type_reward,
    extract_title_nouns,
    normalize_color,
)

# Ten words the noun heuristic keeps; titles made of them give exact title scores.
NOUNS = ("Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel", "India", "Juliet")


def product(**fields) -> dict:
    base = {
        "Title": "",
        "Attributes": [],
        "BulletPoints": [],
        "Description": "",
        "query": "q",
        "product_category": "a › b › c",
        "name": "Alpha",
        "price": 10.0,
    }
    return {**base, **fields}


# -- attributes --------------------------------------------------------------------------------------------------

ATTRIBUTE_CASES = [
    # (goal attributes, product fields, expected matches)
    (["tea tree"], {"Attributes": ["tea tree"]}, 1),
    (["essential oils"], {"Attributes": ["essential oil"]}, 1),  # token-set ratio 96 > 85
    (["cruelty free"], {"Attributes": ["paraben free"]}, 0),  # ratio 58
    (["long lasting"], {"Title": "Brand Long Lasting Lipstick"}, 1),  # substring of the lower-cased title
    (["natural ingredients"], {"BulletPoints": ["Made with natural ingredients"]}, 1),
    (["gluten free"], {"Description": "A snack that is Gluten Free."}, 1),
    (["tea tree", "essential oils", "natural ingredients"], {"Attributes": ["tea bag", "earl gray"]}, 0),
    (
        ["tea tree", "essential oils", "natural ingredients"],
        {"Attributes": ["essential oil"], "Description": "natural ingredients only"},
        2,
    ),
]


@pytest.mark.parametrize(("goal_attributes", "fields", "expected"), ATTRIBUTE_CASES)
def test_attribute_matches(goal_attributes, fields, expected):
    assert compute_attribute_matches(goal_attributes, product(**fields)) == expected


# -- options -----------------------------------------------------------------------------------------------------

OPTION_CASES = [
    # (goal option values, chosen values, expected matches)
    (["black", "large"], ["black", "large"], 2),
    (["black", "large"], ["large"], 1),
    (["black", "large"], [], 0),
    (["light blue"], ["navy blue"], 1),  # both normalise to "blue"
    (["ruby red"], ["red"], 1),  # token-set ratio of a subset is 100
    (["small"], ["x-large"], 0),
    (["x-large"], ["xx-large"], 1),  # WebShop's fuzzy match does not tell these apart (ratio 93)
    (["8.4 fl oz"], ["33.8 fl oz"], 1),  # nor these: the shared "fl oz" tokens dominate
    (["20 count"], ["100 count"], 0),
    (["lavender"], ["coconut"], 0),
]


@pytest.mark.parametrize(("goal_values", "chosen", "expected"), OPTION_CASES)
def test_option_matches(goal_values, chosen, expected):
    assert compute_option_matches(goal_values, chosen) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("light blue", "blue"), ("navy", "navy"), ("standard", "tan"), ("xx-large", "xx-large"), ("", "")],
)
def test_normalize_color_takes_the_first_contained_colour(text, expected):
    assert normalize_color(text) == expected


# -- type factor -------------------------------------------------------------------------------------------------


def names(k: int) -> str:
    return " ".join(NOUNS[:k])


TYPE_CASES = [
    # goal (query, category, title), bought (query, category, title), expected r_type, expected title score
    (("q", "a › b › c", names(10)), ("q", "a › b › c", names(10)), 1.0, 1.0),
    # a query match rescues a low overlap (>= 0.1) ...
    (("q", "x", names(10)), ("q", "y", "Alpha"), 1.0, 0.1),
    # ... and so does a category match (>= 2 shared levels, in any order)
    (("q", "a › b › c", names(10)), ("z", "c › a", "Alpha"), 1.0, 0.1),
    # a title overlap > 0.2 is enough on its own
    (("q", "x", names(10)), ("z", "y", names(3)), 1.0, 0.3),
    # no query match, one shared level only, overlap 0.2 (not > 0.2) -> 0.5
    (("q", "a › b", names(10)), ("z", "a › d", names(2)), 0.5, 0.2),
    # overlap < 0.1 -> 0.1, even with a query match
    (("q", "x", names(10) + " Kilo Lima"), ("q", "y", "Alpha"), 0.1, 1 / 12),
    # no overlap at all -> 0.0, even with query and category matches
    (("q", "a › b", names(5)), ("q", "a › b", "Kilo"), 0.0, 0.0),
    # a goal title without nouns counts as overlap 0.2
    (("q", "x", "the and for"), ("z", "y", "Kilo"), 0.5, 0.2),
]


@pytest.mark.parametrize(("goal", "bought", "r_type", "title_score"), TYPE_CASES)
def test_type_reward_levels(goal, bought, r_type, title_score):
    goal_fields = dict(zip(("query", "product_category", "name"), goal, strict=True))
    bought_fields = dict(zip(("query", "product_category", "name"), bought, strict=True))
    info = compute_type_reward(goal_fields, product(**bought_fields))
    assert info["r_type"] == r_type
    assert info["title_score"] == pytest.approx(title_score)


def test_title_nouns_drop_stop_words_and_adjectives():
    assert extract_title_nouns("Glossa Cruelty Free Long Lasting Lipstick for Women, 3 Pack") == [
        "glossa",
        "cruelty",
        "lipstick",
        "women",
        "pack",
    ]


# -- the combined score ------------------------------------------------------------------------------------------

GOAL = {
    "query": "lipstick",
    "product_category": "Beauty › Makeup › Lips › Lipstick",
    "name": "Glossa Long Lasting Cruelty Free Lipstick Gift Set for Women",
    "attributes": ["long lasting", "cruelty free"],
    "goal_options": {"color": "berry", "size": "0.12 ounce"},
    "price_upper": 30.0,
}
TARGET = product(
    Title="Glossa Long Lasting Cruelty Free Lipstick",
    name="Glossa Long Lasting Cruelty Free Lipstick Gift Set for Women",
    query="lipstick",
    product_category="Beauty › Makeup › Lips › Lipstick",
    Attributes=["long lasting", "cruelty free"],
    price=25.0,
)

BOTH = {"color": "berry", "size": "0.12 ounce"}
CANDLE = {"query": "candle", "product_category": "Home › Decor"}
SCORE_CASES = [
    # (product overrides, chosen options, price paid (None: the product's), expected reward)
    ({}, BOTH, None, 1.0),
    ({}, {"color": "berry"}, None, 4 / 5),
    ({}, {}, None, 3 / 5),
    ({}, BOTH, 30.0, 1.0),  # price == budget still counts
    ({}, BOTH, 31.0, 4 / 5),
    ({"Attributes": ["long lasting"], "Title": "Glossa Long Lasting Lipstick"}, BOTH, None, 4 / 5),
    # another type with the same attributes: noun overlap 1/6 ("glossa"), no query or category match -> 0.5 * 1.0
    ({**CANDLE, "name": "Glossa Candle Jar"}, BOTH, None, 0.5),
    # WebShop's leniency: a near-duplicate title of another type still gets r_type 1 (overlap 2/6 > 0.2)
    ({**CANDLE, "name": "Glossa Cruelty Free Candle"}, BOTH, None, 1.0),
    # nothing in common -> r_type 0
    ({"query": "tea", "product_category": "Grocery › Tea", "name": "Sunley Green Tea"}, BOTH, None, 0.0),
]


@pytest.mark.parametrize(("overrides", "chosen", "price", "expected"), SCORE_CASES)
def test_combined_score(overrides, chosen, price, expected):
    details = compute_webshop_reward(GOAL, {**TARGET, **overrides}, chosen, price=price)
    assert details["reward"] == pytest.approx(expected)


def test_score_details_and_list_inputs():
    details = compute_webshop_reward({**GOAL, "goal_options": ["berry"]}, TARGET, ["berry", "0.12 ounce"])
    assert details == {
        "reward": 1.0,
        "r_type": 1.0,
        "query_match": True,
        "category_match": True,
        "title_score": 1.0,
        "num_attr_matches": 2,
        "r_att": 1.0,
        "num_option_matches": 1,
        "r_option": 1.0,
        "r_price": True,
        "price": 25.0,
    }
    no_budget = compute_webshop_reward({**GOAL, "price_upper": 0, "goal_options": {}}, TARGET, None)
    assert no_budget["r_price"] is None and no_budget["r_option"] is None
    assert no_budget["reward"] == pytest.approx(2 / 3)  # (2 + 0 + 0) / (2 + 0 + 1): no budget means no price point


def test_missing_fields_raise_helpful_errors():
    with pytest.raises(KeyError, match="price_upper"):
        compute_webshop_reward({"attributes": []}, TARGET, {})
    with pytest.raises(KeyError, match="price="):
        compute_webshop_reward(GOAL, {k: v for k, v in TARGET.items() if k != "price"}, {})
