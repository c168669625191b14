"""Search-R1's answer normalisation and exact-match reward.

The rule (Search-R1 `verl/utils/reward_score/qa_em.py`, the same as the SQuAD evaluation script):
lower-case, drop ASCII punctuation, drop the articles "a", "an", "the" as whole words, collapse
whitespace. A prediction scores 1.0 when its normal form equals the normal form of any gold answer.

>>> normalize_answer("The  Eiffel-Tower!")
'eiffeltower'
>>> exact_match("48200", ["48,200"])
1.0
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

__all__ = ["exact_match", "normalize_answer"]

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Search-R1's normal form of an answer: lower-case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, golden_answers: str | Iterable[str]) -> float:
    """1.0 if `prediction` equals any of `golden_answers` after `normalize_answer`, else 0.0.

    Args:
        prediction: the agent's answer (the text between `<answer>` and `</answer>`).
        golden_answers: one gold answer or several aliases.
    """
    if isinstance(golden_answers, str):
        golden_answers = [golden_answers]
    predicted = normalize_answer(prediction)
    return 1.0 if any(normalize_answer(gold) == predicted for gold in golden_answers) else 0.0
