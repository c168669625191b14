"""Hand-written vocabulary of the `webshop-mini` catalogue: product types, attributes, options, brands.

Everything here is data. `catalog.py` turns it into products and goals. Rules the data follows (tested in
`tests/environments/test_webshop_catalog.py`):

- attribute phrases and type names never contain "and", "with", "a"/"an" or a comma, so a goal
  "i need a {attr} and {attr} {type} with color: ..." can be split back into its parts by a fixed rule;
- within a type, no attribute phrase fuzzily matches another (WebShop's token-set ratio stays <= 85);
- within a type, the option palettes of different option names are disjoint, and no option value is the
  text of a page button ("buy now", "description", ...).
"""

from __future__ import annotations

from dataclasses import dataclass

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


_APPAREL_COLORS = (
    "black",
    "white",
    "heather grey",
    "navy blue",
    "burgundy",
    "olive green",
    "light pink",
    "charcoal",
    "royal blue",
    "khaki",
)
_APPAREL_SIZES = ("x-small", "small", "medium", "large", "x-large", "xx-large")
_SHOE_COLORS = ("black", "white", "grey", "navy", "brown", "beige", "red", "dark blue", "olive")
_SHOE_SIZES = ("6", "7", "7.5", "8", "8.5", "9", "9.5", "10", "11", "12")
_LEATHER_COLORS = ("black", "brown", "tan", "dark brown", "navy", "burgundy", "grey", "camel")

APPAREL = CategorySpec(
    name="apparel",
    brand_syllables=(
        ("Ur", "Mar", "Lin", "Cor", "Fab", "Wov", "Ter", "Cal"),
        ("ban", "tex", "ley", "ora", "ino", "et"),
    ),
    types=(
        TypeSpec(
            name="t-shirt",
            path="Clothing, Shoes & Jewelry › Men › Clothing › Shirts › T-Shirts",
            price=(9.0, 35.0),
            options={"color": _APPAREL_COLORS, "size": _APPAREL_SIZES},
            attributes=(
                "machine washable",
                "short sleeve",
                "soft cotton",
                "slim fit",
                "relaxed fit",
                "moisture wicking",
                "quick drying",
                "breathable fabric",
                "tag free",
                "wrinkle resistant",
                "pre shrunk",
                "odor resistant",
            ),
            suffixes=("for Men", "for Women", "Unisex", ""),
        ),
        TypeSpec(
            name="hoodie",
            path="Clothing, Shoes & Jewelry › Men › Clothing › Active › Hoodies",
            price=(22.0, 65.0),
            options={"color": _APPAREL_COLORS, "size": _APPAREL_SIZES},
            attributes=(
                "machine washable",
                "fleece lined",
                "kangaroo pocket",
                "drawstring hood",
                "soft cotton",
                "relaxed fit",
                "slim fit",
                "zip up",
                "heavyweight fabric",
                "ribbed cuffs",
                "pill resistant",
                "brushed interior",
            ),
            suffixes=("for Men", "for Women", "Unisex", ""),
        ),
        TypeSpec(
            name="jogger pants",
            path="Clothing, Shoes & Jewelry › Men › Clothing › Pants › Joggers",
            price=(18.0, 55.0),
            options={"color": _APPAREL_COLORS, "size": _APPAREL_SIZES},
            attributes=(
                "elastic waist",
                "drawstring closure",
                "side pockets",
                "moisture wicking",
                "quick drying",
                "slim fit",
                "tapered leg",
                "stretch fabric",
                "machine washable",
                "zipper pockets",
                "lightweight fabric",
                "ankle cuffs",
            ),
            suffixes=("for Men", "for Women", "Unisex", ""),
        ),
        TypeSpec(
            name="maxi dress",
            path="Clothing, Shoes & Jewelry › Women › Clothing › Dresses › Casual",
            price=(22.0, 70.0),
            options={"color": _APPAREL_COLORS, "size": _APPAREL_SIZES},
            attributes=(
                "short sleeve",
                "floral print",
                "v neck",
                "side pockets",
                "machine washable",
                "lightweight fabric",
                "empire waist",
                "smocked bodice",
                "tiered hem",
                "loose fit",
                "spaghetti strap",
                "wrap style",
            ),
            suffixes=("for Women", "Summer Casual", ""),
        ),
    ),
)

FOOTWEAR = CategorySpec(
    name="footwear",
    brand_syllables=(
        ("Stri", "Tre", "Ro", "Pa", "Kin", "Ver", "Sol", "Ad"),
        ("der", "kos", "vana", "lo", "mex", "ta"),
    ),
    types=(
        TypeSpec(
            name="running shoes",
            path="Clothing, Shoes & Jewelry › Men › Shoes › Athletic › Running",
            price=(35.0, 120.0),
            options={"color": _SHOE_COLORS, "size": _SHOE_SIZES},
            attributes=(
                "lightweight",
                "breathable mesh",
                "non slip",
                "cushioned sole",
                "arch support",
                "shock absorbing",
                "memory foam",
                "knit upper",
                "lace up",
                "wide toe box",
                "reflective details",
                "rubber outsole",
            ),
            suffixes=("for Men", "for Women", ""),
        ),
        TypeSpec(
            name="hiking boots",
            path="Clothing, Shoes & Jewelry › Men › Shoes › Outdoor › Hiking & Trekking",
            price=(45.0, 160.0),
            options={"color": _SHOE_COLORS, "size": _SHOE_SIZES},
            attributes=(
                "waterproof",
                "ankle support",
                "non slip",
                "rubber outsole",
                "lace up",
                "padded collar",
                "breathable lining",
                "steel shank",
                "cushioned insole",
                "suede leather",
                "lug sole",
                "toe cap",
            ),
            suffixes=("for Men", "for Women", ""),
        ),
        TypeSpec(
            name="sandals",
            path="Clothing, Shoes & Jewelry › Women › Shoes › Sandals › Flat",
            price=(15.0, 70.0),
            options={"color": _SHOE_COLORS, "size": _SHOE_SIZES},
            attributes=(
                "arch support",
                "adjustable strap",
                "open toe",
                "cushioned footbed",
                "non slip",
                "quick drying",
                "water friendly",
                "lightweight",
                "ankle strap",
                "memory foam",
                "platform sole",
                "vegan leather",
            ),
            suffixes=("for Men", "for Women", ""),
        ),
        TypeSpec(
            name="slippers",
            path="Clothing, Shoes & Jewelry › Women › Shoes › Slippers",
            price=(12.0, 45.0),
            options={"color": _SHOE_COLORS, "size": _SHOE_SIZES},
            attributes=(
                "memory foam",
                "non slip",
                "faux fur lining",
                "machine washable",
                "indoor outdoor",
                "suede upper",
                "cozy fleece",
                "open toe",
                "rubber sole",
                "arch support",
                "closed back",
                "plush collar",
            ),
            suffixes=("for Men", "for Women", ""),
        ),
    ),
)

ACCESSORIES = CategorySpec(
    name="accessories",
    brand_syllables=(
        ("Ash", "Bel", "Cro", "Dav", "Ever", "Fol", "Hal", "Mon"),
        ("ford", "vik", "ane", "ello", "worth", "ix"),
    ),
    types=(
        TypeSpec(
            name="backpack",
            path="Clothing, Shoes & Jewelry › Luggage & Travel Gear › Backpacks › Casual Daypacks",
            price=(20.0, 90.0),
            options={"color": ("black", "grey", "navy", "olive", "burgundy", "khaki", "teal")},
            attributes=(
                "water resistant",
                "padded sleeve",
                "anti theft",
                "padded straps",
                "large capacity",
                "lightweight",
                "multiple pockets",
                "breathable back panel",
                "luggage strap",
                "hidden pocket",
                "durable nylon",
                "side bottle pockets",
            ),
            suffixes=("for Men", "for Women", "Unisex", ""),
        ),
        TypeSpec(
            name="wallet",
            path="Clothing, Shoes & Jewelry › Men › Accessories › Wallets, Card Cases & Money Organizers",
            price=(10.0, 60.0),
            options={"color": _LEATHER_COLORS},
            attributes=(
                "rfid blocking",
                "genuine leather",
                "slim design",
                "bifold",
                "coin pocket",
                "id window",
                "minimalist",
                "card slots",
                "zipper closure",
                "vegan leather",
                "money clip",
                "gift ready",
            ),
            suffixes=("for Men", "for Women", ""),
        ),
        TypeSpec(
            name="belt",
            path="Clothing, Shoes & Jewelry › Men › Accessories › Belts",
            price=(10.0, 50.0),
            options={"color": _LEATHER_COLORS, "size": ("30", "32", "34", "36", "38", "40", "42")},
            attributes=(
                "genuine leather",
                "adjustable fit",
                "automatic buckle",
                "reversible",
                "ratchet design",
                "no holes",
                "full grain",
                "removable buckle",
                "nickel free",
                "classic style",
                "vegan leather",
                "stitched edges",
            ),
            suffixes=("for Men", "for Women", ""),
        ),
        TypeSpec(
            name="sunglasses",
            path="Clothing, Shoes & Jewelry › Men › Accessories › Sunglasses & Eyewear Accessories",
            price=(12.0, 80.0),
            options={"color": ("black", "tortoise", "gold grey", "silver blue", "matte black", "brown gradient")},
            attributes=(
                "polarized",
                "uv protection",
                "scratch resistant",
                "oversized",
                "retro style",
                "mirrored lens",
                "metal hinges",
                "anti glare",
                "impact resistant",
                "lightweight",
                "round lens",
                "foldable",
            ),
            suffixes=("for Men", "for Women", "Unisex", ""),
        ),
    ),
)

BEAUTY = CategorySpec(
    name="beauty_health",
    brand_syllables=(
        ("Lu", "Ve", "Bel", "Ama", "Sera", "Flo", "Ro", "Glo"),
        ("mina", "ria", "vie", "ette", "ssa", "ra"),
    ),
    types=(
        TypeSpec(
            name="lipstick",
            path="Beauty & Personal Care › Makeup › Lips › Lipstick",
            price=(6.0, 32.0),
            options={
                "color": ("ruby red", "nude pink", "berry", "coral", "mauve", "classic red", "plum", "rosewood"),
                "size": ("0.12 ounce", "0.12 ounce (pack of 2)", "0.12 ounce (pack of 3)"),
            },
            attributes=(
                "long lasting",
                "cruelty free",
                "paraben free",
                "matte finish",
                "highly pigmented",
                "moisturizing",
                "smudge proof",
                "vegan formula",
                "transfer proof",
                "satin finish",
                "lightweight",
                "shea butter",
            ),
            suffixes=("for Women", "Gift Set", ""),
        ),
        TypeSpec(
            name="shampoo",
            path="Beauty & Personal Care › Hair Care › Shampoo & Conditioner › Shampoos",
            price=(7.0, 38.0),
            options={
                "scent": ("lavender", "coconut", "citrus", "unscented", "eucalyptus mint", "vanilla"),
                "size": ("8.4 fl oz", "12 fl oz", "16.9 fl oz", "33.8 fl oz"),
            },
            attributes=(
                "sulfate free",
                "paraben free",
                "tea tree oil",
                "argan oil",
                "color safe",
                "volumizing",
                "anti dandruff",
                "natural ingredients",
                "cruelty free",
                "moisturizing",
                "silicone free",
                "gentle formula",
            ),
            suffixes=("for Women", "for Men", ""),
        ),
        TypeSpec(
            name="face moisturizer",
            path="Beauty & Personal Care › Skin Care › Face › Creams & Moisturizers",
            price=(9.0, 48.0),
            options={
                "size": ("1.7 fl oz", "2.5 fl oz", "3.4 fl oz"),
                "style": ("day cream", "night cream", "gel cream"),
            },
            attributes=(
                "fragrance free",
                "non comedogenic",
                "hyaluronic acid",
                "spf 30",
                "oil free",
                "lightweight",
                "cruelty free",
                "vitamin c",
                "sensitive skin",
                "fast absorbing",
                "paraben free",
                "dermatologist tested",
            ),
            suffixes=("for Women", "for Men", ""),
        ),
        TypeSpec(
            name="nail polish",
            path="Beauty & Personal Care › Foot, Hand & Nail Care › Nail Art & Polish › Nail Polish",
            price=(5.0, 25.0),
            options={
                "color": ("cherry red", "baby pink", "midnight blue", "nude beige", "lilac", "coral orange"),
                "size": ("0.5 fl oz", "0.5 fl oz (pack of 2)", "0.5 fl oz (pack of 4)"),
            },
            attributes=(
                "quick dry",
                "long lasting",
                "chip resistant",
                "high shine",
                "vegan formula",
                "cruelty free",
                "non toxic",
                "gel effect",
                "one coat coverage",
                "toluene free",
                "glossy finish",
                "easy application",
            ),
            suffixes=("for Women", "Gift Set", ""),
        ),
    ),
)

ELECTRONICS = CategorySpec(
    name="electronics",
    brand_syllables=(
        ("Tek", "Vol", "Zen", "Pix", "Nov", "Qua", "Ax", "Ion"),
        ("tron", "ix", "ara", "onic", "lux", "wave"),
    ),
    types=(
        TypeSpec(
            name="bluetooth speaker",
            path="Electronics › Portable Audio & Video › Portable Speakers & Docks › Portable Bluetooth Speakers",
            price=(18.0, 120.0),
            options={"color": ("black", "blue", "red", "grey", "teal", "white", "camo green")},
            attributes=(
                "waterproof",
                "portable",
                "long battery life",
                "deep bass",
                "built-in microphone",
                "stereo sound",
                "dustproof",
                "usb c charging",
                "lightweight",
                "hands free calling",
                "shockproof",
                "outdoor ready",
            ),
            suffixes=("", "Gift Idea"),
        ),
        TypeSpec(
            name="wireless earbuds",
            path="Electronics › Headphones, Earbuds & Accessories › Earbud Headphones",
            price=(15.0, 110.0),
            options={"color": ("black", "white", "navy", "rose gold", "mint green", "space grey")},
            attributes=(
                "noise cancelling",
                "long battery life",
                "waterproof",
                "touch control",
                "deep bass",
                "fast charging",
                "built-in microphone",
                "ergonomic fit",
                "low latency",
                "sweatproof",
                "usb c charging",
                "auto pairing",
            ),
            suffixes=("", "Gift Idea"),
        ),
        TypeSpec(
            name="charging cable",
            path="Electronics › Computers & Accessories › Cables & Accessories › Cables & Interconnects › USB Cables",
            price=(6.0, 30.0),
            options={
                "color": ("black", "white", "grey", "red", "blue"),
                "size": ("3 ft", "6 ft", "10 ft", "3 ft (pack of 3)", "6 ft (pack of 2)"),
            },
            attributes=(
                "braided nylon",
                "tangle free",
                "data transfer",
                "right angle",
                "heavy duty",
                "usb c",
                "high speed",
                "aluminum housing",
                "bend resistant",
                "gold plated",
                "durable",
                "mfi certified",
            ),
            suffixes=("", "Multi Pack"),
        ),
        TypeSpec(
            name="power bank",
            path="Electronics › Cell Phones & Accessories › Accessories › Chargers & Power Adapters › Power Banks",
            price=(15.0, 75.0),
            options={
                "capacity": ("10000mah", "20000mah", "26800mah"),
                "color": ("black", "white", "blue", "pink", "silver"),
            },
            attributes=(
                "fast charging",
                "portable",
                "high capacity",
                "led display",
                "dual usb ports",
                "slim design",
                "lightweight",
                "wireless charging",
                "usb c input",
                "travel friendly",
                "overcharge protection",
                "compact size",
            ),
            suffixes=("", "Gift Idea"),
        ),
    ),
)

HOME = CategorySpec(
    name="home_decor",
    brand_syllables=(
        ("Hom", "Nest", "Cas", "Ever", "Lum", "Haven", "Oak", "Willow"),
        ("ly", "ora", "wood", "era", "ista", "by"),
    ),
    types=(
        TypeSpec(
            name="throw pillow covers",
            path="Home & Kitchen › Bedding › Decorative Pillows, Inserts & Covers › Throw Pillow Covers",
            price=(8.0, 40.0),
            options={
                "color": ("cream", "sage green", "mustard yellow", "navy blue", "blush pink", "grey"),
                "size": ("16 x 16 inch", "18 x 18 inch", "20 x 20 inch", "24 x 24 inch"),
            },
            attributes=(
                "velvet fabric",
                "hidden zipper",
                "machine washable",
                "super soft",
                "boho style",
                "linen blend",
                "double sided",
                "farmhouse style",
                "fade resistant",
                "modern design",
                "tassel trim",
                "square shape",
            ),
            suffixes=("", "for Living Room", "for Bedroom"),
        ),
        TypeSpec(
            name="area rug",
            path="Home & Kitchen › Home Décor Products › Area Rugs, Runners & Pads › Area Rugs",
            price=(30.0, 250.0),
            options={
                "color": ("beige", "grey", "navy", "ivory", "terracotta", "multicolor"),
                "size": ("2 x 3 ft", "3 x 5 ft", "5 x 7 ft", "8 x 10 ft"),
            },
            attributes=(
                "non slip backing",
                "machine washable",
                "low pile",
                "stain resistant",
                "plush shag",
                "vintage style",
                "non shedding",
                "easy clean",
                "pet friendly",
                "geometric pattern",
                "indoor outdoor",
                "fade resistant",
            ),
            suffixes=("", "for Living Room", "for Bedroom"),
        ),
        TypeSpec(
            name="blackout curtains",
            path="Home & Kitchen › Home Décor Products › Window Treatments › Curtains & Drapes › Panels",
            price=(15.0, 70.0),
            options={
                "color": ("black", "grey", "navy", "beige", "sage", "white"),
                "size": ("42 x 63 inch", "42 x 84 inch", "52 x 95 inch"),
            },
            attributes=(
                "thermal insulated",
                "noise reducing",
                "energy saving",
                "grommet top",
                "rod pocket",
                "machine washable",
                "room darkening",
                "wrinkle free",
                "light blocking",
                "linen look",
                "triple weave",
                "fade resistant",
            ),
            suffixes=("", "for Living Room", "for Bedroom"),
        ),
        TypeSpec(
            name="table lamp",
            path="Home & Kitchen › Home Décor Products › Lighting › Lamps & Shades › Table Lamps",
            price=(18.0, 90.0),
            options={"color": ("white", "black", "gold", "grey", "blue", "brass"), "size": ("set of 1", "set of 2")},
            attributes=(
                "dimmable",
                "touch control",
                "usb port",
                "bedside",
                "modern design",
                "fabric shade",
                "ceramic base",
                "energy saving",
                "warm light",
                "rotary switch",
                "minimalist",
                "bulb included",
            ),
            suffixes=("", "for Living Room", "for Bedroom"),
        ),
    ),
)

GROCERY = CategorySpec(
    name="grocery",
    brand_syllables=(
        ("Har", "Gro", "Sun", "Mea", "Orch", "Pan", "Val", "Fie"),
        ("vest", "dow", "ley", "try", "ard", "ful"),
    ),
    types=(
        TypeSpec(
            name="green tea",
            path="Grocery & Gourmet Food › Beverages › Coffee, Tea & Cocoa › Tea › Green",
            price=(4.0, 30.0),
            options={
                "flavor name": ("jasmine", "mint", "lemon ginger", "original", "honey", "peach"),
                "size": ("20 count", "40 count", "100 count", "20 count (pack of 6)"),
            },
            attributes=(
                "organic",
                "decaffeinated",
                "non gmo",
                "gluten free",
                "individually wrapped",
                "loose leaf",
                "antioxidant rich",
                "sugar free",
                "kosher",
                "fair trade",
                "natural flavor",
                "low calorie",
            ),
            suffixes=("", "Gourmet Gift"),
        ),
        TypeSpec(
            name="whole bean coffee",
            path="Grocery & Gourmet Food › Beverages › Coffee, Tea & Cocoa › Coffee › Whole Coffee Beans",
            price=(8.0, 45.0),
            options={
                "flavor name": (
                    "colombian",
                    "french roast",
                    "espresso",
                    "breakfast blend",
                    "hazelnut",
                    "vanilla bean",
                ),
                "size": ("12 ounce", "2 pound", "5 pound"),
            },
            attributes=(
                "organic",
                "fair trade",
                "single origin",
                "low acid",
                "non gmo",
                "kosher",
                "small batch",
                "freshly roasted",
                "rainforest alliance",
                "bold flavor",
                "smooth taste",
                "shade grown",
            ),
            suffixes=("", "Gourmet Gift"),
        ),
        TypeSpec(
            name="trail mix",
            path="Grocery & Gourmet Food › Snack Foods › Trail Mix",
            price=(6.0, 35.0),
            options={
                "flavor name": (
                    "original",
                    "cranberry almond",
                    "dark chocolate",
                    "tropical fruit",
                    "honey roasted",
                    "sweet and salty",
                ),
                "size": ("1.5 ounce (pack of 12)", "26 ounce", "2 pound"),
            },
            attributes=(
                "high protein",
                "gluten free",
                "non gmo",
                "individually packed",
                "no artificial flavors",
                "vegan",
                "kosher",
                "resealable pouch",
                "low sodium",
                "keto friendly",
                "healthy snack",
                "whole nuts",
            ),
            suffixes=("", "Gourmet Gift"),
        ),
        TypeSpec(
            name="hot sauce",
            path="Grocery & Gourmet Food › Condiments & Salad Dressings › Sauces › Hot Sauce",
            price=(4.0, 28.0),
            options={
                "flavor name": ("habanero", "chipotle", "garlic", "ghost pepper", "jalapeno", "mango"),
                "size": ("5 fl oz", "12 fl oz", "5 fl oz (pack of 3)"),
            },
            attributes=(
                "gluten free",
                "vegan",
                "no preservatives",
                "small batch",
                "all natural",
                "kosher",
                "sugar free",
                "low sodium",
                "keto friendly",
                "extra hot",
                "fermented",
                "non gmo",
            ),
            suffixes=("", "Gourmet Gift"),
        ),
    ),
)

CATEGORY_SPECS: tuple[CategorySpec, ...] = (APPAREL, FOOTWEAR, ACCESSORIES, BEAUTY, ELECTRONICS, HOME, GROCERY)
"""The seven generated categories, in a fixed order (their names are the environment's task types)."""

# Generic sentences for descriptions, bullets and reviews. `{type}` / `{attr}` are filled in.
DESCRIPTION_OPENERS = (
    "Meet the {type} you will reach for every day.",
    "A dependable {type} made for daily use.",
    "This {type} was designed with comfort and quality in mind.",
    "Our best-selling {type}, now in more options.",
    "An everyday {type} at an honest price.",
)
DESCRIPTION_CLOSERS = (
    "Backed by a 30-day return policy.",
    "Ships in recyclable packaging.",
    "Check the size and option charts before ordering.",
    "Customer service is available seven days a week.",
)
BULLET_CLAUSES = (
    "tested for everyday use",
    "a customer favourite",
    "made to last",
    "a detail our buyers ask for",
    "checked by our quality team",
)
REVIEW_TITLES = (
    "Exactly as described",
    "Great value",
    "Would buy again",
    "Pretty good",
    "Not bad for the price",
    "Love it",
)
REVIEW_BODIES = (
    "The {attr} part is true. Arrived quickly.",
    "Good {type}. The {attr} claim holds up so far.",
    "Works as expected. I mostly bought it because it is {attr}.",
    "Nice quality for the money.",
)
