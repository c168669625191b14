"""Responses and skill banks shared by the agent-mode tests (ScriptedEnv-style environments: `go` moves on, `win`
ends a task)."""

from __future__ import annotations

from sdar_trl.skills import SkillBank

GO = "<think>go on</think><action>go</action>"
WIN = "<think>finish</think><action>win</action>"
FINISH = {"title": "Finish", "principle": "Say win when ready.", "when_to_apply": "Always."}
EVEN = {"title": "Even", "principle": "Even tasks end with win.", "when_to_apply": "type0."}


def skill_bank(**task_specific: list[dict[str, str]]) -> SkillBank:
    """A bank with the general `FINISH` skill and the given task-type skills (`type0=[EVEN]`)."""
    return SkillBank.from_dict({"general_skills": [FINISH], "task_specific_skills": task_specific})
