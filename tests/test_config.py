"""Tests for `SDARConfig`: method presets, explicit overrides, validation messages, field help, CLI parsing."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import dataclasses
import math

import pytest
from transformers import HfArgumentParser
from trl import GRPOConfig

from sdar_trl.config import CHECKPOINTING_FIELD, METHOD_PRESETS, SDAR_FIELD_KINDS, SDARConfig

# GRPOConfig defaults to bf16=True, which fails on a CPU-only machine.
CPU_ARGS = {"bf16": False, "report_to": "none"}


def make_config(tmp_path, **kwargs):
    return SDARConfig(output_dir=str(tmp_path), **CPU_ARGS, **kwargs)


# docs/methods.md's presets, written out independently of METHOD_PRESETS:
# (distill_coef, gate_beta, distill_loss, use_policy_loss, skills_in_student_prompt, rlsd_weight,
#  needs_teacher, needs_privileged_context)
EXPECTED_PRESETS = {
    "sdar": (0.01, 5.0, "gated", True, False, 0.0, True, True),
    "grpo": (0.0, 5.0, "gated", True, False, 0.0, False, False),
    "grpo_opsd": (0.01, 0.0, "gated", True, False, 0.0, True, True),
    "opsd": (0.01, 5.0, "gated", False, False, 0.0, True, True),
    "skill_grpo": (0.0, 5.0, "gated", True, True, 0.0, False, True),
    "skill_sd": (0.001, 5.0, "k3", True, False, 0.0, True, True),
    "rlsd": (0.0, 5.0, "gated", True, False, 0.5, True, True),
}
PRESET_FIELDS = (
    "distill_coef",
    "gate_beta",
    "distill_loss",
    "use_policy_loss",
    "skills_in_student_prompt",
    "rlsd_weight",
)
SDAR_FIELDS = {
    "method",
    *PRESET_FIELDS,
    "rlsd_decay_steps",
    "rlsd_clip_eps",
    "teacher_mode",
    "teacher_ema_rate",
    "teacher_ema_sync_steps",
    "teacher_context_header",
    "teacher_context_separator",
    "max_teacher_prompt_length",
    "teacher_prefix_cache",
    "unpadded_logps",
    "privileged_context_column",
    "distill_empty_context",
    "max_steps_per_episode",
    "history_length",
    "invalid_action_penalty",
    "eval_temperature",
    "max_observation_length",
    "privileged_context_source",
    "skill_retrieval",
    "skill_retrieval_k",
    "skill_ucb_c",
    "env_step_timeout",
    "max_abs_reward",
    "max_failed_episode_share",
    "max_admissible_actions",
    "invalid_action_text",
    "env_workers",
    "gate_diagnostics",
    "gate_diagnostics_every",
}


def test_default_is_sdar(tmp_path):
    config = make_config(tmp_path)
    assert config.method == "sdar"
    assert config.distill_coef == 0.01
    assert config.gate_beta == 5.0
    assert config.distill_loss == "gated"
    assert config.use_policy_loss is True
    assert config.skills_in_student_prompt is False
    assert config.rlsd_weight == 0.0
    assert config.rlsd_decay_steps == 100
    assert config.rlsd_clip_eps == 0.2
    assert config.teacher_mode == "live"
    assert config.teacher_context_header == "[Privileged Skill Information]\n"
    assert config.teacher_context_separator == "\n\n"
    assert config.max_teacher_prompt_length is None
    assert config.privileged_context_column == "privileged_context"


def test_preset_table_matches_spec():
    assert set(METHOD_PRESETS) == set(EXPECTED_PRESETS)
    for method, preset in METHOD_PRESETS.items():
        assert set(preset) == set(PRESET_FIELDS), method


@pytest.mark.parametrize(("method", "expected"), list(EXPECTED_PRESETS.items()))
def test_preset_resolves_to_table_values(tmp_path, method, expected):
    config = make_config(tmp_path, method=method)
    *values, needs_teacher, needs_privileged_context = expected
    for name, value in zip(PRESET_FIELDS, values, strict=True):
        actual = getattr(config, name)
        assert actual == value and type(actual) is type(value), (method, name, actual)
        assert actual == METHOD_PRESETS[method][name], (method, name)
    assert config.needs_teacher is needs_teacher
    assert config.needs_privileged_context is needs_privileged_context


@pytest.mark.parametrize(
    ("method", "overrides"),
    [
        ("grpo_opsd", {"gate_beta": 2.0}),
        ("sdar", {"gate_beta": 0.0}),  # a falsy explicit value still wins over the preset
        ("sdar", {"distill_coef": 0.05, "distill_loss": "sampled_token"}),
        ("sdar", {"use_policy_loss": False}),
        ("skill_sd", {"distill_loss": "gated", "distill_coef": 0.02}),
        ("grpo", {"distill_coef": 0.01}),
        ("rlsd", {"rlsd_weight": 0.0, "distill_coef": 0.01}),
        ("skill_grpo", {"skills_in_student_prompt": False, "distill_coef": 0.01}),
    ],
)
def test_explicit_values_override_preset(tmp_path, method, overrides):
    config = make_config(tmp_path, method=method, **overrides)
    for name in PRESET_FIELDS:
        expected = overrides.get(name, METHOD_PRESETS[method][name])
        assert getattr(config, name) == expected, name


def test_override_changes_needs_teacher(tmp_path):
    # grpo has no teacher; a positive distill_coef brings it back.
    assert not make_config(tmp_path, method="grpo").needs_teacher
    config = make_config(tmp_path, method="grpo", distill_coef=0.01)
    assert config.needs_teacher and config.needs_privileged_context
    # rlsd without reweighting and without distillation needs no teacher.
    config = make_config(tmp_path, method="rlsd", rlsd_weight=0.0)
    assert not config.needs_teacher and not config.needs_privileged_context


@pytest.mark.parametrize(
    ("kwargs", "needles"),
    [
        ({"distill_coef": -0.1}, ["distill_coef=-0.1"]),
        ({"distill_coef": math.nan}, ["distill_coef=nan"]),
        ({"distill_coef": math.inf}, ["distill_coef=inf"]),
        ({"gate_beta": math.nan}, ["gate_beta=nan"]),
        ({"gate_beta": -1.0}, ["gate_beta=-1.0"]),
        ({"gate_beta": math.inf}, ["gate_beta=inf"]),
        ({"method": "bogus"}, ["'bogus'", "sdar"]),
        ({"distill_loss": "kl"}, ["'kl'", "gated"]),
        ({"teacher_mode": "ema", "teacher_ema_rate": 0.0}, ["teacher_ema_rate=0.0"]),
        ({"teacher_ema_rate": 1.5}, ["teacher_ema_rate=1.5"]),
        ({"method": "skill_grpo", "distill_coef": 0.01}, ["skills_in_student_prompt=True", "distill_coef=0.01"]),
        ({"skills_in_student_prompt": True}, ["skills_in_student_prompt=True", "method='sdar'"]),
        ({"teacher_ema_rate": math.nan}, ["teacher_ema_rate=nan"]),
        ({"teacher_ema_sync_steps": 0}, ["teacher_ema_sync_steps=0"]),
        ({"teacher_mode": "bogus"}, ["'bogus'", "live"]),
        ({"rlsd_weight": 1.5}, ["rlsd_weight=1.5"]),
        ({"rlsd_weight": -0.5}, ["rlsd_weight=-0.5"]),
        ({"rlsd_weight": math.nan}, ["rlsd_weight=nan"]),
        ({"rlsd_clip_eps": 1.0}, ["rlsd_clip_eps=1.0"]),
        ({"rlsd_clip_eps": -0.1}, ["rlsd_clip_eps=-0.1"]),
        ({"rlsd_decay_steps": -1}, ["rlsd_decay_steps=-1"]),
        ({"max_teacher_prompt_length": 0}, ["max_teacher_prompt_length=0"]),
        ({"privileged_context_column": ""}, ["privileged_context_column"]),
        ({"use_policy_loss": False, "distill_coef": 0.0}, ["use_policy_loss=False", "distill_coef=0"]),
        ({"max_steps_per_episode": 0}, ["max_steps_per_episode=0"]),
        ({"history_length": -1}, ["history_length=-1"]),
        ({"invalid_action_penalty": -0.1}, ["invalid_action_penalty=-0.1"]),
        ({"invalid_action_penalty": math.nan}, ["invalid_action_penalty=nan"]),
        ({"eval_temperature": -1.0}, ["eval_temperature=-1.0"]),
        ({"max_observation_length": 10}, ["max_observation_length=10"]),
        ({"privileged_context_source": "oracle"}, ["'oracle'", "skills"]),
        ({"method": "grpo", "use_policy_loss": False}, ["use_policy_loss=False", "distill_coef=0"]),
        ({"method": "opsd", "distill_coef": 0.0}, ["use_policy_loss=False", "distill_coef=0"]),
    ],
)
def test_rejects_invalid_values(tmp_path, kwargs, needles):
    with pytest.raises(ValueError) as info:
        make_config(tmp_path, **kwargs)
    message = str(info.value)
    for needle in needles:
        assert needle in message, (needle, message)


#: One wrong-typed value per SDAR field (each would slip through or fail mid-training without a type check).
WRONG_TYPES = {
    "method": 3,
    "distill_coef": "0.01",
    "gate_beta": "5",
    "distill_loss": 1,
    "use_policy_loss": "no",
    "skills_in_student_prompt": 1,
    "rlsd_weight": "0.5",
    "rlsd_decay_steps": 1.5,
    "rlsd_clip_eps": "0.2",
    "teacher_mode": None,
    "teacher_ema_rate": True,
    "teacher_ema_sync_steps": 2.0,
    "teacher_context_header": None,
    "teacher_context_separator": 1,
    "max_teacher_prompt_length": 10.5,
    "teacher_prefix_cache": "true",
    "unpadded_logps": True,
    "privileged_context_column": 0,
    "distill_empty_context": 0,
    "max_steps_per_episode": "5",
    "history_length": 1.5,
    "invalid_action_penalty": "0.1",
    "eval_temperature": "0.4",
    "max_observation_length": 100.0,
    "privileged_context_source": ["skills"],
    "skill_retrieval": None,
    "skill_retrieval_k": 2.0,
    "skill_ucb_c": "0.1",
    "env_step_timeout": "30",
    "max_abs_reward": "1e6",
    "max_failed_episode_share": True,
    "max_admissible_actions": 10.5,
    "invalid_action_text": 0,
    "env_workers": 1.5,
    "gate_diagnostics": "yes",
    "gate_diagnostics_every": 2.5,
}


def test_wrong_types_cover_every_sdar_field():
    assert set(WRONG_TYPES) == SDAR_FIELDS
    assert set(SDAR_FIELD_KINDS) == SDAR_FIELDS  # a new field needs its kind declared, so it is type-checked too


@pytest.mark.parametrize(("name", "value"), list(WRONG_TYPES.items()), ids=list(WRONG_TYPES))
def test_rejects_wrong_types(tmp_path, name, value):
    with pytest.raises(TypeError) as info:
        make_config(tmp_path, **{name: value})
    message = str(info.value)
    # The value received, what was expected, and how to fix it.
    assert f"{name}={value!r}" in message, message
    assert "must be" in message and ("Pass " in message or "Set " in message), message


@pytest.mark.parametrize(
    ("kwargs", "needles"),
    [
        ({"use_policy_loss": "no"}, ["use_policy_loss='no'", "True or False", "truthy"]),
        ({"history_length": 1.5}, ["history_length=1.5", "whole number"]),
        ({"distill_coef": "0.01"}, ["distill_coef='0.01'", "number", "distill_coef=0.01"]),
    ],
)
def test_wrong_type_messages_name_the_fix(tmp_path, kwargs, needles):
    with pytest.raises(TypeError) as info:
        make_config(tmp_path, **kwargs)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


@pytest.mark.parametrize(
    ("kwargs", "error", "needles"),
    [
        # TRL fields whose bad values otherwise crash later (or, for beta, train with a reversed KL term).
        ({"num_generations": 0}, ValueError, ["num_generations=0", ">= 2"]),
        ({"num_generations": 1}, ValueError, ["num_generations=1", ">= 2"]),
        ({"num_generations": 2.5}, TypeError, ["num_generations=2.5", "whole number"]),
        ({"num_generations_eval": 0}, ValueError, ["num_generations_eval=0"]),
        ({"beta": -0.1}, ValueError, ["beta=-0.1", ">= 0", "KL"]),
        ({"beta": math.nan}, ValueError, ["beta=nan", ">= 0"]),
        ({"beta": "0.04"}, TypeError, ["beta='0.04'"]),
        ({"temperature": 0.0}, ValueError, ["temperature=0.0", "> 0", "eval_temperature"]),
        ({"temperature": -1.0}, ValueError, ["temperature=-1.0"]),
        ({"temperature": math.inf}, ValueError, ["temperature=inf"]),
        ({"top_p": 0.0}, ValueError, ["top_p=0.0", "(0, 1]"]),
        ({"num_iterations": 0}, ValueError, ["num_iterations=0", ">= 1"]),
        ({"epsilon": -0.2}, ValueError, ["epsilon=-0.2"]),
        ({"max_completion_length": 0}, ValueError, ["max_completion_length=0"]),
    ],
)
def test_rejects_bad_trl_fields_early(tmp_path, kwargs, error, needles):
    with pytest.raises(error) as info:
        make_config(tmp_path, **kwargs)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


def test_accepts_ints_for_float_fields(tmp_path):
    config = make_config(tmp_path, distill_coef=1, gate_beta=0, beta=0, temperature=1)
    assert config.distill_coef == 1 and config.gate_beta == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"distill_coef": 0.0, "method": "grpo"},
        {"gate_beta": 0.0},
        {"rlsd_weight": 1.0},
        {"rlsd_clip_eps": 0.0},
        {"rlsd_decay_steps": 0},
        {"max_teacher_prompt_length": 1},
        {"teacher_prefix_cache": False},
        {"unpadded_logps": "never"},
        {"teacher_mode": "base"},
        {"max_steps_per_episode": 1},
        {"history_length": 0},
        {"invalid_action_penalty": 0.0},
        {"eval_temperature": 0.0},
        {"max_observation_length": None},
        {"privileged_context_source": "skills+facts"},
        {"skill_retrieval": "kmeans", "skill_retrieval_k": 1},
        {"skill_retrieval": "ucb", "skill_ucb_c": 0.0},
    ],
)
def test_accepts_boundary_values(tmp_path, kwargs):
    config = make_config(tmp_path, **kwargs)
    for name, value in kwargs.items():
        assert getattr(config, name) == value


def test_sdar_fields_have_help_and_docstring_entry():
    own = {f.name: f for f in dataclasses.fields(SDARConfig)}
    inherited = {f.name for f in dataclasses.fields(GRPOConfig)}
    sdar_fields = {name: f for name, f in own.items() if name not in inherited}
    assert set(sdar_fields) == SDAR_FIELDS  # a new field must be added here (and documented)
    for name, f in sdar_fields.items():
        help_text = f.metadata.get("help")
        assert isinstance(help_text, str) and help_text.strip(), name
        assert f"{name} (`" in SDARConfig.__doc__, f"{name} missing from the SDARConfig docstring"


def test_method_choices_match_presets():
    field = next(f for f in dataclasses.fields(SDARConfig) if f.name == "method")
    assert sorted(field.metadata["choices"]) == sorted(METHOD_PRESETS)


def test_hf_argument_parser_round_trip(tmp_path):
    parser = HfArgumentParser(SDARConfig)
    args = ["--method", "grpo_opsd", "--output_dir", str(tmp_path), "--bf16", "False", "--report_to", "none"]
    (config,) = parser.parse_args_into_dataclasses(args)
    assert isinstance(config, SDARConfig)
    assert config.method == "grpo_opsd"
    assert config.gate_beta == 0.0
    assert config.distill_coef == 0.01
    assert config.use_policy_loss is True


def test_hf_argument_parser_explicit_values(tmp_path):
    parser = HfArgumentParser(SDARConfig)
    args = [
        "--method",
        "skill_sd",
        "--output_dir",
        str(tmp_path),
        "--bf16",
        "False",
        "--report_to",
        "none",
        "--distill_loss",
        "gated",
        "--gate_beta",
        "2.5",
        "--max_teacher_prompt_length",
        "2048",
    ]
    (config,) = parser.parse_args_into_dataclasses(args)
    assert config.distill_loss == "gated"
    assert config.gate_beta == 2.5
    assert config.distill_coef == 0.001  # still from the skill_sd preset
    assert config.max_teacher_prompt_length == 2048


@pytest.mark.parametrize(
    ("extra", "name", "expected"),
    [
        (["--method", "opsd"], "use_policy_loss", False),
        (["--method", "opsd", "--use_policy_loss", "true"], "use_policy_loss", True),
        (["--use_policy_loss", "false"], "use_policy_loss", False),
        (["--method", "grpo", "--skills_in_student_prompt", "true"], "skills_in_student_prompt", True),
        (["--method", "skill_grpo"], "skills_in_student_prompt", True),
    ],
)
def test_hf_argument_parser_optional_bools(tmp_path, extra, name, expected):
    # Optional[bool] fields: unset means "use the preset", an explicit true/false wins.
    parser = HfArgumentParser(SDARConfig)
    (config,) = parser.parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--bf16", "False", "--report_to", "none", *extra]
    )
    assert getattr(config, name) is expected


def test_hf_argument_parser_rejects_unknown_method(tmp_path, capsys):
    parser = HfArgumentParser(SDARConfig)
    with pytest.raises(SystemExit):
        parser.parse_args_into_dataclasses(["--method", "bogus", "--output_dir", str(tmp_path), "--bf16", "False"])
    assert "bogus" in capsys.readouterr().err


def test_to_dict_contains_resolved_values(tmp_path):
    data = make_config(tmp_path, method="rlsd").to_dict()
    assert data["method"] == "rlsd"
    assert data["rlsd_weight"] == 0.5
    assert data["distill_coef"] == 0.0


def _checkpointing_warnings(record):
    return [w for w in record if issubclass(w.category, FutureWarning) and "checkpointing" in str(w.message)]


def test_default_activation_checkpointing_is_on_without_a_deprecation_warning(tmp_path, recwarn):
    # TRL's GRPOConfig default (gradient_checkpointing=True) made transformers >= 5.23 warn on every config;
    # the same default must hold (on, under both names where both exist) with no warning.
    config = make_config(tmp_path)
    assert config.gradient_checkpointing is True
    assert getattr(config, "activation_checkpointing", True) is True
    assert _checkpointing_warnings(recwarn.list) == []


@pytest.mark.parametrize("field_name", ["gradient_checkpointing", CHECKPOINTING_FIELD])
def test_explicit_checkpointing_off_is_honoured(tmp_path, field_name):
    config = make_config(tmp_path, **{field_name: False})
    assert config.gradient_checkpointing is False
    assert getattr(config, "activation_checkpointing", False) is False


@pytest.mark.parametrize(
    ("extra", "expected"),
    [([], True), (["--gradient_checkpointing", "false"], False), (["--gradient_checkpointing"], True)],
)
def test_hf_argument_parser_gradient_checkpointing(tmp_path, extra, expected):
    parser = HfArgumentParser(SDARConfig)
    (config,) = parser.parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--bf16", "False", "--report_to", "none", *extra]
    )
    assert config.gradient_checkpointing is expected
    assert getattr(config, CHECKPOINTING_FIELD) is expected
