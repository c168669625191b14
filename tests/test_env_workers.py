"""Environments in worker processes (`env_workers`, issue 33): a crash of native environment code (here a real
segfault through `ctypes`, a real `os._exit`, a real hang) fails its episodes and restarts the worker, never training.
"""

from __future__ import annotations

import functools
import multiprocessing
import time

import pytest
from datasets import Dataset

from agent_constants import GO, skill_bank
from sdar_trl import SDARTrainer
from sdar_trl._mistakes import check_environment_protocol
from sdar_trl.env_guard import EnvStepTimeoutError, EnvWorkerDiedError, classify_fault
from sdar_trl.env_workers import EnvWorkerPool, check_picklable_factory
from sdar_trl.rollout import play_episodes
from sdar_trl.testing import build_tiny_model, patch_generation, tiny_agent_config
from worker_envs import CrashEnv, dying_factory

BANK = skill_bank()


def act(action):
    return f"<think>x</think><action>{action}</action>"


def worker_children():
    return [p for p in multiprocessing.active_children() if p.name.startswith("sdar-env-worker")]


# ---------------------------------------------------------------------------------------------- the proxy itself
def test_the_proxy_forwards_calls_and_a_segfault_fails_only_its_worker():
    with EnvWorkerPool(2, timeout=10) as pool:
        a, b, c = (pool.make_env(CrashEnv) for _ in range(3))  # workers 0, 1, 0
        assert (a.env_class_name, a.action_format, a.max_episode_steps) == ("CrashEnv", "think_action", 2)
        obs_a, info = a.reset(seed=4)
        assert obs_a.startswith("start 4") and info["task"] == "task 4" and a.privileged_facts() == "facts of task 4"
        c.reset(seed=5)
        b.reset(seed=6)
        assert a.step("go")[0] == "you did 'go'"
        with pytest.raises(RuntimeError, match="ValueError: injected fault") as raised:
            b.step("raise")  # an ordinary exception: the worker lives on
        assert classify_fault(raised.value) == "exception"

        with pytest.raises(EnvWorkerDiedError, match=r"worker 0 died .*SIGSEGV") as died:
            a.step("crash")
        assert classify_fault(died.value) == "worker_died" and pool.restarts == 1
        with pytest.raises(EnvWorkerDiedError, match="restarted"):
            c.step("go")  # held by the same worker: its episode state is gone
        assert b.step("go")[0] == "you did 'go'"  # the other worker is untouched
        obs_c, _ = c.reset(seed=5)  # a new episode rebuilds the environment in the restarted worker
        assert obs_c.startswith("start 5") and obs_c != obs_a.replace("start 4", "start 5")  # another pid
        assert c.step("go")[0] == "you did 'go'"

        with pytest.raises(EnvWorkerDiedError, match="exit code 3"):
            b.step("exit")
        assert b.reset(seed=1)[0].startswith("start 1")
        assert len(worker_children()) == 2
    assert worker_children() == []  # closed on leaving the context


def test_a_hung_call_kills_its_worker_after_the_timeout():
    with EnvWorkerPool(1, timeout=1.0) as pool:
        env = pool.make_env(CrashEnv)
        env.reset(seed=0)
        pid = pool.pids[0]
        start = time.perf_counter()
        with pytest.raises(EnvStepTimeoutError, match="env_step_timeout=1 s") as raised:
            env.step("hang")
        assert time.perf_counter() - start < 5 and classify_fault(raised.value) == "timeout"
        assert pool.pids == []  # killed, restarted on next use
        env.reset(seed=0)
        assert pool.pids and pool.pids[0] != pid


def test_the_nul_byte_never_reaches_a_worker_environment():
    with EnvWorkerPool(1) as pool:
        env = pool.make_env(CrashEnv)
        responses = iter([[act("g\x00o")], ["\x00garbage\x00"]])
        result = play_episodes(
            [env], [{"seed": 1}], lambda prompts: [([1], [2], r) for r in next(responses)], group_ids=[0],
            max_steps=2, history_length=2,
        )  # fmt: skip
    assert [s.action for s in result.steps] == ["go", "garbage"] and not any(e.failed for e in result.episodes)


def test_a_factory_that_cannot_be_pickled_is_named_with_the_fix():
    with pytest.raises(TypeError, match=r"env_factory=<function .*<lambda>.* is not .*module-level class"):
        check_picklable_factory(lambda: CrashEnv(), name="env_factory")
    check_picklable_factory(functools.partial(CrashEnv, length=3), name="env_factory")


def test_a_worker_dying_while_building_names_the_main_guard():
    with EnvWorkerPool(1) as pool, pytest.raises(EnvWorkerDiedError, match=r"exit code 1.*__name__ == \"__main__\""):
        pool.make_env(dying_factory)


def test_a_worker_refuses_a_non_environment_with_the_trainers_message():
    # The worker and the trainer's pool share one protocol check, so env_workers changes only the wrapper.
    with pytest.raises(TypeError) as in_process:
        check_environment_protocol(object(), factory_name="env_factory")
    with EnvWorkerPool(1) as pool, pytest.raises(RuntimeError) as in_worker:
        pool.make_env(object)
    assert f"TypeError: {in_process.value}" in str(in_worker.value)
    assert "lacks ['reset', 'step', 'close']" in str(in_process.value)


def test_a_closed_pool_refuses_calls_and_closing_twice_is_harmless():
    pool = EnvWorkerPool(1)
    env = pool.make_env(CrashEnv)
    pool.close()
    pool.close()
    env.close()
    with pytest.raises(RuntimeError, match="EnvWorkerPool is closed"):
        env.reset(seed=0)
    with pytest.raises(ValueError, match="num_workers must be an int >= 1, got 0"):
        EnvWorkerPool(0)


# ---------------------------------------------------------------------------------------------- real training
def make_trainer(tmp_path, tokenizer, **overrides):
    args = tiny_agent_config(
        tmp_path, **{"max_steps_per_episode": 2, "env_workers": 2, "env_step_timeout": 20.0, **overrides}
    )
    return SDARTrainer(
        build_tiny_model(tokenizer),
        args=args,
        train_dataset=Dataset.from_list([{"seed": i} for i in range(8)]),
        processing_class=tokenizer,
        env_factory=CrashEnv,
        skill_bank=BANK,
    )


def error_counts(trainer):
    logs = [entry for entry in trainer.state.log_history if "env/errors" in entry]
    kinds = ("exception", "timeout", "worker_died")
    return len(logs), {kind: sum(entry[f"env/errors/{kind}"] for entry in logs) for kind in kinds}


def test_the_nul_byte_never_reaches_a_worker_environment_through_the_trainer(tmp_path, tiny_tokenizer):
    # The crash: a NUL in the action. Cleaned before it is sent, whether the response parses or not.
    trainer = make_trainer(tmp_path, tiny_tokenizer)
    script = [[act("g\x00o"), "\x00garbage\x00"], [GO, GO]]
    prompts = patch_generation(trainer, lambda text, call, position: script[call][position])
    try:
        trainer._agent_generate_and_score([{"seed": 0}, {"seed": 0}])
    finally:
        trainer.close_environments()
    echoed = [p for p in prompts if "you did" in p]  # the environment echoes what it received into the next prompt
    assert len(echoed) == 2 and "you did 'go'" in echoed[0] and "you did 'garbage'" in echoed[1]
    assert not any("\x00" in p for p in prompts) and worker_children() == []


@pytest.mark.parametrize(("action", "kind"), [("crash", "worker_died"), ("hang", "timeout")])
def test_sdar_trains_through_a_segfault_or_a_hang_in_a_worker(tmp_path, tiny_tokenizer, action, kind):
    # 4 trajectories a step over 2 workers (0, 2 in worker 0; 1, 3 in worker 1). Trajectory 1 segfaults (or hangs)
    # on its first step: it fails with `kind`, trajectory 3 (same worker, state lost) with worker_died.
    timeout = 2.0 if action == "hang" else 20.0
    trainer = make_trainer(tmp_path, tiny_tokenizer, env_step_timeout=timeout, max_failed_episode_share=0.5)
    pool = trainer._envs.worker_pool
    patch_generation(trainer, lambda text, call, position: act(action) if (call, position) == (0, 1) else GO)
    trainer.train()
    assert trainer.state.global_step == 2
    steps, counts = error_counts(trainer)
    assert steps == 2
    expected = {"exception": 0, "timeout": 0, "worker_died": 1}
    expected[kind] += 1
    assert counts == expected
    assert pool.restarts == 1
    assert worker_children() == []  # shut down when training ended


def test_workers_are_shut_down_when_training_raises(tmp_path, tiny_tokenizer):
    trainer = make_trainer(tmp_path, tiny_tokenizer, max_failed_episode_share=0.0)
    patch_generation(trainer, lambda text, call, position: act("raise"))
    assert len(worker_children()) == 1  # the construction-time check built one environment
    with pytest.raises(RuntimeError, match="CrashEnv: 4 of 4 episodes"):
        trainer.train()
    assert worker_children() == []


@pytest.mark.parametrize("env_workers", [0, 2])
def test_error_messages_name_the_users_factory_also_a_partial_without_positional_arguments(
    tmp_path, tiny_tokenizer, env_workers
):
    trainer = SDARTrainer(
        build_tiny_model(tiny_tokenizer),
        args=tiny_agent_config(tmp_path, max_steps_per_episode=2, env_workers=env_workers),
        train_dataset=Dataset.from_list([{"seed": i} for i in range(8)]),
        processing_class=tiny_tokenizer,
        env_factory=functools.partial(CrashEnv),  # no positional argument: nothing to unwrap but the class
        skill_bank=BANK,
    )
    trainer.close_environments()
    # No environment pooled any more: the name comes from the factory the user gave, not from the pool's wrapper,
    # and naming it starts no worker pool again.
    assert trainer._envs.name() == repr(functools.partial(CrashEnv))
    assert trainer._envs.worker_pool is None and worker_children() == []
