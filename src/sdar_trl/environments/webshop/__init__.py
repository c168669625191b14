"""WebShop for agent training: the generated `webshop-mini` environment and an adapter to the real WebShop.

- `WebShopMiniEnv` ("webshop-mini"): ~1,000 generated products, BM25 search, WebShop's pages, action
  grammar and reward, an imitable expert, fixed train/test splits. Pure Python, offline.
- `WebShopServerEnv` ("webshop"): the real WebShop, through a WebShop server you run or a checkout
  pointed to by `WEBSHOP_ROOT`.
- `compute_webshop_reward`: WebShop's task score from structured goal/product fields.
- `route_webshop_category`: goal text -> product category, the skill-routing key (`task_type`).
"""

from .adapter import WebShopServerEnv
from .catalog import Catalog, Goal, Product, build_catalog
from .env import WebShopMiniEnv
from .expert import expert_decision, parse_goal
from .reward import compute_webshop_reward
from .routing import WEBSHOP_CATEGORIES, route_webshop_category

__all__ = [
    "WEBSHOP_CATEGORIES",
    "Catalog",
    "Goal",
    "Product",
    "WebShopMiniEnv",
    "WebShopServerEnv",
    "build_catalog",
    "compute_webshop_reward",
    "expert_decision",
    "parse_goal",
    "route_webshop_category",
]
