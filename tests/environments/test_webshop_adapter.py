"""WebShopServerEnv against a fake WebShop server (loopback HTTP) and a stub WebShop checkout.

The fake server serves pages shaped like web_agent_site's templates (instruction header, forms with buttons,
product links, radio options with data-url, a hidden block and a score on the done page) on the same routes.
The real back ends run only in the `integration` test, when WEBSHOP_URL or WEBSHOP_ROOT is set.
"""

from __future__ import annotations

import ast
import html
import os
import socket
import sys
import threading
import types
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from sdar_trl.environments import check_agent_environment, make_env
from sdar_trl.environments.base import ResetNeededError
from sdar_trl.environments.webshop import WebShopServerEnv
from sdar_trl.environments.webshop.adapter import parse_webshop_html

GOALS = [
    {
        "text": "i need a waterproof hiking boots with color: brown, and price lower than 60.00 dollars",
        "asin": "B000000002",
        "options": {"color": "brown"},
    },
    {
        "text": "i want a soft cotton t-shirt with color: black, and size: large, and price lower than 30.00 dollars",
        "asin": "B000000001",
        "options": {"color": "black", "size": "large"},
    },
]
PRODUCTS = {
    "B000000001": {"title": "Acme Soft Cotton T-Shirt for Men", "price": "$19.99",
                   "options": {"color": ["black", "white"], "size": ["medium", "large"]}},
    "B000000002": {"title": "Trekko Waterproof Hiking Boots, Lace Up", "price": "$49.50",
                   "options": {"color": ["brown", "black"]}},
    "B000000003": {"title": "Trekko Hiking Boots - Suede Leather", "price": "$39.00",
                   "options": {"color": ["brown"]}},
}  # fmt: skip

HEAD = (
    '<!DOCTYPE html>\n<html>\n  <head>\n    <link rel="stylesheet" href="/static/style.css">\n'
    '    <script src="https://example.invalid/jquery.min.js"></script>\n    <link rel="icon" href="data:,">\n'
    "  </head>\n  <body>\n"
)
TAIL = "\n  </body>\n  <script>\n    $(document).ready(function() { let x = 1 < 2; });\n  </script>\n</html>"


def instruction(text: str, logo: bool = False) -> str:
    logo_html = (
        '        <div id="logo" class="text-center">\n          <h2>WebShop</h2>\n        </div>\n' if logo else ""
    )
    return (
        f'{logo_html}        <div id="instruction-text" class="text-center">\n'
        f"          <h4>Instruction: <br>{html.escape(text)}</h4>\n        </div>\n"
    )


def button(action: str, label: str, css: str = "btn btn-primary") -> str:
    return (
        f'      <div class="row top-buffer">\n        <form method="post" action="{action}">\n'
        f'          <button type="submit" class="{css}">{html.escape(label)}</button>\n        </form>\n      </div>\n'
    )


def q(value: object) -> str:
    return urllib.parse.quote(str(value), safe="")


class FakeWebShop(BaseHTTPRequestHandler):
    """The routes of web_agent_site/app.py, with tiny data."""

    sessions: ClassVar[dict[str, dict]] = {}

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self.route(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.route(self.rfile.read(length))

    def send_html(self, body: str, status: int = 200) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def route(self, body: bytes) -> None:
        parts = [urllib.parse.unquote(p) for p in self.path.strip("/").split("/")]
        sid = parts[1] if len(parts) > 1 else parts[0]
        if sid not in self.sessions:
            self.sessions[sid] = GOALS[int(sid.split("_")[-1])]
        goal = self.sessions[sid]
        if len(parts) == 1:
            form = urllib.parse.parse_qs(body.decode("utf-8"))
            if "search_query" in form:
                keywords = form["search_query"][0].lower().split(" ")
                self.send_response(302)
                self.send_header("Location", f"/search_results/{q(sid)}/{q(keywords)}/1")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_html(self.search_page(sid, goal))
        elif parts[0] == "search_results":
            self.send_html(self.results_page(sid, goal, ast.literal_eval(parts[2]), int(parts[3])))
        elif parts[0] == "item_page":
            self.send_html(self.item_page(sid, goal, parts[2], parts[3], int(parts[4]), ast.literal_eval(parts[5])))
        elif parts[0] == "item_sub_page":
            self.send_html(self.sub_page(sid, goal, parts[2], parts[3], int(parts[4]), parts[5], parts[6]))
        elif parts[0] == "done":
            options = ast.literal_eval(parts[3])
            score = 1.0 if (parts[2] == goal["asin"] and options == goal["options"]) else 0.25
            self.send_html(self.done_page(goal, score))
        else:
            self.send_html("not found", status=404)

    def search_page(self, sid: str, goal: dict) -> str:
        return (
            HEAD + '    <div class="container">\n' + instruction(goal["text"], logo=True)
            + f'        <form role="form" method="post" action="/{q(sid)}">\n'
            + '          <input id="search_input" class="form-control" type="text" name="search_query" required/>\n'
            + '          <button class="btn btn-success" type="submit"><i class="glyphicon"></i>Search</button>\n'
            + "        </form>\n    </div>\n" + TAIL
        )  # fmt: skip

    def results_page(self, sid: str, goal: dict, keywords: list[str], page: int) -> str:
        hits = [asin for asin, p in PRODUCTS.items() if any(k in p["title"].lower() for k in keywords)]
        shown = hits[(page - 1) * 10 : page * 10]
        kw = q(keywords)
        out = HEAD + instruction(goal["text"]) + button(f"/{q(sid)}", "Back to Search", "btn btn-success")
        out += f"      <h3>Page {page} (Total results: {len(hits)})</h3>\n"
        if page > 1:
            out += button(f"/search_results/{q(sid)}/{kw}/{page - 1}", "< Prev")
        out += button(f"/search_results/{q(sid)}/{kw}/{page + 1}", "Next >")
        for asin in shown:
            product = PRODUCTS[asin]
            url = f"/item_page/{q(sid)}/{asin}/{kw}/{page}/{q({})}"
            out += (
                f'      <h4 class="product-asin"><a class="product-link" href="{url}">{asin}</a></h5>\n'
                f'      <h4 class="product-title">{html.escape(product["title"])}</h5>\n'
                f'      <h5 class="product-price">{product["price"]}</h6>\n'
                "<!--\n      <h5>hidden category</h5>\n-->\n"
            )
        return out + TAIL

    def item_page(self, sid: str, goal: dict, asin: str, kw: str, page: int, options: dict) -> str:
        product = PRODUCTS[asin]
        out = HEAD + instruction(goal["text"]) + button(f"/{q(sid)}", "Back to Search", "btn btn-success")
        out += button(f"/search_results/{q(sid)}/{q(kw)}/{page}", "< Prev")
        out += '      <img id="product-image" src="x.jpg">\n'
        for name, values in product["options"].items():
            out += f"      <h4>{name}</h4>\n"
            for i, value in enumerate(values):
                url = f"/item_page/{q(sid)}/{asin}/{q(kw)}/{page}/{q({**options, name: value})}"
                out += (
                    f'      <input type="radio" id="radio_{name}{i}" name="{name}" value="{value}" data-url="{url}">\n'
                    f'      <label for="radio_{name}{i}">{value}</label>\n'
                )
        out += f"      <h2>{html.escape(product['title'])}</h2>\n      <h4>Price: {product['price']}</h4>\n"
        out += "      <h4>Rating: N.A.</h4>\n"
        for sub in ("Description", "Features", "Reviews"):
            out += button(f"/item_sub_page/{q(sid)}/{asin}/{q(kw)}/{page}/{sub}/{q(options)}", sub)
        out += button(f"/done/{q(sid)}/{asin}/{q(options)}", "Buy Now", "btn btn-lg purchase")
        return out + TAIL

    def sub_page(self, sid: str, goal: dict, asin: str, kw: str, page: int, sub: str, options: str) -> str:
        out = HEAD + instruction(goal["text"]) + button(f"/{q(sid)}", "Back to Search", "btn btn-success")
        out += button(f"/item_page/{q(sid)}/{asin}/{q(kw)}/{page}/{q(options)}", "< Prev")
        return out + f'      <p class="product-info">{sub} of {html.escape(PRODUCTS[asin]["title"])}</p>\n' + TAIL

    def done_page(self, goal: dict, score: float) -> str:
        return (
            HEAD + "      <h1>Thank you for shopping with us!</h1>\n"
            + f'      <div style="display:none"><h4 id="goal-asin">asin<pre>{goal["asin"]}</pre></h4></div>\n'
            + f'      <h3 id="reward">Your score (min 0.0, max 1.0)<pre>{score}</pre></h3>\n' + TAIL
        )  # fmt: skip


@pytest.fixture(scope="module")
def server_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeWebShop)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


REAL_WEBSHOP = {name: os.environ.get(name) for name in ("WEBSHOP_URL", "WEBSHOP_ROOT")}


@pytest.fixture(autouse=True)
def isolated(monkeypatch):
    """No real WebShop from the environment, and no `web_agent_site` modules leaking between tests."""
    monkeypatch.delenv("WEBSHOP_URL", raising=False)
    monkeypatch.delenv("WEBSHOP_ROOT", raising=False)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield
    for name in [name for name in sys.modules if name.split(".")[0] == "web_agent_site"]:
        del sys.modules[name]


# -- HTML -> text ---------------------------------------------------------------------------------------------


def test_html_parsing_matches_webshop_text_mode():
    handler = FakeWebShop.__new__(FakeWebShop)
    page = parse_webshop_html(handler.results_page("s_fixed_0", GOALS[0], ["hiking"], 2))
    assert page.text == (
        f"Instruction: [SEP] {GOALS[0]['text']} [SEP] Back to Search [SEP] Page 2 (Total results: 2) [SEP] < Prev "
        "[SEP] Next >"
    )
    page = parse_webshop_html(handler.results_page("s_fixed_0", GOALS[0], ["hiking"], 1))
    assert page.text.endswith(
        "Next > [SEP] B000000002 [SEP] Trekko Waterproof Hiking Boots, Lace Up [SEP] $49.50 [SEP] B000000003 [SEP] "
        "Trekko Hiking Boots - Suede Leather [SEP] $39.00"
    )
    assert list(page.clickables) == ["back to search", "next >", "b000000002", "b000000003"]
    assert not page.has_search_bar

    item = parse_webshop_html(handler.item_page("s_fixed_1", GOALS[1], "B000000001", "['shirt']", 1, {}))
    assert item.text.split(" [SEP] ")[2:] == [
        "Back to Search", "< Prev", "color", "black", "white", "size", "medium", "large",
        "Acme Soft Cotton T-Shirt for Men", "Price: $19.99", "Rating: N.A.", "Description", "Features", "Reviews",
        "Buy Now",
    ]  # fmt: skip
    assert list(item.clickables) == [
        "back to search", "< prev", "description", "features", "reviews", "buy now", "black", "white", "medium",
        "large",
    ]  # fmt: skip
    search = parse_webshop_html(handler.search_page("s_fixed_0", GOALS[0]))
    assert search.text == f"WebShop [SEP] Instruction: [SEP] {GOALS[0]['text']} [SEP] Search"
    assert search.has_search_bar and search.search_field == "search_query"
    assert parse_webshop_html(handler.done_page(GOALS[0], 0.25)).score() == 0.25


# -- the HTTP back end ----------------------------------------------------------------------------------------


def test_http_episode_with_the_expert(server_url):
    env = make_env("webshop", base_url=server_url, split="test")
    assert isinstance(env, WebShopServerEnv)
    obs, info = env.reset(seed=1)
    assert obs == f"WebShop [SEP] Instruction: [SEP] {GOALS[1]['text']} [SEP] Search"
    assert info["task"] == GOALS[1]["text"] and info["task_type"] == "apparel"
    assert info["admissible_actions"] == ["search[<your query>]"]
    actions = []
    while True:
        action = env.expert_action()
        actions.append(action)
        obs, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    assert actions == [
        "search[soft cotton t-shirt]", "click[b000000001]", "click[black]", "click[large]", "click[buy now]",
    ]  # fmt: skip
    assert (reward, terminated, info["won"], info["score"]) == (10.0, True, True, 1.0)
    assert env.step("click[buy now]")[1:4] == (0.0, True, False)


def test_http_navigation_invalid_actions_and_partial_score(server_url):
    env = WebShopServerEnv(base_url=server_url, split="test")
    obs, _ = env.reset(seed=0)
    assert env.step("click[nothing]")[0] == obs  # invalid: same page, no request
    obs, _, _, _, info = env.step("search[hiking boots]")
    assert "Page 1 (Total results: 2)" in obs
    assert info["admissible_actions"] == [
        "click[back to search]", "click[next >]", "click[b000000002]", "click[b000000003]",
    ]  # fmt: skip
    obs, *_ = env.step("click[next >]")
    assert "Page 2 (Total results: 2) [SEP] < Prev [SEP] Next >" in obs
    env.step("click[< prev]")
    env.step("click[b000000003]")
    obs, *_ = env.step("click[features]")
    assert obs.endswith("Features of Trekko Hiking Boots - Suede Leather")
    obs, *_ = env.step("click[< prev]")
    assert obs.endswith("Buy Now")
    _, reward, terminated, truncated, info = env.step("click[buy now]")
    assert (reward, terminated, truncated, info["won"], info["score"]) == (0.0, True, False, False, 0.25)


def test_http_env_passes_the_protocol_check(server_url):
    check_agent_environment(WebShopServerEnv(base_url=server_url, split="test"), seed=1)


def test_http_split_indexing_and_step_limit(server_url):
    env = WebShopServerEnv(base_url=server_url, split="train", num_goals=502, max_episode_steps=2)
    assert env.num_tasks == 2
    assert env._goal_index(3) == 501
    test_env = WebShopServerEnv(base_url=server_url, split="test")
    assert test_env.num_tasks == 500 and test_env.reset(seed=501)[1]["goal_index"] == 1
    test_env.max_episode_steps = 2
    test_env.step("click[x]")
    assert test_env.step("click[x]")[3] is True


def test_unreachable_server_raises_connection_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = WebShopServerEnv(base_url=f"http://127.0.0.1:{port}", timeout=2.0)
    with pytest.raises(ConnectionError, match=r"web_agent_site\.app"):
        env.reset(seed=0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, ValueError, "WEBSHOP_URL"),
        ({"base_url": "http://x", "split": "valid"}, ValueError, "split"),
        ({"base_url": "http://x", "difficulty": "easy"}, ValueError, "single difficulty"),
        ({"base_url": "http://x", "num_goals": 100}, ValueError, "num_goals"),
    ],
)
def test_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        WebShopServerEnv(**kwargs)


def test_step_before_reset_raises():
    env = WebShopServerEnv(base_url="http://127.0.0.1:9")
    with pytest.raises(ResetNeededError):
        env.step("search[x]")
    assert env.privileged_facts() == ""


# -- the local (WEBSHOP_ROOT) back end ------------------------------------------------------------------------


class StubTextEnv:
    """Stands in for web_agent_site.envs.web_agent_text_env.WebAgentTextEnv."""

    created: ClassVar[list[dict]] = []

    def __init__(self, observation_mode="html", **kwargs) -> None:
        StubTextEnv.created.append({"observation_mode": observation_mode, **kwargs})
        self.page = "search"
        self.closed = False

    def reset(self, session=None, instruction_text=None):
        self.goal = GOALS[session % len(GOALS)]["text"]
        self.page = "search"
        return f"WebShop [SEP] Instruction: [SEP] {self.goal} [SEP] Search", None

    def get_available_actions(self):
        if self.page == "search":
            return {"has_search_bar": True, "clickables": ["search"]}
        return {"has_search_bar": False, "clickables": ["back to search", "buy now"]}

    def step(self, action):
        if action.startswith("search["):
            self.page = "item"
            return f"Instruction: [SEP] {self.goal} [SEP] Back to Search [SEP] Buy Now", 0.0, False, None
        if action == "click[buy now]" and self.page == "item":
            return "Thank you for shopping with us!", 1.0, True, None
        return "unchanged", 0.0, False, None

    def close(self):
        self.closed = True


@pytest.fixture
def stub_checkout(tmp_path, monkeypatch):
    (tmp_path / "web_agent_site").mkdir()
    module = types.ModuleType("web_agent_site.envs.web_agent_text_env")
    module.WebAgentTextEnv = StubTextEnv
    for name in ("web_agent_site", "web_agent_site.envs"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "web_agent_site.envs.web_agent_text_env", module)
    return tmp_path


def test_local_backend_runs_the_checkout_env(stub_checkout, monkeypatch):
    monkeypatch.setenv("WEBSHOP_ROOT", str(stub_checkout))
    env = WebShopServerEnv(split="test", num_products=1000)
    assert StubTextEnv.created[-1] == {"observation_mode": "text", "num_products": 1000, "human_goals": True}
    assert str(stub_checkout) in sys.path
    obs, info = env.reset(seed=0)
    assert info["task"] == GOALS[0]["text"] and info["task_type"] == "footwear"
    assert info["admissible_actions"] == ["search[<your query>]"]
    assert env.step("search[   ]")[0] == obs  # empty query never reaches WebShop's Lucene
    obs, _, _, _, info = env.step("search[boots]")
    assert info["admissible_actions"] == ["click[back to search]", "click[buy now]"]
    _, reward, terminated, _, info = env.step("click[buy now]")
    assert (reward, terminated, info["won"], info["score"]) == (10.0, True, True, 1.0)
    env.close()
    env.close()
    assert env._backend.env.closed


def test_local_backend_errors_name_what_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"setup\.sh"):
        WebShopServerEnv(webshop_root=str(tmp_path / "missing"))
    (tmp_path / "web_agent_site").mkdir()
    with pytest.raises(ImportError, match="requirements"):
        WebShopServerEnv(webshop_root=str(tmp_path))


# -- the real WebShop ---------------------------------------------------------------------------------------


@pytest.mark.integration
def test_real_webshop_episode():
    if not any(REAL_WEBSHOP.values()):
        pytest.skip("set WEBSHOP_URL (a running web_agent_site server) or WEBSHOP_ROOT (a WebShop checkout)")
    env = WebShopServerEnv(base_url=REAL_WEBSHOP["WEBSHOP_URL"], webshop_root=REAL_WEBSHOP["WEBSHOP_ROOT"])
    obs, info = env.reset(seed=0)
    assert obs.startswith("WebShop [SEP] Instruction: [SEP] ") and info["task"]
    for _ in range(env.max_episode_steps):
        obs, _, terminated, truncated, info = env.step(env.expert_action())
        if terminated or truncated:
            break
    assert isinstance(info["score"], float) and 0.0 <= info["score"] <= 1.0
