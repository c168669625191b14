"""Fault injection at the environment boundary (issue 29): a failing step fails its episode, is counted and logged,
and is never learnt from.

`FaultyEnv` is a `ScriptedEnv` that misbehaves in one chosen way on one chosen step of the instances a factory marks
as faulty. The training tests drive it through real `SDARTrainer` steps (tiny model, scripted responses) and check
that the parameters stay finite, the failed samples carry no loss tokens, the `env/errors/<kind>` counters match and
the healthy rows get exactly the advantages they would get without the failed trajectory.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time

import numpy as np
import pytest
import torch
from datasets import Dataset

from agent_constants import GO, WIN, skill_bank
from sdar_trl import SDARConfig, SDARTrainer
from sdar_trl.environments.base import AgentEnvironmentCheckError, check_agent_environment
from sdar_trl.loss import compute_step_advantages
from sdar_trl.rollout import compute_step_rewards, play_episodes, summarize_episodes
from sdar_trl.testing import ScriptedEnv, build_tiny_model, patch_generation, tiny_agent_config

BANK = skill_bank()
#: Released at the end of every test so that no abandoned "hanging" step outlives it.
_RELEASE = threading.Event()


@pytest.fixture(autouse=True)
def _release_hung_steps():
    _RELEASE.clear()
    yield
    _RELEASE.set()


class FaultyEnv(ScriptedEnv):
    """`ScriptedEnv` whose `on_step`-th step misbehaves as `fault` says (None: healthy).

    Faults: `raise`, `hang` (blocks until the test ends), `bad_shape` (a 2-tuple), `bad_obs` (a list), `nan_reward`,
    `inf_reward`, `huge_reward` (1e39: a finite float64, inf in float32), `string_reward`, `str_terminated`
    (`"False"`), `str_won` (`info["won"] = "false"`). Healthy variants that must be accepted: `numpy_types`
    (np.float32 reward, np.bool_ flags) and `tensor_reward` (a 0-d tensor). `close_fault=True` makes `close()` raise.
    """

    def __init__(self, fault: str | None = None, *, on_step: int = 1, length: int = 2, close_fault: bool = False):
        super().__init__(length=length)
        self.fault, self.on_step, self.close_fault = fault, on_step, close_fault

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if self.fault is None or self.t != self.on_step:
            return obs, reward, terminated, truncated, info
        fault = self.fault
        if fault == "raise":
            raise RuntimeError("injected fault")
        if fault == "hang":
            _RELEASE.wait(60.0)
        if fault == "bad_shape":
            return obs, reward
        if fault == "bad_obs":
            return ["not", "text"], reward, terminated, truncated, info
        if fault in ("nan_reward", "inf_reward", "huge_reward", "string_reward"):
            reward = {"nan_reward": math.nan, "inf_reward": math.inf, "huge_reward": 1e39, "string_reward": "1.0"}[
                fault
            ]
        if fault == "str_terminated":
            terminated = "False"
        if fault == "str_won":
            info = {**info, "won": "false"}
        if fault == "numpy_types":
            reward, terminated, truncated = np.float32(reward), np.bool_(terminated), np.bool_(truncated)
            info = {**info, "won": np.bool_(info["won"])}
        if fault == "tensor_reward":
            reward = torch.tensor(reward, dtype=torch.float64)
        return obs, reward, terminated, truncated, info

    def close(self):
        super().close()
        if self.close_fault:
            raise RuntimeError("injected close failure")


def faulty_factory(fault: str | None, *, faulty: set[int], **kwargs):
    """A factory whose `i`-th built instance (0-based) is faulty iff `i in faulty`; keeps every instance built."""
    built: list[FaultyEnv] = []

    def factory():
        env = FaultyEnv(fault if len(built) in faulty else None, **kwargs)
        built.append(env)
        return env

    factory.built = built  # type: ignore[attr-defined]
    return factory


def scripted(responses):
    """`generate` answering `responses[call][position]` (default GO), recording every prompt."""
    calls: list[list[str]] = []

    def generate(prompts):
        calls.append(list(prompts))
        row = responses[len(calls) - 1] if len(calls) <= len(responses) else []
        texts = [row[i] if i < len(row) else GO for i in range(len(prompts))]
        return [([1, 2], [3, 4], text) for text in texts]

    return generate, calls


# ---------------------------------------------------------------------------------------------- boundary types
@pytest.mark.parametrize(
    "reward", [1, 2.5, np.float32(1.5), np.int64(3), np.float64(-2.0), torch.tensor(0.5), np.array(4.0)]
)
def test_numpy_and_tensor_rewards_are_accepted(reward):
    from sdar_trl.environments.base import parse_reward

    value = parse_reward(reward)
    assert type(value) is float and value == float(reward)


@pytest.mark.parametrize(
    "reward", [math.nan, math.inf, -math.inf, 1e39, 2e6, "1.0", True, np.bool_(True), None, torch.tensor([1.0, 2.0])]
)
def test_bad_rewards_are_rejected_naming_the_value(reward):
    from sdar_trl.environments.base import EnvOutputError, parse_reward

    with pytest.raises(EnvOutputError, match="reward") as caught:
        parse_reward(reward, max_abs_reward=1e6)
    assert caught.value.kind == "bad_reward"


@pytest.mark.parametrize("fault", ["numpy_types", "tensor_reward"])
def test_numpy_and_tensor_step_values_play_a_healthy_episode(fault):
    envs = [FaultyEnv(fault, on_step=1, length=2), FaultyEnv(fault, on_step=2, length=2)]
    generate, _ = scripted([[GO, GO], [GO, WIN]])
    result = play_episodes(envs, [{"seed": 0}] * 2, generate, group_ids=[0, 0], max_steps=None, history_length=2)
    assert [e.env_error for e in result.episodes] == [None, None]
    assert [e.won for e in result.episodes] == [False, True]
    assert [e.reward for e in result.episodes] == [0.0, 1.0]


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("str_terminated", "bad_output"),
        ("str_won", "bad_output"),
        ("bad_shape", "bad_output"),
        ("bad_obs", "bad_output"),
        ("raise", "exception"),
        ("nan_reward", "bad_reward"),
        ("huge_reward", "bad_reward"),
        ("string_reward", "bad_reward"),
    ],
)
def test_each_fault_fails_its_episode_with_its_kind(fault, kind):
    # "False" must not end the episode and "false" must not read as a win: both are type errors of the step.
    envs = [FaultyEnv(fault, on_step=1, length=3), FaultyEnv(None, length=3)]
    generate, _ = scripted([[GO, GO], [GO], [WIN]])
    result = play_episodes(envs, [{"seed": 0}] * 2, generate, group_ids=[0, 0], max_steps=None, history_length=2)
    broken, healthy = result.episodes
    assert broken.failed and broken.env_error_kind == kind and not broken.won and broken.length == 1
    assert broken.reward == 0.0
    assert not healthy.failed and healthy.won and healthy.length == 3
    metrics = summarize_episodes(result.episodes)
    assert metrics["env/errors"] == 1.0 and metrics[f"env/errors/{kind}"] == 1.0
    assert sum(metrics[f"env/errors/{k}"] for k in ("exception", "bad_output", "timeout", "bad_reward")) == 1.0


def test_checker_accepts_numpy_types_and_rejects_strings_and_huge_rewards():
    class Typed(FaultyEnv):
        def expert_action(self):
            return "go"

    check_agent_environment(Typed("numpy_types", on_step=1, length=3))
    check_agent_environment(Typed("tensor_reward", on_step=1, length=3))
    for fault, match in [
        ("str_terminated", "terminated must be a bool"),
        ("str_won", "'won'"),
        ("huge_reward", "reward"),
        ("nan_reward", "reward"),
    ]:
        with pytest.raises(AgentEnvironmentCheckError, match=match):
            check_agent_environment(Typed(fault, on_step=1, length=3))

    class Big(Typed):
        def step(self, action):
            obs, _, terminated, truncated, info = super().step(action)
            return obs, 5e6, terminated, truncated, info

    with pytest.raises(AgentEnvironmentCheckError, match="max_abs_reward"):
        check_agent_environment(Big(None, length=3))
    check_agent_environment(Big(None, length=3), max_abs_reward=1e7)


# ---------------------------------------------------------------------------------------------- seeds
class SeedRecorder(ScriptedEnv):
    def reset(self, *, seed=None, options=None):
        self.reset_seed = seed
        return super().reset(seed=seed, options=options)


def test_integral_float_and_numpy_seeds_pick_their_task():
    envs = [SeedRecorder(length=1) for _ in range(3)]
    generate, _ = scripted([[GO] * 3])
    rows = [{"seed": 3.0}, {"seed": np.int64(5)}, {"seed": np.float64(7.0)}]
    play_episodes(envs, rows, generate, group_ids=[0, 1, 2], max_steps=None, history_length=2)
    assert [env.reset_seed for env in envs] == [3, 5, 7]
    assert all(type(env.reset_seed) is int for env in envs)


@pytest.mark.parametrize("seed", [math.nan, "abc", 2.5, True, [1]])
def test_non_integer_seeds_are_a_clear_error_naming_the_row(seed):
    envs = [SeedRecorder(length=1) for _ in range(2)]
    generate, _ = scripted([[GO] * 2])
    with pytest.raises(ValueError, match=r"row 1 .*seed") as caught:
        play_episodes(envs, [{"seed": 0}, {"seed": seed}], generate, group_ids=[0, 1], max_steps=None,
                      history_length=2)  # fmt: skip
    assert repr(seed)[:3] in str(caught.value)


def test_trainer_rejects_a_dataset_with_a_non_integer_seed(tmp_path, tiny_tokenizer):
    tasks = Dataset.from_list([{"seed": 0.0}, {"seed": 1.0}, {"seed": float("nan")}, {"seed": 3.0}])
    with pytest.raises(ValueError, match=r"train_dataset row 2 .*seed.*nan"):
        make_trainer(tmp_path, tiny_tokenizer, env_factory=ScriptedEnv, dataset=tasks)


# ---------------------------------------------------------------------------------------------- timeouts, bounds
def test_a_hung_step_times_out_and_its_env_is_abandoned():
    envs = [FaultyEnv("hang", on_step=1, length=2), FaultyEnv(None, length=2)]
    generate, _ = scripted([[WIN, GO], [WIN]])
    start = time.perf_counter()
    result = play_episodes(envs, [{"seed": 0}] * 2, generate, group_ids=[0, 0], max_steps=None, history_length=2,
                           step_timeout=0.3)  # fmt: skip
    assert time.perf_counter() - start < 10
    hung, healthy = result.episodes
    assert hung.failed and hung.env_error_kind == "timeout" and "0.3" in hung.env_error
    assert not healthy.failed and healthy.length == 2
    assert result.abandoned == [0]


def test_thousands_of_admissible_actions_are_truncated_with_a_marker():
    class Crowded(ScriptedEnv):
        def reset(self, *, seed=None, options=None):
            obs, info = super().reset(seed=seed, options=options)
            return obs, {**info, "admissible_actions": [f"take item {i}" for i in range(5000)]}

    generate, calls = scripted([[GO]])
    play_episodes([Crowded(length=1)], [{"seed": 0}], generate, group_ids=[0], max_steps=None, history_length=2,
                  max_admissible_actions=20)  # fmt: skip
    prompt = calls[0][0]
    assert "'take item 19'" in prompt and "'take item 20'" not in prompt
    assert "… (4980 more)" in prompt
    assert len(prompt) < 2000


# ---------------------------------------------------------------------------------------------- advantages
def test_step_advantages_leave_out_failed_rows():
    rewards = torch.tensor([1.0, 0.0, 5.0, 0.5, -3.0, 2.0])  # (N,)
    groups = torch.tensor([0, 0, 0, 0, 1, 1])  # (N,)
    valid = torch.tensor([True, True, False, True, False, True])  # (N,)
    advantages = compute_step_advantages(rewards, groups, valid=valid)
    healthy = torch.tensor([1.0, 0.0, 0.5])
    torch.testing.assert_close(advantages[[0, 1, 3]], (healthy - healthy.mean()) / (healthy.std() + 1e-6))
    assert advantages[5] == 2.0  # the group's only healthy sample keeps its reward, as any singleton
    assert advantages[2] == 0.0 and advantages[4] == 0.0
    torch.testing.assert_close(compute_step_advantages(rewards, groups, valid=torch.ones(6, dtype=torch.bool)),
                               compute_step_advantages(rewards, groups))  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("env_step_timeout", 0),
        ("env_step_timeout", math.nan),
        ("max_abs_reward", 1e39),
        ("max_abs_reward", 0.0),
        ("max_failed_episode_share", 1.5),
        ("max_admissible_actions", 0),
    ],
)
def test_boundary_fields_are_range_checked(tmp_path, field, value):
    with pytest.raises(ValueError, match=re.escape(f"{field}={value!r}")):
        SDARConfig(output_dir=str(tmp_path), report_to="none", bf16=False, **{field: value})


# ---------------------------------------------------------------------------------------------- real training
def make_trainer(tmp_path, tokenizer, *, env_factory, dataset=None, **overrides):
    kwargs = {"max_steps_per_episode": 2, **overrides}
    return SDARTrainer(
        build_tiny_model(tokenizer),
        args=tiny_agent_config(tmp_path, **kwargs),
        train_dataset=dataset if dataset is not None else Dataset.from_list([{"seed": i} for i in range(8)]),
        processing_class=tokenizer,
        env_factory=env_factory,
        skill_bank=BANK,
    )


def record_batches(trainer):
    """Wrap `_agent_build_batch` to keep (rollout, batch) of every training rollout."""
    seen = []
    original = trainer._agent_build_batch

    def recording(result):
        batch = original(result)
        seen.append((result, {k: v.clone() for k, v in batch.items() if isinstance(v, torch.Tensor)}))
        return batch

    trainer._agent_build_batch = recording
    return seen


# Trajectory 1 (the second copy of the first task) fails on its first step; trajectory 0 wins there, 2 and 3 go on.
SCRIPT = [[WIN, GO, GO, "garbage"], [GO, GO, GO]] * 2


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("raise", "exception"),
        ("bad_shape", "bad_output"),
        ("str_won", "bad_output"),
        ("nan_reward", "bad_reward"),
        ("huge_reward", "bad_reward"),
        ("hang", "timeout"),
    ],
)
def test_faults_through_real_training_steps(tmp_path, tiny_tokenizer, caplog, fault, kind):
    factory = faulty_factory(fault, faulty={1}, length=2)
    trainer = make_trainer(tmp_path, tiny_tokenizer, env_factory=factory, env_step_timeout=0.5)
    patch_generation(trainer, lambda text, call, position: SCRIPT[call][position] if call < len(SCRIPT) else GO)
    batches = record_batches(trainer)
    with caplog.at_level(logging.WARNING):
        trainer.train()

    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert len(batches) == 2
    failed_total = 0
    for result, batch in batches:
        failed = {e.trajectory for e in result.episodes if e.failed}
        failed_total += len(failed)
        rows = range(len(result.steps))
        failed_rows = [i for i in rows if result.steps[i].trajectory in failed]
        healthy_rows = [i for i in rows if i not in failed_rows]
        # Failed samples carry no loss tokens ...
        assert all(batch["completion_mask"][i].sum() == 0 for i in failed_rows)
        assert all(batch["completion_mask"][i].sum() > 0 for i in healthy_rows)
        # ... and leave the group statistics: the healthy rows get the advantages of the healthy rows alone.
        rewards = torch.tensor(compute_step_rewards(result, invalid_action_penalty=0.1))[healthy_rows]
        groups = torch.tensor([result.steps[i].group for i in healthy_rows])
        torch.testing.assert_close(batch["advantages"][healthy_rows], compute_step_advantages(rewards, groups))
        assert all(batch["advantages"][i] == 0 for i in failed_rows)
    # The abandoned (timed-out) instance is replaced by a fresh one: only the first rollout fails then.
    assert failed_total == (1 if fault == "hang" else 2)
    logs = [entry for entry in trainer.state.log_history if "env/errors" in entry]
    assert sum(entry[f"env/errors/{kind}"] for entry in logs) == failed_total
    assert sum(entry["env/errors"] for entry in logs) == failed_total
    assert all(math.isfinite(entry["loss"]) for entry in trainer.state.log_history if "loss" in entry)
    # The first occurrence is logged with its kind, the error text and the task.
    messages = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert messages and kind in messages[0] and "task " in messages[0]
    if fault == "raise":
        assert "injected fault" in messages[0]
    if fault == "hang":  # the hung instance was dropped, never closed (its call may still run), and replaced
        assert len(factory.built) == 5 and factory.built[1].close_calls == 0
        assert all(env.close_calls == 1 for i, env in enumerate(factory.built) if i != 1)


def test_too_many_failed_episodes_stop_training_naming_the_env(tmp_path, tiny_tokenizer):
    factory = faulty_factory("raise", faulty={0, 1, 2, 3}, length=2)
    built = factory.built
    trainer = make_trainer(tmp_path, tiny_tokenizer, env_factory=factory, max_failed_episode_share=0.5)
    patch_generation(trainer, lambda text, call, position: GO)
    with pytest.raises(RuntimeError, match=r"FaultyEnv.*4 of 4 episodes.*max_failed_episode_share=0.5"):
        trainer.train()
    assert built and all(env.close_calls == 1 for env in built)  # a run that stops still closes its envs


def test_a_failing_close_neither_aborts_train_nor_leaves_envs_open(tmp_path, tiny_tokenizer, caplog):
    built: list[FaultyEnv] = []

    def factory():
        built.append(FaultyEnv(None, close_fault=len(built) == 1))
        return built[-1]

    trainer = make_trainer(tmp_path, tiny_tokenizer, env_factory=factory, max_steps=1)
    patch_generation(trainer, lambda text, call, position: GO)
    with caplog.at_level(logging.WARNING):
        trainer.train()  # must not raise
    assert len(built) == 4 and all(env.close_calls == 1 for env in built)
    assert any("injected close failure" in r.getMessage() for r in caplog.records)
