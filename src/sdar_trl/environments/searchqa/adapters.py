"""The real Search-QA benchmark: Search-R1's questions with a Search-R1 retriever (server or local BM25).

```python
from sdar_trl.environments.searchqa import HTTPRetriever, SearchQAEnv, load_search_r1_questions

questions = load_search_r1_questions("data/nq_hotpotqa_train/test.parquet")
env = SearchQAEnv(questions, HTTPRetriever("http://127.0.0.1:8000/retrieve"))
obs, info = env.reset(seed=0)      # obs: the question; info["task_type"] from route_search_question
```

Nothing is downloaded here. Search-R1's data: `scripts/nq_hotpotqa/data_process.sh` in
https://github.com/PeterGriffinJin/Search-R1 writes `train.parquet` / `test.parquet` (NQ + HotpotQA
train; NQ, TriviaQA, PopQA, HotpotQA, 2Wiki, MuSiQue, Bamboogle test); the retrieval server and corpus
are described in `HTTPRetriever` and `BM25Retriever.from_jsonl`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .loop import SearchLoop
from .questions import route_search_question
from .retrieval import BM25Retriever, HTTPRetriever, Passage, Retriever

__all__ = ["SearchQAEnv", "SearchQuestion", "load_search_r1_questions", "question_from_row"]

_DATA_HINT = (
    "Search-R1's question files are built by `bash scripts/nq_hotpotqa/data_process.sh` (or "
    "`python scripts/data_process/qa_search_test_merge.py --local_dir data/nq_hotpotqa --data_sources "
    "nq,triviaqa,popqa,hotpotqa,2wikimultihopqa,musique,bamboogle`) in a clone of "
    "https://github.com/PeterGriffinJin/Search-R1; they write train.parquet and test.parquet. Any parquet or JSONL "
    "file with 'question' and 'golden_answers' columns (FlashRAG's layout) works too."
)


@dataclass(frozen=True)
class SearchQuestion:
    """One question: the text, its gold answers (aliases), the dataset it comes from, and its task type."""

    question: str
    golden_answers: tuple[str, ...]
    data_source: str = "unknown"
    task_type: str = "other"
    id: str = ""

    @classmethod
    def create(
        cls,
        question: str,
        golden_answers: str | Sequence[str],
        data_source: str = "unknown",
        id: str = "",
    ) -> SearchQuestion:
        """A question whose `task_type` is `route_search_question(data_source, question)`."""
        answers = (golden_answers,) if isinstance(golden_answers, str) else tuple(str(a) for a in golden_answers)
        return cls(question, answers, data_source, route_search_question(data_source, question), id)


def _as_answers(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, Mapping):  # reward_model.ground_truth = {"target": [...]}
        value = value.get("target")
    if isinstance(value, str):
        return (value,)
    if value is not None and not isinstance(value, (bytes, Mapping)):
        try:
            answers = tuple(str(a) for a in value)
        except TypeError:
            answers = ()
        if answers:
            return answers
    raise ValueError(
        f"{where}: no gold answers found; expected 'golden_answers' (a list of strings), "
        f"'reward_model.ground_truth.target' (Search-R1's processed parquet) or 'env_kwargs.ground_truth' "
        f"(verl-agent's), got {value!r:.120}."
    )


def _question_text(row: Mapping[str, Any]) -> str | None:
    for source in (row, row.get("env_kwargs"), row.get("extra_info")):
        if isinstance(source, Mapping) and isinstance(source.get("question"), str) and source["question"].strip():
            return source["question"].strip()
    prompt = row.get("prompt")
    if isinstance(prompt, Sequence) and not isinstance(prompt, str):  # Search-R1: "... Question: <q>\n"
        for message in prompt:
            content = message.get("content") if isinstance(message, Mapping) else None
            if isinstance(content, str) and "Question:" in content:
                return content.rsplit("Question:", 1)[1].strip()
    return None


def question_from_row(row: Mapping[str, Any], *, index: int = 0, default_source: str = "unknown") -> SearchQuestion:
    """A `SearchQuestion` from one row in any of the Search-R1 layouts.

    Accepted: FlashRAG / raw Search-R1 (`question`, `golden_answers`, `data_source`), Search-R1's
    processed parquet (`prompt` with "Question: ...", `reward_model.ground_truth.target`), and verl-agent's
    (`env_kwargs` with `question`, `ground_truth`, `data_source`).
    """
    where = f"row {index}"
    question = _question_text(row)
    if question is None:
        raise ValueError(
            f"{where}: no question found; expected a 'question' column (or 'env_kwargs.question', or a 'prompt' "
            f"containing 'Question: ...'); got columns {sorted(row)}."
        )
    env_kwargs = row.get("env_kwargs") if isinstance(row.get("env_kwargs"), Mapping) else {}
    reward_model = row.get("reward_model") if isinstance(row.get("reward_model"), Mapping) else {}
    for candidate in (row.get("golden_answers"), reward_model.get("ground_truth"), env_kwargs.get("ground_truth")):
        if candidate is not None:
            answers = _as_answers(candidate, where)
            break
    else:
        answers = _as_answers(None, where)
    data_source = row.get("data_source") or env_kwargs.get("data_source") or default_source
    extra = row.get("extra_info") if isinstance(row.get("extra_info"), Mapping) else {}
    identifier = row.get("id", extra.get("index", index))
    return SearchQuestion.create(question, answers, str(data_source), id=str(identifier))


def load_search_r1_questions(
    path: str | Path, *, data_source: str | None = None, limit: int | None = None
) -> list[SearchQuestion]:
    """Read a Search-R1 question file (parquet, or JSON / JSONL) with `datasets`.

    Args:
        path: e.g. `data/nq_hotpotqa_train/test.parquet` from Search-R1's data scripts, or FlashRAG's
            `{"id", "question", "golden_answers"}` JSONL.
        data_source: the label for rows without a `data_source` column (e.g. "nq"); it drives routing.
        limit: read at most this many rows.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"question file {str(path)!r} does not exist. {_DATA_HINT}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        builder = "parquet"
    elif suffix in (".jsonl", ".json"):
        builder = "json"
    else:
        raise ValueError(
            f"question file {str(path)!r} must be .parquet, .jsonl or .json, got {suffix!r}. {_DATA_HINT}"
        )
    import datasets

    dataset = datasets.load_dataset(builder, data_files=str(path), split="train")
    rows = dataset if limit is None else dataset.select(range(min(limit, len(dataset))))
    questions = [
        question_from_row(row, index=i, default_source=data_source or "unknown") for i, row in enumerate(rows)
    ]
    if not questions:
        raise ValueError(f"question file {str(path)!r} holds no rows. {_DATA_HINT}")
    return questions


def _resolve_retriever(retriever: Retriever | str | Path, topk: int) -> Retriever:
    if isinstance(retriever, str) and retriever.startswith(("http://", "https://")):
        return HTTPRetriever(retriever, topk=topk)
    if isinstance(retriever, (str, Path)):
        return BM25Retriever.from_jsonl(retriever, topk=topk)
    if not callable(getattr(retriever, "search", None)):
        raise TypeError(
            f"retriever must be an HTTPRetriever / BM25Retriever (anything with search(query, topk)), a retrieval "
            f"server URL, or a JSONL corpus path; got {type(retriever).__name__}."
        )
    return retriever


class SearchQAEnv(SearchLoop):
    """Search-R1's loop (`<search>` / `<answer>`, 4 turns, exact-match reward) over real questions.

    Args:
        questions: `SearchQuestion`s (see `load_search_r1_questions`), or the path of a question file.
        retriever: an `HTTPRetriever`, a `BM25Retriever`, any object with `search(query, topk)`, a server
            URL (`"http://127.0.0.1:8000/retrieve"`) or a JSONL corpus path.
        topk: passages per search (Search-R1: 3).
        max_episode_steps: turns per episode (Search-R1 / SDAR: 4).
        seed: seeds `reset(seed=None)`'s random choice of question.

    `reset(seed=i)` plays question `i % len(questions)`; `reset(options=row)` plays the dataset row itself
    when it holds a question and gold answers (any layout `question_from_row` reads), else its `"seed"`.
    A retrieval server that is down raises `RetrievalServerError` (after the retriever's retries) from
    `step`, naming the URL and how to start the server.
    """

    action_format = "search_answer"

    def __init__(
        self,
        questions: Sequence[SearchQuestion] | str | Path,
        retriever: Retriever | str | Path,
        *,
        topk: int = 3,
        max_episode_steps: int = 4,
        seed: int = 0,
    ) -> None:
        super().__init__(topk=topk, max_episode_steps=max_episode_steps)
        if isinstance(questions, (str, Path)):
            questions = load_search_r1_questions(questions)
        self.questions: list[SearchQuestion] = list(questions)
        if not self.questions or not all(isinstance(q, SearchQuestion) for q in self.questions):
            raise ValueError(
                "questions must be a non-empty sequence of SearchQuestion (see load_search_r1_questions) or a path; "
                f"got {len(self.questions)} item(s)."
            )
        self.retriever = _resolve_retriever(retriever, topk)
        self.num_tasks: int | None = len(self.questions)
        self._rng = random.Random(seed)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Start on question `seed` (modulo the number of questions), or on the question in `options`."""
        task: SearchQuestion | None = None
        if isinstance(options, Mapping) and seed is None:
            try:
                task = question_from_row(options)
            except ValueError:
                task = None
            option_seed = options.get("seed")
            if task is None and isinstance(option_seed, int) and not isinstance(option_seed, bool):
                seed = option_seed
        if task is None:
            if seed is None:
                seed = self._rng.randrange(len(self.questions))
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise ValueError(f"seed must be a non-negative int (the question index), got {seed!r}.")
            task = self.questions[seed % len(self.questions)]
        return self._begin(
            task.question,
            task.golden_answers,
            {"task_type": task.task_type, "data_source": task.data_source, "task_id": task.id},
        )

    def _retrieve(self, query: str) -> list[Passage]:
        return self.retriever.search(query, self.topk)

    def privileged_facts(self) -> str:
        """No oracle facts are known for real questions (the gold answer is not a hint): always `""`."""
        return ""
