"""The episode loop: multi-turn, step-level rollouts, every environment step one training sample (docs/agents.md).

`play_episodes` plays a batch of environment copies in lock-step. At every step it renders a fresh
single-message prompt for each live copy (task, steps taken, the last `history_length`
(observation, action) pairs, the current observation, the admissible actions), generates the
responses of all live copies in **one** batched call, parses them (`sdar_trl.actions`), steps the
environments and records one `StepRecord` per (copy, step). It never raises because of an
environment or a model output: an environment call that raises, returns the wrong types
(`environments.base.check_step_result`), gives a non-finite or out-of-range reward, or times out
ends that trajectory as *failed* (`EpisodeRecord.env_error` / `env_error_kind`, docs/faults.md).
Only a task row with a non-integer seed raises, before any environment is touched.

The generation callable is the only link to the model, so the same loop serves the trainer (TRL's
generation backends, vLLM included), evaluation, and tests with a scripted "model". The step prompt is
`sdar_trl.agent.prompts`, the records `sdar_trl.agent.records`.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..actions import clean_action_text, parse_action
from ..env_guard import call_with_timeout, parse_seed
from ..environments.base import (
    DEFAULT_MAX_ABS_REWARD,
    INFO_ADMISSIBLE_ACTIONS,
    INFO_SCORE,
    INFO_TASK,
    INFO_TASK_TYPE,
    INFO_WON,
    AgentEnvironment,
    check_reset_result,
    check_step_result,
)
from .prompts import render_step_prompt, truncate_observation
from .records import EpisodeRecord, RolloutResult, StepRecord

__all__ = ["GenerateFn", "play_episodes", "strip_trailing"]

#: `(prompt texts) -> [(prompt_ids, completion_ids, completion_text)]`, one entry per prompt, same order.
GenerateFn = Callable[[list[str]], Sequence[tuple[Sequence[int], Sequence[int], str]]]


@dataclass
class _Live:
    observation: str
    info: dict[str, Any]
    history: list[tuple[str, str]] = field(default_factory=list)
    done: bool = False


def _admissible(info: Mapping[str, Any]) -> list[str] | None:
    actions = info.get(INFO_ADMISSIBLE_ACTIONS)
    if isinstance(actions, (list, tuple)):
        return [str(a) for a in actions]
    return None


def play_episodes(
    envs: Sequence[AgentEnvironment],
    rows: Sequence[Mapping[str, Any]],
    generate: GenerateFn,
    *,
    group_ids: Sequence[int],
    max_steps: int | None,
    history_length: int,
    max_observation_length: int | None = None,
    student_prefix: Callable[[EpisodeRecord], str] | None = None,
    keep_going: Callable[[bool], bool] | None = None,
    on_step: Callable[[int, int], None] | None = None,
    step_timeout: float | None = None,
    max_abs_reward: float = DEFAULT_MAX_ABS_REWARD,
    max_admissible_actions: int | None = None,
    invalid_action: str | None = None,
) -> RolloutResult:
    """Play one episode per environment copy, all copies in lock-step.

    Args:
        envs: one environment per trajectory.
        rows: the dataset row of each trajectory; passed as `env.reset(seed=row.get("seed"), options=row)`. A seed
            must be an integer or an integral float (else ValueError naming the row).
        generate: batched generation, see `GenerateFn`; called once per step with every live prompt.
        group_ids: the task group (GRPO uid) of each trajectory.
        max_steps: stop every episode after this many steps (None: the environment's `max_episode_steps`,
            else 50, ALFWorld's limit).
        history_length: past (observation, action) pairs shown in each prompt.
        max_observation_length: truncate observations to this many characters (from the left, marked).
        student_prefix: text put before each prompt of a trajectory (Skill-GRPO shows skills to the student).
        keep_going: called before each step with "this process still has live episodes"; returning False ends
            the loop. Multi-process callers all-reduce it so every process calls `generate` equally often.
        on_step: called after every step with (steps played, episodes still live), e.g. for a progress bar.
        step_timeout: seconds a `reset`/`step` call may take before its episode fails with kind `timeout` and the
            environment is listed in `RolloutResult.abandoned` (None: no limit, calls run in this thread). An
            environment with `enforces_timeout = True` (a `WorkerEnvironment`) applies its own time-out instead.
        max_abs_reward: the largest |reward| of one step; beyond it (or non-finite) the episode fails (`bad_reward`).
        max_admissible_actions: show at most this many admissible actions per prompt (None: all).
        invalid_action: sent to the environment for a response that does not parse (None: the parser's action,
            the response's tail as the reference does). Every action sent is `clean_action_text`.
    """
    if not len(envs) == len(rows) == len(group_ids):
        raise ValueError(
            f"envs, rows and group_ids must have the same length, got {len(envs)}, {len(rows)} and {len(group_ids)}."
        )
    seeds = [parse_seed(row.get("seed"), row_index=i) for i, row in enumerate(rows)]  # before any env is touched
    episodes = [EpisodeRecord(trajectory=i, group=int(g), row=rows[i]) for i, g in enumerate(group_ids)]
    fallback = None if invalid_action is None else clean_action_text(invalid_action)
    live: list[_Live | None] = []
    for i, (env, row, episode) in enumerate(zip(envs, rows, episodes, strict=True)):
        live.append(_reset(env, row, seeds[i], episode, max_observation_length, step_timeout))

    limits = [_step_limit(env, max_steps) for env in envs]
    steps: list[StepRecord] = []
    step_index = 0
    while True:
        active = [i for i, state in enumerate(live) if state is not None and not state.done]
        if keep_going is not None:
            if not keep_going(bool(active)):
                break
        elif not active:
            break
        prompts = [
            _render(envs[i], live[i], episodes[i], history_length, student_prefix, max_admissible_actions)
            for i in active
        ]
        outputs = list(generate(prompts)) if prompts or keep_going is not None else []
        if len(outputs) != len(prompts):
            raise RuntimeError(f"generate returned {len(outputs)} completions for {len(prompts)} prompts.")
        for i, prompt, (prompt_ids, completion_ids, response) in zip(active, prompts, outputs, strict=True):
            state, episode, env = live[i], episodes[i], envs[i]
            assert state is not None  # internal invariant: `active` only lists live states
            parsed = parse_action(response, getattr(env, "action_format", "think_action"))
            action = parsed.action if parsed.valid or fallback is None else fallback
            steps.append(
                StepRecord(
                    trajectory=i,
                    group=episode.group,
                    step=step_index,
                    prompt=prompt,
                    prompt_ids=list(prompt_ids),
                    completion_ids=list(completion_ids),
                    response=response,
                    action=action,
                    valid=parsed.valid,
                    parse_error=parsed.error,
                )
            )
            episode.length += 1
            episode.invalid_steps += int(not parsed.valid)
            try:
                result = call_with_timeout(
                    lambda env=env, action=action: env.step(action), timeout=_timeout(env, step_timeout), what="step()"
                )
                obs, reward, terminated, truncated, info = check_step_result(result, max_abs_reward=max_abs_reward)
            except Exception as error:  # noqa: BLE001 - a broken environment ends its trajectory, never the run
                episode.fail(error)
                state.done = True
                continue
            episode.reward += reward
            episode.won = info.get(INFO_WON, False)  # a bool: check_step_result refuses anything else
            score = info.get(INFO_SCORE)
            if isinstance(score, numbers.Real) and not isinstance(score, bool):
                episode.score = float(score)
            state.history.append((state.observation, action))
            state.observation = truncate_observation(obs, max_observation_length)
            state.info = {**state.info, **info}
            episode.terminated, episode.truncated = terminated, truncated
            if terminated or truncated or episode.length >= limits[i]:
                episode.truncated = episode.truncated or not terminated
                state.done = True
        step_index += 1
        if on_step is not None:
            on_step(step_index, sum(state is not None and not state.done for state in live))
    # A timed-out reset or step fails its episode with kind "timeout"; its environment must not be used again.
    abandoned = [episode.trajectory for episode in episodes if episode.env_error_kind == "timeout"]
    return RolloutResult(steps=steps, episodes=episodes, abandoned=abandoned)


def _timeout(env: AgentEnvironment, step_timeout: float | None) -> float | None:
    # A worker environment (env_workers >= 1) applies the time-out itself by killing its worker: a watchdog thread
    # here would only add a thread per call and race with it.
    return None if getattr(env, "enforces_timeout", False) is True else step_timeout


def _step_limit(env: AgentEnvironment, max_steps: int | None) -> int:
    if max_steps is not None:
        return max_steps
    own = getattr(env, "max_episode_steps", None)
    return own if isinstance(own, int) and own > 0 else 50


def _reset(
    env: AgentEnvironment,
    row: Mapping[str, Any],
    seed: int | None,
    episode: EpisodeRecord,
    max_observation_length: int | None,
    timeout: float | None,
) -> _Live | None:
    timeout = _timeout(env, timeout)
    try:
        result = call_with_timeout(lambda: env.reset(seed=seed, options=dict(row)), timeout=timeout, what="reset()")
        obs, info = check_reset_result(result)
        facts_fn = getattr(env, "privileged_facts", None)
        facts = call_with_timeout(facts_fn, timeout=timeout, what="privileged_facts()") if callable(facts_fn) else ""
    except Exception as error:  # noqa: BLE001 - a broken environment ends its trajectory, never the run
        episode.fail(error)
        return None
    episode.task = str(info.get(INFO_TASK, ""))
    episode.task_type = str(info.get(INFO_TASK_TYPE, "") or "")
    episode.privileged_facts = facts if isinstance(facts, str) else ""
    return _Live(observation=truncate_observation(obs, max_observation_length), info=info)


def _render(
    env: AgentEnvironment,
    state: _Live | None,
    episode: EpisodeRecord,
    history_length: int,
    student_prefix: Callable[[EpisodeRecord], str] | None,
    max_admissible_actions: int | None,
) -> str:
    assert state is not None  # internal invariant: only live states are rendered
    template = getattr(env, "prompt_template", None)
    prompt = render_step_prompt(
        task=episode.task,
        observation=state.observation,
        history=state.history,
        step_count=len(state.history),
        history_length=history_length,
        admissible_actions=_admissible(state.info),
        action_format=getattr(env, "action_format", "think_action"),
        template=template if isinstance(template, str) else None,
        max_admissible_actions=max_admissible_actions,
    )
    return (student_prefix(episode) if student_prefix is not None else "") + prompt


def strip_trailing(ids: Sequence[int], stop_ids: set[int]) -> list[int]:
    """`ids` without its trailing stop tokens (EOS, padding): what a `GenerateFn` decodes into the response text."""
    end = len(ids)
    while end and ids[end - 1] in stop_ids:
        end -= 1
    return list(ids[:end])
