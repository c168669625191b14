"""Search-R1 adapters: HTTP retrieval servers (both request shapes), local BM25 over JSONL, question files."""

from __future__ import annotations

import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sdar_trl.environments import check_agent_environment, make_env
from sdar_trl.environments.searchqa import (
    BM25Retriever,
    HTTPRetriever,
    Passage,
    RetrievalServerError,
    SearchQAEnv,
    SearchQuestion,
    load_search_r1_questions,
    render_information,
)
from sdar_trl.environments.searchqa.adapters import question_from_row

CORPUS = [
    {"id": "0", "contents": '"Evan Morris"\nEvan Morris was a lobbyist in Washington, D.C.'},
    {"id": "1", "contents": "Paris\nParis is the capital and largest city of France."},
    {"id": "2", "contents": "Berlin\nBerlin is the capital of Germany, on the river Spree."},
    {"id": "3", "contents": "Spree\nThe Spree is a river that flows through Berlin."},
    {"id": "4", "contents": "Lyon\nLyon is a city in France on the Rhone."},
]


# -- a fake retrieval server ------------------------------------------------------------------------------


class _FakeServer:
    """Loopback stand-in for Search-R1's (`queries`) or verl-agent's (`query`) FastAPI retrieval server."""

    def __init__(self, shape: str, *, document: str = "contents", status: int = 200, raw: bytes | None = None):
        self.shape, self.document, self.status, self.raw = shape, document, status, raw
        self.requests: list[dict] = []
        self.retriever = BM25Retriever([Passage.from_contents(r["contents"], id=r["id"]) for r in CORPUS])
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                status, payload = server.answer(self.path, body)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/retrieve"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def _doc(self, passage: Passage) -> dict:
        if self.document == "contents":  # dense retriever rows: the corpus line
            return {"id": passage.id, "contents": passage.contents}
        return {"title": passage.title, "text": passage.text, "contents": passage.contents}  # Search-R1 BM25

    def answer(self, path: str, body: dict):
        if self.raw is not None:
            return self.status, self.raw
        if self.status != 200:
            return self.status, {"detail": "boom"}
        if path != "/retrieve":
            return 404, {"detail": "Not Found"}
        key = "queries" if self.shape == "queries" else "query"
        if key not in body:  # FastAPI/pydantic validation error
            return 422, {"detail": [{"loc": ["body", key], "msg": "field required", "type": "value_error.missing"}]}
        queries = body["queries"] if self.shape == "queries" else [body["query"]]
        topk = body.get("topk") or 3
        result = []
        for query in queries:
            hits = self.retriever.search(query, topk)
            if body.get("return_scores"):
                result.append([{"document": self._doc(h), "score": h.score} for h in hits])
            else:
                result.append([self._doc(h) for h in hits])
        return 200, {"result": result}

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- HTTPRetriever -------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["queries", "query"])
@pytest.mark.parametrize("document", ["contents", "title_text"])
def test_http_retriever_auto_detects_the_request_shape(shape, document):
    with _FakeServer(shape, document=document) as server:
        retriever = HTTPRetriever(server.url, topk=3)
        hits = retriever.search("capital of France")
        assert hits[0].title == "Paris"
        assert len(hits) == 3 and all(isinstance(h.score, float) for h in hits)
        assert retriever.request_format == shape
        batch = retriever.search_batch(["river Spree", "Evan Morris lobbyist"])
        assert [b[0].title for b in batch] == ["Spree", "Evan Morris"]  # quoted title unwrapped
    sent = server.requests[-1]
    if shape == "queries":
        assert sent == {"queries": ["river Spree", "Evan Morris lobbyist"], "topk": 3, "return_scores": True}
    else:
        assert sent == {"query": "Evan Morris lobbyist", "topk": 3, "return_scores": True}


@pytest.mark.parametrize("shape", ["queries", "query"])
def test_http_retriever_with_an_explicit_shape_sends_only_that_shape(shape):
    with _FakeServer(shape) as server:
        retriever = HTTPRetriever(server.url, request_format=shape, topk=2)
        assert len(retriever.search("Berlin")) == 2
    assert len(server.requests) == 1 and ("queries" in server.requests[0]) == (shape == "queries")


def test_http_retriever_parses_responses_without_scores_and_flat_lists():
    retriever = HTTPRetriever("http://127.0.0.1:1/retrieve")
    layouts = [
        {"result": [[{"id": "1", "contents": "Paris\nParis is big."}]]},
        {"result": [{"document": {"title": "Paris", "text": "Paris is big."}, "score": 3}]},
    ]
    for payload in layouts:
        [[hit]] = retriever._parse(payload, expected=1)
        assert (hit.title, hit.text) == ("Paris", "Paris is big.")


def test_http_retriever_adds_the_path_to_a_bare_host():
    assert HTTPRetriever("http://127.0.0.1:8000").url == "http://127.0.0.1:8000/retrieve"
    with pytest.raises(ValueError, match="http"):
        HTTPRetriever("127.0.0.1:8000")
    with pytest.raises(ValueError, match="request_format"):
        HTTPRetriever("http://x/retrieve", request_format="batch")


def test_http_retriever_explains_a_server_that_is_down():
    url = f"http://127.0.0.1:{_free_port()}/retrieve"
    retriever = HTTPRetriever(url, retries=0, timeout=2)
    with pytest.raises(RetrievalServerError) as error:
        retriever.search("anything")
    message = str(error.value)
    assert url in message and "retrieval_server.py" in message and "BM25Retriever.from_jsonl" in message


def test_http_retriever_retries_5xx_then_raises():
    with _FakeServer("queries", status=503) as server, pytest.raises(RetrievalServerError, match="HTTP 503"):
        HTTPRetriever(server.url, retries=1).search("x")
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"<html>not json</html>", "not JSON"),
        (b'{"docs": []}', "unexpected response"),
        (b'{"result": [[1]]}', "Expected"),
    ],
)
def test_http_retriever_rejects_unexpected_payloads(raw, match):
    with _FakeServer("queries", raw=raw) as server, pytest.raises(RetrievalServerError, match=match):
        HTTPRetriever(server.url, retries=0).search("x")


def test_http_retriever_reports_client_errors():
    with _FakeServer("queries", status=404) as server, pytest.raises(RetrievalServerError, match="HTTP 404"):
        HTTPRetriever(server.url, request_format="queries", retries=0).search("x")


# -- BM25Retriever -----------------------------------------------------------------------------------


def _write_corpus(path: Path) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in CORPUS) + "\n\n", encoding="utf-8")
    return path


def test_bm25_from_jsonl_ranks_the_matching_passage_first(tmp_path):
    retriever = BM25Retriever.from_jsonl(_write_corpus(tmp_path / "corpus.jsonl"), topk=3)
    assert len(retriever) == 5
    hits = retriever.search("Which river flows through Berlin?")
    assert hits[0].title == "Spree" and len(hits) == 3
    assert retriever.search("Evan Morris")[0].title == "Evan Morris"
    assert (
        render_information(hits[:1])
        == "<information>Doc 1(Title: Spree) The Spree is a river that flows through Berlin.</information>"
    )
    assert len(retriever.search("zzzz unknown words")) == 3  # no match: still k passages, in corpus order
    assert len(BM25Retriever.from_jsonl(tmp_path / "corpus.jsonl", limit=2)) == 2


def test_bm25_dense_fast_path_matches_bm25s_scoring():
    from sdar_trl.environments.searchqa.mini import _load_world

    passages = _load_world("test", "hard", 0).world.passages
    dense, sparse = BM25Retriever(passages), BM25Retriever(passages)
    sparse._dense = None  # bm25s's own get_scores_from_ids
    assert dense._dense is not None
    words = sorted({w for p in passages for w in p.text.split()})
    for i in range(200):
        query = " ".join(words[(i * 7 + j * 13) % len(words)] for j in range(1 + i % 4))
        assert [(h.id, round(h.score, 4)) for h in dense.search(query)] == [
            (h.id, round(h.score, 4)) for h in sparse.search(query)
        ]


def test_bm25_from_jsonl_accepts_title_and_text(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": 7, "title": "Oslo", "text": "Oslo is the capital of Norway."}) + "\n")
    assert BM25Retriever.from_jsonl(path).search("Norway capital")[0].id == "7"


def test_bm25_from_jsonl_errors_name_what_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="wiki-18") as error:
        BM25Retriever.from_jsonl(tmp_path / "wiki-18.jsonl")
    assert "contents" in str(error.value)
    (tmp_path / "wiki-18.jsonl.gz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="gzip -d"):
        BM25Retriever.from_jsonl(tmp_path / "wiki-18.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "contents": "A\\nb"}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:2"):
        BM25Retriever.from_jsonl(bad)
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"id": 1, "body": "x"}\n')
    with pytest.raises(ValueError, match="'contents'"):
        BM25Retriever.from_jsonl(wrong)
    with pytest.raises(ValueError, match="empty corpus"):
        BM25Retriever([])


# -- question files --------------------------------------------------------------------------------------


def _search_r1_rows() -> list[dict]:
    prefix = "Answer the given question. ... For example, <answer> Beijing </answer>. Question: "
    return [
        {
            "id": "train_0",
            "question": "what is the capital of france?",
            "golden_answers": ["Paris"],
            "data_source": "nq",
            "prompt": [{"role": "user", "content": prefix + "what is the capital of france?\n"}],
            "ability": "fact-reasoning",
            "reward_model": {"style": "rule", "ground_truth": {"target": ["Paris"]}},
            "extra_info": {"split": "train", "index": 0},
        },
        {
            "id": "train_1",
            "question": "Which river flows through Berlin, the Spree or the Rhone?",
            "golden_answers": ["Spree", "the Spree river"],
            "data_source": "2wikimultihopqa",
            "prompt": [{"role": "user", "content": prefix + "Which river ...?\n"}],
            "ability": "fact-reasoning",
            "reward_model": {"style": "rule", "ground_truth": {"target": ["Spree", "the Spree river"]}},
            "extra_info": {"split": "train", "index": 1},
        },
    ]


def test_load_search_r1_parquet(tmp_path):
    import datasets

    path = tmp_path / "train.parquet"
    datasets.Dataset.from_list(_search_r1_rows()).to_parquet(str(path))
    questions = load_search_r1_questions(path)
    assert questions == [
        SearchQuestion("what is the capital of france?", ("Paris",), "nq", "direct_retrieval", "train_0"),
        SearchQuestion(
            "Which river flows through Berlin, the Spree or the Rhone?",
            ("Spree", "the Spree river"),
            "2wikimultihopqa",
            "compare",
            "train_1",
        ),
    ]
    assert len(load_search_r1_questions(path, limit=1)) == 1


def test_load_processed_parquet_without_question_columns(tmp_path):
    import datasets

    rows = [{k: v for k, v in row.items() if k not in ("question", "golden_answers")} for row in _search_r1_rows()]
    path = tmp_path / "processed.parquet"
    datasets.Dataset.from_list(rows[:1]).to_parquet(str(path))
    [question] = load_search_r1_questions(path)
    assert (question.question, question.golden_answers, question.task_type) == (
        "what is the capital of france?",
        ("Paris",),
        "direct_retrieval",
    )


def test_load_flashrag_jsonl_and_verl_agent_rows(tmp_path):
    path = tmp_path / "popqa.jsonl"
    path.write_text(
        json.dumps({"id": "p1", "question": "What is Lyon's country?", "golden_answers": ["France"]}) + "\n"
    )
    [question] = load_search_r1_questions(path, data_source="popqa")
    assert (question.data_source, question.task_type, question.id) == ("popqa", "entity_attribute_lookup", "p1")
    verl_row = {
        "data_source": "hotpotqa",
        "env_kwargs": {"ground_truth": {"target": ["Spree"]}, "question": "Which river?", "data_source": "hotpotqa"},
    }
    assert question_from_row(verl_row).golden_answers == ("Spree",)
    assert question_from_row(verl_row).task_type == "multi_hop_reasoning"


def test_question_file_errors_name_the_data_scripts(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data_process\.sh"):
        load_search_r1_questions(tmp_path / "test.parquet")
    other = tmp_path / "q.csv"
    other.write_text("question\n")
    with pytest.raises(ValueError, match=r"\.parquet, \.jsonl or \.json"):
        load_search_r1_questions(other)
    with pytest.raises(ValueError, match="no question found"):
        question_from_row({"golden_answers": ["x"]})
    with pytest.raises(ValueError, match="no gold answers"):
        question_from_row({"question": "q?"})


# -- SearchQAEnv -------------------------------------------------------------------------------------------


def _questions() -> list[SearchQuestion]:
    return [
        SearchQuestion.create("what is the capital of france?", ["Paris"], "nq", id="a"),
        SearchQuestion.create(
            "Which river flows through Berlin, the Spree or the Rhone?", ["Spree"], "2wikimultihopqa"
        ),
    ]


@pytest.mark.parametrize("shape", ["queries", "query"])
def test_search_qa_env_over_a_loopback_server(shape):
    with _FakeServer(shape) as server:
        env = SearchQAEnv(_questions(), server.url)
        check_agent_environment(env)
        env = SearchQAEnv(_questions(), HTTPRetriever(server.url))
        obs, info = env.reset(seed=0)
        assert obs == info["task"] == "what is the capital of france?"
        assert (info["task_type"], info["data_source"], info["admissible_actions"]) == ("direct_retrieval", "nq", None)
        obs, reward, terminated, truncated, info = env.step("<search>capital of France</search>")
        assert obs.startswith("<information>Doc 1(Title: Paris) Paris is the capital") and "\nDoc 3(Title: " in obs
        assert (reward, terminated, truncated) == (0.0, False, False)
        obs, reward, terminated, truncated, info = env.step("<answer>paris</answer>")
        assert (reward, terminated, info["won"], info["score"]) == (1.0, True, True, 1.0)


def test_search_qa_env_with_local_bm25_and_registry(tmp_path):
    corpus = _write_corpus(tmp_path / "corpus.jsonl")
    env = make_env("searchqa", questions=_questions(), retriever=str(corpus))
    check_agent_environment(env)
    _, info = env.reset(seed=1)
    assert info["task_type"] == "compare"
    obs, *_ = env.step("<search>river Berlin</search>")
    assert "(Title: Spree) The Spree is a river" in obs
    assert env.step("<answer>The Spree</answer>")[1] == 1.0
    assert env.privileged_facts() == ""


def test_search_qa_env_plays_the_dataset_row(tmp_path):
    env = SearchQAEnv(_questions(), BM25Retriever.from_jsonl(_write_corpus(tmp_path / "c.jsonl")))
    obs, _ = env.reset(options=_search_r1_rows()[1])
    assert obs.startswith("Which river flows through Berlin")
    assert env.step("<answer>Spree river</answer>")[1] == 1.0  # an alias only the row's gold answers hold
    assert env.reset(options={"seed": 1})[0] == _questions()[1].question


def test_search_qa_env_reading_a_question_file(tmp_path):
    import datasets

    path = tmp_path / "test.parquet"
    datasets.Dataset.from_list(_search_r1_rows()).to_parquet(str(path))
    env = SearchQAEnv(path, BM25Retriever.from_jsonl(_write_corpus(tmp_path / "c.jsonl")))
    assert env.num_tasks == 2


def test_search_qa_env_raises_when_the_server_is_down():
    env = SearchQAEnv(_questions(), HTTPRetriever(f"http://127.0.0.1:{_free_port()}/retrieve", retries=0))
    env.reset(seed=0)
    with pytest.raises(RetrievalServerError, match=r"retrieval_server\.py"):
        env.step("<search>x</search>")
    assert env.step("not an action")[0].startswith("Invalid action")  # no retrieval needed


def test_search_qa_env_rejects_bad_inputs():
    with pytest.raises(ValueError, match="non-empty sequence of SearchQuestion"):
        SearchQAEnv([], "http://127.0.0.1:8000/retrieve")
    with pytest.raises(TypeError, match="retriever must be"):
        SearchQAEnv(_questions(), retriever=42)


# -- the real thing (skipped unless the user points at it) -----------------------------------------------


@pytest.mark.integration
def test_real_search_r1_setup():
    """Set SEARCHQA_QUESTIONS (a Search-R1 parquet) and SEARCHQA_RETRIEVER (a server URL or JSONL corpus)."""
    questions, retriever = os.environ.get("SEARCHQA_QUESTIONS"), os.environ.get("SEARCHQA_RETRIEVER")
    if not questions or not retriever:
        pytest.skip("set SEARCHQA_QUESTIONS and SEARCHQA_RETRIEVER to run against real Search-R1 data")
    env = SearchQAEnv(load_search_r1_questions(questions, limit=20), retriever)
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(f"<search>{obs}</search>")
    assert obs.startswith("<information>Doc 1(Title: ")
