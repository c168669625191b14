"""Skill and SkillBank: validation, JSON round trip, routing, rendering."""

from __future__ import annotations

import json

import pytest

from sdar_trl.skills import Skill, SkillBank, render_skills

BANK = {
    "general_skills": [{"title": "Plan", "principle": "Decide the goal first.", "when_to_apply": "Always."}],
    "task_specific_skills": {
        "unlock": [{"title": "Key first", "principle": "Take the key before the door.", "when_to_apply": "Doors."}]
    },
}


def test_render_exact_text():
    bank = SkillBank.from_dict(BANK)
    assert bank.render("unlock") == (
        "1. Plan\n   Principle: Decide the goal first.\n   When to apply: Always.\n"
        "2. Key first\n   Principle: Take the key before the door.\n   When to apply: Doors."
    )
    # Unknown or missing task types get the general skills only.
    assert bank.render("fetch") == bank.render(None) == render_skills(bank.general)
    assert render_skills([]) == ""


def test_round_trip(tmp_path):
    bank = SkillBank.from_dict(BANK)
    path = tmp_path / "bank.json"
    bank.save(path)
    assert json.loads(path.read_text()) == BANK
    again = SkillBank.load(path)
    assert again == bank and len(again) == 2 and again.task_types == ["unlock"]


def test_merge():
    bank = SkillBank.merge([SkillBank.from_dict(BANK), SkillBank.from_dict(BANK)])
    assert len(bank.general) == 2 and len(bank.task_specific["unlock"]) == 2


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"general_skills": [{"title": "x", "principle": "y"}]}, "missing \\['when_to_apply'\\]"),
        ({"general_skills": [{"title": "", "principle": "y", "when_to_apply": "z"}]}, "Skill.title"),
        ({"skills": []}, "unexpected skill-bank keys \\['skills'\\]"),
        ({"general_skills": {}}, "'general_skills' must be a list"),
        ({"task_specific_skills": []}, "'task_specific_skills' must be an object"),
        ([], "must be a JSON object"),
    ],
)
def test_bad_banks_say_what_is_wrong(data, match):
    with pytest.raises((ValueError, TypeError), match=match):
        SkillBank.from_dict(data)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SkillBank.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        SkillBank.load(bad)
    with pytest.raises(ValueError, match="no skill library is shipped for environment 'nowhere'"):
        SkillBank.from_package("nowhere")


def test_skill_from_dict_rejects_extra_keys():
    with pytest.raises(ValueError, match="unexpected \\['id'\\]"):
        Skill.from_dict({"title": "a", "principle": "b", "when_to_apply": "c", "id": 3})
