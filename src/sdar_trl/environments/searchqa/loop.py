"""The Search-R1 interaction loop shared by `SearchQAMiniEnv` and `SearchQAEnv`.

Per step the environment receives what the trainer parsed from the model's response:

- `"<search>query</search>"` → the observation is the top-k passages,
  `<information>Doc 1(Title: ...) text\\nDoc 2(...) ...</information>`; reward 0.
- `"<answer>text</answer>"` → the episode ends (`terminated=True`); reward 1.0 if the answer equals a
  gold answer after Search-R1's normalisation (`normalize_answer`), else 0.0; `info["score"]` is the
  same value and `info["won"]` is `score == 1`.
- anything else → an observation saying the action was invalid and how to format one; reward 0;
  the turn counts.

As in Search-R1's parser, the first `<search>…</search>` or `<answer>…</answer>` block found anywhere
in the string is used (tags case-insensitive, content stripped). After `max_episode_steps` steps
without an answer the episode is truncated (`truncated=True`).
"""

from __future__ import annotations

import re
from typing import Any

from ..base import ResetNeededError
from .normalize import exact_match
from .retrieval import Passage, render_information

__all__ = ["EMPTY_QUERY_MESSAGE", "INVALID_ACTION_MESSAGE", "SearchLoop", "parse_search_action"]

INVALID_ACTION_MESSAGE = (
    "Invalid action. To search, put your query between <search> and </search>. To give your final answer, put it "
    "between <answer> and </answer>."
)
EMPTY_QUERY_MESSAGE = "Empty search query. Put the words to search for between <search> and </search>."
ANSWERED_MESSAGE = "Your answer has been submitted."

_ACTION = re.compile(r"<(search|answer)>(.*?)</\1>", re.S | re.I)


def parse_search_action(action: str) -> tuple[str, str] | None:
    """`("search", query)` or `("answer", text)` for the first complete block in `action`, else None."""
    match = _ACTION.search(action) if isinstance(action, str) else None
    if match is None:
        return None
    return match.group(1).lower(), match.group(2).strip()


class SearchLoop:
    """Episode bookkeeping of the Search-R1 loop; subclasses choose the question and the retriever.

    Subclasses call `_begin(...)` from `reset` and implement `_retrieve(query) -> list[Passage]`.
    """

    action_format = "search_answer"

    def __init__(self, *, topk: int = 3, max_episode_steps: int = 4) -> None:
        if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
            raise ValueError(f"topk must be a positive int, got {topk!r}.")
        if isinstance(max_episode_steps, bool) or not isinstance(max_episode_steps, int) or max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be a positive int, got {max_episode_steps!r}.")
        self.topk = topk
        self.max_episode_steps = max_episode_steps
        self._question: str | None = None
        self._golden: tuple[str, ...] = ()
        self._info: dict[str, Any] = {}
        self._actions: list[str] = []
        self._observations: list[str] = []
        self._terminated = False
        self._truncated = False
        self._score = 0.0
        self._closed = False

    @property
    def golden_answers(self) -> tuple[str, ...]:
        """The current question's accepted answers (empty before the first `reset()`): for analyses of what a
        model answered, e.g. benchmarks/answer_errors.py. Never shown to the agent."""
        return self._golden

    # -- subclass hooks -----------------------------------------------------------------------------
    def _retrieve(self, query: str) -> list[Passage]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _begin(
        self, question: str, golden_answers: tuple[str, ...], info: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        """Start an episode on `question`; `info` must hold `task_type` (and any extra keys to report)."""
        self._question = question
        self._golden = golden_answers
        self._info = {k: v for k, v in info.items() if k not in ("task", "admissible_actions")}
        self._actions = []
        self._observations = [question]
        self._terminated = False
        self._truncated = False
        self._score = 0.0
        return question, {"task": question, "admissible_actions": None, **self._info}

    # -- protocol -----------------------------------------------------------------------------------
    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Apply one action (see the module docstring): `(observation, reward, terminated, truncated, info)`."""
        if self._question is None:
            raise ResetNeededError(f"{type(self).__name__}.step() was called before reset(); call reset() first.")
        if self._terminated or self._truncated:
            return self._observations[-1], 0.0, self._terminated, self._truncated, self._step_info("none")
        parsed = parse_search_action(action)
        reward = 0.0
        if parsed is None:
            kind, observation = "invalid", INVALID_ACTION_MESSAGE
        elif parsed[0] == "search":
            if parsed[1]:
                kind, observation = "search", render_information(self._retrieve(parsed[1]))
            else:
                kind, observation = "invalid", EMPTY_QUERY_MESSAGE
        else:
            kind, observation = "answer", ANSWERED_MESSAGE
            self._score = exact_match(parsed[1], self._golden)
            reward = self._score
            self._terminated = True
        self._actions.append(action if isinstance(action, str) else repr(action))
        self._observations.append(observation)
        if not self._terminated and len(self._actions) >= self.max_episode_steps:
            self._truncated = True
        return observation, reward, self._terminated, self._truncated, self._step_info(kind)

    def _step_info(self, kind: str) -> dict[str, Any]:
        return {
            "won": self._score == 1.0,
            "score": self._score,
            "admissible_actions": None,
            "action_type": kind,
            "step": len(self._actions),
            **self._info,
        }

    def close(self) -> None:
        """Nothing to release; safe to call repeatedly."""
        self._closed = True

    # -- views for experts and tests ------------------------------------------------------------------
    @property
    def question(self) -> str | None:
        """The current question (None before the first reset)."""
        return self._question

    @property
    def history(self) -> list[tuple[str, str]]:
        """The episode so far as `(action, observation)` pairs."""
        return list(zip(self._actions, self._observations[1:], strict=True))
