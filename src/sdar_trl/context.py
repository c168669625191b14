"""The teacher's privileged context, in one place: what it holds, how it is joined and where it goes.

SDAR's teacher is the policy itself, shown a privileged context before the student's prompt (docs/trainer.md,
docs/agents.md). This module owns every step of building that text:

- `privileged_context`: the per-episode choice of agent mode (`SDARConfig.privileged_context_source`):
  the skill bank's skills for the task type (or those a `sdar_trl.retrieval.SkillRetriever` chose, per
  `SDARConfig.skill_retrieval`), the environment's oracle facts, and the task row's own
  `privileged_context` column, joined by `render_context`.
- `render_teacher_prefix`: `header + context + separator`, the text put before the student's prompt.
- `prepend_to_prompt`: the same prefix in the *student's* prompt (Skill-GRPO, `skills_in_student_prompt`).
- `check_context_column`: single-turn datasets must carry the context column the method needs.

The skill bank itself is `sdar_trl.skills`; the SFT warm-start (`sdar_trl.sft`) and the trainer import from here.
Like `skills`, this module needs neither torch nor TRL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .skills import Skill, SkillBank, render_skills

__all__ = [
    "CONTEXT_SOURCES",
    "check_context_column",
    "prepend_to_prompt",
    "privileged_context",
    "render_context",
    "render_teacher_prefix",
]

#: Which privileged context an episode shows: none (a student row), or `privileged_context_source`'s values.
CONTEXT_SOURCES: tuple[str, ...] = ("none", "skills", "facts", "skills+facts")


def render_context(source: str, *, skills: str, facts: str) -> str:
    """The privileged context for `source`: the skills and/or the facts, joined by a blank line (empties dropped)."""
    if source not in CONTEXT_SOURCES:
        raise ValueError(f"context source {source!r} is not supported; expected one of {CONTEXT_SOURCES}.")
    parts = []
    if "skills" in source:
        parts.append(skills)
    if "facts" in source:
        parts.append(facts)
    return "\n\n".join(part for part in parts if part)


def privileged_context(
    source: str,
    *,
    skill_bank: SkillBank | None,
    task_type: str,
    facts: str,
    row: Mapping[str, Any],
    column: str,
    chosen: Sequence[Skill] | None = None,
) -> str:
    """The teacher's privileged context for one agent-mode episode (SDAR: general + task-type skills).

    Args:
        source: `SDARConfig.privileged_context_source` (`"skills"`, `"facts"` or `"skills+facts"`).
        skill_bank: the bank whose skills for `task_type` are shown (None: no skills).
        task_type: the episode's task type (`reset` info `task_type`).
        facts: the environment's `privileged_facts()` for the episode ("" when it has none).
        row: the episode's task row; a string in its `column` is appended (e.g. a hand-written hint).
        column: `SDARConfig.privileged_context_column`.
        chosen: the skills a `sdar_trl.retrieval.SkillRetriever` chose for the episode (`skill_retrieval` other
            than "rules"); None: the bank's rule-based routing by `task_type`.
    """
    skills = ""
    if "skills" in source and chosen is not None:
        skills = render_skills(chosen)
    elif "skills" in source and skill_bank:
        skills = skill_bank.render(task_type)
    context = render_context(source, skills=skills, facts=facts)
    row_context = row.get(column)
    if isinstance(row_context, str):
        context = "\n\n".join(part for part in (context, row_context) if part)
    return context


def render_teacher_prefix(context: str | None, *, header: str, separator: str = "\n\n") -> str:
    """Text prepended to the student prompt for the teacher: `header + context + separator`.

    An empty (or `None`) context gives the empty string: without privileged information the teacher
    is the student, so its log-probs equal the student's and the gap is 0.
    """
    if context is None or context == "":
        return ""
    if not isinstance(context, str):
        raise TypeError(
            f"privileged context must be a string, got {type(context).__name__}: {context!r}. Store the rendered "
            "skill text (or any privileged hint) as a string column."
        )
    return f"{header}{context}{separator}"


def prepend_to_prompt(prompt: Any, prefix: str) -> Any:
    """`prompt` with `prefix` in front (Skill-GRPO: the privileged context goes into the student's own prompt).

    A string prompt gets it in front; a conversation gets it at the start of its first text user message (a system
    message stays first). An empty prefix returns `prompt` itself.
    """
    if not prefix:
        return prompt
    if isinstance(prompt, str):
        return prefix + prompt
    messages = [dict(m) for m in prompt]
    for message in messages:
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            message["content"] = prefix + message["content"]
            return messages
    raise ValueError(
        "skills_in_student_prompt=True needs a string prompt or a conversation with a text user message; got "
        f"{prompt!r}."
    )


def check_context_column(dataset: Any, *, column: str, method: str, split: str) -> None:
    """Raise when a single-turn `dataset` (or a dict of them) lacks the privileged-context `column` `method` needs."""
    if dataset is None:
        return
    datasets = dataset.values() if isinstance(dataset, dict) else [dataset]
    for data in datasets:
        names = getattr(data, "column_names", None)
        if names is not None and column not in names:
            raise ValueError(
                f"{split} has no {column!r} column (columns: {names}), but method={method!r} needs a "
                f"privileged context per row for the teacher. Add a string column {column!r} (empty string = no "
                "privileged information), set privileged_context_column to the right name, or use method='grpo'."
            )
