"""Skill retrieval modes (`SDARConfig.skill_retrieval`, `sdar_trl.retrieval`): hand-checked rankings, clusters and
UCB arithmetic, the bandit's checkpoint round trip, and two agent-mode training steps per mode on a tiny model."""

from __future__ import annotations

import math
import sys
from importlib.util import find_spec

import numpy as np
import pytest
import torch
from datasets import Dataset
from trl import TrlParser

from agent_constants import GO, WIN
from sdar_trl import SDARConfig, SDARTrainer
from sdar_trl.checkpoint import SDAR_STATE_NAME, load_sdar_state, save_sdar_state
from sdar_trl.context import privileged_context
from sdar_trl.loss import gated_gap_sums
from sdar_trl.retrieval import (
    SkillRetriever,
    UCBSkillBandit,
    bm25_index,
    bm25_rank,
    chosen_skill_metrics,
    flat_skills,
    kmeans_fit,
    require_scikit_learn,
    skill_ids,
    tfidf_vectorizer,
    tokenize,
)
from sdar_trl.skills import SkillBank
from sdar_trl.testing import ScriptedEnv, build_tiny_model, patch_generation, tiny_agent_config

#: The kmeans mode needs scikit-learn (the `retrieval` extra, which CI installs: .ci/run).
needs_sklearn = pytest.mark.skipif(find_spec("sklearn") is None, reason='pip install "sdar-trl[retrieval]"')


def _skill(title: str, principle: str, when: str) -> dict[str, str]:
    return {"title": title, "principle": principle, "when_to_apply": when}


#: Four skills; tokens (stop words dropped): heat food use microwave hot tasks | cool food use fridge cold tasks |
#: clean item use sink basin clean tasks | find lamp look desk lamp light tasks.
KITCHEN = SkillBank.from_dict(
    {
        "general_skills": [
            _skill("Heat food", "Use the microwave", "Hot tasks"),
            _skill("Cool food", "Use the fridge", "Cold tasks"),
        ],
        "task_specific_skills": {
            "clean": [_skill("Clean item", "Use the sink basin", "Clean tasks")],
            "look": [_skill("Find lamp", "Look at the desk lamp", "Light tasks")],
        },
    }
)

#: Two topics with disjoint vocabularies: skills 0 and 2 (cold things), skills 1 and 3 (lamps).
TOPICS = SkillBank.from_dict(
    {
        "general_skills": [
            _skill("Fridge", "Cool food in fridge", "Cold food"),
            _skill("Lamp", "Turn on lamp", "Dark room"),
        ],
        "task_specific_skills": {
            "cool": [_skill("Freeze", "Cool drinks in fridge", "Cold drinks")],
            "look": [_skill("Desk lamp", "Find desk lamp", "Dark desk")],
        },
    }
)


# ---------------------------------------------------------------------------------------------------- bank layout
def test_flat_skills_and_ids_follow_bank_order():
    assert [s.title for s in flat_skills(KITCHEN)] == ["Heat food", "Cool food", "Clean item", "Find lamp"]
    assert skill_ids(KITCHEN) == ["general.0", "general.1", "clean.0", "look.0"]
    assert tokenize("Use the sink basin, Clean tasks!") == ["use", "sink", "basin", "clean", "tasks"]


def test_rules_mode_selects_what_the_bank_routes():
    retriever = SkillRetriever(KITCHEN, "rules")
    assert retriever.select("clean", "anything") == [0, 1, 2]
    assert retriever.select("look", "") == [0, 1, 3]
    assert retriever.select("unknown", "") == [0, 1]
    assert retriever.chosen("clean", "") == KITCHEN.retrieve("clean")


def test_all_mode_selects_the_whole_bank():
    assert SkillRetriever(KITCHEN, "all", k=1).select("clean", "heat") == [0, 1, 2, 3]


# ---------------------------------------------------------------------------------------------------- BM25
def _lucene_bm25(documents, query, k1=1.5, b=0.75):
    """Lucene BM25 by hand: idf = ln(1 + (N − df + 0.5)/(df + 0.5)), tf part tf/(tf + k1·(1 − b + b·L/avgL))."""
    n, avg = len(documents), sum(map(len, documents)) / len(documents)
    scores = []
    for doc in documents:
        total = 0.0
        for term in query:
            tf, df = doc.count(term), sum(term in d for d in documents)
            if tf:
                total += math.log(1 + (n - df + 0.5) / (df + 0.5)) * tf / (tf + k1 * (1 - b + b * len(doc) / avg))
        scores.append(total)
    return scores


def test_bm25_ranking_is_hand_checked():
    documents = [tokenize(f"{s.title} {s.principle} {s.when_to_apply}") for s in flat_skills(KITCHEN)]
    query = tokenize("use the fridge to cool")  # use, fridge, cool
    # Skill 1 holds all three terms; skills 0 and 2 only "use" (df 3), and skill 0 is shorter (6 vs 7 tokens), so
    # it ranks above skill 2; skill 3 shares nothing and is never returned.
    by_hand = _lucene_bm25(documents, query)
    assert by_hand[1] > by_hand[0] > by_hand[2] > 0 == by_hand[3]
    assert by_hand[0] == pytest.approx(math.log(1 + 1.5 / 3.5) * 1 / (1 + 1.5 * (0.25 + 0.75 * 6 / 6.5)))
    index = bm25_index(documents)
    assert bm25_rank(index, query, k=4) == [1, 0, 2]
    assert bm25_rank(index, query, k=2) == [1, 0]
    assert bm25_rank(index, tokenize("zebra"), k=4) == []  # no known term: nothing is chosen
    retriever = SkillRetriever(KITCHEN, "bm25", k=2)
    assert retriever.select("look", "Use the fridge to cool") == [0, 1]  # bank order; the task type is ignored
    assert retriever.select("look", "light the desk lamp") == [3]


# ---------------------------------------------------------------------------------------------------- TF-IDF, k-means
@needs_sklearn
def test_tfidf_is_hand_checked():
    vectorizer = tfidf_vectorizer()
    rows = vectorizer.fit_transform(["Apple, the apple and a fridge", "FRIDGE"]).toarray()  # (2, 2)
    assert vectorizer.vocabulary_ == {"apple": 0, "fridge": 1}  # tokenize's lower-case terms, stop words dropped
    # idf = ln((1 + n) / (1 + df)) + 1 (scikit-learn's smooth_idf): apple df 1 -> ln(3/2) + 1, fridge df 2 -> 1.
    assert vectorizer.idf_ == pytest.approx([math.log(1.5) + 1, 1.0])
    raw = np.array([2 * (math.log(1.5) + 1), 1.0])  # tf = raw count (apple twice)
    assert rows[0] == pytest.approx(raw / np.linalg.norm(raw))
    assert rows[0] == pytest.approx([0.942156, 0.335176], abs=1e-6)  # 2.810930 and 1 over 2.983509
    assert rows[1] == pytest.approx([0.0, 1.0])


@needs_sklearn
def test_kmeans_is_hand_checked():
    vectors = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    # Best 2-partition: {0, 1} and {2, 3}, means (0.9, 0.3) and (0.3, 0.9), each point 0.1 (= 0.1² + 0.3²) from its
    # mean, inertia 0.4. The next best, {0, 1, 3} and {2}, has inertia 0.4267 (mean (0.8, 0.4667): 0.2578 + 0.0178
    # + 0.1511). Cluster numbers are scikit-learn's, so compare the partition.
    fitted = kmeans_fit(vectors, 2)
    labels = fitted.labels_.tolist()
    assert labels[0] == labels[1] != labels[2] == labels[3]
    assert fitted.inertia_ == pytest.approx(0.4)
    assert fitted.cluster_centers_[labels[0]] == pytest.approx([0.9, 0.3])
    assert fitted.cluster_centers_[labels[2]] == pytest.approx([0.3, 0.9])
    assert (kmeans_fit(vectors, 2).labels_ == fitted.labels_).all()  # seeded: the same clusters every time
    with pytest.raises(ValueError, match="n_clusters=5"):
        kmeans_fit(vectors, 5)


@needs_sklearn
def test_kmeans_mode_routes_the_task_to_its_cluster():
    retriever = SkillRetriever(TOPICS, "kmeans", k=2)  # round(4 / 2) = 2 clusters
    # Disjoint vocabularies (cold things: skills 0 and 2; lamps: 1 and 3), so the two topics are the two clusters.
    labels = retriever.labels.tolist()
    assert labels[0] == labels[2] != labels[1] == labels[3]
    assert retriever.select("look", "cool the cold drinks") == [0, 2]
    assert retriever.select("cool", "find the lamp in the dark") == [1, 3]
    assert retriever.select("cool", "zebra") == [0, 2]  # no known term: the cluster of the bank's first skill
    assert SkillRetriever(TOPICS, "kmeans", k=3).select("cool", "lamp") == [0, 1, 2, 3]  # round(4/3) = 1 cluster
    # Two identical skills cannot seed two clusters: the count is capped by the distinct vectors.
    twins = SkillBank.from_dict({"general_skills": [_skill("Lamp", "Lamp", "Lamp")] * 2})
    assert SkillRetriever(twins, "kmeans", k=1).select("", "lamp") == [0, 1]
    # No skill holds a term (only stop words): one cluster of everything, no vectorizer.
    empty = SkillBank.from_dict({"general_skills": [_skill("The", "a", "an"), _skill("It", "is", "to")]})
    assert SkillRetriever(empty, "kmeans", k=1).select("", "the lamp") == [0, 1]


def test_kmeans_without_scikit_learn_names_the_extra(tmp_path, monkeypatch):
    # A None entry in sys.modules makes `import sklearn` raise ImportError, as on a machine without it.
    monkeypatch.setitem(sys.modules, "sklearn", None)
    message = r"skill_retrieval='kmeans' clusters the skills with scikit-learn .*pip install \"sdar-trl\[retrieval\]\""
    with pytest.raises(ImportError, match=message):
        require_scikit_learn()
    with pytest.raises(ImportError, match=message):
        SkillRetriever(TOPICS, "kmeans")
    with pytest.raises(ImportError, match=message):  # at config construction, before any model is loaded
        tiny_agent_config(tmp_path, skill_retrieval="kmeans")
    tiny_agent_config(tmp_path, skill_retrieval="bm25")  # the other modes do not need it
    assert SkillRetriever(TOPICS, "all").select("", "") == [0, 1, 2, 3]


# ---------------------------------------------------------------------------------------------------- UCB
def test_ucb_arithmetic_is_hand_checked():
    bandit = UCBSkillBandit(3, k=1, c=1.0)
    for arm, reward in ((0, 0.5), (1, 0.2), (2, 0.1)):  # untried arms first, in bank order
        assert bandit.select("t") == [arm]
        bandit.update("t", [arm], reward)
    # N = 3, n = 1 each: index = mean + sqrt(ln 3) = mean + 1.048147.
    assert bandit.indices("t") == pytest.approx([1.548147, 1.248147, 1.148147], abs=1e-6)
    assert bandit.select("t") == [0]
    bandit.update("t", [0], 0.0)
    # N = 4: arm 0 has mean 0.25 over 2 rounds -> 0.25 + sqrt(ln 4 / 2); arms 1, 2 -> mean + sqrt(ln 4).
    assert bandit.indices("t") == pytest.approx([1.082555, 1.377410, 1.277410], abs=1e-6)
    assert bandit.select("t") == [1]
    bandit.k = 2
    assert bandit.select("t") == [1, 2]
    assert bandit.select("other") == [0, 1]  # one bandit per task type: nothing tried there yet
    bandit.update("t", [1], float("nan"))  # ignored: a non-finite gap must not poison the means
    assert bandit.rounds == {"t": 4}


def test_ucb_state_round_trip_and_mismatch():
    bandit = UCBSkillBandit(3, k=1, c=0.5)
    bandit.update("t", [0, 2], 0.3)
    bandit.update("u", [1], -0.1)
    copy = UCBSkillBandit(3, k=1, c=0.5)
    copy.load_state_dict(bandit.state_dict())
    assert copy.indices("t") == bandit.indices("t") and copy.indices("u") == bandit.indices("u")
    assert copy.counts == {"t": [1, 0, 1], "u": [0, 1, 0]} and copy.rounds == {"t": 1, "u": 1}
    with pytest.raises(ValueError, match="has 3 skills, this run's skill bank has 4"):
        UCBSkillBandit(4, k=1, c=0.5).load_state_dict(bandit.state_dict())


def test_ucb_state_round_trips_through_sdar_state(tmp_path):
    retriever = SkillRetriever(KITCHEN, "ucb", k=2, ucb_c=0.1)
    retriever.bandit.update("clean", [0, 1], 0.25)
    retriever.bandit.update("look", [2, 3], -0.5)
    save_sdar_state(tmp_path, teacher_mode="live", ema=None, retriever=retriever)
    restored = SkillRetriever(KITCHEN, "ucb", k=2, ucb_c=0.1)
    load_sdar_state(tmp_path, teacher_mode="live", ema=None, retriever=restored)
    assert restored.bandit.state_dict() == retriever.bandit.state_dict()
    assert restored.select("clean", "") == retriever.select("clean", "") == [2, 3]
    # A checkpoint of another mode holds no bandit: resuming a ucb run from it names the fix.
    save_sdar_state(tmp_path / "rules", teacher_mode="live", ema=None, retriever=SkillRetriever(KITCHEN, "bm25"))
    assert "skill_retrieval" not in torch.load(tmp_path / "rules" / SDAR_STATE_NAME, weights_only=True)
    with pytest.raises(ValueError, match=r"holds no skill bandit state.*skill_retrieval='ucb'"):
        load_sdar_state(tmp_path / "rules", teacher_mode="live", ema=None, retriever=restored)
    with pytest.raises(ValueError, match=r"has no sdar_state\.pt, so the UCB skill bandit"):
        load_sdar_state(tmp_path / "none", teacher_mode="live", ema=None, retriever=restored)


def test_gated_gap_sums_are_hand_checked():
    student = torch.zeros(2, 2)
    teacher = torch.tensor([[1.0, -1.0], [2.0, float("nan")]])  # the nan sits in padding
    mask = torch.tensor([[1, 1], [1, 0]])
    sums, counts = gated_gap_sums(student, teacher, mask, gate_beta=0.0)  # gate 0.5 everywhere
    assert sums.tolist() == pytest.approx([0.0, 1.0]) and counts.tolist() == [2.0, 1.0]
    sums, _ = gated_gap_sums(student, teacher, mask, gate_beta=2.0)
    # sigmoid(2)·1 + sigmoid(-2)·(-1) = 0.880797 − 0.119203; sigmoid(4)·2 = 1.964028.
    assert sums.tolist() == pytest.approx([0.761594, 1.964028], abs=1e-6)


# ---------------------------------------------------------------------------------------------------- context, metrics
def test_chosen_skills_replace_the_rule_routing_in_the_context():
    chosen = [flat_skills(KITCHEN)[3]]
    text = privileged_context(
        "skills", skill_bank=KITCHEN, task_type="clean", facts="", row={}, column="c", chosen=chosen
    )
    assert text == "1. Find lamp\n   Principle: Look at the desk lamp\n   When to apply: Light tasks"
    assert privileged_context("skills", skill_bank=KITCHEN, task_type="clean", facts="", row={}, column="c") == (
        KITCHEN.render("clean")
    )
    facts_only = privileged_context(
        "facts", skill_bank=KITCHEN, task_type="", facts="F", row={}, column="c", chosen=chosen
    )
    assert facts_only == "F"


def test_chosen_skill_metrics_are_shares_of_episodes():
    metrics = chosen_skill_metrics(["a", "b", "c"], [[0, 1], [0], []])
    assert metrics == {
        "skills/chosen/a": pytest.approx(2 / 3),
        "skills/chosen/b": pytest.approx(1 / 3),
        "skills/count": 1.0,
        "skills/empty": pytest.approx(1 / 3),
    }
    assert chosen_skill_metrics(["a"], []) == {}


# ---------------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"skill_retrieval": "dense"}, r"skill_retrieval='dense' is not supported; expected one of \['rules'"),
        ({"skill_retrieval_k": 0}, r"skill_retrieval_k=0 must be >= 1"),
        ({"skill_ucb_c": -1.0}, r"skill_ucb_c=-1.0 must be a finite number >= 0"),
        ({"skill_retrieval": "ucb", "method": "grpo"}, r"skill_retrieval='ucb' learns from the teacher's gap"),
    ],
)
def test_config_rejects_bad_retrieval_settings(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_agent_config(tmp_path, **overrides)


def test_examples_parse_the_retrieval_flags():
    # The examples parse SDARConfig with TRL's parser (examples/_common.py): the fields are command-line flags.
    base = ["--output_dir", "out", "--use_cpu", "--bf16", "false"]
    flags = ["--skill_retrieval", "ucb", "--skill_retrieval_k", "3", "--skill_ucb_c", "0.05"]
    (config,) = TrlParser((SDARConfig,)).parse_args_into_dataclasses([*base, *flags])
    assert (config.skill_retrieval, config.skill_retrieval_k, config.skill_ucb_c) == ("ucb", 3, 0.05)
    with pytest.raises(SystemExit):
        TrlParser((SDARConfig,)).parse_args_into_dataclasses([*base, "--skill_retrieval", "dense"])


# ---------------------------------------------------------------------------------------------------- training
#: ScriptedEnv tasks are "task <seed>" of type "type<seed % 2>": only skill 1 mentions "task", so BM25 picks it.
AGENT_BANK = SkillBank.from_dict(
    {
        "general_skills": [
            _skill("Finish", "Say win when ready.", "Always."),
            _skill("Task", "Every task ends with win.", "Any task."),
        ],
        "task_specific_skills": {
            "type0": [_skill("Even", "Even seeds end with win.", "type0.")],
            "type1": [_skill("Odd", "Odd seeds end with go then win.", "type1.")],
        },
    }
)
#: Titles the teacher sees for a type0 / type1 episode on "task <seed>" per mode (k = 2), and skills per episode.
EXPECTED_TITLES = {
    "rules": ({"Finish", "Task", "Even"}, {"Finish", "Task", "Odd"}),
    "all": ({"Finish", "Task", "Even", "Odd"},),
    "bm25": ({"Task"},),  # only skill 1 shares a term ("task") with the task description
}
EXPECTED_COUNT = {"rules": 3.0, "all": 4.0, "bm25": 1.0, "ucb": 2.0}


def _train(tmp_path, tokenizer, mode: str, **overrides):
    trainer = SDARTrainer(
        build_tiny_model(tokenizer),
        args=tiny_agent_config(tmp_path / "out", skill_retrieval=mode, skill_retrieval_k=2, **overrides),
        train_dataset=Dataset.from_list([{"seed": i} for i in range(8)]),
        processing_class=tokenizer,
        env_factory=lambda: ScriptedEnv(length=3),
        skill_bank=AGENT_BANK,
    )
    patch_generation(trainer, lambda text, call, position: [GO, WIN][(call + position) % 2])
    prefixes: list[str] = []
    add_teacher_logps = trainer._add_teacher_logps

    def record(output, row_prefixes):
        prefixes.extend(row_prefixes)
        return add_teacher_logps(output, row_prefixes)

    trainer._add_teacher_logps = record
    return trainer, prefixes


def _titles(prefix: str) -> set[str]:
    return {title for title in ("Finish", "Task", "Even", "Odd") if f". {title}\n" in prefix}


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["rules", "all", "bm25", pytest.param("kmeans", marks=needs_sklearn), "ucb"])
def test_every_mode_trains_two_agent_steps(tmp_path, tiny_tokenizer, mode):
    trainer, prefixes = _train(tmp_path, tiny_tokenizer, mode)
    trainer.train()
    assert trainer.state.global_step == 2
    logged = [record for record in trainer.state.log_history if "loss" in record]
    assert len(logged) == 2
    for record in logged:
        assert math.isfinite(record["loss"]) and math.isfinite(record["sdar/distill_loss"])
        assert record["skills/empty"] == 0.0
    assert prefixes and all(p.startswith("[Privileged Skill Information]\n") for p in prefixes)
    seen = {frozenset(_titles(p)) for p in prefixes}
    if mode in EXPECTED_TITLES:
        assert seen and seen <= {frozenset(titles) for titles in EXPECTED_TITLES[mode]}
    if mode == "kmeans":  # the cluster nearest "task <seed>" (the query holds no type): one set for every episode
        cluster = trainer.skill_retriever.chosen("type0", "task 0")
        assert seen == {frozenset(skill.title for skill in cluster)}
        assert logged[0]["skills/count"] == len(cluster)
    else:
        assert logged[0]["skills/count"] == EXPECTED_COUNT[mode]
    if mode == "bm25":
        assert logged[0]["skills/chosen/general.1"] == 1.0 and "skills/chosen/general.0" not in logged[0]
    if mode == "rules":  # the general skills in every episode, plus its own type's skill
        for record in logged:
            assert record["skills/chosen/general.0"] == record["skills/chosen/general.1"] == 1.0
            types = [record.get("skills/chosen/type0.0", 0.0), record.get("skills/chosen/type1.0", 0.0)]
            assert types == [record.get("env/episodes/type0", 0) / 4, record.get("env/episodes/type1", 0) / 4]
    if mode == "ucb":
        bandit = trainer.skill_retriever.bandit
        # 2 steps × 4 episodes, each one round of its task type; every round credits k = 2 skills.
        assert sum(bandit.rounds.values()) == 8
        assert all(sum(counts) == 2 * bandit.rounds[t] for t, counts in bandit.counts.items())
        assert all(math.isfinite(record["skills/ucb_reward"]) for record in logged)
        assert all(len(titles) == 2 for titles in seen)


@pytest.mark.integration
def test_ucb_bandit_resumes_from_its_checkpoint(tmp_path, tiny_tokenizer):
    full, _ = _train(tmp_path / "full", tiny_tokenizer, "ucb", save_strategy="steps", save_steps=1)
    full.train()
    saved = torch.load(tmp_path / "full" / "out" / "checkpoint-1" / SDAR_STATE_NAME, weights_only=True)
    assert sum(saved["skill_retrieval"]["bandit"]["rounds"].values()) == 4  # one batch of 4 episodes
    resumed, _ = _train(tmp_path / "resumed", tiny_tokenizer, "ucb", save_strategy="no")
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "out" / "checkpoint-1"))
    # Restored (4 rounds) plus step 2's 4: a run that lost the state would hold 4. Step 1 played type0 tasks, step 2
    # type1 tasks (the sampler's order is seeded), so type0's sums are the checkpoint's, bit for bit, and step 2 chose
    # the same skills as the uninterrupted run. (Its gaps differ: the scripted responses follow the generation count,
    # which restarts at 0 in the resumed process.)
    final, again = full.skill_retriever.bandit, resumed.skill_retriever.bandit
    assert again.rounds == final.rounds == {"type0": 4, "type1": 4}
    assert again.counts == final.counts
    assert again.sums["type0"] == saved["skill_retrieval"]["bandit"]["sums"]["type0"] == final.sums["type0"]


def test_retrieval_needs_agent_mode_and_a_skill_source(tmp_path, tiny_tokenizer):
    model = build_tiny_model(tiny_tokenizer)
    with pytest.raises(ValueError, match="skill_retrieval='bm25' chooses skills per agent-mode episode"):
        SDARTrainer(
            model,
            reward_funcs=lambda completions, **kw: [0.0] * len(completions),
            args=tiny_agent_config(tmp_path, skill_retrieval="bm25"),
            train_dataset=Dataset.from_list([{"prompt": "hi", "privileged_context": "x"}] * 4),
            processing_class=tiny_tokenizer,
        )
    with pytest.raises(ValueError, match=r"privileged_context_source='facts'.*leave skill_retrieval='rules'"):
        SDARTrainer(
            model,
            args=tiny_agent_config(tmp_path, skill_retrieval="all", privileged_context_source="facts"),
            train_dataset=Dataset.from_list([{"seed": i} for i in range(4)]),
            processing_class=tiny_tokenizer,
            env_factory=ScriptedEnv,
            skill_bank=AGENT_BANK,
        )
