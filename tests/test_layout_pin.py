"""Pins the first two optimizer steps of real tiny-model training, single-turn and agent mode.

The numbers below were recorded from the code before the agent-mode code moved to `sdar_trl.agent` and the
privileged context to `sdar_trl.context` (issue 31): a refactor that changes none of them changed no behaviour
along the paths these runs take (generation, rewards, advantages, teacher log-probs, chunked loss, evaluation).
They hold for fp32 on CPU with the pinned torch/transformers/TRL, on any x86 CPU: the tolerance (`PIN_REL`,
`PIN_ABS`) covers the summation order of the CPU's kernels, which moved the means of log-prob differences (gap,
distillation loss, ~1e-3) by up to 2.1e-7 between the AMD EPYC they were recorded on and an Intel Xeon with
AVX-512, far less than a change of behaviour moves them. Run `pytest tests/test_layout_pin.py -s` with
`SDAR_PIN_PRINT=1` to print the values of a run when a dependency upgrade moves them legitimately.
"""

from __future__ import annotations

import os

import pytest
import torch
from datasets import Dataset

from agent_constants import EVEN, GO, WIN, skill_bank
from sdar_trl import SDARTrainer
from sdar_trl.testing import (
    ScriptedEnv,
    build_tiny_model,
    patch_generation,
    save_tiny,
    tiny_agent_config,
    tiny_single_turn_config,
)

pytestmark = pytest.mark.integration

BANK = skill_bank(type0=[EVEN])


def _logged(trainer: SDARTrainer, prefixes: tuple[str, ...]) -> list[dict[str, float]]:
    """Per optimizer step: the logged `loss`, `grad_norm` and every metric whose name starts with one of `prefixes`."""
    records = []
    for record in trainer.state.log_history:
        if "loss" not in record:
            continue
        records.append(
            {k: float(v) for k, v in record.items() if k in ("loss", "grad_norm") or k.startswith(prefixes)}
        )
    return records


#: Tolerances of the pins: float32 log-probs of a few nats carry ~2.4e-7 of rounding each, and the metrics
#: below subtract and average them, so kernels that sum in another order disagree in the last ~20 ulps.
PIN_REL, PIN_ABS = 1e-4, 1e-6


def _check(actual: list[dict[str, float]] | dict[str, float], expected: list[dict[str, float]] | dict[str, float]):
    if os.environ.get("SDAR_PIN_PRINT"):
        print(repr(actual))
        return
    actual_rows = actual if isinstance(actual, list) else [actual]
    expected_rows = expected if isinstance(expected, list) else [expected]
    assert len(actual_rows) == len(expected_rows)
    for got, want in zip(actual_rows, expected_rows, strict=True):
        assert sorted(got) == sorted(want)
        for key, value in want.items():
            assert got[key] == pytest.approx(value, rel=PIN_REL, abs=PIN_ABS), key


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a fixed reduction order: the same sums bit for bit on every run
    yield
    torch.set_num_threads(threads)


SINGLE_TURN = [
    {
        "loss": 0.00010840842151083052,
        "grad_norm": 1.2809053659439087,
        "sdar/distill_loss": 0.010834882035851479,
        "sdar/gate_mean": 0.5119103193283081,
        "sdar/gate_active_ratio": 0.5,
        "sdar/teacher_gap_mean": 0.010234847664833069,
    },
    {
        "loss": 5.6181303079938516e-05,
        "grad_norm": 1.2894431352615356,
        "sdar/distill_loss": 0.005603229161351919,
        "sdar/gate_mean": 0.5021519660949707,
        "sdar/gate_active_ratio": 0.53125,
        "sdar/teacher_gap_mean": 0.001779899001121521,
    },
]


def test_single_turn_first_two_steps_are_pinned(tmp_path, tiny_tokenizer, one_thread):
    rows = [
        {
            "prompt": [{"role": "user", "content": f"What is {i} + {i}?"}],
            "privileged_context": "" if i % 3 == 0 else "Add the two numbers; the answer is twice the number.",
        }
        for i in range(8)
    ]
    args = tiny_single_turn_config(tmp_path, per_device_train_batch_size=8)
    trainer = SDARTrainer(
        build_tiny_model(tiny_tokenizer),
        reward_funcs=lambda completions, **kwargs: [len(c[0]["content"]) / 10.0 for c in completions],
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tiny_tokenizer,
    )
    trainer.train()
    _check(_logged(trainer, ("sdar/",)), SINGLE_TURN)


AGENT = [
    {
        "loss": -0.1637946367263794,
        "grad_norm": 1.1293874979019165,
        "env/episodes": 6.0,
        "env/success": 0.8333333333333334,
        "env/reward": 0.8333333333333334,
        "env/success/type0": 0.75,
        "env/episodes/type0": 4.0,
        "env/success/type1": 1.0,
        "env/episodes/type1": 2.0,
        "env/invalid_action_rate": 0.25,
        "env/episode_length": 2.0,
        "env/errors": 0.0,
        "env/errors/exception": 0.0,
        "env/errors/bad_output": 0.0,
        "env/errors/timeout": 0.0,
        "env/errors/bad_reward": 0.0,
        "env/errors/worker_died": 0.0,
        "sdar/distill_loss": 0.0004297609266359359,
        "sdar/gate_mean": 0.4984543174505234,
        "sdar/gate_active_ratio": 0.4951923117041588,
        "sdar/teacher_gap_mean": -0.001243982813321054,
    },
    {
        "loss": -0.09162569791078568,
        "grad_norm": 2.0123133659362793,
        "env/episodes": 6.0,
        "env/success": 0.8333333333333334,
        "env/reward": 0.8333333333333334,
        "env/success/type0": 1.0,
        "env/episodes/type0": 2.0,
        "env/success/type1": 0.75,
        "env/episodes/type1": 4.0,
        "env/invalid_action_rate": 0.08333333333333333,
        "env/episode_length": 2.0,
        "env/errors": 0.0,
        "env/errors/exception": 0.0,
        "env/errors/bad_output": 0.0,
        "env/errors/timeout": 0.0,
        "env/errors/bad_reward": 0.0,
        "env/errors/worker_died": 0.0,
        "sdar/distill_loss": 0.029882932547479868,
        "sdar/gate_mean": 0.5596224069595337,
        "sdar/gate_active_ratio": 0.8235930800437927,
        "sdar/teacher_gap_mean": 0.04866428021341562,
    },
]
AGENT_EVAL = {
    "eval_env/episodes": 5.0,
    "eval_env/success": 0.8,
    "eval_env/reward": 0.8,
    "eval_env/success/type0": 1.0,
    "eval_env/episodes/type0": 3.0,
    "eval_env/success/type1": 0.5,
    "eval_env/episodes/type1": 2.0,
    "eval_env/invalid_action_rate": 0.2727272727272727,
    "eval_env/episode_length": 2.2,
    "eval_env/errors": 0.0,
    "eval_env/errors/exception": 0.0,
    "eval_env/errors/bad_output": 0.0,
    "eval_env/errors/timeout": 0.0,
    "eval_env/errors/bad_reward": 0.0,
    "eval_env/errors/worker_died": 0.0,
}


def test_agent_mode_first_two_steps_and_evaluation_are_pinned(tmp_path, tiny_tokenizer, one_thread):
    # Two accumulation slices per generation (old log-probs kept), chunks of 3 rows, a reference model (beta > 0),
    # a teacher context from three sources: every stage of the agent-mode batch path runs. The scripted "model"
    # makes outcomes differ within groups.
    trainer = SDARTrainer(
        str(save_tiny(tmp_path / "model")),  # a path: TRL loads the reference model (beta > 0) from it
        args=tiny_agent_config(
            tmp_path / "out",
            per_device_train_batch_size=3,
            gradient_accumulation_steps=2,
            num_generations=2,
            beta=0.04,
            privileged_context_source="skills+facts",
        ),
        # A row's own privileged_context is appended to the skills and the environment's facts.
        train_dataset=Dataset.from_list([{"seed": i, "privileged_context": "Row hint." * (i % 2)} for i in range(8)]),
        eval_dataset=Dataset.from_list([{"seed": i} for i in range(20, 25)]),
        processing_class=tiny_tokenizer,
        env_factory=lambda: ScriptedEnv(length=3),
        skill_bank=BANK,
    )

    def respond(text: str, call: int, position: int) -> str:
        return [GO, WIN, "garbage", GO, WIN, GO][(call + 2 * position) % 6]

    patch_generation(trainer, respond)
    trainer.train()
    _check(_logged(trainer, ("sdar/", "env/")), AGENT)
    metrics = trainer.evaluate()
    _check({k: v for k, v in metrics.items() if k.startswith("eval_env/")}, AGENT_EVAL)
