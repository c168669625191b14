"""The environment protocol every benchmark implements, and a checker for implementations.

The protocol is Gymnasium-shaped but text-in, text-out (SDAR_SPEC.md §1, ENVIRONMENTS.md):

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

Optional members an environment may define (the rollout looks them up with `getattr`):

- `action_format`: `"think_action"` (default; `<think>…</think><action>…</action>`) or
  `"search_answer"` (`<search>…</search>` / `<answer>…</answer>`). See `sdar_trl.actions`.
- `prompt_template`: a `str.format` template replacing the default step prompt of its action format;
  fields `{task}`, `{step_count}`, `{current_step}`, `{history_length}`, `{history}`,
  `{observation}`, `{admissible_actions}` (see `sdar_trl.rollout.render_step_prompt`).
- `privileged_facts() -> str`: oracle facts about the current task (e.g. where the target object is),
  offered to the teacher as an ablation; `""` when there are none.
- `expert_action() -> str` / `expert_response() -> str`: the next action of an expert policy, as
  `step()` accepts it, and as a full model response in the environment's action format.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "ACTION_FORMATS",
    "INFO_ADMISSIBLE_ACTIONS",
    "INFO_SCORE",
    "INFO_TASK",
    "INFO_TASK_TYPE",
    "INFO_WON",
    "AgentEnvironment",
    "AgentEnvironmentCheckError",
    "ResetNeededError",
    "check_agent_environment",
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


class ResetNeededError(RuntimeError):
    """Raised by `step()` when it is called before the first `reset()`."""


class AgentEnvironmentCheckError(ValueError):
    """Raised by `check_agent_environment` when an environment breaks the protocol."""


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
    if not isinstance(result, tuple) or len(result) != 2:
        _fail(env, f"reset(seed={seed}) must return (observation: str, info: dict), got {result!r:.200}.")
    obs, info = result  # type: ignore[misc]
    if not isinstance(obs, str):
        _fail(env, f"reset() observation must be a str, got {type(obs).__name__}.")
    if not isinstance(info, dict):
        _fail(env, f"reset() info must be a dict, got {type(info).__name__}.")
    for key in (INFO_TASK, INFO_TASK_TYPE):
        if not isinstance(info.get(key), str) or not info[key]:
            _fail(env, f"reset() info[{key!r}] must be a non-empty str, got {info.get(key)!r}.")
    _check_admissible(env, info, "reset()")
    return obs, info


def _check_step(env: object, result: object, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
    if not isinstance(result, tuple) or len(result) != 5:
        _fail(
            env,
            f"step({action!r:.60}) must return (observation, reward, terminated, truncated, info), got "
            f"{result!r:.200}.",
        )
    obs, reward, terminated, truncated, info = result  # type: ignore[misc]
    if not isinstance(obs, str):
        _fail(env, f"step() observation must be a str, got {type(obs).__name__}.")
    if isinstance(reward, bool) or not isinstance(reward, (int, float)) or not math.isfinite(reward):
        _fail(env, f"step() reward must be a finite float, got {reward!r} ({type(reward).__name__}).")
    for name, flag in (("terminated", terminated), ("truncated", truncated)):
        if not isinstance(flag, bool):
            _fail(env, f"step() {name} must be a bool, got {flag!r} ({type(flag).__name__}).")
    if not isinstance(info, dict):
        _fail(env, f"step() info must be a dict, got {type(info).__name__}.")
    if not isinstance(info.get(INFO_WON), bool):
        _fail(env, f"step() info[{INFO_WON!r}] must be a bool, got {info.get(INFO_WON)!r}.")
    if INFO_SCORE in info and (isinstance(info[INFO_SCORE], bool) or not isinstance(info[INFO_SCORE], (int, float))):
        _fail(env, f"step() info[{INFO_SCORE!r}] must be a float when present, got {info[INFO_SCORE]!r}.")
    _check_admissible(env, info, "step()")
    return obs, float(reward), terminated, truncated, info


def _play(env: AgentEnvironment, seed: int, num_steps: int) -> list[object]:
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
        obs, reward, terminated, truncated, info = _check_step(env, env.step(action), action)
        transcript.append((action, obs, reward, terminated, truncated, repr(sorted(info.items()))))
        if terminated or truncated:
            break
    return transcript


_GARBAGE_ACTIONS = ("", " ", "\x00", "☃ ünïcödé 行动", "click[", "search[]", "a" * 5000, "<action>look</action>")


def check_agent_environment(env: AgentEnvironment, *, seed: int = 0, num_steps: int = 8) -> None:
    """Check that `env` follows the `AgentEnvironment` protocol; raise `AgentEnvironmentCheckError` if not.

    Checks, in order: `step()` before the first `reset()` raises (`ResetNeededError` or another
    `RuntimeError`); `reset`/`step` return types and the documented info keys; seeding determinism
    (two episodes with the same seed give identical transcripts, played with `expert_action()` when
    the environment has one, else with its admissible actions); malformed action strings (empty,
    control characters, unicode, 5,000 characters) are answered, never raised on; `close()` twice is
    harmless. The environment is closed at the end.

    Args:
        env: a freshly constructed environment (not yet reset).
        seed: the seed used for the determinism check.
        num_steps: how many steps each check episode plays at most.
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

    first = _play(env, seed, num_steps)
    second = _play(env, seed, num_steps)
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
        _, _, terminated, truncated, _ = _check_step(env, result, action)
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
