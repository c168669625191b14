"""`searchqa-mini`: Search-R1's question-answering loop over generated worlds of fictional entities.

```python
from sdar_trl.environments.searchqa import SearchQAMiniEnv

env = SearchQAMiniEnv(split="test")
obs, info = env.reset(seed=0)          # obs: the question
obs, reward, terminated, truncated, info = env.step("<search>Tindfeviak Corporation founded</search>")
obs, reward, terminated, truncated, info = env.step("<answer>Viha Tindfeviak</answer>")
```

Tasks: task `i` is question `i % 100` of world `i // 100` of the split. The train split is unbounded:
every seed in [0, 2**32) is a distinct question (43 million worlds of 100). The test split is 500
fixed questions from 5 worlds generated from their own seeds, so test names and facts are not in any
training world except by chance.

Difficulty levels (`difficulty=`, a name or 1/2/3):

- `easy` (1): 35 entities with one lead passage each; no confusable names, no distractors; 2 hops at most.
- `standard` (2, the default): 55 entities with a lead and a history passage each, about 22 distractor
  passages ("X Prize", "X Cup", "X (album)", ...), names sharing words and surnames (~135 passages); 2 hops.
- `hard` (3): 67 entities, lead + history + a distractor each, namesake people ("X (footballer)"),
  ~210 passages; half of the multi-hop questions take 3 hops (all 4 turns).

Every question is answerable within the 4 turns: each fact it needs is retrievable in the top 3 with
the expert's natural query (`"<entity name> <relation keyword>"`); worlds are checked when built, and
a fact that is not retrievable that way is never asked about.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import Any

from ..base import row_seed
from .expert import ExpertDecision, decide, fact_statement, find_fact, search_query
from .loop import SearchLoop
from .questions import ComparePlan, MiniQuestion, generate_questions
from .retrieval import BM25Retriever, Passage, render_information
from .schema import RELATIONS
from .world import DIFFICULTY_LEVELS, World, generate_world

__all__ = ["QUESTIONS_PER_WORLD", "SPLITS", "SearchQAMiniEnv"]

QUESTIONS_PER_WORLD = 100
SPLITS: dict[str, int | None] = {"train": None, "test": 500}
"""Split name -> number of tasks (None: unbounded)."""
_LEVEL_NAMES = {1: "easy", 2: "standard", 3: "hard"}
_MAX_TRAIN_SEED = 2**32 - 1


@dataclass(frozen=True)
class _WorldBundle:
    world: World
    retriever: BM25Retriever
    questions: tuple[MiniQuestion, ...]


def _retrievable_facts(world: World, retriever: BM25Retriever) -> set[tuple[str, str]]:
    """The `(entity, relation)` facts that the expert's query finds and reads in the top-k passages."""
    facts = set()
    for entity in world.entities.values():
        for relation, value in entity.facts.items():
            if relation not in RELATIONS:
                continue
            observation = render_information(retriever.search(search_query(entity.name, relation)))
            found = find_fact([observation], entity.name, relation)
            if found is not None and found.value == value:
                facts.add((entity.name, relation))
    return facts


@functools.lru_cache(maxsize=64)
def _load_world(split: str, difficulty: str, world_id: int) -> _WorldBundle:
    world = generate_world(split, difficulty, world_id)
    retriever = BM25Retriever(world.passages, topk=3)
    retrievable = _retrievable_facts(world, retriever)
    questions = generate_questions(world, retrievable, QUESTIONS_PER_WORLD, random.Random(world.key + "/questions"))
    if len(questions) < QUESTIONS_PER_WORLD:  # pragma: no cover - worlds have several hundred candidates
        raise RuntimeError(
            f"world {world.key} yields only {len(questions)} questions; expected {QUESTIONS_PER_WORLD}."
        )
    return _WorldBundle(world, retriever, tuple(questions))


def _check_difficulty(difficulty: object) -> str:
    if isinstance(difficulty, int) and not isinstance(difficulty, bool) and difficulty in _LEVEL_NAMES:
        return _LEVEL_NAMES[difficulty]
    if isinstance(difficulty, str) and difficulty in DIFFICULTY_LEVELS:
        return difficulty
    raise ValueError(
        f"difficulty must be one of {list(DIFFICULTY_LEVELS)} or {list(_LEVEL_NAMES)}, got {difficulty!r}."
    )


class SearchQAMiniEnv(SearchLoop):
    """Search-R1's search/answer loop over generated fictional worlds (see the module docstring).

    Args:
        split: `"train"` (unbounded) or `"test"` (500 fixed questions).
        difficulty: `"easy"`/1, `"standard"`/2 (default) or `"hard"`/3.
        seed: seeds the environment's own RNG, used by `reset(seed=None)`.
        topk: passages per search (Search-R1: 3). Questions are checked to be answerable with the top 3, so
            the guarantee (and the expert) holds for `topk >= 3`.
        max_episode_steps: turns per episode (Search-R1 / SDAR: 4).
    """

    action_format = "search_answer"

    def __init__(
        self,
        *,
        split: str = "train",
        difficulty: str | int = "standard",
        seed: int = 0,
        topk: int = 3,
        max_episode_steps: int = 4,
    ) -> None:
        super().__init__(topk=topk, max_episode_steps=max_episode_steps)
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}.")
        self.split = split
        self.difficulty = _check_difficulty(difficulty)
        self.num_tasks: int | None = SPLITS[split]
        self._rng = random.Random(seed)
        self._bundle: _WorldBundle | None = None
        self._task: MiniQuestion | None = None

    def __repr__(self) -> str:
        return f"SearchQAMiniEnv(split={self.split!r}, difficulty={self.difficulty!r})"

    # -- protocol -----------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Start task `seed` of the split (`options["seed"]` when `seed` is None; else a random task)."""
        seed = row_seed(seed, options)
        if seed is None:
            seed = self._rng.randrange(self.num_tasks if self.num_tasks is not None else 10**9)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int (the task index), got {seed!r}.")
        if self.num_tasks is not None:
            seed %= self.num_tasks
        elif seed > _MAX_TRAIN_SEED:
            raise ValueError(f"train seeds must be at most {_MAX_TRAIN_SEED}, got {seed}.")
        world_id, index = divmod(seed, QUESTIONS_PER_WORLD)
        self._bundle = _load_world(self.split, self.difficulty, world_id)
        self._task = self._bundle.questions[index]
        task = self._task
        return self._begin(
            task.question,
            task.golden_answers,
            {
                "task_type": task.task_type,
                "data_source": task.data_source,
                "task_id": f"{self.split}/{self.difficulty}/{seed}",
                "split": self.split,
                "difficulty": self.difficulty,
            },
        )

    def _retrieve(self, query: str) -> list[Passage]:
        assert self._bundle is not None  # reset() ran: step() checks it first
        return self._bundle.retriever.search(query, self.topk)

    # -- expert and privileged context ----------------------------------------------------------------
    def _expert_decision(self) -> ExpertDecision:
        if self._question is None:
            raise RuntimeError("expert_action() needs an episode; call reset() first.")
        visible = 4  # Search-QA history_length: the prompt shows the last 4 (observation, action) pairs
        actions = self._actions[-visible:]
        observations = self._observations[-(visible + 1) :]
        return decide(self._question, actions, observations, self.max_episode_steps - len(self._actions))

    def expert_action(self) -> str:
        """The expert's next action, as `step` accepts it (`"<search>q</search>"` or `"<answer>a</answer>"`)."""
        return self._expert_decision().action

    def expert_response(self) -> str:
        """The expert's full response: `<think>reasoning</think><search>q</search>` (or `<answer>`)."""
        return self._expert_decision().response

    def gold_facts(self) -> tuple[tuple[str, str, str], ...]:
        """The `(subject, relation, value)` facts the current question needs, in the order the expert reads them.

        A chain question's facts follow its hops (each value is the next hop's subject); a comparison's are the
        two compared values. Empty before the first `reset()`.
        """
        if self._task is None or self._bundle is None:
            return ()
        entities, plan = self._bundle.world.entities, self._task.plan
        if isinstance(plan, ComparePlan):
            pairs = [(plan.first, plan.relation), (plan.second, plan.relation)]
            return tuple((name, relation, entities[name].facts[relation]) for name, relation in pairs)
        facts, subject = [], plan.subject
        for relation in plan.relations:
            value = entities[subject].facts[relation]
            facts.append((subject, relation, value))
            subject = value
        return tuple(facts)

    def privileged_facts(self) -> str:
        """Oracle facts for the teacher: the gold passages' titles, the bridge entities of a multi-hop question,
        and the gold facts themselves (what those passages state), so the answer follows from the context alone."""
        if self._task is None:
            return ""
        lines = ["Gold passages: " + "; ".join(dict.fromkeys(self._task.gold_titles)) + "."]
        if self._task.bridges:
            lines.append("Bridge entities: " + "; ".join(self._task.bridges) + ".")
        lines.append("Gold facts: " + "; ".join(fact_statement(*fact) for fact in self.gold_facts()) + ".")
        return "\n".join(lines)

    @property
    def golden_answers(self) -> tuple[str, ...]:
        """The current question's gold answers (for evaluation scripts; never shown to the agent)."""
        return self._golden
