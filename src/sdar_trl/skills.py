"""Skills: the privileged context of SDAR's teacher branch (the SDAR paper, arXiv 2605.15155; docs/agents.md).

A `Skill` is a short, reusable piece of know-how: a title, the principle, and when to apply it.
A `SkillBank` holds *general* skills (shown for every task) and *task-type* skills (shown for tasks
of that type); the task type comes from the environment's `reset()` info (`task_type`), which for
the shipped environments is the reference's rule-based routing key (ALFWorld task type, WebShop
product category, Search question type). `render_skills` turns the selected skills into the text
the teacher sees after `SDARConfig.teacher_context_header`.

On disk a bank is JSON:

```json
{"general_skills": [{"title": "...", "principle": "...", "when_to_apply": "..."}],
 "task_specific_skills": {"pick_and_place_simple": [{"title": "...", "principle": "...", "when_to_apply": "..."}]}}
```
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["Skill", "SkillBank", "check_skill_coverage", "render_skills"]

_SKILL_KEYS = ("title", "principle", "when_to_apply")


@dataclass(frozen=True)
class Skill:
    """One skill: `title`, the `principle` to follow, and `when_to_apply` it."""

    title: str
    principle: str
    when_to_apply: str

    def __post_init__(self) -> None:
        for key in _SKILL_KEYS:
            value = getattr(self, key)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"Skill.{key} must be a non-empty string, got {value!r}.")

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Skill:
        """Build a skill from a `{title, principle, when_to_apply}` mapping (extra keys are an error)."""
        if not isinstance(record, Mapping):
            raise TypeError(f"a skill must be a mapping with keys {_SKILL_KEYS}, got {type(record).__name__}.")
        missing = [key for key in _SKILL_KEYS if key not in record]
        extra = sorted(set(record) - set(_SKILL_KEYS))
        if missing or extra:
            raise ValueError(
                f"a skill needs exactly the keys {_SKILL_KEYS}; got {sorted(record)} (missing {missing}, "
                f"unexpected {extra})."
            )
        return cls(**{key: record[key] for key in _SKILL_KEYS})

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def render_skills(skills: Sequence[Skill]) -> str:
    """The teacher-context text for `skills`: one numbered block per skill, `""` for no skills."""
    blocks = [
        f"{i}. {skill.title}\n   Principle: {skill.principle}\n   When to apply: {skill.when_to_apply}"
        for i, skill in enumerate(skills, start=1)
    ]
    return "\n".join(blocks)


@dataclass
class SkillBank:
    """General skills plus skills per task type, with rule-based routing by task type.

    Args:
        general: skills shown for every task.
        task_specific: task type -> skills shown for tasks of that type.
    """

    general: list[Skill] = field(default_factory=list)
    task_specific: dict[str, list[Skill]] = field(default_factory=dict)

    def retrieve(self, task_type: str | None) -> list[Skill]:
        """General skills, then the skills of `task_type` (none when the type is unknown or None)."""
        return [*self.general, *self.task_specific.get(task_type or "", [])]

    def render(self, task_type: str | None) -> str:
        """The teacher context for a task of `task_type`: `render_skills(self.retrieve(task_type))`."""
        return render_skills(self.retrieve(task_type))

    @property
    def task_types(self) -> list[str]:
        return sorted(self.task_specific)

    def __len__(self) -> int:
        return len(self.general) + sum(len(skills) for skills in self.task_specific.values())

    # -- (de)serialisation ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SkillBank:
        """Build a bank from `{"general_skills": [...], "task_specific_skills": {type: [...]}}`."""
        if not isinstance(data, Mapping):
            raise TypeError(f"a skill bank must be a JSON object, got {type(data).__name__}.")
        unexpected = sorted(set(data) - {"general_skills", "task_specific_skills"})
        if unexpected:
            raise ValueError(
                f"unexpected skill-bank keys {unexpected}; expected 'general_skills' (a list of skills) and "
                "'task_specific_skills' (an object mapping task type to a list of skills)."
            )
        general = data.get("general_skills", [])
        specific = data.get("task_specific_skills", {})
        if not isinstance(general, list):
            raise TypeError(f"'general_skills' must be a list, got {type(general).__name__}.")
        if not isinstance(specific, Mapping):
            raise TypeError(f"'task_specific_skills' must be an object, got {type(specific).__name__}.")
        return cls(
            general=[Skill.from_dict(record) for record in general],
            task_specific={str(k): [Skill.from_dict(record) for record in v] for k, v in specific.items()},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "general_skills": [skill.to_dict() for skill in self.general],
            "task_specific_skills": {k: [s.to_dict() for s in v] for k, v in sorted(self.task_specific.items())},
        }

    @classmethod
    def load(cls, path: str | Path) -> SkillBank:
        """Read a bank from a JSON file (see the module docstring for the layout)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"skill bank file {str(path)!r} does not exist; pass the path of a JSON file.")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"skill bank file {str(path)!r} is not valid JSON: {error}") from error
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        """Write the bank as indented JSON (stable key order, so diffs stay readable)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def from_package(cls, environment: str) -> SkillBank:
        """The skill library shipped for a built-in environment (`"alfworld"`, `"webshop"`, `"searchqa"`)."""
        name = environment.removesuffix("-mini").replace("-", "")
        resource = resources.files("sdar_trl.environments").joinpath(name, "skills.json")
        if not resource.is_file():
            raise ValueError(
                f"no skill library is shipped for environment {environment!r}; built-in libraries: alfworld, webshop, "
                "searchqa. Load your own with SkillBank.load(path)."
            )
        return cls.from_dict(json.loads(resource.read_text(encoding="utf-8")))

    @classmethod
    def merge(cls, banks: Iterable[SkillBank]) -> SkillBank:
        """One bank holding every skill of `banks` (task types with the same name are concatenated)."""
        merged = cls()
        for bank in banks:
            merged.general.extend(bank.general)
            for task_type, skills in bank.task_specific.items():
                merged.task_specific.setdefault(task_type, []).extend(skills)
        return merged


def check_skill_coverage(bank: SkillBank, task_types: Iterable[str]) -> str | None:
    """A warning when none of the environment's `task_types` has task-specific skills in `bank`, else None.

    Skills are routed by exact task type, so a bank written for another environment (or with differently spelled
    types) gives the teacher only the general skills; without general skills the teacher prompt equals the student's
    and the distillation term is 0.
    """
    seen = sorted({task_type or "(none)" for task_type in task_types})
    if not bank.task_specific or any(task_type in bank.task_specific for task_type in seen):
        return None
    consequence = (
        "the teacher sees only the general skills"
        if bank.general
        else "the teacher prompt equals the student's: distill_loss = 0 and SDAR trains as plain GRPO"
    )
    return (
        f"skill_bank matches none of the environment's task types: the episodes have task types {seen}, the bank "
        f"has skills for {bank.task_types}. Skills are routed by exact task type, so {consequence}. Use the skill "
        "bank written for this environment (SkillBank.from_package(<env>)), or rename its task types to the "
        "environment's info['task_type'] values."
    )
