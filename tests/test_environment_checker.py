"""check_agent_environment accepts a correct environment and names what a broken one got wrong."""

from __future__ import annotations

import pytest

from sdar_trl.environments import (
    AgentEnvironment,
    AgentEnvironmentCheckError,
    check_agent_environment,
    list_envs,
    make_env,
    register_env,
)
from sdar_trl.environments.toy import KeyDoorEnv
from sdar_trl.testing import ScriptedEnv


def test_toy_and_scripted_envs_pass():
    check_agent_environment(KeyDoorEnv())
    check_agent_environment(ScriptedEnv())
    assert isinstance(KeyDoorEnv(), AgentEnvironment)


def test_toy_expert_solves_every_task():
    env = KeyDoorEnv()
    for seed in range(100):
        env.reset(seed=seed)
        for _ in range(env.max_episode_steps):
            _, reward, terminated, truncated, info = env.step(env.expert_action())
            if terminated or truncated:
                break
        assert info["won"] and reward == 1.0


class StepWithoutReset(ScriptedEnv):
    def step(self, action):
        if self.seed is None:
            return "fine", 0.0, False, False, {"won": False, "admissible_actions": None}
        return super().step(action)


class Nondeterministic(ScriptedEnv):
    counter = 0

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        Nondeterministic.counter += 1
        return f"{obs} #{Nondeterministic.counter}", info


class BoolReward(ScriptedEnv):
    def step(self, action):
        obs, _reward, terminated, truncated, info = super().step(action)
        return obs, True, terminated, truncated, info


class NoTaskType(ScriptedEnv):
    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        del info["task_type"]
        return obs, info


class RaisesOnGarbage(ScriptedEnv):
    def step(self, action):
        if action == "":
            raise ValueError("empty action")
        return super().step(action)


class CloseTwiceFails(ScriptedEnv):
    def close(self):
        super().close()
        if self.close_calls > 1:
            raise RuntimeError("already closed")


class NoWonKey(ScriptedEnv):
    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        info.pop("won")
        return obs, reward, terminated, truncated, info


@pytest.mark.parametrize(
    ("env", "match"),
    [
        (StepWithoutReset(), "step\\(\\) before reset\\(\\) returned normally"),
        (Nondeterministic(), "two episodes with seed=0 differ"),
        (BoolReward(), "reward must be a real number.*got True"),
        (NoTaskType(), "info\\['task_type'\\] must be a non-empty str, got None"),
        (RaisesOnGarbage(), "step\\(''\\) raised ValueError: empty action"),
        (CloseTwiceFails(), "a second close\\(\\) raised RuntimeError"),
        (NoWonKey(), "info\\['won'\\] must be a bool, got None"),
    ],
)
def test_broken_environments_are_reported(env, match):
    with pytest.raises(AgentEnvironmentCheckError, match=match):
        check_agent_environment(env)


def test_registry():
    assert {"toy-keys", "alfworld-mini", "webshop-mini", "searchqa-mini"} <= set(list_envs())
    assert isinstance(make_env("toy-keys", num_rooms=4), KeyDoorEnv)
    with pytest.raises(ValueError, match="unknown environment 'nope'"):
        make_env("nope")
    register_env("scripted-test", ScriptedEnv)
    with pytest.raises(ValueError, match="already registered"):
        register_env("scripted-test", ScriptedEnv)
    assert isinstance(make_env("scripted-test", length=2), ScriptedEnv)
