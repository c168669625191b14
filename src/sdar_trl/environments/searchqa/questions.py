"""Questions over a generated world, their parsing back into a plan, and Search-QA skill routing.

Four question types, named after the SDAR reference's Search skill routing keys:

| task_type | example | hops | data_source |
|---|---|---|---|
| `direct_retrieval` | Who founded Quellin Holdings? | 1 | `mini_nq`, `mini_triviaqa` |
| `entity_attribute_lookup` | In what year was Quellin Holdings founded? | 1 | `mini_popqa` |
| `multi_hop_reasoning` | In which city was the founder of Quellin Holdings born? | 2 or 3 | `mini_hotpotqa` |
| `compare` | Which company was founded earlier, Quellin Holdings or Oskar Group? | 2 | `mini_2wikimultihopqa` |

Three-hop questions (difficulty "hard" only) are labelled `mini_musique`.

`parse_question` inverts the templates: it recovers the plan (a chain of relations from a named
entity, or a comparison) from the question text alone, which is what the expert acts on.
`route_search_question(data_source, question)` is the reference's rule-based routing; applied to a
mini question's `data_source` and text it gives back the question's `task_type`.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from .schema import COMPARE_TEMPLATES, RELATIONS, numeric_value, value_kind
from .world import Entity, World

__all__ = [
    "TASK_TYPES",
    "ChainPlan",
    "ComparePlan",
    "MiniQuestion",
    "generate_questions",
    "parse_question",
    "route_search_question",
]

TASK_TYPES = ("direct_retrieval", "entity_attribute_lookup", "multi_hop_reasoning", "compare")
_MIX = {"direct_retrieval": 0.3, "entity_attribute_lookup": 0.2, "multi_hop_reasoning": 0.3, "compare": 0.2}


@dataclass(frozen=True)
class ChainPlan:
    """Start at `subject`, follow `relations` in order; the last value is the answer."""

    subject: str
    relations: tuple[str, ...]


@dataclass(frozen=True)
class ComparePlan:
    """Look up `relation` of `first` and `second`; the answer is the one with the `best` ("min"/"max") value."""

    first: str
    second: str
    relation: str
    best: str


Plan = ChainPlan | ComparePlan


@dataclass(frozen=True)
class MiniQuestion:
    """A generated question with its gold answers and the facts that support them."""

    question: str
    golden_answers: tuple[str, ...]
    task_type: str
    data_source: str
    plan: Plan
    gold_titles: tuple[str, ...]  # the titles of the passages that state the needed facts, in hop order
    bridges: tuple[str, ...]  # intermediate entities of a multi-hop chain


# -- routing -----------------------------------------------------------------------------------------

_ROUTE_BY_SOURCE = {
    "popqa": "entity_attribute_lookup",
    "nq": "direct_retrieval",
    "triviaqa": "direct_retrieval",
    "hotpotqa": "multi_hop_reasoning",
}
_MULTI_HOP_SOURCES = ("2wikimultihopqa", "musique", "bamboogle")


def route_search_question(data_source: str, question: str) -> str:
    """The skill-routing task type of a Search-QA question, by the SDAR reference's rules.

    In order: PopQA → `entity_attribute_lookup`; NQ, TriviaQA → `direct_retrieval`; HotpotQA →
    `multi_hop_reasoning`; otherwise a question with the words "which" and "or" but not "for" →
    `compare`; otherwise 2WikiMultiHopQA, MuSiQue, Bamboogle → `multi_hop_reasoning`; anything else →
    `"other"` (general skills only). Data sources are matched case-insensitively, a `mini_` prefix is
    ignored (the searchqa-mini labels), and words are matched whole (the reference tests substrings,
    so its "or" also fires inside "for", "born", "world").
    """
    source = (data_source or "").strip().lower().removeprefix("mini_")
    if source in _ROUTE_BY_SOURCE:
        return _ROUTE_BY_SOURCE[source]
    words = set(re.findall(r"[a-z]+", (question or "").lower()))
    if "which" in words and "or" in words and "for" not in words:
        return "compare"
    if source in _MULTI_HOP_SOURCES:
        return "multi_hop_reasoning"
    return "other"


# -- rendering and parsing ---------------------------------------------------------------------------


def _describe(subject_text: str, subject_kind: str, relation: str) -> str:
    return RELATIONS[relation].descriptions[subject_kind].format(S=subject_text)


def render_chain(world: World, plan: ChainPlan) -> tuple[str, list[str]]:
    """The question text of a chain plan, and the values along the chain (the last one is the answer)."""
    entity = world.entities[plan.subject]
    text, kind = entity.name, entity.kind
    values: list[str] = []
    current = entity
    for i, relation in enumerate(plan.relations):
        value = current.facts[relation]
        values.append(value)
        if i < len(plan.relations) - 1:
            text, kind = _describe(text, kind, relation), value_kind(relation, kind)
            current = world.entities[value]
    last = plan.relations[-1]
    return RELATIONS[last].questions[kind].format(S=text), values


def render_compare(world: World, plan: ComparePlan) -> str:
    kind = world.entities[plan.first].kind
    template, _ = COMPARE_TEMPLATES[(plan.relation, kind)]
    return template.format(A=plan.first, B=plan.second)


def _template_regex(template: str, names: tuple[str, ...]) -> re.Pattern[str]:
    pattern = re.escape(template)
    for name in names:
        pattern = pattern.replace(re.escape("{" + name + "}"), f"(?P<{name}>.+?)")
    return re.compile(f"^{pattern}$")


_QUESTION_PATTERNS: list[tuple[re.Pattern[str], str]] = sorted(
    {
        (_template_regex(template, ("S",)).pattern, relation.name)
        for relation in RELATIONS.values()
        for template in relation.questions.values()
    }
)
_QUESTION_PATTERNS = [(re.compile(p), r) for p, r in _QUESTION_PATTERNS]  # type: ignore[misc]
_DESCRIPTION_PATTERNS = [
    (re.compile(p), r)
    for p, r in sorted(
        {
            (_template_regex(template, ("S",)).pattern, relation.name)
            for relation in RELATIONS.values()
            for template in relation.descriptions.values()
        }
    )
]
_COMPARE_PATTERNS = [
    (_template_regex(template, ("A", "B")), relation, best)
    for (relation, _kind), (template, best) in COMPARE_TEMPLATES.items()
]


def _parse_subject(text: str) -> tuple[str, tuple[str, ...]]:
    """An entity name, or a description "the founder of X" → (X, relations leading to the described entity)."""
    for pattern, relation in _DESCRIPTION_PATTERNS:
        match = pattern.match(text)
        if match:
            subject, relations = _parse_subject(match.group("S"))
            return subject, (*relations, relation)
    return text, ()


def parse_question(question: str) -> Plan | None:
    """The plan behind a searchqa-mini question, read from its text alone (None if it is not one)."""
    question = question.strip()
    for pattern, relation, best in _COMPARE_PATTERNS:
        match = pattern.match(question)
        if match:
            return ComparePlan(match.group("A"), match.group("B"), relation, best)
    for pattern, relation in _QUESTION_PATTERNS:
        match = pattern.match(question)
        if match:
            subject, relations = _parse_subject(match.group("S"))
            return ChainPlan(subject, (*relations, relation))
    return None


# -- generation --------------------------------------------------------------------------------------


def _answers(value: str, relation: str) -> tuple[str, ...]:
    if relation == "length":
        number = value.split()[0]
        return (value, number, f"{number} kilometres", f"{number} kilometers")
    return (value,)


def _entity_answers(entity: Entity) -> tuple[str, ...]:
    if entity.kind == "river":
        return (entity.name, entity.name.removesuffix(" River"))
    return (entity.name,)


def _chain_question(world: World, plan: ChainPlan, rng: random.Random) -> MiniQuestion | None:
    text, values = render_chain(world, plan)
    answer = values[-1]
    if answer in text or answer == plan.subject:
        return None
    hops = len(plan.relations)
    if hops == 1:
        task_type = "entity_attribute_lookup" if not RELATIONS[plan.relations[0]].is_entity else "direct_retrieval"
        data_source = (
            "mini_popqa" if task_type == "entity_attribute_lookup" else rng.choice(("mini_nq", "mini_triviaqa"))
        )
    else:
        task_type = "multi_hop_reasoning"
        data_source = "mini_hotpotqa" if hops == 2 else "mini_musique"
    assert route_search_question(data_source, text) == task_type, (data_source, text)
    titles = (plan.subject, *values[:-1])
    return MiniQuestion(
        question=text,
        golden_answers=_answers(answer, plan.relations[-1]),
        task_type=task_type,
        data_source=data_source,
        plan=plan,
        gold_titles=titles,
        bridges=tuple(values[:-1]),
    )


def _compare_question(world: World, plan: ComparePlan) -> MiniQuestion | None:
    first, second = world.entities[plan.first], world.entities[plan.second]
    a, b = numeric_value(first.facts[plan.relation]), numeric_value(second.facts[plan.relation])
    if a == b:
        return None
    winner = first if (a < b) == (plan.best == "min") else second
    text = render_compare(world, plan)
    assert route_search_question("mini_2wikimultihopqa", text) == "compare", text
    return MiniQuestion(
        question=text,
        golden_answers=_entity_answers(winner),
        task_type="compare",
        data_source="mini_2wikimultihopqa",
        plan=plan,
        gold_titles=(plan.first, plan.second),
        bridges=(),
    )


def candidate_plans(world: World, retrievable: set[tuple[str, str]], three_hops: bool) -> dict[str, list[Plan]]:
    """Every plan of each task type whose hops are all `retrievable` `(entity, relation)` pairs."""
    plans: dict[str, list[Plan]] = {t: [] for t in TASK_TYPES}
    plans["multi_hop_3"] = []
    entities = world.entities
    for entity in entities.values():
        for relation in entity.facts:
            if relation not in RELATIONS or (entity.name, relation) not in retrievable:
                continue
            key = "direct_retrieval" if RELATIONS[relation].is_entity else "entity_attribute_lookup"
            plans[key].append(ChainPlan(entity.name, (relation,)))
            if not RELATIONS[relation].is_entity:
                continue
            middle = entities[entity.facts[relation]]
            for second in middle.facts:
                if second not in RELATIONS or (middle.name, second) not in retrievable:
                    continue
                plans["multi_hop_reasoning"].append(ChainPlan(entity.name, (relation, second)))
                if not three_hops or not RELATIONS[second].is_entity:
                    continue
                last = entities[middle.facts[second]]
                for third in last.facts:
                    if third in RELATIONS and (last.name, third) in retrievable:
                        plans["multi_hop_3"].append(ChainPlan(entity.name, (relation, second, third)))
    for (relation, kind), (_template, best) in COMPARE_TEMPLATES.items():
        members = [e.name for e in world.by_kind(kind) if (e.name, relation) in retrievable]
        for i, first in enumerate(members):
            for second in members[i + 1 :]:
                plans["compare"].append(ComparePlan(first, second, relation, best))
    return plans


def generate_questions(
    world: World, retrievable: set[tuple[str, str]], count: int, rng: random.Random
) -> list[MiniQuestion]:
    """`count` distinct questions over `world`, mixed by task type (30/20/30/20 %), in a seeded order."""
    three_hop_share = world.config.three_hop_share
    plans = candidate_plans(world, retrievable, three_hops=three_hop_share > 0)
    for pool in plans.values():
        rng.shuffle(pool)
    chosen: list[MiniQuestion] = []
    seen: set[str] = set()

    def take(pool: list[Plan], n: int) -> None:
        while pool and n > 0:
            plan = pool.pop()
            question = (
                _compare_question(world, plan) if isinstance(plan, ComparePlan) else _chain_question(world, plan, rng)
            )
            if question is not None and question.question not in seen:
                seen.add(question.question)
                chosen.append(question)
                n -= 1

    targets = {task_type: round(share * count) for task_type, share in _MIX.items()}
    three = round(targets["multi_hop_reasoning"] * three_hop_share)
    take(plans["multi_hop_3"], three)
    take(plans["multi_hop_reasoning"], targets["multi_hop_reasoning"] - three)
    for task_type in ("direct_retrieval", "entity_attribute_lookup", "compare"):
        take(plans[task_type], targets[task_type])
    for task_type in ("compare", "multi_hop_reasoning", "entity_attribute_lookup", "direct_retrieval", "multi_hop_3"):
        take(plans[task_type], count - len(chosen))  # top up when a pool ran short
    rng.shuffle(chosen)
    return chosen
