"""`WebShopServerEnv`: the real WebShop (princeton-nlp/WebShop) behind the `AgentEnvironment` protocol.

Two back ends, neither of which downloads anything:

- **HTTP** (`base_url=` or `WEBSHOP_URL`): a WebShop web server you run yourself
  (`python -m web_agent_site.app`, port 3000 by default). We act like WebShop's text-mode browser:
  fetch the page, turn the HTML into WebShop's " [SEP] "-joined text, and follow the URL behind a
  clicked button, product link or option. Session ids contain `fixed_<goal index>`, so the server
  serves goal number `<goal index>` of its (fixed, shuffled) goal list. Only the standard library is used.
- **Local** (`webshop_root=` or `WEBSHOP_ROOT`): a WebShop checkout with its data and search index; we
  import its `web_agent_site.envs.web_agent_text_env.WebAgentTextEnv` (text observation mode) lazily.

Splits as in the WebShop/verl-agent setup: "test" = goals 0-499, "train" = goals 500 and up.
Rewards as in verl-agent: 10.0 when the purchase scores 1.0, else 0.0; `info["score"]` is the WebShop score.
"""

from __future__ import annotations

import importlib
import itertools
import os
import random
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

from ..base import ResetNeededError
from .expert import expert_decision, render_expert_response
from .pages import SEP, parse_action, render_admissible_actions
from .routing import route_webshop_category

__all__ = ["WebShopPage", "WebShopServerEnv", "parse_webshop_html"]

_TEST_SPLIT_SIZE = 500
_WIN_REWARD = 10.0
_INVISIBLE_TAGS = frozenset({"style", "script", "head", "title", "meta", "[document]"})
_VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
)
_SCORE_LABEL = "Your score (min 0.0, max 1.0)"
_INSTALL_HINT = (
    "Set up the real WebShop yourself (it cannot be pip-installed: PyPI's `webshop` is an empty stub): clone "
    "https://github.com/princeton-nlp/WebShop, use Python 3.8-3.10, run `./setup.sh -d small` (or `-d all`), which "
    "installs its requirements, Java 11 and spaCy's model, downloads the product data from Google Drive into "
    "WebShop/data and builds the pyserini search index. Then either start its server "
    "(`python -m web_agent_site.app`, port 3000) and pass base_url='http://127.0.0.1:3000' (or set WEBSHOP_URL), "
    "or pass webshop_root='/path/to/WebShop' (or set WEBSHOP_ROOT) to run it in-process."
)


@dataclass
class WebShopPage:
    """A WebShop page reduced to what an agent sees and can do."""

    text: str
    """Visible text, segments joined by " [SEP] " (WebShop's "text" observation mode)."""
    clickables: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Lower-cased clickable text -> (HTTP method, URL), buttons and product links first, then options."""
    search_url: str | None = None
    """Where the search form posts to, when the page has a search bar."""
    search_field: str = "search_query"

    @property
    def has_search_bar(self) -> bool:
        return self.search_url is not None

    @property
    def segments(self) -> list[str]:
        return self.text.split(SEP) if self.text else []

    def score(self) -> float | None:
        """The purchase score shown on WebShop's "done" page, or None on other pages."""
        segments = self.segments
        if _SCORE_LABEL in segments:
            position = segments.index(_SCORE_LABEL)
            if position + 1 < len(segments):
                try:
                    return float(segments[position + 1])
                except ValueError:
                    return None
        return None


class _WebShopHTMLParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.texts: list[str] = []
        self.buttons: list[tuple[str, tuple[str, str]]] = []
        self.links: list[tuple[str, tuple[str, str]]] = []
        self.options: list[tuple[str, tuple[str, str]]] = []
        self.form: tuple[str, str] | None = None
        self.search_url: str | None = None
        self.search_field = "search_query"
        self._button: list[str] | None = None
        self._button_target: tuple[str, str] | None = None
        self._link: list[str] | None = None
        self._link_url = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {key: value or "" for key, value in attrs}
        classes = attributes.get("class", "").split()
        if tag == "form":
            self.form = (attributes.get("method", "get").upper(), attributes.get("action", ""))
        elif tag == "button" and "btn" in classes:
            self._button = []
            self._button_target = self.form or ("GET", "")
        elif tag == "a" and "product-link" in classes:
            self._link = []
            self._link_url = attributes.get("href", "")
        elif tag == "input":
            if attributes.get("id") == "search_input":
                self.search_url = self.form[1] if self.form else ""
                self.search_field = attributes.get("name", "search_query")
            elif attributes.get("type") == "radio":
                self.options.append((attributes.get("value", ""), ("GET", attributes.get("data-url", ""))))
        if tag not in _VOID_TAGS:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.form = None
        elif tag == "button" and self._button is not None:
            self.buttons.append(("".join(self._button), self._button_target or ("GET", "")))
            self._button = None
        elif tag == "a" and self._link is not None:
            self.links.append(("".join(self._link), ("GET", self._link_url)))
            self._link = None
        if tag in self.stack:
            while self.stack:
                if self.stack.pop() == tag:
                    break

    def handle_data(self, data: str) -> None:
        if any(tag in _INVISIBLE_TAGS for tag in self.stack):
            return
        if self._button is not None:
            self._button.append(data)
        if self._link is not None:
            self._link.append(data)
        text = data.strip()
        if text:
            self.texts.append(text)


def parse_webshop_html(html: str) -> WebShopPage:
    """Turn a WebShop HTML page into its text observation and clickables (as WebShop's text browser does)."""
    parser = _WebShopHTMLParser()
    parser.feed(html)
    parser.close()
    clickables: dict[str, tuple[str, str]] = {}
    for text, target in [*parser.buttons, *parser.links]:
        clickables[text.strip().lower()] = target
    for value, target in parser.options:
        clickables[value] = target
    return WebShopPage(
        text=SEP.join(parser.texts),
        clickables=clickables,
        search_url=parser.search_url,
        search_field=parser.search_field,
    )


def _instruction_from(text: str) -> str:
    segments = text.split(SEP)
    if "Instruction:" in segments:
        position = segments.index("Instruction:")
        if position + 1 < len(segments):
            return segments[position + 1]
    return ""


class _HttpBackend:
    """Talks to a running WebShop server (`web_agent_site.app`)."""

    def __init__(self, base_url: str, timeout: float, session_prefix: str) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout = timeout
        self.session_prefix = session_prefix
        self._episodes = itertools.count()
        self.session_id = ""
        self.page = WebShopPage(text="")

    def _request(self, method: str, url: str, form: dict[str, str] | None = None) -> WebShopPage:
        full_url = urllib.parse.urljoin(self.base_url, url)
        data = urllib.parse.urlencode(form or {}).encode("utf-8") if method == "POST" else None
        request = urllib.request.Request(full_url, data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                html = response.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as error:
            raise RuntimeError(
                f"the WebShop server answered {method} {full_url} with HTTP {error.code}; expected a page. A 500 on "
                "reset usually means the goal index is past the server's goal list (pass num_goals= to bound the "
                "train split)."
            ) from error
        except (urllib.error.URLError, OSError) as error:
            raise ConnectionError(
                f"could not reach the WebShop server at {self.base_url} ({error}). Start it with "
                "`python -m web_agent_site.app` in your WebShop checkout, or pass the right base_url. " + _INSTALL_HINT
            ) from error
        return parse_webshop_html(html)

    def reset(self, goal_index: int) -> None:
        self.session_id = f"{self.session_prefix}{next(self._episodes)}_fixed_{goal_index}"
        self.page = self._request("GET", urllib.parse.quote(self.session_id))

    def act(self, action: str) -> tuple[float, bool]:
        name, argument = parse_action(action)
        name = name.strip().lower()
        if name == "search" and argument and argument.strip():
            url = self.page.search_url or urllib.parse.quote(self.session_id)
            self.page = self._request("POST", url, {self.page.search_field: argument.lower()})
        elif name == "click" and argument is not None:
            target = argument.strip().lower()
            if target in self.page.clickables and target != "search":
                method, url = self.page.clickables[target]
                self.page = self._request(method, url)
                if target == "buy now":
                    return self.page.score() or 0.0, True
        return 0.0, False

    def admissible(self) -> list[str]:
        return render_admissible_actions(self.page.has_search_bar, list(self.page.clickables))

    def close(self) -> None:
        pass


class _LocalBackend:
    """Runs WebShop's own `WebAgentTextEnv` from a checkout (imported lazily)."""

    def __init__(self, root: str, num_products: int | None, human_goals: bool) -> None:
        path = Path(root).expanduser()
        if not (path / "web_agent_site").is_dir():
            raise FileNotFoundError(
                f"webshop_root={str(path)!r} is not a WebShop checkout (no web_agent_site/ folder). " + _INSTALL_HINT
            )
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
        try:
            module = importlib.import_module("web_agent_site.envs.web_agent_text_env")
        except ImportError as error:
            raise ImportError(
                f"could not import WebShop's text environment from {str(path)!r} ({error}); install the checkout's "
                "requirements (pip install -r requirements.txt) in this Python. " + _INSTALL_HINT
            ) from error
        self.env = module.WebAgentTextEnv(observation_mode="text", num_products=num_products, human_goals=human_goals)
        self.text = ""
        self._available: dict[str, Any] = {"has_search_bar": False, "clickables": []}

    def reset(self, goal_index: int) -> None:
        self.text, _ = self.env.reset(session=goal_index)
        self._available = self.env.get_available_actions()

    def act(self, action: str) -> tuple[float, bool]:
        name, argument = parse_action(action)
        if name.strip().lower() == "search" and not (argument and argument.strip()):
            return 0.0, False  # an empty query would reach Lucene; WebShop ignores it anyway
        self.text, reward, done, _ = self.env.step(action)
        self._available = self.env.get_available_actions()
        return float(reward or 0.0), bool(done)

    def admissible(self) -> list[str]:
        return render_admissible_actions(bool(self._available["has_search_bar"]), list(self._available["clickables"]))

    def close(self) -> None:
        close = getattr(self.env, "close", None)
        if callable(close):
            close()


class WebShopServerEnv:
    """The real WebShop as an `AgentEnvironment` (see the module docstring for the two back ends).

    Args:
        base_url: URL of a running WebShop server (default: the `WEBSHOP_URL` environment variable).
        webshop_root: path of a WebShop checkout to run in-process (default: `WEBSHOP_ROOT`); used when no
            base URL is given.
        split: "test" (goals 0-499) or "train" (goals 500 and up).
        difficulty: only "full" (the real benchmark has one level; accepted for a uniform constructor).
        seed: seeds the RNG used when `reset` gets no seed.
        num_goals: size of the server's goal list; bounds the train split (`seed` wraps around). Unknown
            (None) means train `reset(seed=i)` asks for goal 500 + i.
        max_episode_steps: step limit (15, as in verl-agent).
        timeout: HTTP timeout in seconds.
        num_products: local back end only: WebShop's `num_products` (None = all, 1000 = the small set).
        human_goals: local back end only: use the human-written instructions (WebShop's default).
    """

    action_format: ClassVar[str] = "think_action"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        webshop_root: str | None = None,
        split: str = "test",
        difficulty: str = "full",
        seed: int = 0,
        num_goals: int | None = None,
        max_episode_steps: int = 15,
        timeout: float = 30.0,
        num_products: int | None = None,
        human_goals: bool = True,
    ) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
        if difficulty != "full":
            raise ValueError(f"the real WebShop has a single difficulty, 'full'; got {difficulty!r}.")
        if num_goals is not None and num_goals <= _TEST_SPLIT_SIZE:
            raise ValueError(f"num_goals must exceed the {_TEST_SPLIT_SIZE} test goals, got {num_goals}.")
        base_url = base_url or os.environ.get("WEBSHOP_URL")
        webshop_root = webshop_root or os.environ.get("WEBSHOP_ROOT")
        if base_url:
            self._backend: _HttpBackend | _LocalBackend = _HttpBackend(
                base_url, timeout, session_prefix=f"sdar{uuid.uuid4().hex[:8]}"
            )
        elif webshop_root:
            self._backend = _LocalBackend(webshop_root, num_products, human_goals)
        else:
            raise ValueError(
                "WebShopServerEnv needs a WebShop: pass base_url= (or set WEBSHOP_URL) for a running server, or "
                "webshop_root= (or set WEBSHOP_ROOT) for a checkout. " + _INSTALL_HINT
            )
        self.split = split
        self.difficulty = difficulty
        self.num_goals = num_goals
        self.max_episode_steps = max_episode_steps
        self._rng = random.Random(seed)
        self._task: str | None = None

    @property
    def num_tasks(self) -> int | None:
        """500 for "test"; the train goal count when `num_goals` is known, else None."""
        if self.split == "test":
            return _TEST_SPLIT_SIZE
        return None if self.num_goals is None else self.num_goals - _TEST_SPLIT_SIZE

    def _goal_index(self, seed: int) -> int:
        if self.split == "test":
            return seed % _TEST_SPLIT_SIZE
        if self.num_goals is None:
            return _TEST_SPLIT_SIZE + seed
        return _TEST_SPLIT_SIZE + seed % (self.num_goals - _TEST_SPLIT_SIZE)

    @property
    def _text(self) -> str:
        backend = self._backend
        return backend.page.text if isinstance(backend, _HttpBackend) else backend.text

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Open goal `seed` of the split in a fresh session; `options` is the dataset row."""
        if seed is None and isinstance(options, dict) and isinstance(options.get("seed"), int):
            seed = options["seed"]
        if seed is None:
            seed = self._rng.randrange(2**31)
        goal_index = self._goal_index(seed)
        self._backend.reset(goal_index)
        self._task = _instruction_from(self._text)
        self._steps = 0
        self._terminated = False
        self._won = False
        self._score = 0.0
        self._last_action: str | None = None
        info = {
            "task": self._task or "(no instruction found)",
            "task_type": route_webshop_category(self._task or ""),
            "admissible_actions": self._backend.admissible(),
            "task_id": f"webshop/{self.split}/{goal_index}",
            "split": self.split,
            "goal_index": goal_index,
        }
        return self._text, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Send `search[...]` / `click[...]` to WebShop; other strings leave the page unchanged."""
        if self._task is None:
            raise ResetNeededError(
                "WebShopServerEnv.step() was called before reset(); call env.reset(seed=...) first."
            )
        if self._terminated or self._steps >= self.max_episode_steps:
            info = {"won": self._won, "admissible_actions": [], "score": self._score}
            return self._text, 0.0, self._terminated, not self._terminated, info
        action = action if isinstance(action, str) else str(action)
        self._steps += 1
        self._last_action = action
        score, done = self._backend.act(action)
        if done:
            self._terminated = True
            self._score = float(score)
            self._won = self._score == 1.0
        truncated = not self._terminated and self._steps >= self.max_episode_steps
        info = {
            "won": self._won,
            "admissible_actions": [] if self._terminated else self._backend.admissible(),
            "score": self._score,
        }
        reward = _WIN_REWARD if (done and self._won) else 0.0
        return self._text, reward, self._terminated, truncated, info

    def close(self) -> None:
        """Close the local back end (if any); safe to call repeatedly."""
        self._backend.close()

    def expert_action(self) -> str:
        """The `webshop-mini` expert's rule applied to the real page (a heuristic here, not an oracle)."""
        if self._task is None:
            raise ResetNeededError("expert_action() needs a current episode; call env.reset(seed=...) first.")
        return expert_decision(self._task, self._text, self._last_action)[0]

    def expert_response(self) -> str:
        """`expert_action()` as a full `<think>...</think><action>...</action>` response."""
        if self._task is None:
            raise ResetNeededError("expert_response() needs a current episode; call env.reset(seed=...) first.")
        return render_expert_response(*expert_decision(self._task, self._text, self._last_action))

    def privileged_facts(self) -> str:
        """No oracle facts are available from the real WebShop through this adapter."""
        return ""
