"""BM25 product search for `webshop-mini` (WebShop uses Lucene BM25 through pyserini; we use `bm25s`)."""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence

__all__ = ["SEARCH_RETURN_N", "ProductSearchEngine", "tokenize_for_search"]

SEARCH_RETURN_N = 50
"""Results kept per query (WebShop shows the top 50, 10 per page)."""

# Lucene's classic English stop set: the analyzer pyserini's default index uses drops these words.
_STOP_WORDS = frozenset(
    (
        *("a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not"),
        *("of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was"),
        *("will", "with"),
    )
)
_TOKEN_RE = re.compile(r"[a-z0-9]+")
_CACHE_SIZE = 4096
_MAX_CACHED_QUERY_CHARS = 500


def tokenize_for_search(text: str) -> list[str]:
    """Lower-case alphanumeric tokens of `text` without stop words."""
    return [token for token in _TOKEN_RE.findall(text.lower()) if token not in _STOP_WORDS]


def _bm25s():
    try:
        import bm25s
    except ImportError as error:  # pragma: no cover - depends on the installation
        raise ImportError(
            "webshop-mini's search needs `bm25s` (a numpy-only BM25 library); install it with `pip install bm25s`."
        ) from error
    return bm25s


class ProductSearchEngine:
    """BM25 (Lucene variant, k1=0.9, b=0.4 as in pyserini's defaults) over a fixed list of documents.

    `search(query)` returns document indices, best first, at most `SEARCH_RETURN_N`, only documents
    sharing at least one term with the query; ties keep document order, so results are deterministic.
    """

    def __init__(self, documents: Sequence[str]) -> None:
        bm25s = _bm25s()
        self._num_docs = len(documents)
        self._retriever = bm25s.BM25(k1=0.9, b=0.4)
        self._retriever.index([tokenize_for_search(doc) or [""] for doc in documents], show_progress=False)
        self._vocab = self._retriever.vocab_dict
        self._cache: OrderedDict[str, tuple[int, ...]] = OrderedDict()

    def search(self, query: str) -> tuple[int, ...]:
        """Indices of the top documents for `query` (empty when no query term is in the index)."""
        cached = self._cache.get(query)
        if cached is not None:
            self._cache.move_to_end(query)
            return cached
        import numpy as np

        tokens = [token for token in tokenize_for_search(query) if token in self._vocab]
        if not tokens:
            result: tuple[int, ...] = ()
        else:
            scores = np.asarray(self._retriever.get_scores(tokens), dtype=np.float64)
            order = np.argsort(-scores, kind="stable")[:SEARCH_RETURN_N]
            result = tuple(int(i) for i in order if scores[i] > 0.0)
        if len(query) <= _MAX_CACHED_QUERY_CHARS:
            self._cache[query] = result
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return result
