"""Multi-turn, step-level rollouts: every environment step is one training sample (SDAR_SPEC.md §1).

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
generation backends, vLLM included), evaluation, and tests with a scripted "model".
"""

from __future__ import annotations

import numbers
import re
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .actions import clean_action_text, parse_action
from .env_guard import FAULT_KINDS, call_with_timeout, classify_fault, parse_seed
from .environments.base import (
    ACTION_FORMATS,
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

__all__ = [
    "DEFAULT_PROMPT_TEMPLATES",
    "TRUNCATION_MARKER",
    "EpisodeRecord",
    "GenerateFn",
    "RolloutResult",
    "StepRecord",
    "build_step_batch",
    "compute_step_rewards",
    "play_episodes",
    "render_admissible_actions",
    "render_history",
    "render_step_prompt",
    "rendered_history_actions",
    "split_rows",
    "summarize_episodes",
    "truncate_observation",
]

#: Put in front of an observation whose beginning was cut off (the end, the newest text, is kept).
TRUNCATION_MARKER = "[... earlier text truncated ...] "

#: `(prompt texts) -> [(prompt_ids, completion_ids, completion_text)]`, one entry per prompt, same order.
GenerateFn = Callable[[list[str]], Sequence[tuple[Sequence[int], Sequence[int], str]]]

_THINK_ACTION_TEMPLATE = (
    "You are an expert agent acting in an interactive environment.\n"
    "Your task is: {task}\n"
    "{history_section}"
    "You are now at step {current_step} and your current observation is:\n{observation}\n"
    "{admissible_section}"
    "Now it's your turn to take an action. First reason step by step about the current situation inside "
    "<think> </think> tags. Then give exactly one action inside <action> </action> tags."
)
_SEARCH_ANSWER_TEMPLATE = (
    "Answer the given question. You can search a knowledge source as often as you need.\n"
    "Question: {task}\n"
    "{history_section}"
    "Current observation (step {current_step}):\n{observation}\n"
    "Reason inside <think> </think> tags first. To search, write <search> query </search> and the top results "
    "will be returned between <information> and </information>. When you know the answer, write it inside "
    "<answer> </answer> without explanation, for example <answer> Oslo </answer>."
)
#: The default step prompt per action format; an environment may set its own `prompt_template`.
DEFAULT_PROMPT_TEMPLATES: dict[str, str] = {
    "think_action": _THINK_ACTION_TEMPLATE,
    "search_answer": _SEARCH_ANSWER_TEMPLATE,
}


def truncate_observation(text: str, max_chars: int | None) -> str:
    """Keep the last `max_chars` characters of `text` behind `TRUNCATION_MARKER` (the newest text matters most)."""
    if max_chars is None or len(text) <= max_chars:
        return text
    return TRUNCATION_MARKER + text[-max_chars:] if max_chars > 0 else TRUNCATION_MARKER


def render_admissible_actions(actions: Sequence[str], *, max_actions: int | None = None) -> str:
    """`'a', 'b', …` with at most `max_actions` actions, then `… (N more)` for the rest (None: all of them)."""
    shown = actions if max_actions is None else actions[:max_actions]
    text = ", ".join(f"'{a}'" for a in shown)
    hidden = len(actions) - len(shown)
    return f"{text}, … ({hidden} more)" if hidden else text


def render_history(history: Sequence[tuple[str, str]], *, first_step: int) -> str:
    """`[Observation k: '…', Action k: '…']` lines, numbered from `first_step` (1-based)."""
    return "\n".join(
        f"[Observation {first_step + i}: '{obs}', Action {first_step + i}: '{action}']"
        for i, (obs, action) in enumerate(history)
    )


_HISTORY_ACTION = re.compile(r", Action \d+: '(.*)'\]$", re.M)


def rendered_history_actions(text: str) -> list[str]:
    """The actions of the `render_history` lines found in `text` (e.g. a step prompt), oldest first.

    The action is the line's last quoted field, so an action holding quotes or brackets is read back whole.
    """
    return _HISTORY_ACTION.findall(text)


def render_step_prompt(
    *,
    task: str,
    observation: str,
    history: Sequence[tuple[str, str]],
    step_count: int,
    history_length: int,
    admissible_actions: Sequence[str] | None,
    action_format: str = "think_action",
    template: str | None = None,
    max_admissible_actions: int | None = None,
) -> str:
    """The user message of one step.

    Args:
        task: the task text (`reset` info `task`).
        observation: the current observation (already truncated).
        history: all (observation, action) pairs so far; only the last `history_length` are shown.
        step_count: steps taken so far (0 at the first step).
        history_length: how many past steps to show (reference: ALFWorld/WebShop 2, Search 4).
        admissible_actions: the actions valid now, or None when the benchmark has no such list.
        action_format: picks the default template (`think_action` / `search_answer`).
        template: an environment's own `str.format` template (fields `{task}`, `{step_count}`,
            `{current_step}`, `{history_length}`, `{history}`, `{observation}`, `{admissible_actions}`).
        max_admissible_actions: show at most this many admissible actions, then `… (N more)` (None: all).
    """
    shown = list(history)[-history_length:] if history_length > 0 else []
    first_step = step_count - len(shown) + 1
    history_text = render_history(shown, first_step=first_step)
    admissible_text = (
        render_admissible_actions(admissible_actions, max_actions=max_admissible_actions)
        if admissible_actions is not None
        else ""
    )
    fields = {
        "task": task,
        "step_count": step_count,
        "current_step": step_count + 1,
        "history_length": len(shown),
        "history": history_text,
        "observation": observation,
        "admissible_actions": admissible_text,
    }
    if template is not None:
        return template.format(**fields)
    if action_format not in DEFAULT_PROMPT_TEMPLATES:
        raise ValueError(f"unknown action_format {action_format!r}; expected one of {ACTION_FORMATS}.")
    history_section = (
        f"Prior to this step, you have already taken {step_count} step(s). Below are the most recent {len(shown)} "
        f"observations and the corresponding actions you took:\n{history_text}\n"
        if shown
        else ""
    )
    admissible_section = (
        f"Your admissible actions of the current situation are: [{admissible_text}].\n"
        if admissible_actions is not None
        else ""
    )
    return DEFAULT_PROMPT_TEMPLATES[action_format].format(
        **fields, history_section=history_section, admissible_section=admissible_section
    )


@dataclass
class StepRecord:
    """One (copy, step) training sample."""

    trajectory: int
    group: int
    step: int
    prompt: str
    prompt_ids: list[int]
    completion_ids: list[int]
    response: str
    action: str
    valid: bool
    parse_error: str | None = None


@dataclass
class EpisodeRecord:
    """The outcome of one trajectory.

    `env_error` holds the error text and `env_error_kind` its kind (one of `env_guard.FAULT_KINDS`) when an
    environment call failed the episode; its samples are then never learnt from (docs/faults.md).
    """

    trajectory: int
    group: int
    task: str = ""
    task_type: str = ""
    reward: float = 0.0
    won: bool = False
    score: float | None = None
    length: int = 0
    invalid_steps: int = 0
    env_error: str | None = None
    env_error_kind: str | None = None
    privileged_facts: str = ""
    terminated: bool = False
    truncated: bool = False
    row: Mapping[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """Whether an environment call ended this episode (its samples get no loss and no group statistics)."""
        return self.env_error is not None

    def fail(self, error: BaseException) -> None:
        """Mark the episode failed by `error` (no win, no reward)."""
        self.env_error = f"{type(error).__name__}: {error}"
        self.env_error_kind = classify_fault(error)
        self.won, self.reward = False, 0.0


@dataclass
class RolloutResult:
    """All step samples and episode outcomes of one `play_episodes` call.

    `abandoned` lists the environments (by trajectory index) whose call timed out: their call may still be running in
    a background thread, so they must never be used again (the trainer replaces them).
    """

    steps: list[StepRecord]
    episodes: list[EpisodeRecord]
    abandoned: list[int] = field(default_factory=list)


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


def compute_step_rewards(result: RolloutResult, *, invalid_action_penalty: float) -> list[float]:
    """Per step sample: its episode's reward, minus `invalid_action_penalty` if the response did not parse."""
    by_trajectory = {episode.trajectory: episode for episode in result.episodes}
    return [
        by_trajectory[step.trajectory].reward - (0.0 if step.valid else invalid_action_penalty)
        for step in result.steps
    ]


def summarize_episodes(episodes: Sequence[EpisodeRecord], steps_invalid: int | None = None) -> dict[str, float]:
    """`env/*` metrics over finished episodes (all processes' episodes, gathered by the caller).

    Keys: `env/success`, `env/success/<task_type>`, `env/episodes/<task_type>` (so that a report can put an
    interval on each type's rate), `env/reward` (mean episode reward), `env/score` (when the environment
    reports a score), `env/invalid_action_rate` (invalid steps / steps), `env/episode_length`, `env/errors`
    (count of trajectories ended by an environment error), `env/errors/<kind>` for every kind of
    `env_guard.FAULT_KINDS` (0 included, so every step logs the same keys), `env/episodes`.
    """
    if not episodes:
        return {}
    metrics: dict[str, float] = {"env/episodes": float(len(episodes))}
    metrics["env/success"] = sum(e.won for e in episodes) / len(episodes)
    metrics["env/reward"] = sum(e.reward for e in episodes) / len(episodes)
    by_type: dict[str, list[bool]] = defaultdict(list)
    for episode in episodes:
        by_type[episode.task_type or "unknown"].append(episode.won)
    for task_type, wins in sorted(by_type.items()):
        metrics[f"env/success/{task_type}"] = sum(wins) / len(wins)
        metrics[f"env/episodes/{task_type}"] = float(len(wins))
    scores = [e.score if e.score is not None else 0.0 for e in episodes]
    if any(e.score is not None for e in episodes):
        metrics["env/score"] = sum(scores) / len(scores)
    total_steps = sum(e.length for e in episodes)
    invalid = sum(e.invalid_steps for e in episodes) if steps_invalid is None else steps_invalid
    metrics["env/invalid_action_rate"] = invalid / total_steps if total_steps else 0.0
    metrics["env/episode_length"] = total_steps / len(episodes)
    metrics["env/errors"] = float(sum(e.failed for e in episodes))
    for kind in FAULT_KINDS:
        metrics[f"env/errors/{kind}"] = float(sum(e.env_error_kind == kind for e in episodes))
    return metrics


def build_step_batch(
    steps: Sequence[StepRecord], *, pad_token_id: int, device: torch.device | str | None = None
) -> dict[str, torch.Tensor]:
    """TRL's batch layout for step samples: left-padded prompts, right-padded completions.

    Returns `prompt_ids`/`prompt_mask` (N, P) and `completion_ids`/`completion_mask` (N, C), with the
    masks 1 on real tokens. An empty completion (the model emitted nothing) keeps an all-zero mask row.
    """
    num = len(steps)
    prompt_len = max((len(s.prompt_ids) for s in steps), default=0)
    completion_len = max((len(s.completion_ids) for s in steps), default=0)
    prompt_ids = torch.full((num, prompt_len), pad_token_id, dtype=torch.long)  # (N, P)
    prompt_mask = torch.zeros((num, prompt_len), dtype=torch.long)  # (N, P)
    completion_ids = torch.full((num, max(completion_len, 1)), pad_token_id, dtype=torch.long)  # (N, C)
    completion_mask = torch.zeros((num, max(completion_len, 1)), dtype=torch.long)  # (N, C)
    for row, step in enumerate(steps):
        p, c = len(step.prompt_ids), len(step.completion_ids)
        if p:
            prompt_ids[row, prompt_len - p :] = torch.tensor(step.prompt_ids, dtype=torch.long)
            prompt_mask[row, prompt_len - p :] = 1
        if c:
            completion_ids[row, :c] = torch.tensor(step.completion_ids, dtype=torch.long)
            completion_mask[row, :c] = 1
    batch = {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
    }
    return {key: value.to(device) for key, value in batch.items()} if device is not None else batch


def split_rows(num_rows: int, num_parts: int) -> list[range]:
    """Split `range(num_rows)` into `num_parts` contiguous ranges whose sizes differ by at most one."""
    if num_parts < 1:
        raise ValueError(f"num_parts must be >= 1, got {num_parts}.")
    base, extra = divmod(num_rows, num_parts)
    bounds, start = [], 0
    for part in range(num_parts):
        size = base + (1 if part < extra else 0)
        bounds.append(range(start, start + size))
        start += size
    return bounds


def length_grouped_parts(lengths: torch.Tensor, num_parts: int) -> list[list[int]]:
    """Split rows into `num_parts` groups (sizes differ by at most one) of rows with similar `lengths`.

    Chunks of a padded batch cost as much as their longest row: grouping rows by length before chunking (and
    trimming each chunk's padding with `trim_left_padding`) avoids paying for the batch's longest prompt in every
    chunk. The order of rows inside an optimizer step does not change its gradient, only the summation order.
    """
    order = torch.argsort(lengths, stable=True).tolist()  # (N,) rows, shortest first
    return [[order[i] for i in part] for part in split_rows(len(order), num_parts)]


def trim_left_padding(batch: Mapping[str, Any]) -> dict[str, Any]:
    """`batch` without the prompt columns that are padding in every row (prompts are left-padded).

    Log-probs do not change for rotary-position models (Llama, Qwen, ...): the dropped columns are masked out of
    attention, and rotary embeddings only see distances between tokens, which dropping a common run of padding
    keeps. (TRL's forward gives absolute-position models padding-shifted positions anyway; trimming shifts less.)
    """
    mask = batch["prompt_mask"]  # (n, P)
    used = mask.any(dim=0).nonzero()  # (k, 1) columns holding a real token in some row
    first = int(used[0, 0]) if used.numel() else mask.size(1)
    out = dict(batch)
    out["prompt_ids"] = batch["prompt_ids"][:, first:]  # (n, P - first)
    out["prompt_mask"] = mask[:, first:]  # (n, P - first)
    return out
