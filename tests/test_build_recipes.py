"""`scripts/build_micro.py --recipe <env>`: the shipped micro starters' stages as data, one command runs them.

The recipes must be the builds that wrote the shipped files (their metrics.json records every stage) and what
docs/starter.md shows; the chaining is run for real on a miniature recipe (each stage a real build_micro.py process
of a few seconds: 3 episodes, 2 steps, 1 evaluation task).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parents[1]


#: Recorded per stage but not a training choice: where the files went, timings, measurements.
_NOT_SETTINGS = {"output_dir", "init_from", "eval_only", "write_eval", "training_seconds", "selection_eval"}


@pytest.mark.parametrize("env", ["alfworld-mini", "webshop-mini", "searchqa-mini"])
def test_each_recipe_is_the_build_recorded_in_the_shipped_metrics(bm, env):
    """Stage k of the recipe parses to the settings metrics.json records for stage k (`build_chain`, then
    `build`), and continues the stage the record says it continued."""
    from sdar_trl.starter.load import MICRO_PATH

    metrics = json.loads((MICRO_PATH / env / "metrics.json").read_text(encoding="utf-8"))
    recorded = [*metrics.get("build_chain", []), metrics["build"]]  # alfworld-mini's predates build_chain
    commands = bm.stage_commands(bm.RECIPES[env], Path("work"), None)
    training = [(stage, argv) for stage, argv, _ in commands if not stage.eval_only]
    assert len(training) == len(recorded)
    names = [stage.name for stage, _ in training]
    for k, ((stage, argv), record) in enumerate(zip(training, recorded, strict=True)):
        parsed = vars(bm.parse_args(argv))
        keys = (set(parsed) & set(record)) - _NOT_SETTINGS
        assert {"max_steps", "learning_rate", "warmup_steps", "sources", "episodes", "noise", "eval_tasks"} <= keys
        assert {key: parsed[key] for key in keys} == {key: record[key] for key in keys}, stage.name
        # The chain: the stage continues the one whose output directory the record names as its init_from.
        continued = recorded[names.index(stage.init_from)]["output_dir"] if stage.init_from else None
        assert record["init_from"] == continued and (stage.init_from is None) == (k == 0)
    closing = [argv for stage, argv, _ in commands if stage.eval_only]
    if closing:  # the held-out measurement replaced the last stage's selection measurement
        (argv,) = closing
        sources = bm.parse_args(argv).eval_sources.split(",")
        assert metrics["selection"]["split"] == "train" and metrics["eval"]["split"] == "test"
        assert all(metrics["eval"]["by_context"][source]["tasks"] == 500 for source in sources)


@pytest.mark.parametrize("env", ["alfworld-mini", "webshop-mini", "searchqa-mini"])
def test_docs_show_the_one_command_and_its_dry_run_verbatim(bm, env, capsys):
    page = (ROOT / "docs" / "starter.md").read_text(encoding="utf-8")
    assert f"python scripts/build_micro.py --recipe {env}" in page
    assert bm.main(["--recipe", env, "--dry_run"]) == 0
    printed = capsys.readouterr().out
    assert printed == bm.dry_run_text(bm.RECIPES[env], bm.DEFAULT_WORK_DIR / env, None)
    assert f"```bash\n{printed}```" in page, f"docs/starter.md lacks the output of --recipe {env} --dry_run"


def test_dry_run_places_the_stages_under_work_dir_and_the_final_model_in_output_dir(bm, tmp_path, capsys):
    work, final = tmp_path / "w", tmp_path / "final"
    argv = ["--recipe", "webshop-mini", "--dry_run", "--work_dir", str(work), "--output_dir", str(final)]
    assert bm.main(argv) == 0
    commands = [line for line in capsys.readouterr().out.replace(" \\\n    ", " ").splitlines() if line[0] != "#"]
    assert len(commands) == 4 and not work.exists() and not final.exists()  # nothing runs, nothing is written
    outputs = [line.split("--output_dir ")[1].split()[0] for line in commands]
    assert outputs == [str(work / "ws1"), str(work / "ws2"), str(final), str(final)]
    inits = [line.split("--init_from ")[1].split()[0] if "--init_from" in line else None for line in commands]
    assert inits == [None, str(work / "ws1"), str(work / "ws2"), None]
    assert "--eval_only --write_eval" in commands[-1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--recipe", "toy-keys"],
            r"--recipe 'toy-keys': no build recipe.*alfworld-mini, webshop-mini, searchqa-mini \(the micro",
        ),
        (["--recipe", "webshop-mini", "--max_steps", "5"], r"per-stage option\(s\) --max_steps 5\. Drop them"),
        (["--recipe=searchqa-mini", "--init_from", "x"], r"per-stage option\(s\) --init_from x"),
        (["--recipe", "webshop-mini", "--env", "webshop-mini"], r"per-stage option\(s\) --env webshop-mini"),
    ],
)
def test_bad_recipe_options_name_the_value_and_the_fix(bm, argv, message, capsys):
    with pytest.raises(SystemExit) as raised:
        bm.main(argv)
    assert raised.value.code == 2
    assert re.search(message, capsys.readouterr().err)


@pytest.mark.parametrize("option", ["--dry_run", "--work_dir=w"])
def test_recipe_options_without_a_recipe_are_refused(bm, option):
    with pytest.raises(SystemExit, match=r"goes with --recipe <env>"):
        bm.main(["--env", "webshop-mini", option])


def test_a_stage_continuing_a_later_stage_is_refused(bm):
    recipe = bm.Recipe("searchqa-mini", (), (bm.Stage("a", (), "", init_from="b"), bm.Stage("b", (), "")), "")
    with pytest.raises(ValueError, match=r"stage 'a' continues 'b', which is not an earlier stage \(none\)"):
        bm.stage_commands(recipe, Path("w"), None)


def _fake_model(directory: Path, weights: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in (("model.safetensors", weights), ("config.json", b"{}"), ("tokenizer.json", b"{}")):
        (directory / name).write_bytes(content)
    return directory


def test_a_stage_is_finished_only_while_its_arguments_input_and_output_are_unchanged(bm, tmp_path):
    first, second = _fake_model(tmp_path / "a", b"A"), _fake_model(tmp_path / "b", b"B")
    state = bm.stage_state(["--env", "x"], first, second, eval_only=False)
    marker = tmp_path / "b.done.json"
    marker.write_text(json.dumps({**state, "seconds": 3.0}), encoding="utf-8")
    assert bm.read_marker(marker) == state == bm.stage_state(["--env", "x"], first, second, eval_only=False)
    assert bm.stage_state(["--env", "y"], first, second, eval_only=False) != state  # another recipe
    (first / "model.safetensors").write_bytes(b"A2")  # the stage it continues was rebuilt differently
    assert bm.stage_state(["--env", "x"], first, second, eval_only=False) != state
    (first / "model.safetensors").write_bytes(b"A")
    (second / "tokenizer.json").unlink()  # its own output is incomplete
    assert bm.stage_state(["--env", "x"], first, second, eval_only=False)["output"] is None
    # The closing evaluation depends on the model it measures and on the metrics.json it wrote.
    evaluation = bm.stage_state(["--eval_only"], None, first, eval_only=True)
    (first / "metrics.json").write_text("{}", encoding="utf-8")
    assert (
        evaluation["input"] is not None and bm.stage_state(["--eval_only"], None, first, eval_only=True) != evaluation
    )
    for broken in ("{", "[]", "\u00ff"):  # half-written, not ours, not UTF-8: not a marker, the stage runs again
        marker.write_bytes(broken.encode("latin-1"))
        assert bm.read_marker(marker) is None


def test_durations_read_as_minutes_and_seconds(bm):
    assert [bm.duration(s) for s in (0.4, 12.2, 60, 1503.4)] == ["0 s", "12 s", "1 min 0 s", "25 min 3 s"]


#: A miniature build of searchqa-mini (its expert episodes are the cheapest): a few seconds per stage.
_TINY = ("--episodes", "3", "--max_steps", "2", "--copy_steps", "0", "--eval_tasks", "1", "--eval_sources", "none")


def _tiny_recipe(bm):
    return bm.Recipe(
        env="searchqa-mini",
        shared=_TINY,
        stages=(
            bm.Stage("s1", ("--learning_rate", "3e-3"), "trains"),
            # Learning rate 0: the weights stay those it starts from, which shows where it started.
            bm.Stage("s2", ("--learning_rate", "0"), "continues s1", init_from="s1"),
            bm.Stage(
                "eval",
                (
                    *("--eval_only", "--write_eval", "--eval_tasks", "1"),
                    *("--eval_sources", "none", "--eval_first_seed", "7"),
                ),
                "measures the final model on another task than the stages' own evaluation",
                eval_only=True,
            ),
        ),
        summary="seconds",
    )


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "model.safetensors"))


def test_a_recipe_chains_its_stages_skips_finished_ones_and_reruns_replaced_ones(bm, tmp_path, monkeypatch, capfd):
    monkeypatch.setitem(bm.RECIPES, "tiny", _tiny_recipe(bm))
    work, final = tmp_path / "work", tmp_path / "final"
    argv = ["--recipe", "tiny", "--work_dir", str(work), "--output_dir", str(final)]

    assert bm.main(argv) == 0
    out = capfd.readouterr().out
    for number, name in enumerate(("s1", "s2", "eval"), 1):
        assert f"[{number}/3] {name}: " in out and f"[{number}/3] {name} done in " in out
        assert (work / f"{name}.done.json").is_file()
    assert out.index("[1/3] s1 done") < out.index("[2/3] s2: ") < out.index("[3/3] eval: ")
    assert f"--init_from {work / 's1'} --output_dir {final}" in out.replace(" \\\n    ", " ")  # its command, printed

    # s2 started from s1's model: with learning rate 0 it kept s1's weights, which training moved off a fresh model.
    first, second = _weights(work / "s1"), _weights(final)
    assert all(torch.equal(first[name], second[name]) for name in first)
    fresh = bm.make_model(bm.parse_args(["--env", "searchqa-mini"]), AutoTokenizer.from_pretrained(work / "s1"))
    assert any(not torch.equal(first[name], tensor) for name, tensor in fresh.state_dict().items() if name in first)
    metrics = json.loads((final / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["build"]["init_from"] == str(work / "s1") and metrics["build"]["learning_rate"] == 0.0
    assert [stage["learning_rate"] for stage in metrics["build_chain"]] == [3e-3]
    assert metrics["eval"]["first_seed"] == 7  # the closing evaluation wrote its measurement

    # Run again: every stage is finished, nothing runs.
    assert bm.main(argv) == 0
    out = capfd.readouterr().out
    assert out.count("finished earlier") == 3 and "done in" not in out

    # A replaced output runs its stage again. The build is deterministic: s1 writes the same model again, so s2's
    # input is unchanged and s2 and the evaluation stay finished. (A stage that really changes its output reruns the
    # ones after it: test_a_stage_is_finished_only_while_its_arguments_input_and_output_are_unchanged.)
    config = work / "s1" / "config.json"
    config.write_text(config.read_text(encoding="utf-8") + " ", encoding="utf-8")
    assert bm.main(argv) == 0
    out = capfd.readouterr().out
    assert "[1/3] s1 done in" in out and "[2/3] s2: finished earlier" in out and "[3/3] eval: finished earlier" in out
    assert all(torch.equal(first[name], tensor) for name, tensor in _weights(work / "s1").items())


@pytest.mark.parametrize(
    ("first", "message"),
    [
        # --eval_only on a directory without a model: the process fails at once.
        (("--eval_only",), "broken failed with exit code {code}"),
        # A zero-minute cap: the process stops after one of its two steps and exits 0, but its model is not the
        # recipe's (the schedule assumed two steps).
        (("--minutes", "0"), "broken stopped at its --minutes wall-clock cap after 1 of 2 steps"),
    ],
    ids=["crash", "wall-clock-cap"],
)
def test_a_failing_stage_stops_the_chain_with_a_nonzero_exit(bm, tmp_path, monkeypatch, capfd, first, message):
    recipe = bm.Recipe(
        env="searchqa-mini",
        shared=_TINY,
        stages=(
            bm.Stage("broken", first, "fails"),
            bm.Stage("after", (), "never runs", init_from="broken"),
        ),
        summary="",
    )
    monkeypatch.setitem(bm.RECIPES, "tiny", recipe)
    work = tmp_path / "work"
    code = bm.main(["--recipe", "tiny", "--work_dir", str(work), "--output_dir", str(tmp_path / "final")])
    assert code not in (0, None)
    captured = capfd.readouterr()
    assert "[1/2] " + message.format(code=code) in captured.err and "chain stops here" in captured.err
    assert "[2/2]" not in captured.out and not (work / "broken.done.json").exists()
    assert not (tmp_path / "final").exists()
