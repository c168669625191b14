"""Rule-based skill routing for WebShop goals: goal text -> product category (the `task_type`).

The SDAR reference routes WebShop prompts to skill files with product keyword lists. We keep the idea
and make it a single, deterministic answer per goal: find the product keywords in the goal, then take
the *head noun* of the first noun phrase that contains one — the last keyword before the phrase ends
("with", "that", "for", "price", ...). "i want a makeup bag for travel" -> "bag" -> accessories;
"i need a tea tree oil and sulfate free shampoo with scent: ..." -> "shampoo" -> beauty_health.
Goals without any keyword route to "other". The same function serves `webshop-mini` (whose goals
always end their noun phrase with the product type) and real WebShop instructions.
"""

from __future__ import annotations

import re

__all__ = ["WEBSHOP_CATEGORIES", "route_webshop_category"]

WEBSHOP_CATEGORIES: tuple[str, ...] = (
    "apparel",
    "footwear",
    "accessories",
    "beauty_health",
    "electronics",
    "home_decor",
    "grocery",
    "other",
)
"""Every value `route_webshop_category` can return (the WebShop environments' `task_type` values)."""

_KEYWORDS: dict[str, tuple[str, ...]] = {
    "apparel": (
        "shirt",
        "tshirt",
        "blouse",
        "dress",
        "pants",
        "jeans",
        "shorts",
        "skirt",
        "jacket",
        "coat",
        "hoodie",
        "sweatshirt",
        "sweater",
        "cardigan",
        "leggings",
        "pajama",
        "pajamas",
        "jumpsuit",
        "romper",
        "trousers",
        "jogger",
        "joggers",
        "vest",
        "blazer",
        "bra",
        "underwear",
        "lingerie",
        "panties",
        "socks",
        "swimsuit",
        "bikini",
        "polo",
        "tunic",
        "tank top",
        "camisole",
        "overalls",
        "gown",
        "outfit",
        "apparel",
        "clothing",
        "sweatpants",
        "tights",
        "robe",
        "suit",
    ),
    "footwear": (
        "shoe",
        "shoes",
        "boot",
        "boots",
        "sneaker",
        "sneakers",
        "sandal",
        "sandals",
        "slipper",
        "slippers",
        "loafer",
        "loafers",
        "heels",
        "clog",
        "clogs",
        "moccasin",
        "moccasins",
        "flip flops",
        "footwear",
        "cleats",
        "insoles",
    ),
    "accessories": (
        "bag",
        "backpack",
        "wallet",
        "purse",
        "handbag",
        "tote",
        "belt",
        "sunglasses",
        "eyeglasses",
        "hat",
        "baseball cap",
        "beanie",
        "scarf",
        "glove",
        "gloves",
        "mittens",
        "jewelry",
        "necklace",
        "bracelet",
        "earrings",
        "earring",
        "keychain",
        "umbrella",
        "watch",
        "watch band",
        "luggage",
        "suitcase",
        "duffel",
        "necktie",
        "bow tie",
        "headband",
    ),
    "beauty_health": (
        "shampoo",
        "conditioner",
        "cream",
        "lotion",
        "moisturizer",
        "serum",
        "makeup",
        "lipstick",
        "lip gloss",
        "mascara",
        "eyeliner",
        "eyeshadow",
        "concealer",
        "nail polish",
        "soap",
        "body wash",
        "deodorant",
        "perfume",
        "cologne",
        "toothpaste",
        "toothbrush",
        "mouthwash",
        "sunscreen",
        "vitamin",
        "vitamins",
        "supplement",
        "razor",
        "shaver",
        "hair dryer",
        "brush",
        "wig",
        "hair extension",
        "hair extensions",
        "skin care",
        "cleanser",
        "toner",
        "face mask",
        "scrub",
        "bath bomb",
        "essential oil",
        "tweezers",
        "manicure",
        "beard oil",
        "nail",
    ),
    "electronics": (
        "phone",
        "smartphone",
        "iphone",
        "charger",
        "cable",
        "speaker",
        "headphone",
        "headphones",
        "earbuds",
        "earphones",
        "battery",
        "batteries",
        "adapter",
        "usb",
        "power bank",
        "laptop",
        "tablet",
        "ipad",
        "camera",
        "tv",
        "television",
        "monitor",
        "keyboard",
        "mouse",
        "router",
        "hdmi",
        "projector",
        "microphone",
        "smart watch",
        "smartwatch",
        "console",
        "controller",
        "drone",
        "dash cam",
        "printer",
        "ssd",
        "hard drive",
        "flash drive",
        "memory card",
        "sd card",
        "electronics",
    ),
    "home_decor": (
        "pillow",
        "pillowcase",
        "cushion",
        "rug",
        "curtain",
        "curtains",
        "drapes",
        "lamp",
        "vase",
        "picture frame",
        "candle",
        "decor",
        "blanket",
        "bedding",
        "bed sheets",
        "comforter",
        "duvet",
        "quilt",
        "towel",
        "mirror",
        "shelf",
        "shelves",
        "clock",
        "bed",
        "mattress",
        "sofa",
        "couch",
        "chair",
        "table",
        "desk",
        "ottoman",
        "furniture",
        "cabinet",
        "dresser",
        "bookcase",
        "nightstand",
        "wallpaper",
        "planter",
        "tapestry",
        "wall art",
        "chandelier",
        "lantern",
        "bench",
        "stool",
    ),
    "grocery": (
        "snack",
        "snacks",
        "tea",
        "coffee",
        "chocolate",
        "candy",
        "cookie",
        "cookies",
        "chips",
        "nuts",
        "almonds",
        "jerky",
        "sauce",
        "seasoning",
        "spice",
        "spices",
        "honey",
        "jam",
        "syrup",
        "cereal",
        "oatmeal",
        "granola",
        "protein bar",
        "trail mix",
        "cake mix",
        "flour",
        "pasta",
        "rice",
        "olive oil",
        "juice",
        "soda",
        "gum",
        "popcorn",
        "crackers",
        "cheese",
        "beef",
        "food",
        "drink",
        "beverage",
        "creamer",
        "protein",
        "bottled water",
    ),
}
_BOUNDARY_WORDS = frozenset({"with", "that", "which", "for", "to", "in", "under", "below", "price", "who", "from"})
_TOKEN_RE = re.compile(r"[a-z0-9]+")


def _build_lookup() -> dict[tuple[str, ...], str]:
    lookup: dict[tuple[str, ...], str] = {}
    for category, keywords in _KEYWORDS.items():
        for keyword in keywords:
            tokens = tuple(_TOKEN_RE.findall(keyword))
            lookup.setdefault(tokens, category)
    return lookup


_LOOKUP = _build_lookup()
_MAX_KEYWORD_TOKENS = max(len(tokens) for tokens in _LOOKUP)


def _variants(token: str) -> tuple[str, ...]:
    # "pillows" -> ("pillows", "pillow"), "boxes" -> ("boxes", "boxe", "box")
    variants = [token]
    if token.endswith("s") and len(token) > 3:
        variants.append(token[:-1])
        if token.endswith("es"):
            variants.append(token[:-2])
    return tuple(variants)


def _match_at(tokens: list[str], start: int) -> tuple[str, int] | None:
    """The longest keyword starting at `tokens[start]`: (category, number of tokens), or None."""
    for length in range(min(_MAX_KEYWORD_TOKENS, len(tokens) - start), 0, -1):
        head, last = tokens[start : start + length - 1], tokens[start + length - 1]
        for variant in _variants(last):
            category = _LOOKUP.get((*head, variant))
            if category is not None:
                return category, length
    return None


def route_webshop_category(goal_text: str) -> str:
    """The product category of a WebShop goal, one of `WEBSHOP_CATEGORIES` (rule-based, deterministic).

    Rule: tokenize the lower-cased goal; find the first product keyword; the noun phrase it belongs to ends
    at the next boundary word ("with", "that", "which", "for", "to", "in", "under", "below", "price", ...);
    the category of the last keyword inside that phrase wins. No keyword at all -> "other".
    """
    if not isinstance(goal_text, str):
        raise TypeError(f"route_webshop_category expects the goal text as a str, got {type(goal_text).__name__}.")
    tokens = _TOKEN_RE.findall(goal_text.lower())
    chosen: str | None = None
    started = False
    index = 0
    while index < len(tokens):
        if started and tokens[index] in _BOUNDARY_WORDS:
            break
        match = _match_at(tokens, index)
        if match is not None:
            chosen, length = match
            started = True
            index += length
            continue
        index += 1
    return chosen or "other"
