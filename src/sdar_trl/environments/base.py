"""The environment protocol every benchmark implements, and a checker for implementations.

The protocol is Gymnasium-shaped but text-in, text-out (docs/agents.md, docs/environments.md):

```python
obs, info = env.reset(seed=3, options=row)      # row: the dataset row describing the task
obs, reward, terminated, truncated, info = env.step("go to cabinet 1")
env.close()
```

`terminated` means the episode reached a terminal state of the task (won, bought, answered);
`truncated` means it was cut short from outside the task (the environment's own step limit).
The rollout also stops an episode at `SDARConfig.max_steps_per_episode`.

Info keys (constants below). `reset` must return `task` and `task_type`; both `reset` and `step`
return `admissible_actions` (a list of strings, or `None` when the benchmark has no such list);
`step` returns `won` and, where the benchmark defines one, `score` (e.g. WebShop's task score in
[0, 1]).

Types at the boundary (checked by the rollout at every step, and by `check_agent_environment`):
the reward is a Python or numpy real number or a 0-d tensor/array (converted to `float`), finite and
at most `max_abs_reward` in magnitude (`SDARConfig.max_abs_reward`, default 1e6: the rewards must stay
finite in float32); `terminated`, `truncated` and `info["won"]` are `bool` or `numpy.bool_` (a string
such as `"False"` is truthy, so it is refused rather than guessed at). A step breaking these rules
fails its episode (see docs/faults.md).

Optional members an environment may define (the rollout looks them up with `getattr`):

- `action_format`: `"think_action"` (default; `<think>…</think><action>…</action>`) or
  `"search_answer"` (`<search>…</search>` / `<answer>…</answer>`). See `sdar_trl.actions`.
- `prompt_template`: a `str.format` template replacing the default step prompt of its action format;
  fields `{task}`, `{step_count}`, `{current_step}`, `{history_length}`, `{history}`,
  `{observation}`, `{admissible_actions}` (see `sdar_trl.agent.prompts.render_step_prompt`).
- `privileged_facts() -> str`: oracle facts about the current task (e.g. where the target object is),
  offered to the teacher as an ablation; `""` when there are none.
- `expert_action() -> str` / `expert_response() -> str`: the next action of an expert policy, as
  `step()` accepts it, and as a full model response in the environment's action format.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "ACTION_FORMATS",
    "DEFAULT_MAX_ABS_REWARD",
    "INFO_ADMISSIBLE_ACTIONS",
    "INFO_SCORE",
    "INFO_TASK",
    "INFO_TASK_TYPE",
    "INFO_WON",
    "AgentEnvironment",
    "AgentEnvironmentCheckError",
    "EnvOutputError",
    "ResetNeededError",
    "check_agent_environment",
    "check_reset_result",
    "check_step_result",
    "parse_flag",
    "parse_reward",
    "pick_game",
    "row_seed",
]

INFO_TASK = "task"
"""`reset` info: the task description shown to the agent (str)."""
INFO_TASK_TYPE = "task_type"
"""`reset` info: the task's type, used for skill routing and per-type metrics (str)."""
INFO_ADMISSIBLE_ACTIONS = "admissible_actions"
"""`reset`/`step` info: the actions valid in the current state (list[str]), or None."""
INFO_WON = "won"
"""`step` info: whether the task has been accomplished (bool)."""
INFO_SCORE = "score"
"""`step` info (optional): the benchmark's task score, e.g. WebShop's reward in [0, 1] (float)."""

ACTION_FORMATS = ("think_action", "search_answer")

#: Default bound on |reward| of one step (`SDARConfig.max_abs_reward`); far inside float32's range (~3.4e38).
DEFAULT_MAX_ABS_REWARD = 1e6


class ResetNeededError(RuntimeError):
    """Raised by `step()` when it is called before the first `reset()`."""


class AgentEnvironmentCheckError(ValueError):
    """Raised by `check_agent_environment` when an environment breaks the protocol."""


class EnvOutputError(ValueError):
    """An environment returned a value of the wrong type, shape or range.

    `kind` is `"bad_reward"` for a reward that is not a finite number within bounds, `"bad_output"` for anything
    else (the fault kinds counted as `env/errors/<kind>`, docs/faults.md).
    """

    def __init__(self, message: str, *, kind: str = "bad_output") -> None:
        super().__init__(message)
        self.kind = kind


def row_seed(seed: int | None, options: dict[str, Any] | None) -> int | None:
    """`seed`, or else the task row's int `"seed"` (the trainer passes the dataset row as `options`), else None.

    Environments then draw a random task for None and validate the result themselves.
    """
    if seed is None and isinstance(options, dict):
        value = options.get("seed")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return seed


def pick_game(game_files: Sequence[str], seed: int | None, options: dict[str, Any] | None, rng: Any) -> str:
    """The game file of task `seed` (or the row's seed) for adapters over a list of game files: `seed % len`, or a
    random game (`rng.randrange`) when neither gives one. Raises TypeError naming a seed that is not an int."""
    seed = row_seed(seed, options)
    if seed is None:
        seed = rng.randrange(len(game_files))
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int game index or None, got {type(seed).__name__} ({seed!r}).")
    return game_files[seed % len(game_files)]


def parse_reward(value: object, *, max_abs_reward: float = DEFAULT_MAX_ABS_REWARD) -> float:
    """A step reward as a `float`: Python/numpy real numbers and 0-d tensors or arrays are accepted.

    Raises `EnvOutputError(kind="bad_reward")` for booleans, strings, non-scalars, non-finite values and
    |reward| > `max_abs_reward` (a finite float64 such as 1e39 is inf in float32 and would turn the weights NaN).
    """
    scalar = value
    if (
        not isinstance(value, numbers.Number)
        and getattr(value, "ndim", None) == 0
        and callable(getattr(value, "item", None))
    ):
        scalar = value.item()  # 0-d torch tensor or numpy array
    if isinstance(scalar, (bool, np.bool_)) or not isinstance(scalar, numbers.Real):
        raise EnvOutputError(
            f"step() reward must be a real number (int, float, numpy number or 0-d tensor), got {value!r:.80} "
            f"({type(value).__name__}). Return e.g. float(reward).",
            kind="bad_reward",
        )
    reward = float(scalar)
    if not math.isfinite(reward) or abs(reward) > max_abs_reward:
        raise EnvOutputError(
            f"step() reward must be finite with |reward| <= max_abs_reward={max_abs_reward:g}, got {reward!r}. Fix "
            "the environment's reward, or raise max_abs_reward if such rewards are intended.",
            kind="bad_reward",
        )
    return reward


def parse_flag(value: object, *, name: str) -> bool:
    """`bool` or `numpy.bool_` as `bool`; anything else (`"False"`, 0, None) is an `EnvOutputError`."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise EnvOutputError(
        f"step() {name} must be a bool, got {value!r:.80} ({type(value).__name__}). Return a real bool: a string "
        "such as 'False' is truthy."
    )


def check_reset_result(result: object) -> tuple[str, dict[str, Any]]:
    """Validate what `reset` returned: `(observation: str, info: dict)`, else `EnvOutputError`."""
    if not isinstance(result, tuple) or len(result) != 2:
        raise EnvOutputError(f"reset() must return (observation: str, info: dict), got {result!r:.200}.")
    obs, info = result
    if not isinstance(obs, str):
        raise EnvOutputError(f"reset() observation must be a str, got {type(obs).__name__}.")
    if not isinstance(info, dict):
        raise EnvOutputError(f"reset() info must be a dict, got {type(info).__name__}.")
    return obs, info


def check_step_result(
    result: object, *, max_abs_reward: float = DEFAULT_MAX_ABS_REWARD
) -> tuple[str, float, bool, bool, dict[str, Any]]:
    """Validate and normalise what `step` returned (see the module docstring for the types); `EnvOutputError` if not.

    `info["won"]`, when present, is normalised to a `bool` the same way as `terminated`/`truncated`.
    """
    if not isinstance(result, tuple) or len(result) != 5:
        raise EnvOutputError(
            f"step() must return (observation, reward, terminated, truncated, info), got {result!r:.200}."
        )
    obs, reward, terminated, truncated, info = result
    if not isinstance(obs, str):
        raise EnvOutputError(f"step() observation must be a str, got {type(obs).__name__}.")
    if not isinstance(info, dict):
        raise EnvOutputError(f"step() info must be a dict, got {type(info).__name__}.")
    reward = parse_reward(reward, max_abs_reward=max_abs_reward)
    terminated = parse_flag(terminated, name="terminated")
    truncated = parse_flag(truncated, name="truncated")
    if INFO_WON in info:
        info = {**info, INFO_WON: parse_flag(info[INFO_WON], name=f"info[{INFO_WON!r}]")}
    return obs, reward, terminated, truncated, info


@runtime_checkable
class AgentEnvironment(Protocol):
    """A text environment with Gymnasium's reset/step/close contract (see the module docstring)."""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Start an episode; `seed` picks the task deterministically, `options` is the dataset row."""
        ...

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Apply one action: `(observation, reward, terminated, truncated, info)`."""
        ...

    def close(self) -> None:
        """Release resources; calling it twice must be harmless."""
        ...


def _fail(env: object, message: str) -> None:
    raise AgentEnvironmentCheckError(f"{type(env).__name__}: {message}")


def _check_admissible(env: object, info: dict[str, Any], where: str) -> None:
    if INFO_ADMISSIBLE_ACTIONS not in info:
        _fail(env, f"{where} info has no {INFO_ADMISSIBLE_ACTIONS!r} key; expected a list of strings or None.")
    actions = info[INFO_ADMISSIBLE_ACTIONS]
    if actions is not None and (not isinstance(actions, list) or not all(isinstance(a, str) for a in actions)):
        _fail(env, f"{where} info[{INFO_ADMISSIBLE_ACTIONS!r}] must be a list of str or None, got {actions!r}.")


def _check_reset(env: object, result: object, seed: int) -> tuple[str, dict[str, Any]]:
    try:
        obs, info = check_reset_result(result)
    except EnvOutputError as error:
        _fail(env, f"reset(seed={seed}): {error}")
    for key in (INFO_TASK, INFO_TASK_TYPE):
        if not isinstance(info.get(key), str) or not info[key]:
            _fail(env, f"reset() info[{key!r}] must be a non-empty str, got {info.get(key)!r}.")
    _check_admissible(env, info, "reset()")
    return obs, info


def _check_step(
    env: object, result: object, action: str, max_abs_reward: float = DEFAULT_MAX_ABS_REWARD
) -> tuple[str, float, bool, bool, dict[str, Any]]:
    try:
        obs, reward, terminated, truncated, info = check_step_result(result, max_abs_reward=max_abs_reward)
    except EnvOutputError as error:
        _fail(env, f"step({action!r:.60}): {error}")
    if INFO_WON not in info:
        _fail(env, f"step() info[{INFO_WON!r}] must be a bool, got None (no {INFO_WON!r} key).")
    score = info.get(INFO_SCORE)
    if INFO_SCORE in info and (isinstance(score, (bool, np.bool_)) or not isinstance(score, numbers.Real)):
        _fail(env, f"step() info[{INFO_SCORE!r}] must be a float when present, got {score!r}.")
    _check_admissible(env, info, "step()")
    return obs, reward, terminated, truncated, info


def _play(env: AgentEnvironment, seed: int, num_steps: int, max_abs_reward: float) -> list[object]:
    """One seeded episode of up to `num_steps` steps; returns the full transcript for comparison."""
    obs, info = _check_reset(env, env.reset(seed=seed), seed)
    transcript: list[object] = [obs, sorted(info.items(), key=lambda kv: kv[0]).__repr__()]
    for step in range(num_steps):
        expert = getattr(env, "expert_action", None)
        admissible = info.get(INFO_ADMISSIBLE_ACTIONS)
        if callable(expert):
            action = expert()
            if not isinstance(action, str):
                _fail(env, f"expert_action() must return a str, got {type(action).__name__}.")
        elif admissible:
            action = admissible[step % len(admissible)]
        else:
            action = "look"
        obs, reward, terminated, truncated, info = _check_step(env, env.step(action), action, max_abs_reward)
        transcript.append((action, obs, reward, terminated, truncated, repr(sorted(info.items()))))
        if terminated or truncated:
            break
    return transcript


_GARBAGE_ACTIONS = ("", " ", "\x00", "☃ ünïcödé 行动", "click[", "search[]", "a" * 5000, "<action>look</action>")


def check_agent_environment(
    env: AgentEnvironment, *, seed: int = 0, num_steps: int = 8, max_abs_reward: float = DEFAULT_MAX_ABS_REWARD
) -> None:
    """Check that `env` follows the `AgentEnvironment` protocol; raise `AgentEnvironmentCheckError` if not.

    Checks, in order: `step()` before the first `reset()` raises (`ResetNeededError` or another
    `RuntimeError`); `reset`/`step` return types and the documented info keys (rewards: finite real numbers
    within `max_abs_reward`; `terminated`, `truncated`, `info["won"]`: real bools); seeding determinism
    (two episodes with the same seed give identical transcripts, played with `expert_action()` when
    the environment has one, else with its admissible actions); malformed action strings (empty,
    control characters, unicode, 5,000 characters) are answered, never raised on; `close()` twice is
    harmless. The environment is closed at the end.

    Args:
        env: a freshly constructed environment (not yet reset).
        seed: the seed used for the determinism check.
        num_steps: how many steps each check episode plays at most.
        max_abs_reward: the largest |reward| of a step accepted (use the value of `SDARConfig.max_abs_reward`).
    """
    for member in ("reset", "step", "close"):
        if not callable(getattr(env, member, None)):
            _fail(env, f"has no callable {member}(); expected the AgentEnvironment protocol (reset, step, close).")
    action_format = getattr(env, "action_format", "think_action")
    if action_format not in ACTION_FORMATS:
        _fail(env, f"action_format is {action_format!r}; expected one of {ACTION_FORMATS}.")
    template = getattr(env, "prompt_template", None)
    if template is not None and not isinstance(template, str):
        _fail(env, f"prompt_template must be a str or None, got {type(template).__name__}.")

    try:
        env.step("look")
    except RuntimeError:
        pass
    else:
        _fail(env, "step() before reset() returned normally; expected it to raise ResetNeededError.")

    first = _play(env, seed, num_steps, max_abs_reward)
    second = _play(env, seed, num_steps, max_abs_reward)
    if first != second:
        diff = next(
            (i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b), min(len(first), len(second))
        )
        _fail(
            env,
            f"two episodes with seed={seed} differ at transcript entry {diff} "
            f"({first[diff : diff + 1]!r:.200} vs {second[diff : diff + 1]!r:.200}); reset(seed=...) must make the "
            "episode deterministic.",
        )

    _check_reset(env, env.reset(seed=seed), seed)
    for action in _GARBAGE_ACTIONS:
        try:
            result = env.step(action)
        except Exception as error:  # noqa: BLE001 - any exception here is the protocol violation we report
            _fail(
                env,
                f"step({action!r:.40}) raised {type(error).__name__}: {error}; malformed actions must be "
                "answered with an observation (e.g. 'Nothing happens.'), not raised.",
            )
        _, _, terminated, truncated, _ = _check_step(env, result, action, max_abs_reward)
        if terminated or truncated:
            _check_reset(env, env.reset(seed=seed), seed)

    facts = getattr(env, "privileged_facts", None)
    if callable(facts) and not isinstance(facts(), str):
        _fail(env, f"privileged_facts() must return a str, got {type(facts()).__name__}.")
    env.close()
    try:
        env.close()
    except Exception as error:  # noqa: BLE001 - see above
        _fail(env, f"a second close() raised {type(error).__name__}: {error}; close() must be idempotent.")
