"""`webshop-mini`: a generated WebShop with the real site's pages, action grammar and reward.

```python
from sdar_trl.environments.webshop import WebShopMiniEnv

env = WebShopMiniEnv(split="test")
obs, info = env.reset(seed=0)          # "WebShop [SEP] Instruction: [SEP] i need a ... [SEP] Search"
obs, reward, terminated, truncated, info = env.step(env.expert_action())
```

See docs/environments/webshop-mini.md for the pages, the reward, the splits and the expert.
"""

from __future__ import annotations

import random
from typing import Any, ClassVar

from ..base import ResetNeededError, row_seed
from .catalog import DIFFICULTIES, Catalog, Goal, Product, build_catalog
from .expert import expert_decision, render_expert_response
from .pages import (
    BACK_TO_SEARCH,
    BUY_NOW,
    NEXT_PAGE,
    PREV_PAGE,
    RESULTS_PER_PAGE,
    SUB_PAGES,
    parse_action,
    render_admissible_actions,
    render_done_page,
    render_item_page,
    render_results_page,
    render_search_page,
    render_sub_page,
)
from .reward import compute_webshop_reward
from .routing import route_webshop_category

__all__ = ["SPLITS", "TEST_SPLIT_SIZE", "WebShopMiniEnv"]

SPLITS = ("train", "test")
TEST_SPLIT_SIZE = 500
"""Goals 0-499 of the (fixed, shuffled) goal list are the test split, as in the WebShop/verl-agent setup."""

_WIN_REWARD = 10.0
_SUB_PAGE_NAMES = {name.lower(): name for name in SUB_PAGES}


class WebShopMiniEnv:
    """A self-contained WebShop: ~1,000 generated products, BM25 search, WebShop's pages and reward.

    Args:
        split: "train" (goal indices 500 and up: about two million distinct goals at "full"; `reset(seed=i)`
            takes the i-th, modulo their number) or "test" (the first 500 goal indices; `seed` modulo 500).
        difficulty: "full" (default, the benchmark's scale: 1,000 products with near-duplicate distractors,
            goals with 2-3 attributes and all options) or "easy" (112 products without near-duplicates, goals
            with one attribute and one option; the natural query ranks the target first).
        seed: seeds the environment's RNG, used when `reset` gets no seed.
        catalog_seed: which generated catalogue to use (products, prices, goals).
        max_episode_steps: step limit (15 in verl-agent's WebShop); reaching it sets `truncated`.

    Episode: reset shows the search page; `search[...]` and `click[...]` move between pages; `click[buy now]`
    on an item page ends the episode with reward 10.0 if WebShop's task score is 1.0, else 0.0, and
    `info["score"]` = the task score. Anything else stays on the same page with the same observation.
    """

    action_format: ClassVar[str] = "think_action"

    def __init__(
        self,
        *,
        split: str = "train",
        difficulty: str = "full",
        seed: int = 0,
        catalog_seed: int = 0,
        max_episode_steps: int = 15,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
        if difficulty not in DIFFICULTIES:
            raise ValueError(
                f"difficulty must be one of {DIFFICULTIES} ('full' is WebShop's scale, 'easy' a warm-up level), "
                f"got {difficulty!r}."
            )
        if not isinstance(max_episode_steps, int) or isinstance(max_episode_steps, bool) or max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be a positive int, got {max_episode_steps!r}.")
        for name, value in (("seed", seed), ("catalog_seed", catalog_seed)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r}).")
        self.split = split
        self.difficulty = difficulty
        self.catalog_seed = catalog_seed
        self.max_episode_steps = max_episode_steps
        self._catalog: Catalog = build_catalog(catalog_seed, difficulty)
        self._rng = random.Random(seed)
        self._goal: Goal | None = None
        self._closed = False

    # -- splits -------------------------------------------------------------------------------------------------
    @property
    def num_tasks(self) -> int | None:
        """500 for "test"; None for "train" (about 2e6 goals at "full", too many to treat as a finite list)."""
        return TEST_SPLIT_SIZE if self.split == "test" else None

    @property
    def num_train_goals(self) -> int:
        """How many distinct goals the train split holds (train `reset(seed=i)` wraps around at this number)."""
        return self._catalog.num_goals - TEST_SPLIT_SIZE

    def _goal_index(self, seed: int) -> int:
        if self.split == "test":
            return seed % TEST_SPLIT_SIZE
        return TEST_SPLIT_SIZE + seed % self.num_train_goals

    # -- protocol ------------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Start the episode of task `seed` (see the class docstring); `options` is the dataset row."""
        seed = row_seed(seed, options)
        if seed is None:
            seed = self._rng.randrange(2**31)
        elif not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}.")
        self._goal = self._catalog.goal(self._goal_index(seed))
        self._seed = seed
        self._steps = 0
        self._terminated = False
        self._truncated = False
        self._won = False
        self._score = 0.0
        self._last_action: str | None = None
        self._show_search_page()
        info = {
            "task": self._goal.text,
            "task_type": route_webshop_category(self._goal.text),
            "admissible_actions": self._admissible(),
            "task_id": f"webshop-mini/{self.difficulty}/{self.split}/{self._goal.index}",
            "split": self.split,
            "goal_index": self._goal.index,
        }
        return self._obs, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Apply `search[...]` or `click[...]`; anything else leaves the page (and the observation) unchanged."""
        if self._goal is None:
            raise ResetNeededError("WebShopMiniEnv.step() was called before reset(); call env.reset(seed=...) first.")
        if self._terminated or self._truncated:
            return self._obs, 0.0, self._terminated, not self._terminated, self._info()
        action = action if isinstance(action, str) else str(action)
        self._steps += 1
        self._last_action = action
        reward = 0.0
        name, argument = parse_action(action)
        name = name.strip().lower()
        if name == "search" and argument:
            self._show_results(argument.lower(), page=1)
        elif name == "click" and argument is not None:
            target = argument.strip().lower()
            if target in self._clickables and target != "search":
                reward = self._click(target)
        self._truncated = not self._terminated and self._steps >= self.max_episode_steps
        info = self._info()
        if self._terminated:
            info["score"] = self._score
        return self._obs, reward, self._terminated, self._truncated, info

    def close(self) -> None:
        """Nothing to release (the catalogue is shared and cached); safe to call repeatedly."""
        self._closed = True

    # -- expert and privileged context ---------------------------------------------------------------------------
    def _require_episode(self, what: str) -> Goal:
        if self._goal is None:
            raise ResetNeededError(f"{what} needs a current episode; call env.reset(seed=...) first.")
        return self._goal

    def expert_action(self) -> str:
        """The expert's next action (see `sdar_trl.environments.webshop.expert` for its visible rules)."""
        goal = self._require_episode("expert_action()")
        return expert_decision(goal.text, self._obs, self._last_action)[0]

    def expert_response(self) -> str:
        """The expert's full response, `<think>rule-based reasoning</think><action>...</action>`."""
        goal = self._require_episode("expert_response()")
        return render_expert_response(*expert_decision(goal.text, self._obs, self._last_action))

    def privileged_facts(self) -> str:
        """Oracle facts for the teacher: the target product, its attributes and the options to choose."""
        if self._goal is None:
            return ""
        goal, target = self._goal, self._goal.target
        options = ", ".join(f"{name}: {value}" for name, value in goal.options) or "none"
        return (
            f"Target product: {target.asin} - {target.title} ({target.price_text}). "
            f"Required attributes: {', '.join(goal.attributes)}. Options to select: {options}. "
            f"Budget: under ${goal.price_upper:.2f}. A good search query: {goal.query}."
        )

    @property
    def goal(self) -> Goal | None:
        """The current goal with its structured fields (None before the first reset)."""
        return self._goal

    # -- pages ---------------------------------------------------------------------------------------------------
    def _info(self) -> dict[str, Any]:
        return {"won": self._won, "admissible_actions": self._admissible(), "score": self._score}

    def _admissible(self) -> list[str]:
        if self._terminated:
            return []
        return render_admissible_actions(self._page == "search", list(self._clickables))

    def _set_page(self, page: str, obs: str, clickables: dict[str, tuple[str, Any]]) -> None:
        self._page = page
        self._obs = obs
        self._clickables = clickables

    def _show_search_page(self) -> None:
        self._query: str | None = None
        self._results: tuple[int, ...] = ()
        self._page_number = 1
        self._product: Product | None = None
        self._chosen: dict[str, str] = {}
        self._set_page("search", render_search_page(self._goal.text), {})

    def _show_results(self, query: str, page: int) -> None:
        # As in WebShop, a new search (or returning to the results) forgets the opened item and the options.
        self._query = query
        self._results = self._catalog.search_engine.search(query)
        self._page_number = page
        self._product = None
        self._chosen = {}
        start = (page - 1) * RESULTS_PER_PAGE
        products = [self._catalog.products[i] for i in self._results[start : start + RESULTS_PER_PAGE]]
        clickables: dict[str, tuple[str, Any]] = {BACK_TO_SEARCH.lower(): ("back", None)}
        if page > 1:
            clickables[PREV_PAGE.lower()] = ("page", page - 1)
        clickables[NEXT_PAGE.lower()] = ("page", page + 1)
        for product in products:
            clickables[product.asin.lower()] = ("product", product)
        rows = [(p.asin, p.title, p.price_text) for p in products]
        self._set_page("results", render_results_page(self._goal.text, page, len(self._results), rows), clickables)

    def _show_item(self, product: Product) -> None:
        self._product = product
        clickables: dict[str, tuple[str, Any]] = {
            BACK_TO_SEARCH.lower(): ("back", None),
            PREV_PAGE.lower(): ("results", None),
        }
        for name in SUB_PAGES:
            clickables[name.lower()] = ("sub", name)
        clickables[BUY_NOW.lower()] = ("buy", None)
        for option_name, values in product.options.items():
            for value in values:
                clickables[value] = ("option", option_name)
        obs = render_item_page(self._goal.text, product.options, product.title, product.price_text, product.rating)
        self._set_page("item", obs, clickables)

    def _show_sub_page(self, name: str) -> None:
        product = self._product
        if name == "Description":
            body = [product.description]
        elif name == "Features":
            body = list(product.bullets)
        else:
            body = [part for title, score, text in product.reviews for part in (f'"{title}"', str(score), text)]
        clickables = {BACK_TO_SEARCH.lower(): ("back", None), PREV_PAGE.lower(): ("item", None)}
        self._set_page(name.lower(), render_sub_page(self._goal.text, body), clickables)

    def _click(self, target: str) -> float:
        kind, payload = self._clickables[target]
        if kind == "back":
            self._show_search_page()
        elif kind == "page":
            self._show_results(self._query or "", page=payload)
        elif kind == "product":
            self._show_item(payload)
        elif kind == "results":
            self._show_results(self._query or "", page=self._page_number)
        elif kind == "item":
            self._show_item(self._product)
        elif kind == "sub":
            self._show_sub_page(payload)
        elif kind == "option":
            self._chosen[payload] = target
            self._show_item(self._product)
        elif kind == "buy":
            return self._buy()
        return 0.0

    def _buy(self) -> float:
        details = compute_webshop_reward(self._goal.to_record(), self._product.to_record(), dict(self._chosen))
        self._score = float(details["reward"])
        self._won = self._score == 1.0
        self._terminated = True
        self._set_page("done", render_done_page(self._score), {})
        return _WIN_REWARD if self._won else 0.0
