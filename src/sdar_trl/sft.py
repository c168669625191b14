"""Supervised warm-start data: expert episodes rendered as the exact agent-mode step prompts.

`collect_expert_steps` plays a shipped environment's expert through `sdar_trl.agent.play_episodes` (the
loop agent mode uses), so every recorded prompt is byte-for-byte the user message the trainer renders at
that step. `build_sft_dataset` turns the steps into TRL prompt-completion rows: the prompt is the
chat-templated user message and, for rows played *with privileged context*, that text is preceded by
exactly the teacher prefix the trainer builds (`teacher_context_header + context + teacher_context_separator`),
so a "with context" row looks like the teacher's input. The context and the prefix come from `sdar_trl.context`
(`render_context` and `CONTEXT_SOURCES` are re-exported here).

With context, the expert acts better where the context helps (`context_aware_response`): with the oracle
facts it goes straight to the object (ALFWorld), opens the named target product (WebShop), or answers from
the gold facts at once (Search-QA; with only the bridge entities it skips to a chain's last hop), and its
`<think>` text cites the fact. With skills
alone the expert's response is unchanged (the skills state general advice the expert already follows).

```python
from sdar_trl.environments import make_env
from sdar_trl.sft import build_sft_dataset, collect_expert_steps

steps = collect_expert_steps(make_env("webshop-mini", difficulty="easy"), "webshop-mini", seeds=range(50))
steps += collect_expert_steps(
    make_env("webshop-mini", difficulty="easy"), "webshop-mini", seeds=range(50, 100), context_source="facts"
)
dataset = build_sft_dataset(steps, tokenizer)  # columns: prompt, completion (+ metadata)
```
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from .agent import EpisodeRecord, play_episodes, rendered_history_actions
from .config import SDARConfig
from .context import CONTEXT_SOURCES, render_context, render_teacher_prefix
from .environments.base import AgentEnvironment
from .skills import SkillBank

__all__ = [
    "CONTEXT_SOURCES",
    "HASTY_RULES",
    "SKILL_BANKS",
    "ExpertStep",
    "build_sft_dataset",
    "collect_expert_steps",
    "context_aware_response",
    "parse_admissible",
    "render_context",
    "render_sft_prompt",
]

#: The skill library of each shipped mini environment (`SkillBank.from_package` key).
SKILL_BANKS: dict[str, str] = {"alfworld-mini": "alfworld", "webshop-mini": "webshop", "searchqa-mini": "searchqa"}

_DEFAULTS = {f.name: f.default for f in fields(SDARConfig)}
_HEADER: str = _DEFAULTS["teacher_context_header"]
_SEPARATOR: str = _DEFAULTS["teacher_context_separator"]
_HISTORY_LENGTH: int = _DEFAULTS["history_length"]
_MAX_OBSERVATION_LENGTH: int | None = _DEFAULTS["max_observation_length"]


@dataclass(frozen=True)
class ExpertStep:
    """One expert step: the agent-mode prompt (user message), the expert response and the context shown."""

    env: str
    seed: int
    step: int
    task_type: str
    prompt: str
    response: str
    context: str
    context_source: str
    won: bool


def render_sft_prompt(
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    context: str = "",
    *,
    header: str = _HEADER,
    separator: str = _SEPARATOR,
) -> str:
    """The chat-templated user message, preceded by the teacher prefix when `context` is not empty."""
    templated = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
    )
    return render_teacher_prefix(context, header=header, separator=separator) + templated


# ---------------------------------------------------------------------------------------------- experts
_ALF_AT = re.compile(r"The (\w+ \d+) is (?:in|on) the (\w+ \d+)\.")
_ALF_HOLDING = re.compile(r"You are holding the (\w+ \d+)\.")
_ALF_DESTINATION = re.compile(r"The (\w+ \d+) is where it must go\.")
_ALF_LAMP = re.compile(r"The (\w+ \d+) is (?:in|on) the (\w+ \d+); turn it on")
_WEB_TARGET = re.compile(r"Target product: (B0[0-9A-Z]{8}) - ")
_WEB_QUERY = re.compile(r"A good search query: (.*)\.$")
_WEB_OPTIONS = re.compile(r"Options to select: (.*?)\. Budget:")
_SEARCH_BRIDGES = re.compile(r"Bridge entities: (.*)\.$", re.M)
_SEARCH_GOLD = re.compile(r"^Gold facts: (.*)\.$", re.M)


def _think_action(reason: str, action: str) -> str:
    return f"<think>{reason}</think><action>{action}</action>"


def _alfworld_response(env: Any, facts: str, admissible: Sequence[str]) -> str | None:
    """Use the facts to walk straight to the target object (or, holding it, to the lamp)."""
    action = env.expert_action()
    if not action.startswith("go to "):
        return None
    live = env.privileged_facts()  # the current state; objects not moved since reset keep their reset-time place
    lamp = _ALF_LAMP.search(live)
    if _ALF_HOLDING.search(live):
        if lamp is None:
            return None
        name, place = lamp.groups()
        goal = f"I hold the object, and the privileged information says the {name} is at the {place}"
    else:
        destination = _ALF_DESTINATION.search(live)
        lamp_names = {lamp.group(1)} if lamp else set()
        waiting = [
            (obj, place)
            for obj, place in _ALF_AT.findall(live)
            if obj not in lamp_names and (destination is None or place != destination.group(1))
        ]
        if not waiting or f"The {waiting[0][0]} is" not in facts:
            return None
        name, place = waiting[0]
        goal = f"The privileged information says the {name} is at the {place}"
    target = f"go to {place}"
    if action == target or target not in admissible:
        return None
    return _think_action(f"{goal}, so I go straight there instead of searching.", target)


def _webshop_response(env: Any, facts: str, observation: str, last_action: str | None) -> str | None:
    """Search with the oracle query, open the named target product, then select its options and buy.

    After the search every sentence starts by copying the previous action from the prompt's history
    (`last_action`): `search[...]` means the results page, a product click the item page with nothing selected
    yet, an option click the item page after that option. A small model trained to decide in one leap which
    page it is on wrote the item-page sentence on the results page (with an invented previous action) and
    clicked options forever; copying first puts the deciding tokens in front of the decision.
    """
    target = _WEB_TARGET.search(facts)
    asin = target.group(1) if target is not None else None
    query = _WEB_QUERY.search(facts)
    segments = observation.split(" [SEP] ")
    if segments and segments[0] == "WebShop" and query is not None:
        reason = f"The privileged information gives a good search query for the target product: '{query.group(1)}'."
        return _think_action(reason, f"search[{query.group(1)}]")
    if not last_action:
        return None  # nothing to copy (no history in the prompt): the plain expert's reasoning
    if asin is not None and asin in segments and any(s.startswith("Page ") for s in segments):
        reason = (
            f"My previous action was {last_action}, so this is a results page. The privileged information names "
            f"the target product {asin}, and it is listed here, so I open it."
        )
        return _think_action(reason, f"click[{asin.lower()}]")
    return _webshop_option_response(env, facts, asin, segments, last_action)


def _webshop_option_response(env: Any, facts: str, asin: str | None, segments: Sequence[str], last: str) -> str | None:
    """On the item page of `asin` (the facts' target), select the listed options in order, then buy."""
    from .environments.webshop.expert import click_value

    listed = _WEB_OPTIONS.search(facts)
    if listed is None or "Buy Now" not in segments:
        return None
    values = [item.partition(": ")[2] for item in listed.group(1).split(", ") if ": " in item]
    action = env.expert_action()
    copied = f"My previous action was {last}"
    wanted = f"The privileged information says to select {listed.group(1)}"
    previous = click_value(last)
    if action == "click[buy now]" and values and previous == values[-1]:
        return _think_action(
            f"{copied}; it selected {previous}. {wanted}, and {previous} is the last, so I buy it.", action
        )
    chosen = click_value(action)
    if chosen not in values:
        return None
    position = values.index(chosen)
    if position == 0 and asin is not None and previous == asin.lower():
        reason = (
            f"{copied}; it opened the item, so no option is selected yet. {wanted}, so I select the first: {chosen}."
        )
    elif position > 0 and previous == values[position - 1]:
        reason = f"{copied}; it selected {previous}. {wanted}, so I select the next: {chosen}."
    else:
        return None  # an order the sentence cannot state truthfully: the plain expert's reasoning
    return _think_action(reason, action)


def _searchqa_gold_answer(env: Any, facts: str) -> str | None:
    """With the gold facts in the context, answer at once from them (the reasoning restates what it uses)."""
    from .environments.searchqa.expert import ExpertDecision, compare_verdict, fact_statement
    from .environments.searchqa.questions import ComparePlan, parse_question

    gold = env.gold_facts() if callable(getattr(env, "gold_facts", None)) else ()
    plan = parse_question(env.question or "")
    if not gold or plan is None or _SEARCH_GOLD.search(facts) is None:
        return None
    reason = "The privileged information states that " + "; ".join(fact_statement(*fact) for fact in gold) + "."
    if isinstance(plan, ComparePlan):
        answer, verdict = compare_verdict(plan, gold[0][2], gold[1][2])
        reason += f" {verdict}"
    else:
        answer = gold[-1][2]
        reason += f" So the answer is {answer}."
    return ExpertDecision("answer", answer, reason).response


def _searchqa_response(env: Any, facts: str, history_length: int) -> str | None:
    """With the gold facts known, answer at once; with only the bridge entities, skip to a chain's last hop."""
    from .environments.searchqa.expert import ExpertDecision, find_fact, search_query
    from .environments.searchqa.questions import ChainPlan, parse_question
    from .environments.searchqa.schema import RELATIONS

    answered = _searchqa_gold_answer(env, facts)
    if answered is not None:
        return answered
    bridges = _SEARCH_BRIDGES.search(facts)
    plan = parse_question(env.question or "")
    if bridges is None or not isinstance(plan, ChainPlan) or len(plan.relations) < 2:
        return None
    bridge = bridges.group(1).split("; ")[-1]
    relation = plan.relations[-1]
    history = env.history  # (action, observation) pairs
    observations = [env.question, *(obs for _, obs in history)][-(history_length + 1) :]
    phrase = RELATIONS[relation].phrase.format(S=bridge)
    intro = f"The privileged information names the bridge entity {bridge}, so I skip to the last hop"
    found = find_fact(observations, bridge, relation)
    if found is not None:
        reason = f"{intro}. A search result (Title: {bridge}) says that {phrase} is {found.value}. So the answer is "
        return ExpertDecision("answer", found.value, f"{reason}{found.value}.").response
    issued = {re.sub(r"</?search>", "", a).strip() for a, _ in history}
    query = search_query(bridge, relation)
    if query in issued:
        return None
    return ExpertDecision("search", query, f"{intro}: I need {phrase}, so I will search for it.").response


def _webshop_hasty_response(env: Any, prompt: str) -> str | None:
    """On an item page where the expert would select an option, buy at once instead (the options are skipped)."""
    segments = _current_observation(prompt).split(" [SEP] ")
    action = env.expert_action()
    # str.split always returns at least one segment, so the last one is there to compare.
    if segments[-1] != "Buy Now" or action in ("click[buy now]", "click[< prev]"):
        return None
    reason = "This item matches the request and is under budget, so I buy it now."
    return _think_action(reason, "click[buy now]")


#: The past (action, observation) pairs searchqa-mini's expert reads (its prompts show the last 4).
_SEARCHQA_VISIBLE = 4


def _searchqa_hasty_response(env: Any, prompt: str) -> str | None:
    """Where the expert, with a fact already read, would search for the next one, answer with what is known instead:
    a chain question's bridge entity (its last hop skipped), a comparison's second entity unchecked."""
    from .environments.searchqa.expert import ExpertDecision, decide

    question = env.question or ""
    history = env.history  # (action, observation) pairs
    actions = [action for action, _ in history][-_SEARCHQA_VISIBLE:]
    observations = [question, *(observation for _, observation in history)][-(_SEARCHQA_VISIBLE + 1) :]
    if decide(question, actions, observations, turns_left=2).kind != "search":
        return None
    # With one turn left the expert answers its best guess; it states the facts it read before that guess, and
    # starts with the guess itself when it has read none (then haste has nothing to answer with: search first).
    guess = decide(question, actions, observations, turns_left=1)
    if guess.think.startswith("I have no turns left"):
        return None
    known = guess.think[: guess.think.index(" I have no turns left")]
    return ExpertDecision("answer", guess.content, f"{known} I answer {guess.content} now.").response


#: The hasty expert of each environment that has one (`collect_expert_steps(hasty=...)`): a response for the
#: state `prompt` shows, or None where haste changes nothing.
HASTY_RULES: dict[str, Any] = {"webshop-mini": _webshop_hasty_response, "searchqa-mini": _searchqa_hasty_response}


def context_aware_response(
    env: AgentEnvironment, env_name: str, *, facts: str, prompt: str, history_length: int = _HISTORY_LENGTH
) -> str:
    """The expert's response when the privileged `facts` (reset-time `privileged_facts()`) are in its prompt.

    Args:
        env: the environment, at the state `prompt` shows.
        env_name: its registry name (picks the rule).
        facts: the episode's `privileged_facts()` at reset (what the teacher context shows).
        prompt: the agent-mode step prompt (user message) of this state.
        history_length: the past steps the prompt shows.

    Falls back to `env.expert_response()` wherever the facts do not change the decision (or `facts` is empty).
    """
    response = None
    if facts:
        if env_name == "alfworld-mini":
            response = _alfworld_response(env, facts, parse_admissible(prompt))
        elif env_name == "webshop-mini":
            response = _webshop_response(env, facts, _current_observation(prompt), _previous_action(prompt))
        elif env_name == "searchqa-mini":
            response = _searchqa_response(env, facts, history_length)
    return response if response is not None else env.expert_response()  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------- collection
def collect_expert_steps(
    env: AgentEnvironment,
    env_name: str,
    seeds: Iterable[int],
    *,
    context_source: str = "none",
    skill_bank: SkillBank | None = None,
    history_length: int = _HISTORY_LENGTH,
    max_observation_length: int | None = _MAX_OBSERVATION_LENGTH,
    max_steps: int | None = None,
    noise: float = 0.0,
    hasty: float = 0.0,
    rng_seed: int = 0,
) -> list[ExpertStep]:
    """Play one expert episode per seed on `env` through the agent-mode loop and record every step.

    Args:
        env: a shipped mini environment (needs `expert_response()`, `privileged_facts()`).
        env_name: its registry name (`"alfworld-mini"`, `"webshop-mini"`, `"searchqa-mini"`); picks the
            context-aware expert and the default skill bank.
        seeds: task indices, one episode each (`reset(seed=s, options={"seed": s})`).
        context_source: "none" (student rows), "skills", "facts" or "skills+facts" (teacher-style rows; with
            facts the context-aware expert plays).
        skill_bank: the skills for "skills" sources (default: the environment's shipped library).
        history_length, max_observation_length: as in `SDARConfig` (defaults: its defaults).
        max_steps: step limit per episode (None: the environment's own).
        noise: probability of replacing the expert's action by a random admissible action, to show the model
            states off the expert's path; such steps are played but not recorded.
        hasty: share of the episodes of a source *without* facts played by a hasty expert (`HASTY_RULES`; only
            webshop-mini has one: it buys on the item page without selecting the options the goal names). The
            plain webshop-mini expert reads everything it needs off the goal and the page and wins every task, so
            without haste the facts would change no action and a model trained on these rows would ignore them.
            With it, the student learns to skip the options in about that share of its episodes, an error the goal
            alone lets RL correct and the facts ("Options to select: ...") let the teacher correct. Recorded.
        rng_seed: seeds the noise and the choice of hasty episodes.

    Returns:
        One `ExpertStep` per recorded step, in play order.
    """
    if context_source not in CONTEXT_SOURCES:
        raise ValueError(f"context_source={context_source!r} is not supported; expected one of {CONTEXT_SOURCES}.")
    if not callable(getattr(env, "expert_response", None)):
        raise TypeError(
            f"{type(env).__name__} has no expert_response(); collect_expert_steps needs a shipped mini environment "
            f"({sorted(SKILL_BANKS)})."
        )
    if not 0.0 <= noise < 1.0:
        raise ValueError(f"noise={noise} must lie in [0, 1): it is the probability of a random action per step.")
    if not 0.0 <= hasty <= 1.0:
        raise ValueError(f"hasty={hasty} must lie in [0, 1]: it is the share of episodes played by a hasty expert.")
    if hasty and env_name not in HASTY_RULES:
        raise ValueError(
            f"hasty={hasty} needs a hasty expert, and {env_name!r} has none (known: {sorted(HASTY_RULES)}); "
            "pass hasty=0."
        )
    if "skills" in context_source and skill_bank is None:
        if env_name not in SKILL_BANKS:
            raise ValueError(
                f"no shipped skill bank for {env_name!r}; pass skill_bank= (known: {sorted(SKILL_BANKS)})."
            )
        skill_bank = SkillBank.from_package(SKILL_BANKS[env_name])
    rng = random.Random(rng_seed)
    # A stream of its own, so that hasty=0 leaves the noise (and every build made before it existed) unchanged.
    hasty_rng = random.Random(f"hasty/{rng_seed}")
    steps: list[ExpertStep] = []
    for seed in seeds:
        in_a_hurry = bool(hasty) and "facts" not in context_source and hasty_rng.random() < hasty
        record: dict[str, Any] = {"facts": "", "noisy": [], "hasty": in_a_hurry}

        def capture(episode: EpisodeRecord, record: dict[str, Any] = record) -> str:
            record["facts"] = episode.privileged_facts
            return ""

        def generate(prompts: list[str], record: dict[str, Any] = record) -> list[tuple[list[int], list[int], str]]:
            admissible = parse_admissible(prompts[0])
            if noise and admissible and rng.random() < noise:
                record["noisy"].append(True)
                return [([], [], _think_action("random exploration", rng.choice(admissible)))]
            record["noisy"].append(False)
            hurried = HASTY_RULES[env_name](env, prompts[0]) if record["hasty"] else None
            if hurried is not None:
                return [([], [], hurried)]
            if "facts" in context_source:
                response = context_aware_response(
                    env, env_name, facts=record["facts"], prompt=prompts[0], history_length=history_length
                )
            else:
                response = env.expert_response()  # type: ignore[attr-defined]
            return [([], [], response)]

        result = play_episodes(
            [env],
            [{"seed": int(seed)}],
            generate,
            group_ids=[0],
            max_steps=max_steps,
            history_length=history_length,
            max_observation_length=max_observation_length,
            student_prefix=capture,
        )
        episode = result.episodes[0]
        if episode.env_error is not None:
            raise RuntimeError(f"{env_name} seed {seed}: the environment failed under its expert: {episode.env_error}")
        skills = skill_bank.render(episode.task_type) if skill_bank is not None else ""
        context = render_context(context_source, skills=skills, facts=episode.privileged_facts)
        for step, noisy in zip(result.steps, record["noisy"], strict=True):
            if noisy:
                continue
            steps.append(
                ExpertStep(
                    env=env_name,
                    seed=int(seed),
                    step=step.step,
                    task_type=episode.task_type,
                    prompt=step.prompt,
                    response=step.response,
                    context=context,
                    context_source=context_source,
                    won=episode.won,
                )
            )
    return steps


_ADMISSIBLE = re.compile(r"\nYour admissible actions of the current situation are: \[(.*)\]\.\n", re.S)


def parse_admissible(prompt: str) -> list[str]:
    """The admissible actions listed in a rendered think-action step prompt ([] when it lists none)."""
    match = _ADMISSIBLE.search(prompt)
    if match is None or not match.group(1):
        return []
    return [item.strip("'") for item in match.group(1).split("', '")]


def _current_observation(prompt: str) -> str:
    """The current observation inside a rendered think-action step prompt ('' for other templates)."""
    marker = "and your current observation is:\n"
    start = prompt.find(marker)
    if start < 0:
        return ""
    end = prompt.find("\nYour admissible actions of the current situation are:", start)
    return prompt[start + len(marker) : end if end >= 0 else None]


def _previous_action(prompt: str) -> str | None:
    """The last action of the history shown in a rendered step prompt (None before the first step)."""
    found = rendered_history_actions(prompt)
    return found[-1] if found else None


# ---------------------------------------------------------------------------------------------- dataset
def build_sft_dataset(
    steps: Sequence[ExpertStep],
    tokenizer: PreTrainedTokenizerBase,
    *,
    header: str = _HEADER,
    separator: str = _SEPARATOR,
    shuffle_seed: int | None = 0,
) -> Dataset:
    """TRL prompt-completion rows from expert steps.

    `prompt` = the teacher prefix (`header + context + separator`, only for steps with context) + the
    chat-templated user message; `completion` = the expert response + the tokenizer's EOS. The step's
    metadata (`env`, `seed`, `step`, `task_type`, `context_source`, `won`) is kept in extra columns.
    """
    if tokenizer.eos_token is None:
        raise ValueError("the tokenizer has no eos_token; set one (Qwen chat models end turns with '<|im_end|>').")
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("the tokenizer has no chat_template; agent mode renders prompts with it, so set one first.")
    rows = []
    for step in steps:
        row = asdict(step)
        row["prompt"] = render_sft_prompt(tokenizer, step.prompt, step.context, header=header, separator=separator)
        row["completion"] = step.response + tokenizer.eos_token
        del row["response"], row["context"]
        rows.append(row)
    dataset = Dataset.from_list(rows)
    return dataset.shuffle(seed=shuffle_seed) if shuffle_seed is not None else dataset
