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
    assert ("alfworld", "cpu-micro") in names and ("webshop", "cpu-micro") in names
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


@pytest.mark.parametrize("folder", ["alfworld", "webshop"])
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
