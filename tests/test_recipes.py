"""recipes/*.yaml and the examples' choice of defaults: parsed with the examples' own parser, nothing trained.

Every value a recipe writes must arrive in the parsed ExampleArguments / SDARConfig / ModelConfig; a key the parser
does not know must fail; a Qwen recipe must spell out exactly what the paper profile gives that model without it,
and a cpu-micro recipe exactly what the README demo runs with.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*/*.yaml"))
#: recipes/<folder>/ -> the keyword arguments its example script passes to `main`.
SCRIPTS: dict[str, dict[str, Any]] = {
    "alfworld": {"default_env": "alfworld-mini", "skills_name": "alfworld", "history_length": 2,
                 "invalid_action_penalty": 0.1},
    "webshop": {"default_env": "webshop-mini", "skills_name": "webshop", "history_length": 2,
                "invalid_action_penalty": 0.1},
    "search_qa": {"default_env": "searchqa-mini", "skills_name": "searchqa", "history_length": 4,
                  "invalid_action_penalty": 0.01},
}  # fmt: skip
MODELS = ("qwen2.5-3b-instruct", "qwen2.5-7b-instruct", "qwen3-1.7b")


@pytest.fixture(scope="module")
def common():
    """examples/_common.py as a module (as tests/test_examples.py loads it)."""
    spec = importlib.util.spec_from_file_location("examples_common", ROOT / "examples" / "_common.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["examples_common"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("examples_common", None)


def _parse(common, folder: str, argv: list[str]):
    return common.parse_run(argv, **SCRIPTS[folder])


def _value(run, name: str) -> Any:
    for args in (run.script_args, run.training_args, run.model_args):
        if hasattr(args, name):
            value = getattr(args, name)
            return getattr(value, "value", value)  # enums (lr_scheduler_type, save_strategy) as plain values
    raise AssertionError(f"{name} is in no parsed argument object")


def _expected(name: str, value: Any) -> Any:
    if name == "report_to" and value == "none":
        return []  # transformers stores "none" as an empty list
    return value


def test_every_env_has_a_recipe_per_paper_model_and_the_shipped_micro_starters_have_theirs():
    names = {(path.parent.name, path.stem) for path in RECIPES}
    for folder in SCRIPTS:
        for model in MODELS:
            assert (folder, model) in names
    assert {("alfworld", "cpu-micro"), ("webshop", "cpu-micro"), ("search_qa", "cpu-micro")} <= set(names)
    readme = (ROOT / "recipes" / "README.md").read_text(encoding="utf-8")
    for path in RECIPES:
        assert f"{path.parent.name}/{path.name}" in readme, path  # every recipe is listed


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_each_recipe_value_arrives_in_the_parsed_arguments(common, path):
    recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
    run = _parse(common, path.parent.name, ["--config", str(path)])
    assert recipe and "env" not in recipe  # TRL's parser reads a YAML `env:` as environment variables
    for name, value in recipe.items():
        got = _value(run, name)
        want = _expected(name, value)
        if isinstance(want, float):
            assert got == pytest.approx(want), name
        else:
            assert got == want, name
    report = run.report(["--config", str(path)])
    assert f"recipe {path}" in report  # the first lines name the recipe as the source
    assert run.origin == (common.STARTER_DEMO if path.stem == "cpu-micro" else common.PAPER)


@pytest.mark.parametrize("folder", sorted(SCRIPTS))
@pytest.mark.parametrize("model", MODELS)
def test_a_paper_recipe_spells_out_the_paper_profile_of_its_model(common, folder, model):
    """The recipe and the bare `--model_name_or_path` give the same settings: the recipe documents, not differs."""
    path = ROOT / "recipes" / folder / f"{model}.yaml"
    recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
    by_recipe = _parse(common, folder, ["--config", str(path)])
    by_flag = _parse(common, folder, ["--model_name_or_path", recipe["model_name_or_path"]])
    assert by_flag.origin == common.PAPER
    for name in by_flag.profile:
        assert _value(by_recipe, name) == _value(by_flag, name), name
    missing = set(by_flag.profile) - set(recipe)
    assert not missing, f"{path.name} leaves {sorted(missing)} to the profile"


@pytest.mark.parametrize("folder", ["alfworld", "webshop", "search_qa"])
def test_the_cpu_micro_recipe_is_the_readme_demo(common, folder):
    path = ROOT / "recipes" / folder / "cpu-micro.yaml"
    by_recipe = _parse(common, folder, ["--config", str(path)])
    demo = _parse(common, folder, [])  # `accelerate launch examples/<folder>.py`
    assert demo.origin == common.STARTER_DEMO
    for name in [*demo.profile, "model_name_or_path"]:
        assert _value(by_recipe, name) == _value(demo, name), name


def test_an_unknown_recipe_key_fails(common, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text((ROOT / "recipes/webshop/qwen2.5-7b-instruct.yaml").read_text() + "learning_rat: 1.0e-5\n")
    with pytest.raises(ValueError, match=r"Unknown arguments from config file: .*learning_rat"):
        _parse(common, "webshop", ["--config", str(path)])


def test_a_recipe_setting_env_to_a_name_is_a_clear_error(common, tmp_path):
    path = tmp_path / "env.yaml"
    path.write_text("model_name_or_path: Qwen/Qwen2.5-3B-Instruct\nenv: alfworld\n")
    with pytest.raises(SystemExit, match=r"sets env: 'alfworld'.*Pass the environment on the command line"):
        _parse(common, "alfworld", ["--config", str(path)])


def test_the_command_line_wins_over_the_recipe_and_says_so(common):
    path = ROOT / "recipes" / "alfworld" / "qwen2.5-3b-instruct.yaml"
    argv = ["--config", str(path), "--learning_rate", "3e-6", "--gradient_accumulation_steps", "2"]
    run = _parse(common, "alfworld", argv)
    assert run.training_args.learning_rate == pytest.approx(3e-6)
    assert run.training_args.gradient_accumulation_steps == 2
    assert run.training_args.max_steps_per_episode == 50  # from the recipe
    sources = common.setting_sources(
        ["learning_rate", "max_steps_per_episode", "method", "gate_beta", "seed"], argv=argv, recipe=run.recipe,
        profile=run.profile, origin=run.origin,
    )  # fmt: skip
    assert sources == {
        "learning_rate": "command line",
        "max_steps_per_episode": "recipe",
        "method": "recipe",
        "gate_beta": "recipe",
        "seed": "default",
    }
    lines = run.report(argv).splitlines()
    assert any(line.split()[:2] == ["learning_rate", "3e-06"] and line.endswith("command line") for line in lines)
    assert lines[-1].strip().startswith("= 2 tasks x 8 trajectories per optimizer step")  # 8 rows x 2 / 8


# The choice of defaults: a packaged starter gets the CPU demo's, any other model the paper's (parse only).


def test_no_model_flag_keeps_the_readme_demo(common):
    """`accelerate launch examples/webshop.py`: the micro starter with the demo values docs/starter.md measured."""
    run = _parse(common, "webshop", [])
    args = run.training_args
    assert run.origin == common.STARTER_DEMO and run.model_args.model_name_or_path == "micro:webshop-mini"
    assert (args.max_steps, args.per_device_train_batch_size, args.num_generations) == (24, 32, 4)
    assert (args.max_steps_per_episode, args.max_completion_length) == (10, 48)
    assert args.learning_rate == pytest.approx(3e-4) and args.privileged_context_source == "facts"
    assert args.loss_type == "dapo" and args.beta == 0.0  # TRL's defaults, as before
    assert (run.script_args.eval_tasks, run.script_args.first_train_seed) == (200, 1_000_000)


def test_search_qa_defaults_to_its_micro_starter(common):
    run = _parse(common, "search_qa", [])
    args = run.training_args
    assert run.origin == common.STARTER_DEMO and run.model_args.model_name_or_path == "micro:searchqa-mini"
    assert (args.max_steps_per_episode, args.max_completion_length, args.history_length) == (4, 48, 4)
    assert args.privileged_context_source == "facts" and args.num_generations == 4


@pytest.mark.parametrize("argv", [["--model_name_or_path", "smollm2"]])
def test_the_smollm2_starter_keeps_its_cpu_demo(common, argv):
    run = _parse(common, "search_qa", argv)
    args = run.training_args
    assert run.origin == common.STARTER_DEMO
    assert (args.num_generations, args.max_steps_per_episode, args.max_steps) == (2, 6, 1)
    assert args.learning_rate == pytest.approx(2e-5) and args.privileged_context_source == "facts"


@pytest.mark.parametrize(
    ("folder", "model", "turns", "history", "penalty", "beta", "accumulation", "eval_temperature"),
    [
        ("webshop", "Qwen/Qwen2.5-7B-Instruct", 15, 2, 0.1, 0.01, 16, 0.4),
        ("alfworld", "Qwen/Qwen2.5-3B-Instruct", 50, 2, 0.1, 0.01, 16, 0.4),
        ("search_qa", "Qwen/Qwen2.5-7B-Instruct", 4, 4, 0.01, 0.001, 128, 0.0),
    ],
)
def test_any_other_model_gets_the_papers_settings_for_the_env(
    common, folder, model, turns, history, penalty, beta, accumulation, eval_temperature
):
    run = _parse(common, folder, ["--model_name_or_path", model])
    args = run.training_args
    assert run.origin == common.PAPER
    assert args.privileged_context_source == "skills" and args.num_generations == 8
    assert args.learning_rate == pytest.approx(1e-6) and args.max_steps == 150
    assert (args.loss_type, args.delta, args.entropy_coef, args.weight_decay) == ("bnpo", 3.0, 0.001, 0.01)
    assert (args.max_steps_per_episode, args.history_length) == (turns, history)
    assert args.invalid_action_penalty == pytest.approx(penalty) and args.beta == pytest.approx(beta)
    assert args.gradient_accumulation_steps == accumulation and args.eval_temperature == eval_temperature
    assert args.max_completion_length == 512 and (args.distill_coef, args.gate_beta) == (0.01, 5.0)
    # 16 tasks x 8 trajectories per step (Search-QA: 128 tasks) on one process
    assert args.per_device_train_batch_size * args.steps_per_generation // args.num_generations == accumulation


def test_a_local_model_directory_is_not_a_starter(common, tmp_path):
    run = _parse(common, "alfworld", ["--model_name_or_path", str(tmp_path)])
    assert run.origin == common.PAPER and run.training_args.max_steps_per_episode == 50


def test_the_env_flag_picks_the_papers_benchmark(common):
    run = _parse(common, "alfworld", ["--model_name_or_path", "Qwen/Qwen2.5-3B-Instruct", "--env", "webshop-mini"])
    assert run.training_args.max_steps_per_episode == 15 and run.training_args.max_teacher_prompt_length == 4096


def test_qwen3_runs_with_thinking_off_and_flags_still_win(common):
    run = _parse(common, "webshop", ["--model_name_or_path", "Qwen/Qwen3-1.7B", "--num_generations", "4",
                                     "--privileged_context_source", "facts"])  # fmt: skip
    args = run.training_args
    assert args.chat_template_kwargs == {"enable_thinking": False}
    assert args.num_generations == 4 and args.privileged_context_source == "facts"
    lines = run.report(["--model_name_or_path", "Qwen/Qwen3-1.7B", "--num_generations", "4"]).splitlines()
    assert lines[0].startswith("Settings in force (paper defaults")
    by_name = {line.split()[0]: line for line in lines[1:]}
    assert by_name["num_generations"].endswith("command line") and by_name["learning_rate"].endswith("paper")
    assert by_name["distill_coef"].endswith("method preset")


def test_the_demo_flag_forces_the_starter_defaults(common, tmp_path):
    """examples/textworld_sdar.py supplies its own tiny model for its demo: that keeps the CPU demo's defaults."""
    run = common.parse_run(["--model_name_or_path", str(tmp_path)], **SCRIPTS["alfworld"], demo=True)
    assert run.origin == common.STARTER_DEMO and run.training_args.num_generations == 2


def test_help_shows_the_defaults_of_the_named_model(common, capsys):
    with pytest.raises(SystemExit) as stop:
        _parse(common, "webshop", ["--model_name_or_path", "Qwen/Qwen2.5-7B-Instruct", "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "the paper's settings for the environment apply" in text
    start = text.rindex("--privileged_context_source")  # its help entry, after the usage line
    assert "(default: skills)" in text[start : start + 600]


@pytest.mark.parametrize(
    ("origin", "train", "evaluation"),
    [
        ("starter demo", {"difficulty": "easy", "max_episode_steps": 10, "split": "train"},
         {"difficulty": "easy", "max_episode_steps": 10, "split": "test"}),
        ("paper", {"split": "train"}, {"split": "test"}),
    ],
)  # fmt: skip
def test_env_settings_keep_the_envs_own_level_for_the_paper(common, origin, train, evaluation):
    assert common.env_settings("webshop-mini", origin=origin, difficulty=None, eval_split=None, env_kwargs={}) == (
        train,
        evaluation,
    )
    # the flags win over both
    got = common.env_settings(
        "webshop-mini", origin=origin, difficulty="full", eval_split="train", env_kwargs={"seed": 3}
    )
    assert got[0]["difficulty"] == "full" and got[0]["seed"] == 3 and got[1]["split"] == "train"


def test_a_missing_or_malformed_recipe_file_names_the_file(common, tmp_path):
    with pytest.raises(SystemExit, match=r"--config '/nonexistent/r\.yaml': cannot read it .*expected a YAML recipe"):
        common._recipe_values(["--config", "/nonexistent/r.yaml"])
    listed = tmp_path / "list.yaml"
    listed.write_text("- learning_rate\n- 1.0e-6\n")
    with pytest.raises(SystemExit, match=r"holds a list, not a YAML mapping"):
        common._recipe_values(["--config", str(listed)])
    assert common.requested_model(["--config", str(ROOT / "recipes/alfworld/cpu-micro.yaml")]) == "micro:alfworld-mini"


def test_the_default_output_directory_names_the_method(common):
    """`--method grpo` wrote to outputs/webshop-mini-sdar: a baseline's run must not look like an SDAR run."""
    assert _parse(common, "webshop", []).training_args.output_dir == "outputs/webshop-mini-sdar"
    grpo = _parse(common, "webshop", ["--method", "grpo"])
    assert grpo.training_args.output_dir == "outputs/webshop-mini-grpo"
    assert _parse(common, "search_qa", ["--method", "grpo_opsd"]).training_args.output_dir == (
        "outputs/searchqa-mini-grpo_opsd"
    )
    explicit = _parse(common, "webshop", ["--method", "grpo", "--output_dir", "runs/mine"])
    assert explicit.training_args.output_dir == "runs/mine"
