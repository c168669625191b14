"""Skill retrieval: which skills of a `SkillBank` the teacher sees for an episode (`SDARConfig.skill_retrieval`).

SDAR's reference routes skills by rule: the general skills plus the skills of the episode's task type
(`SkillBank.retrieve`, mode `"rules"`, the default). The other modes choose from the whole bank (general skills and
every task type's skills, in bank order, `flat_skills`):

- `"all"`: every skill of the bank (the paper's "Full" skill context).
- `"bm25"`: the `k` skills scoring highest under BM25 (`bm25s`, Lucene variant) for the task description; skills
  sharing no term with it are never chosen.
- `"kmeans"`: skills clustered once by their TF-IDF vectors (spherical k-means, deterministic farthest-point start,
  `max(1, round(len(bank) / k))` clusters, so a cluster holds about `k` skills); the task description goes to the
  nearest centroid (cosine) and the teacher sees that cluster's skills.
- `"ucb"`: a UCB1 bandit per task type over every skill of the bank (`UCBSkillBandit`); each episode shows the `k`
  skills with the highest upper confidence bound, and the episode's measured teacher help (the gated gap, see
  `UCBSkillBandit`) is credited to each of them.

The query is the episode's task description (`reset` info `task`), fixed for the whole episode, so every step of an
episode shares one teacher prefix (the teacher's prefix cache depends on it). Everything here is pure Python and
numpy (plus `bm25s` for BM25): no torch, no TRL.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .skills import Skill, SkillBank

__all__ = [
    "SKILL_RETRIEVAL_MODES",
    "SkillRetriever",
    "UCBSkillBandit",
    "bm25_index",
    "bm25_rank",
    "chosen_skill_metrics",
    "flat_skills",
    "kmeans_cluster",
    "skill_ids",
    "tfidf_matrix",
    "tokenize",
]

#: `SDARConfig.skill_retrieval` values.
SKILL_RETRIEVAL_MODES: tuple[str, ...] = ("rules", "all", "bm25", "kmeans", "ucb")

# Lucene's classic English stop words (the same set webshop-mini's BM25 search drops): they carry no topic.
_STOP_WORDS = frozenset(
    (
        *("a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not"),
        *("of", "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was"),
        *("will", "with"),
    )
)
_TOKEN_RE = re.compile(r"[a-z0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-case alphanumeric tokens of `text` without English stop words."""
    return [token for token in _TOKEN_RE.findall(text.lower()) if token not in _STOP_WORDS]


def skill_text(skill: Skill) -> str:
    """The text a skill is retrieved by: its title, principle and when to apply it."""
    return f"{skill.title} {skill.principle} {skill.when_to_apply}"


def flat_skills(bank: SkillBank) -> list[Skill]:
    """Every skill of `bank` in bank order: the general skills, then each task type's skills (in the bank's order)."""
    return [*bank.general, *(skill for skills in bank.task_specific.values() for skill in skills)]


def skill_ids(bank: SkillBank) -> list[str]:
    """Stable ids of `flat_skills(bank)`: `general.<i>` and `<task_type>.<i>` (i counts from 0 within its list)."""
    return [
        *(f"general.{i}" for i in range(len(bank.general))),
        *(f"{task_type}.{i}" for task_type, skills in bank.task_specific.items() for i in range(len(skills))),
    ]


# ---------------------------------------------------------------------------------------------------- BM25
def bm25_index(documents: Sequence[Sequence[str]]) -> Any:
    """A `bm25s.BM25` index (Lucene variant, its defaults k1=1.5, b=0.75) over tokenized `documents`."""
    import bm25s

    index = bm25s.BM25()
    # bm25s cannot index an empty document: a placeholder token no query holds keeps the indices aligned.
    index.index([list(doc) or [""] for doc in documents], show_progress=False)
    return index


def bm25_rank(index: Any, query: Sequence[str], k: int) -> list[int]:
    """Indices of the (at most) `k` documents of a `bm25_index` scoring highest for the `query` tokens, best first.

    Only documents with a positive score (sharing a term with the query) are returned; ties keep document order, so
    the ranking is deterministic.
    """
    tokens = [token for token in query if token in index.vocab_dict]
    if not tokens:
        return []
    scores = np.asarray(index.get_scores(tokens), dtype=np.float64)  # (D,)
    order = np.argsort(-scores, kind="stable")
    return [int(i) for i in order[:k] if scores[i] > 0.0]


# ---------------------------------------------------------------------------------------------------- TF-IDF, k-means
def tfidf_matrix(documents: Sequence[Sequence[str]]) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    """TF-IDF vectors of tokenized `documents`: `(vocabulary, idf, rows)`, each row L2-normalised.

    tf is the raw count, idf the smoothed `ln((1 + n) / (1 + df)) + 1` (a term in every document still counts a
    little); vocabulary indices follow sorted terms. An all-zero row (a document without tokens) stays zero.
    """
    vocabulary = {term: i for i, term in enumerate(sorted({term for doc in documents for term in doc}))}
    counts = np.zeros((len(documents), len(vocabulary)), dtype=np.float64)  # (D, V)
    for row, doc in enumerate(documents):
        for term in doc:
            counts[row, vocabulary[term]] += 1.0
    df = (counts > 0).sum(axis=0)  # (V,)
    idf = np.log((1.0 + len(documents)) / (1.0 + df)) + 1.0  # (V,)
    return vocabulary, idf, _normalise(counts * idf)  # (D, V)


def tfidf_vector(tokens: Iterable[str], vocabulary: Mapping[str, int], idf: np.ndarray) -> np.ndarray:
    """The L2-normalised TF-IDF vector (V,) of `tokens` in a fitted vocabulary (unknown terms are dropped)."""
    vector = np.zeros(len(vocabulary), dtype=np.float64)  # (V,)
    for token in tokens:
        if token in vocabulary:
            vector[vocabulary[token]] += 1.0
    return _normalise((vector * idf)[None, :])[0]


def _normalise(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)  # (D, 1)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def kmeans_cluster(vectors: np.ndarray, n_clusters: int, *, max_iter: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means of unit-norm `vectors` (D, V): `(labels (D,), centroids (n_clusters, V))`.

    Deterministic without a seed: the first centroid is vector 0, each next one the vector least similar (cosine) to
    its closest chosen centroid (ties: lowest index). Lloyd iterations then assign each vector to its most similar
    centroid (ties: lowest cluster) and move each centroid to its members' normalised mean, until no label changes.
    A cluster left empty keeps its centroid.
    """
    count = vectors.shape[0]
    if not 1 <= n_clusters <= count:
        raise ValueError(f"n_clusters={n_clusters} must lie in [1, {count}] (the number of vectors).")
    chosen = [0]
    for _ in range(1, n_clusters):
        closest = (vectors @ vectors[chosen].T).max(axis=1)  # (D,) similarity to the nearest chosen centroid
        closest[chosen] = np.inf  # a chosen vector is never picked twice
        chosen.append(int(np.argmin(closest)))
    centroids = vectors[chosen].copy()  # (K, V)
    labels = np.full(count, -1)
    for _ in range(max_iter):
        new_labels = np.argmax(vectors @ centroids.T, axis=1)  # (D,)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
        for cluster in range(n_clusters):
            members = vectors[labels == cluster]  # (m, V)
            if len(members):
                centroids[cluster] = _normalise(members.sum(axis=0, keepdims=True))[0]
    return labels, centroids


# ---------------------------------------------------------------------------------------------------- UCB
class UCBSkillBandit:
    """UCB1 over `num_arms` skills, one independent bandit per task type, choosing `k` skills per episode.

    Each episode of task type t is one round of t's bandit. Its index of arm a is
    `mean_a + c · sqrt(ln N_t / n_a)` with `N_t` the rounds played for t, `n_a` the rounds that showed skill a and
    `mean_a` their average reward; arms never shown come first (bank order), then the highest indices (ties: bank
    order). The reward of an episode is credited to every skill it showed.

    The reward (computed by the trainer, `sdar_trl.loss.gated_gap_sums`) is the episode's *gated gap*: the token mean
    of `sigmoid(β·Δ)·Δ`, `Δ = lT − lS`, over the episode's completion tokens — how much the skills raise the teacher's
    log-probability of the tokens the SDAR gate lets through. The success lift is not used: in SDAR only the teacher
    sees the skills, so an episode's success does not depend on the skills chosen for it, and a lift would need extra
    rollouts with and without each skill. The gap is measured on every episode at no extra rollout cost. Its scale is
    that of Δ (about 0.01–0.1 nats per token), so `c` must be on that scale too.
    """

    def __init__(self, num_arms: int, *, k: int, c: float) -> None:
        if num_arms < 1:
            raise ValueError(f"a UCB skill bandit needs at least one skill, got num_arms={num_arms}.")
        self.num_arms, self.k, self.c = num_arms, k, c
        self.counts: dict[str, list[int]] = {}
        self.sums: dict[str, list[float]] = {}
        self.rounds: dict[str, int] = {}

    def indices(self, task_type: str) -> list[float]:
        """The UCB index of every arm for `task_type` (`inf` for an arm never shown)."""
        counts = self.counts.get(task_type, [0] * self.num_arms)
        sums = self.sums.get(task_type, [0.0] * self.num_arms)
        log_rounds = math.log(max(self.rounds.get(task_type, 0), 1))
        return [
            sums[a] / counts[a] + self.c * math.sqrt(log_rounds / counts[a]) if counts[a] else math.inf
            for a in range(self.num_arms)
        ]

    def select(self, task_type: str) -> list[int]:
        """The `k` arms with the highest index for `task_type`, in bank order (ties: bank order)."""
        scores = self.indices(task_type)
        best = sorted(range(self.num_arms), key=lambda a: (-scores[a], a))[: self.k]
        return sorted(best)

    def update(self, task_type: str, arms: Sequence[int], reward: float) -> None:
        """One round of `task_type`: `arms` were shown and the episode's reward was `reward`."""
        if not math.isfinite(reward):
            return  # a non-finite gap (an overflowed forward) must not poison the means for the rest of the run
        counts = self.counts.setdefault(task_type, [0] * self.num_arms)
        sums = self.sums.setdefault(task_type, [0.0] * self.num_arms)
        self.rounds[task_type] = self.rounds.get(task_type, 0) + 1
        for arm in arms:
            counts[arm] += 1
            sums[arm] += reward

    def state_dict(self) -> dict[str, Any]:
        """Plain lists and numbers (loadable by `torch.load(weights_only=True)`)."""
        return {
            "num_arms": self.num_arms,
            "counts": {t: list(v) for t, v in self.counts.items()},
            "sums": {t: list(v) for t, v in self.sums.items()},
            "rounds": dict(self.rounds),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("num_arms") != self.num_arms:
            raise ValueError(
                f"the saved UCB skill bandit has {state.get('num_arms')} skills, this run's skill bank has "
                f"{self.num_arms}. Resume with the skill bank the checkpoint was trained with."
            )
        self.counts = {str(t): [int(n) for n in v] for t, v in state["counts"].items()}
        self.sums = {str(t): [float(s) for s in v] for t, v in state["sums"].items()}
        self.rounds = {str(t): int(n) for t, n in state["rounds"].items()}


# ---------------------------------------------------------------------------------------------------- the retriever
class SkillRetriever:
    """The skills of `bank` shown for an episode under `mode` (one of `SKILL_RETRIEVAL_MODES`; see the module doc).

    `select(task_type, task)` returns indices into `flat_skills(bank)` (`self.skills`), in bank order. BM25's index
    and the k-means clusters are built once, in the constructor. Selection is deterministic given the bandit state
    (which changes only after a batch's teacher forward), so the student prefix (Skill-GRPO) and the teacher see the
    same skills within a batch.
    """

    def __init__(self, bank: SkillBank, mode: str = "rules", *, k: int = 8, ucb_c: float = 0.1) -> None:
        if mode not in SKILL_RETRIEVAL_MODES:
            raise ValueError(
                f"skill_retrieval={mode!r} is not supported; expected one of {list(SKILL_RETRIEVAL_MODES)}."
            )
        if k < 1:
            raise ValueError(f"skill_retrieval_k={k} must be >= 1 (the number of skills shown per episode).")
        self.bank, self.mode, self.k = bank, mode, k
        self.skills = flat_skills(bank)
        self.ids = skill_ids(bank)
        documents = [tokenize(skill_text(skill)) for skill in self.skills]
        # "rules": the general skills, then the index range of each task type's skills in `self.skills`.
        self._type_ranges: dict[str, range] = {}
        start = len(bank.general)
        for task_type, skills in bank.task_specific.items():
            self._type_ranges[task_type] = range(start, start + len(skills))
            start += len(skills)
        self._bm25 = bm25_index(documents) if mode == "bm25" and self.skills else None
        self.bandit = UCBSkillBandit(len(self.skills), k=k, c=ucb_c) if mode == "ucb" and self.skills else None
        self.labels: np.ndarray | None = None
        if mode == "kmeans" and self.skills:
            self._vocabulary, self._idf, vectors = tfidf_matrix(documents)
            n_clusters = min(len(self.skills), max(1, round(len(self.skills) / k)))
            self.labels, self._centroids = kmeans_cluster(vectors, n_clusters)

    def select(self, task_type: str, task: str) -> list[int]:
        """Indices (into `self.skills`, bank order) of the skills shown for a `task_type` episode on `task`."""
        if not self.skills:
            return []
        if self.mode == "rules":
            return [*range(len(self.bank.general)), *self._type_ranges.get(task_type or "", ())]
        if self.mode == "all":
            return list(range(len(self.skills)))
        if self.mode == "bm25":
            return sorted(bm25_rank(self._bm25, tokenize(task), self.k))
        if self.mode == "kmeans":
            assert self.labels is not None  # internal invariant: built in __init__ for a non-empty bank
            query = tfidf_vector(tokenize(task), self._vocabulary, self._idf)  # (V,)
            cluster = int(np.argmax(self._centroids @ query))  # an all-zero query (no known term): cluster 0
            return [int(i) for i in np.flatnonzero(self.labels == cluster)]
        assert self.bandit is not None  # internal invariant: mode "ucb" with a non-empty bank
        return self.bandit.select(task_type or "")

    def chosen(self, task_type: str, task: str) -> list[Skill]:
        """The skills shown for a `task_type` episode on `task` (what the teacher's context renders)."""
        return [self.skills[i] for i in self.select(task_type, task)]

    def state_dict(self) -> dict[str, Any] | None:
        """The state a resumed run needs (the bandit's), or None when the mode keeps none."""
        return None if self.bandit is None else {"mode": self.mode, "bandit": self.bandit.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.bandit is None:
            return
        if state.get("mode") != self.mode or "bandit" not in state:
            raise ValueError(
                f"the checkpoint's skill retrieval state is for skill_retrieval={state.get('mode')!r}, this run uses "
                f"{self.mode!r}. Resume with skill_retrieval={state.get('mode')!r}, or start a new run from its "
                "weights."
            )
        self.bandit.load_state_dict(state["bandit"])


def chosen_skill_metrics(ids: Sequence[str], choices: Sequence[Sequence[int]]) -> dict[str, float]:
    """`skills/*` metrics of one batch: the share of episodes showing each skill, and skills per episode.

    Keys: `skills/chosen/<skill id>` for every skill shown at least once, `skills/count` (mean skills per episode) and
    `skills/empty` (share of episodes shown no skill: their teacher equals the student). Empty without episodes.
    """
    if not choices:
        return {}
    shown = [0] * len(ids)
    for choice in choices:
        for index in choice:
            shown[index] += 1
    metrics = {f"skills/chosen/{ids[i]}": n / len(choices) for i, n in enumerate(shown) if n}
    metrics["skills/count"] = sum(len(choice) for choice in choices) / len(choices)
    metrics["skills/empty"] = sum(1 for choice in choices if not choice) / len(choices)
    return metrics
