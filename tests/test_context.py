"""The privileged context (`sdar_trl.context`), the distillation-term selector, and the names kept as re-exports."""

from __future__ import annotations

import pytest
import torch

from sdar_trl import compute_opsd_loss, compute_sdar_loss, compute_skill_sd_loss
from sdar_trl.context import (
    check_context_column,
    prepend_to_prompt,
    privileged_context,
    render_context,
    render_teacher_prefix,
)
from sdar_trl.loss import compute_distill_loss, distill_token_mask, sampled_token_mask
from sdar_trl.skills import SkillBank

BANK = SkillBank.from_dict(
    {
        "general_skills": [{"title": "Look", "principle": "Look first.", "when_to_apply": "Always."}],
        "task_specific_skills": {"pick": [{"title": "Pick", "principle": "Take it.", "when_to_apply": "Pick."}]},
    }
)


def test_privileged_context_joins_skills_facts_and_the_rows_own_context():
    row = {"seed": 0, "privileged_context": "Row hint."}
    both = privileged_context(
        "skills+facts", skill_bank=BANK, task_type="pick", facts="F.", row=row, column="privileged_context"
    )
    assert both == f"{BANK.render('pick')}\n\nF.\n\nRow hint."
    facts_only = privileged_context("facts", skill_bank=BANK, task_type="pick", facts="F.", row={}, column="c")
    assert facts_only == "F."
    # No bank, no facts, a non-string column value: nothing to show.
    empty = privileged_context("skills", skill_bank=None, task_type="pick", facts="", row={"c": 3}, column="c")
    assert empty == ""
    assert render_context("skills+facts", skills="", facts="F.") == "F."


def test_prepend_to_prompt_string_and_conversation():
    assert prepend_to_prompt("Q?", "P: ") == "P: Q?"
    assert prepend_to_prompt("Q?", "") == "Q?"
    conversation = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q?"}]
    out = prepend_to_prompt(conversation, "P: ")
    assert out == [{"role": "system", "content": "S"}, {"role": "user", "content": "P: Q?"}]
    assert conversation[1]["content"] == "Q?"  # the row's own prompt is not modified
    with pytest.raises(ValueError, match="text user message"):
        prepend_to_prompt([{"role": "system", "content": "S"}], "P: ")


def test_check_context_column_names_the_missing_column():
    from datasets import Dataset

    data = Dataset.from_list([{"prompt": "Q?"}])
    with pytest.raises(ValueError, match="train_dataset has no 'hint' column"):
        check_context_column(data, column="hint", method="sdar", split="train_dataset")
    check_context_column({"a": data}, column="prompt", method="sdar", split="eval_dataset")
    check_context_column(None, column="hint", method="sdar", split="eval_dataset")


def test_old_import_paths_are_the_same_objects():
    import sdar_trl.agent as agent
    import sdar_trl.context as context
    import sdar_trl.rollout as rollout
    import sdar_trl.sft as sft
    import sdar_trl.teacher as teacher

    assert sft.render_context is context.render_context and sft.CONTEXT_SOURCES is context.CONTEXT_SOURCES
    assert teacher.render_teacher_prefix is render_teacher_prefix
    for name in rollout.__all__:
        assert getattr(rollout, name) is getattr(agent, name), name


def test_compute_distill_loss_selects_the_configured_term():
    torch.manual_seed(0)
    student = torch.randn(2, 3, requires_grad=True)
    teacher, old = torch.randn(2, 3), torch.randn(2, 3)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    expected = {
        "gated": compute_sdar_loss(student, teacher, mask, gate_beta=2.0)[0],
        "sampled_token": compute_opsd_loss(student, teacher, mask)[0],
        "k3": compute_skill_sd_loss(student, teacher, old, mask)[0],
    }
    for kind, value in expected.items():
        loss, _ = compute_distill_loss(kind, student, teacher, mask, old_logps=old, gate_beta=2.0)
        torch.testing.assert_close(loss, value)
    on_policy, _ = compute_distill_loss("k3", student, teacher, mask)
    torch.testing.assert_close(on_policy, compute_skill_sd_loss(student, teacher, student.detach(), mask)[0])
    with pytest.raises(ValueError, match="distill loss 'kl'"):
        compute_distill_loss("kl", student, teacher, mask)


def test_distill_token_mask_drops_tool_tokens_and_rows_without_context():
    batch = {
        "completion_mask": torch.ones(2, 3, dtype=torch.long),
        "tool_mask": torch.tensor([[1, 0, 1], [1, 1, 1]]),
        "teacher_row_mask": torch.tensor([1, 0]),
    }
    assert sampled_token_mask(batch).tolist() == [[1, 0, 1], [1, 1, 1]]
    assert distill_token_mask(batch).tolist() == [[1, 0, 1], [0, 0, 0]]
