"""Retrievers for the search environments: in-process BM25 (`bm25s`) and Search-R1 HTTP servers.

A retriever maps a query to the top-k `Passage`s. Search-R1 shows them to the agent as

```
<information>Doc 1(Title: Evan Morris) Evan L. Morris was a lobbyist ...
Doc 2(Title: ...) ...
Doc 3(Title: ...) ...</information>
```

(`render_information`). Passages follow Search-R1's corpus layout: one JSON object per line with
`"id"` and `"contents"`, where `contents` is `"Title\\ntext"` (the title line may be quoted).

- `BM25Retriever`: BM25 (the `bm25s` package, Lucene variant, English stop words) over passages in
  memory; `BM25Retriever.from_jsonl(path)` reads a corpus file. Needs the `[search]` extra.
- `HTTPRetriever`: a client for the retrieval servers of Search-R1 (`POST /retrieve` with
  `{"queries": [...], "topk": k, "return_scores": true}`) and verl-agent / SDAR (`{"query": "...",
  "topk": k, "return_scores": true}`), standard library only.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "BM25Retriever",
    "HTTPRetriever",
    "Passage",
    "RetrievalServerError",
    "Retriever",
    "render_information",
]

_DENSE_LIMIT = 4_000_000  # vocabulary size x passages up to which BM25Retriever keeps dense weights
_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # bm25s.tokenize's default token pattern
_INSTALL_HINT = "pip install 'sdar-trl[search]' (or: pip install bm25s)"
_SERVER_HINT = (
    "Start a retrieval server first, e.g. from a clone of https://github.com/PeterGriffinJin/Search-R1: "
    "`python search_r1/search/retrieval_server.py --index_path $save_path/e5_Flat.index --corpus_path "
    "$save_path/wiki-18.jsonl --topk 3 --retriever_name e5 --retriever_model intfloat/e5-base-v2` (index and corpus "
    "from `python scripts/download.py --save_path $save_path`; the server listens on "
    "http://127.0.0.1:8000/retrieve), or search a local corpus in-process with BM25Retriever.from_jsonl(path)."
)


@dataclass(frozen=True)
class Passage:
    """One retrievable passage: `title`, `text`, an `id`, and the retrieval `score` when known."""

    id: str
    title: str
    text: str
    score: float | None = None

    @property
    def contents(self) -> str:
        """Search-R1's corpus field: `"Title\\ntext"`."""
        return f"{self.title}\n{self.text}"

    @classmethod
    def from_contents(cls, contents: str, *, id: str = "", score: float | None = None) -> Passage:
        """Split Search-R1's `"Title\\ntext"` (the title may be wrapped in double quotes)."""
        title, _, text = contents.partition("\n")
        return cls(id=id, title=title.strip().strip('"'), text=text.strip(), score=score)


def render_information(passages: Sequence[Passage]) -> str:
    """Search-R1's observation for a search: `<information>Doc 1(Title: T) text\\n...</information>`."""
    lines = [f"Doc {i}(Title: {p.title}) {p.text}" for i, p in enumerate(passages, start=1)]
    return "<information>" + "\n".join(lines) + "</information>"


@runtime_checkable
class Retriever(Protocol):
    """Anything with `search(query, topk) -> list[Passage]`."""

    def search(self, query: str, topk: int | None = None) -> list[Passage]:
        """The `topk` best passages for `query`, best first."""
        ...


def _import_bm25s() -> Any:
    try:
        import bm25s
    except ImportError as error:
        raise ImportError(f"BM25 retrieval needs the `bm25s` package: {_INSTALL_HINT}.") from error
    return bm25s


def _check_topk(topk: object) -> int:
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ValueError(f"topk must be a positive int, got {topk!r}.")
    return topk


class BM25Retriever:
    """BM25 over passages held in memory (Lucene BM25 from `bm25s`, English stop words, no stemming).

    Ties are broken by corpus order (the earlier passage first), so results are deterministic.

    Args:
        passages: the corpus.
        topk: passages returned by `search` when it is not given a `topk` (Search-R1 uses 3).
        k1, b: the BM25 parameters.
    """

    def __init__(self, passages: Sequence[Passage], *, topk: int = 3, k1: float = 1.5, b: float = 0.75) -> None:
        bm25s = _import_bm25s()
        if len(passages) == 0:
            raise ValueError("BM25Retriever needs at least one passage, got an empty corpus.")
        self.passages: list[Passage] = list(passages)
        self.topk = _check_topk(topk)
        self._bm25s = bm25s
        tokens = bm25s.tokenize(
            [p.contents for p in self.passages], stopwords="en", show_progress=False, return_ids=True
        )
        self._index = bm25s.BM25(k1=k1, b=b)
        self._index.index(tokens, show_progress=False)
        self._vocab: dict[str, int] = self._index.vocab_dict
        # Queries are split exactly as bm25s.tokenize splits the corpus (lower-case, `\w\w+` words, English
        # stop words dropped), without its per-call progress-bar set-up, which costs more than the scoring.
        self._stopwords = frozenset(bm25s.stopwords.STOPWORDS_EN)
        self._dense = self._dense_weights()

    def _dense_weights(self) -> Any:
        """bm25s's per-(word, passage) BM25 weights as a dense `(vocab, num_docs)` array, for small corpora.

        Summing the rows of a query's words gives exactly bm25s's `get_scores_from_ids`; for the few
        hundred passages of a generated world this is several times faster. Large corpora keep the
        sparse index (None here).
        """
        import numpy as np

        try:  # bm25s keeps its weights as a CSC matrix: {"data", "indices", "indptr", "num_docs"}
            scores = self._index.scores
            num_words, num_docs = len(scores["indptr"]) - 1, int(scores["num_docs"])
        except (AttributeError, KeyError, TypeError):  # another bm25s layout: use its own scoring
            return None
        if num_words * num_docs > _DENSE_LIMIT:
            return None
        dense = np.zeros((num_words, num_docs), dtype=np.float32)
        words = np.repeat(np.arange(num_words), np.diff(scores["indptr"]))
        dense[words, scores["indices"]] = scores["data"]
        return dense

    @classmethod
    def from_jsonl(cls, path: str | Path, *, topk: int = 3, limit: int | None = None) -> BM25Retriever:
        """Index a Search-R1-style JSONL corpus: one `{"id": ..., "contents": "Title\\ntext"}` per line.

        Lines with `"title"` and `"text"` instead of `"contents"` are accepted too. The whole corpus is
        indexed in memory: Search-R1's full wiki-18 dump (21M passages) needs a retrieval server instead
        (see `HTTPRetriever`); pass `limit` to index only the first passages.

        Args:
            path: the JSONL file (e.g. Search-R1's `wiki-18.jsonl`, after `gzip -d`).
            topk: passages per search.
            limit: index at most this many passages.
        """
        path = Path(path)
        if not path.is_file():
            hint = ""
            if path.with_name(path.name + ".gz").is_file():
                hint = f" A compressed copy exists: run `gzip -d {path}.gz` first."
            raise FileNotFoundError(
                f"corpus file {str(path)!r} does not exist.{hint} Expected a JSONL file with one "
                '{"id": ..., "contents": "Title\\ntext"} object per line, e.g. Search-R1\'s wiki-18 corpus '
                "(`huggingface-cli download PeterJinGo/wiki-18-corpus --repo-type dataset --local-dir $save_path` "
                "then `gzip -d $save_path/wiki-18.jsonl.gz`)."
            )
        passages: list[Passage] = []
        with path.open(encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if limit is not None and len(passages) >= limit:
                    break
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ValueError(
                        f"{path}:{line_number} is not valid JSON ({error}); expected one object per line."
                    ) from error
                passages.append(
                    _passage_from_record(record, where=f"{path}:{line_number}", default_id=line_number - 1)
                )
        if not passages:
            raise ValueError(f"corpus file {str(path)!r} holds no passages; expected JSONL lines with 'contents'.")
        return cls(passages, topk=topk)

    def __len__(self) -> int:
        return len(self.passages)

    def _query_ids(self, query: str) -> list[int]:
        tokens = _TOKEN.findall(query.lower())
        return [self._vocab[t] for t in tokens if t not in self._stopwords and t in self._vocab]

    def search(self, query: str, topk: int | None = None) -> list[Passage]:
        """The `topk` (default: `self.topk`) highest-scoring passages for `query`, best first.

        A query with no indexed word scores every passage 0 and returns the first passages of the corpus.
        """
        import numpy as np

        k = min(self.topk if topk is None else _check_topk(topk), len(self.passages))
        ids = self._query_ids(query)
        if not ids:
            scores = np.zeros(len(self.passages), dtype=np.float32)  # (num_docs,)
        elif self._dense is not None:
            scores = self._dense[ids].sum(axis=0, dtype=np.float32)
        else:
            scores = self._index.get_scores_from_ids(ids)
        if self._dense is not None:
            order = np.argsort(-scores, kind="stable")[:k]  # ties: corpus order
        else:
            threshold = np.partition(scores, len(scores) - k)[len(scores) - k]
            candidates = np.flatnonzero(scores >= threshold)  # ascending corpus order
            order = candidates[np.argsort(-scores[candidates], kind="stable")][:k]
        return [
            Passage(id=self.passages[i].id, title=self.passages[i].title, text=self.passages[i].text, score=float(s))
            for i, s in zip(order.tolist(), scores[order].tolist(), strict=True)
        ]

    def search_batch(self, queries: Sequence[str], topk: int | None = None) -> list[list[Passage]]:
        """`search` for each query."""
        return [self.search(query, topk) for query in queries]


def _passage_from_record(record: object, *, where: str, default_id: object = "") -> Passage:
    """A `Passage` from a corpus line or a server document (`contents`, or `title` + `text`)."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object with 'contents' (\"Title\\ntext\"), got {record!r:.120}.")
    score = record.get("score")
    passage_id = str(record.get("id", record.get("doc_id", default_id)))
    if isinstance(record.get("contents"), str):
        return Passage.from_contents(record["contents"], id=passage_id, score=score)
    if isinstance(record.get("title"), str) and isinstance(record.get("text"), str):
        return Passage(
            id=passage_id, title=record["title"].strip().strip('"'), text=record["text"].strip(), score=score
        )
    raise ValueError(
        f"{where}: a passage needs a 'contents' string (\"Title\\ntext\", Search-R1's layout) or 'title' and 'text' "
        f"strings; got keys {sorted(record)}."
    )


class RetrievalServerError(ConnectionError):
    """The retrieval server could not be reached or answered something unexpected."""


class HTTPRetriever:
    """Client for Search-R1 / verl-agent retrieval servers (`POST {url}` with JSON, standard library only).

    Request shapes (`request_format`):

    - `"queries"`: Search-R1's `search_r1/search/retrieval_server.py`:
      `{"queries": ["q1", ...], "topk": k, "return_scores": true}`.
    - `"query"`: verl-agent / SDAR's `examples/search/retriever/retrieval_server.py`:
      `{"query": "q", "topk": k, "return_scores": true}`.
    - `"auto"` (default): send the `queries` shape; if the server rejects it as malformed (HTTP 400/422),
      switch to the `query` shape for good.

    Both servers answer `{"result": [[doc, ...], ...]}` (one list per query), where each entry is
    `{"document": doc, "score": s}` with `return_scores`, else the bare `doc`; `doc` holds `"contents"`
    (`"Title\\ntext"`) or `"title"` and `"text"`.

    Args:
        url: the endpoint, e.g. `"http://127.0.0.1:8000/retrieve"` (a bare host URL gets `/retrieve`).
        topk: passages per query.
        timeout: seconds per HTTP request.
        retries: extra attempts after a connection error, timeout or HTTP 5xx (with 1 s, 2 s, ... pauses).
        request_format: `"auto"`, `"queries"` or `"query"` (see above).
    """

    REQUEST_FORMATS = ("auto", "queries", "query")

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000/retrieve",
        *,
        topk: int = 3,
        timeout: float = 30.0,
        retries: int = 2,
        request_format: str = "auto",
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"url must be an http(s) URL such as 'http://127.0.0.1:8000/retrieve', got {url!r}.")
        if request_format not in self.REQUEST_FORMATS:
            raise ValueError(f"request_format must be one of {self.REQUEST_FORMATS}, got {request_format!r}.")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative int, got {retries!r}.")
        if url.rstrip("/").count("/") == 2:  # "http://host:port" without a path
            url = url.rstrip("/") + "/retrieve"
        self.url = url
        self.topk = _check_topk(topk)
        self.timeout = float(timeout)
        self.retries = retries
        self.request_format = request_format

    def __repr__(self) -> str:
        return f"HTTPRetriever(url={self.url!r}, topk={self.topk}, request_format={self.request_format!r})"

    # -- public API ----------------------------------------------------------------------------------
    def search(self, query: str, topk: int | None = None) -> list[Passage]:
        """The server's top `topk` passages for `query`."""
        return self.search_batch([query], topk)[0]

    def search_batch(self, queries: Sequence[str], topk: int | None = None) -> list[list[Passage]]:
        """One request with Search-R1's batch shape, or one request per query with the single shape."""
        k = self.topk if topk is None else _check_topk(topk)
        queries = list(queries)
        if not queries:
            return []
        if self.request_format in ("auto", "queries"):
            status, payload = self._post({"queries": queries, "topk": k, "return_scores": True})
            if status in (400, 422) and self.request_format == "auto":
                self.request_format = "query"
            else:
                self._raise_for_status(status, payload)
                self.request_format = "queries"
                return self._parse(payload, expected=len(queries))
        results: list[list[Passage]] = []
        for query in queries:
            status, payload = self._post({"query": query, "topk": k, "return_scores": True})
            self._raise_for_status(status, payload)
            results.extend(self._parse(payload, expected=1))
        return results

    # -- HTTP ------------------------------------------------------------------------------------------
    def _post(self, body: dict[str, Any]) -> tuple[int, Any]:
        data = json.dumps(body).encode("utf-8")
        last_error: str = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(float(attempt))
            request = urllib.request.Request(
                self.url,
                data=data,
                headers={"Content-Type": "application/json", "Accept": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return response.status, self._decode(response.read())
            except urllib.error.HTTPError as error:
                body_text = error.read().decode("utf-8", errors="replace")
                if error.code >= 500:
                    last_error = f"HTTP {error.code}: {body_text[:300]}"
                    continue
                return error.code, body_text
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
                reason = getattr(error, "reason", error)
                last_error = f"{type(error).__name__}: {reason}"
                continue
        raise RetrievalServerError(
            f"could not get an answer from the retrieval server at {self.url} after {self.retries + 1} attempt(s) "
            f"({last_error}). {_SERVER_HINT}"
        )

    def _decode(self, raw: bytes) -> Any:
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RetrievalServerError(
                f"the retrieval server at {self.url} answered with something that is not JSON ({error}): "
                f"{raw[:200]!r}. Is {self.url} the server's /retrieve endpoint?"
            ) from error

    def _raise_for_status(self, status: int, payload: Any) -> None:
        if status >= 400:
            raise RetrievalServerError(
                f"the retrieval server at {self.url} answered HTTP {status} (request_format={self.request_format!r}): "
                f"{str(payload)[:300]}. Check the URL and request_format ('queries' for Search-R1's server, 'query' "
                "for verl-agent's)."
            )

    def _parse(self, payload: Any, *, expected: int) -> list[list[Passage]]:
        layout = (
            '{"result": [[{"document": {"contents": "Title\\ntext"}, "score": 1.0}, ...], ...]} (one list per query)'
        )
        if not isinstance(payload, dict) or not isinstance(payload.get("result"), list):
            raise RetrievalServerError(
                f"unexpected response from {self.url}: {str(payload)[:200]}; expected {layout}."
            )
        result = payload["result"]
        if expected == 1 and result and all(isinstance(item, dict) for item in result):
            result = [result]  # a flat list of documents for a single query
        if len(result) != expected:
            raise RetrievalServerError(
                f"the retrieval server at {self.url} returned {len(result)} result lists for {expected} queries; "
                f"expected {layout}."
            )
        parsed: list[list[Passage]] = []
        for hits in result:
            if not isinstance(hits, list):
                raise RetrievalServerError(
                    f"unexpected result entry from {self.url}: {hits!r:.200}; expected {layout}."
                )
            passages = []
            for hit in hits:
                document, score = hit, None
                if isinstance(hit, dict) and isinstance(hit.get("document"), dict):
                    document, score = hit["document"], hit.get("score")
                try:
                    passage = _passage_from_record(document, where=f"response from {self.url}")
                except ValueError as error:
                    raise RetrievalServerError(f"{error} Expected {layout}.") from error
                passages.append(
                    Passage(
                        id=passage.id,
                        title=passage.title,
                        text=passage.text,
                        score=float(score) if isinstance(score, (int, float)) else passage.score,
                    )
                )
            parsed.append(passages)
        return parsed
