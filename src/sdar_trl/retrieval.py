"""Skill retrieval: which skills of a `SkillBank` the teacher sees for an episode (`SDARConfig.skill_retrieval`).

SDAR's reference routes skills by rule: the general skills plus the skills of the episode's task type
(`SkillBank.retrieve`, mode `"rules"`, the default). The other modes choose from the whole bank (general skills and
every task type's skills, in bank order, `flat_skills`):

- `"all"`: every skill of the bank (the paper's "Full" skill context).
- `"bm25"`: the `k` skills scoring highest under BM25 (`bm25s`, Lucene variant) for the task description; skills
  sharing no term with it are never chosen.
- `"kmeans"`: skills clustered once by their L2-normalised TF-IDF vectors (scikit-learn's `TfidfVectorizer` and
  `KMeans`, seeded, the optional `retrieval` extra; `max(1, round(len(bank) / k))` clusters, so a cluster holds
  about `k` skills); the task description goes to the nearest centroid and the teacher sees that cluster's skills.
- `"ucb"`: a UCB1 bandit per task type over every skill of the bank (`UCBSkillBandit`); each episode shows the `k`
  skills with the highest upper confidence bound, and the episode's measured teacher help (the gated gap, see
  `UCBSkillBandit`) is credited to each of them.

The query is the episode's task description (`reset` info `task`), fixed for the whole episode, so every step of an
episode shares one teacher prefix (the teacher's prefix cache depends on it). Everything here is pure Python and
numpy (plus `bm25s` for BM25 and scikit-learn for k-means, both imported when used): no torch, no TRL.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .skills import Skill, SkillBank

__all__ = [
    "KMEANS_INSTALL_HINT",
    "SKILL_RETRIEVAL_MODES",
    "SkillRetriever",
    "UCBSkillBandit",
    "bm25_index",
    "bm25_rank",
    "chosen_skill_metrics",
    "flat_skills",
    "kmeans_fit",
    "require_scikit_learn",
    "skill_ids",
    "skill_text",
    "tfidf_vectorizer",
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
#: The command that installs what `skill_retrieval="kmeans"` needs (scikit-learn, the `retrieval` extra).
KMEANS_INSTALL_HINT = 'pip install "sdar-trl[retrieval]"'
#: k-means restarts from k-means++ seeds (seeded by `random_state=0`); the best of them (lowest inertia) is kept.
KMEANS_N_INIT = 10


def require_scikit_learn(mode: str = "kmeans") -> None:
    """Raise `ImportError` naming the fix when scikit-learn (the `retrieval` extra) is not installed."""
    try:
        import sklearn.cluster
        import sklearn.feature_extraction.text  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"skill_retrieval={mode!r} clusters the skills with scikit-learn (TfidfVectorizer, KMeans), which is not "
            f"installed ({error}). Install the retrieval extra: {KMEANS_INSTALL_HINT}, or use skill_retrieval="
            "'rules', 'all', 'bm25' or 'ucb'."
        ) from error


def tfidf_vectorizer() -> Any:
    """An unfitted `sklearn.feature_extraction.text.TfidfVectorizer` that tokenizes with `tokenize`.

    scikit-learn's defaults give the weights: tf the raw count, idf the smoothed `ln((1 + n) / (1 + df)) + 1` (a term
    in every document still counts a little), each row L2-normalised; vocabulary indices follow sorted terms.
    """
    require_scikit_learn()
    from sklearn.feature_extraction.text import TfidfVectorizer

    # `tokenize` lower-cases and drops the stop words itself; token_pattern=None says the pattern is unused.
    return TfidfVectorizer(tokenizer=tokenize, lowercase=False, token_pattern=None)


def kmeans_fit(vectors: Any, n_clusters: int) -> Any:
    """`sklearn.cluster.KMeans` fitted on `vectors` (D, V), L2-normalised rows (dense or sparse).

    Deterministic for a given scikit-learn release: `KMEANS_N_INIT` k-means++ starts seeded by `random_state=0`,
    the lowest inertia kept. Euclidean k-means on unit vectors: `|x − c|² = |x|² + |c|² − 2·x·c`, so the
    assignment follows cosine similarity up to the centroid's norm.
    """
    count = vectors.shape[0]
    if not 1 <= n_clusters <= count:
        raise ValueError(f"n_clusters={n_clusters} must lie in [1, {count}] (the number of vectors).")
    require_scikit_learn()
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=n_clusters, n_init=KMEANS_N_INIT, random_state=0).fit(vectors)


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
        #: "kmeans": each skill's cluster (D,); None in the other modes.
        self.labels: np.ndarray | None = None
        self._tfidf: Any = None
        self._kmeans: Any = None
        if mode == "kmeans":
            require_scikit_learn(mode)  # also for an empty bank: the setting needs the extra whatever the bank
        if mode == "kmeans" and self.skills:
            self.labels = np.zeros(len(self.skills), dtype=np.int64)  # no term anywhere: one cluster of everything
            if any(documents):
                self._tfidf = tfidf_vectorizer()
                vectors = self._tfidf.fit_transform([skill_text(skill) for skill in self.skills])  # (D, V) sparse
                # Identical vectors (e.g. duplicated skills) cannot seed separate clusters: cap the count by them.
                distinct = len(np.unique(vectors.toarray(), axis=0))
                n_clusters = min(distinct, max(1, round(len(self.skills) / k)))
                self._kmeans = kmeans_fit(vectors, n_clusters)
                self.labels = np.asarray(self._kmeans.labels_, dtype=np.int64)

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
            return [int(i) for i in np.flatnonzero(self.labels == self.cluster_of(task))]
        assert self.bandit is not None  # internal invariant: mode "ucb" with a non-empty bank
        return self.bandit.select(task_type or "")

    def cluster_of(self, task: str) -> int:
        """`"kmeans"`: the cluster a task description goes to, the nearest centroid (Euclidean, `KMeans.predict`).

        A description sharing no term with the bank has an all-zero vector, equally unlike every skill: it goes to
        the cluster of the bank's first skill rather than to whichever centroid happens to be shortest.
        """
        assert self.labels is not None  # internal invariant: mode "kmeans" with a non-empty bank
        if self._kmeans is None or not any(token in self._tfidf.vocabulary_ for token in tokenize(task)):
            return int(self.labels[0])
        query = self._tfidf.transform([task])  # (1, V) sparse, L2-normalised
        return int(self._kmeans.predict(query)[0])

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
