"""Search-QA (the Search-R1 setting): a generated offline benchmark and adapters to the real one.

- `SearchQAMiniEnv` (`make_env("searchqa-mini")`): questions about generated fictional entities,
  answered by searching a generated wiki-style corpus with BM25; an expert policy; skills.
- `SearchQAEnv` (`make_env("searchqa", questions=..., retriever=...)`): Search-R1's own questions
  (`load_search_r1_questions`) with a Search-R1 retrieval server (`HTTPRetriever`) or an in-process
  BM25 index over a JSONL corpus (`BM25Retriever.from_jsonl`).
- `normalize_answer` / `exact_match`: Search-R1's reward; `route_search_question`: the reference's
  skill routing by data source and question wording.

BM25 needs the `bm25s` package (`pip install 'sdar-trl[search]'`). See docs/environments/searchqa-mini.md.
"""

from .adapters import SearchQAEnv, SearchQuestion, load_search_r1_questions, question_from_row
from .loop import INVALID_ACTION_MESSAGE, parse_search_action
from .mini import SearchQAMiniEnv
from .normalize import exact_match, normalize_answer
from .questions import TASK_TYPES, parse_question, route_search_question
from .retrieval import BM25Retriever, HTTPRetriever, Passage, RetrievalServerError, Retriever, render_information

__all__ = [
    "INVALID_ACTION_MESSAGE",
    "TASK_TYPES",
    "BM25Retriever",
    "HTTPRetriever",
    "Passage",
    "RetrievalServerError",
    "Retriever",
    "SearchQAEnv",
    "SearchQAMiniEnv",
    "SearchQuestion",
    "exact_match",
    "load_search_r1_questions",
    "normalize_answer",
    "parse_question",
    "parse_search_action",
    "question_from_row",
    "render_information",
    "route_search_question",
]
