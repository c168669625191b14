"""The searchqa-mini expert: a policy that reads only what the agent's step prompt shows.

Rule, applied at every step to the question and the search results visible in the prompt:

1. Parse the question into a plan (`questions.parse_question`): a chain of relations starting at a
   named entity ("the founder of X" → who founded X, then where that person was born), or two
   look-ups to compare.
2. Walk the plan. For the entity at hand, look through the visible `<information>` blocks (newest
   first) for a document whose title is exactly that entity's name and whose text states the needed
   relation (a fixed sentence pattern per relation, `schema.RELATIONS`). If found, its value is the
   next entity of the chain.
3. At the first fact not found yet, search `"<entity name> <relation keyword>"`
   ("Quellin Holdings founded", "Varo Quellin born"). If that exact query was already issued, search
   the bare name instead.
4. When every fact is known, answer: the chain's last value, or the compared entity that wins.
   With one turn left, answer with the best value known so far.

The `<think>` text says which document gave which fact and what is searched next, in words derived
from the visible text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .questions import ChainPlan, ComparePlan, parse_question
from .schema import RELATIONS, extract_value, numeric_value

__all__ = [
    "ExpertDecision",
    "compare_verdict",
    "decide",
    "fact_statement",
    "find_fact",
    "parse_information",
    "search_query",
]

_DOC_START = re.compile(r"(?:^|\n)Doc (\d+)\(Title: ")
_COMPARISON_WORDS = {"year": "earlier", "number": "larger", "length": "longer"}


@dataclass(frozen=True)
class ExpertDecision:
    """The expert's next move: `kind` ("search" or "answer"), its `content`, and the `think` text."""

    kind: str
    content: str
    think: str

    @property
    def action(self) -> str:
        return f"<{self.kind}>{self.content}</{self.kind}>"

    @property
    def response(self) -> str:
        return f"<think>{self.think}</think>{self.action}"


def _title_end(chunk: str) -> int:
    """The index of the ")" closing "Doc k(Title: ..." (titles may hold balanced parentheses); -1 if none."""
    position, depth = 0, 0
    while True:
        close = chunk.find(")", position)
        if close < 0:
            return -1
        depth += chunk.count("(", position, close)
        if depth == 0:
            return close
        depth -= 1
        position = close + 1


def parse_information(observation: str) -> list[tuple[int, str, str]]:
    """The documents of an `<information>` observation as `(number, title, text)`; [] for any other text."""
    if not observation.startswith("<information>"):
        return []
    body = observation.removeprefix("<information>").removesuffix("</information>")
    starts = list(_DOC_START.finditer(body))
    documents = []
    for i, start in enumerate(starts):
        chunk = body[start.end() : starts[i + 1].start() if i + 1 < len(starts) else len(body)]
        end = _title_end(chunk)
        if end >= 0:
            documents.append((int(start.group(1)), chunk[:end], chunk[end + 1 :].strip()))
    return documents


@dataclass(frozen=True)
class _Found:
    value: str
    doc: int
    observation: int  # index into the visible observations (the last one is the current observation)


def find_fact(observations: Sequence[str], subject: str, relation: str) -> _Found | None:
    """The value of `relation` for `subject` stated by a document titled `subject`, newest observation first."""
    for index in range(len(observations) - 1, -1, -1):
        for number, title, text in parse_information(observations[index]):
            if title == subject:
                value = extract_value(relation, text)
                if value is not None:
                    return _Found(value, number, index)
    return None


def search_query(subject: str, relation: str) -> str:
    """The expert's query for `relation` of `subject`: the name followed by the relation's keyword."""
    return f"{subject} {RELATIONS[relation].keyword}"


def _phrase(relation: str, subject: str) -> str:
    return RELATIONS[relation].phrase.format(S=subject)


def fact_statement(subject: str, relation: str, value: str) -> str:
    """One fact as a clause: `"the year Drek was founded is 1086"` (the gold-facts line and its citations)."""
    return f"{_phrase(relation, subject)} is {value}"


def compare_verdict(plan: ComparePlan, first_value: str, second_value: str) -> tuple[str, str]:
    """The winner of a comparison given both entities' values, and the sentence that concludes it."""
    first_wins = (numeric_value(first_value) < numeric_value(second_value)) == (plan.best == "min")
    winner, loser = (plan.first, plan.second) if first_wins else (plan.second, plan.first)
    better, worse = (first_value, second_value) if first_wins else (second_value, first_value)
    word = _COMPARISON_WORDS[RELATIONS[plan.relation].value_kind]
    return winner, f"{better} is {word} than {worse}, so {winner} wins over {loser} and the answer is {winner}."


def _source(found: _Found, subject: str, current: int) -> str:
    if found.observation == current:
        return f"Doc {found.doc} (Title: {subject})"
    return f"An earlier search result (Title: {subject})"


def _statement(found: _Found, subject: str, relation: str, current: int) -> str:
    return f"{_source(found, subject, current)} says that {_phrase(relation, subject)} is {found.value}."


def _search(subject: str, relation: str, issued: set[str], reasoning: list[str], first: bool) -> ExpertDecision:
    query = search_query(subject, relation)
    need = f"{'To answer, I first' if first else 'Next I'} need {_phrase(relation, subject)}"
    if query in issued:
        reasoning.append(f"{need}; searching for '{query}' did not show it, so I will search for the name alone.")
        query = subject
    else:
        reasoning.append(f"{need}, so I will search for it.")
    return ExpertDecision("search", query, " ".join(reasoning))


def decide(question: str, actions: Sequence[str], observations: Sequence[str], turns_left: int) -> ExpertDecision:
    """The expert's next move given the question, the agent's visible past actions and observations.

    Args:
        question: the task text.
        actions: the actions shown in the prompt's history (`"<search>q</search>"` ...), oldest first.
        observations: the observations shown in the prompt, oldest first; the last is the current one.
        turns_left: steps left before the episode's step limit.
    """
    plan = parse_question(question)
    issued = {m.group(1).strip() for a in actions for m in re.finditer(r"<search>(.*?)</search>", a, re.S)}
    current = len(observations) - 1
    reasoning: list[str] = []
    if isinstance(plan, ChainPlan):
        subject = plan.subject
        for i, relation in enumerate(plan.relations):
            found = find_fact(observations, subject, relation)
            if found is None:
                if turns_left <= 1:
                    guess = subject if i else "unknown"
                    reasoning.append(
                        f"I have no turns left to search for {_phrase(relation, subject)}, so I answer {guess}."
                    )
                    return ExpertDecision("answer", guess, " ".join(reasoning))
                return _search(subject, relation, issued, reasoning, first=not reasoning)
            reasoning.append(_statement(found, subject, relation, current))
            subject = found.value
        reasoning.append(f"So the answer is {subject}.")
        return ExpertDecision("answer", subject, " ".join(reasoning))
    if isinstance(plan, ComparePlan):
        values: list[str] = []
        for subject in (plan.first, plan.second):
            found = find_fact(observations, subject, plan.relation)
            if found is None:
                if turns_left <= 1:
                    guess = plan.first if not values else plan.second
                    reasoning.append(f"I have no turns left to search, so I answer {guess}.")
                    return ExpertDecision("answer", guess, " ".join(reasoning))
                return _search(subject, plan.relation, issued, reasoning, first=not reasoning)
            reasoning.append(_statement(found, subject, plan.relation, current))
            values.append(found.value)
        winner, verdict = compare_verdict(plan, values[0], values[1])
        reasoning.append(verdict)
        return ExpertDecision("answer", winner, " ".join(reasoning))
    return ExpertDecision("answer", "unknown", "I cannot tell what this question asks for, so I answer unknown.")
