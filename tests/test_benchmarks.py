"""Benchmark scripts run and honour their output contract (they are not timed here)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _run_benchmark(script: str, args: list[str], timeout: int = 600) -> tuple[dict, str]:
    """Run `benchmarks/<script>` in its own interpreter: its JSON record (the last stdout line) and its stderr."""
    command = [sys.executable, str(ROOT / "benchmarks" / script), *args]
    completed = subprocess.run(command, capture_output=True, text=True, check=True, timeout=timeout)
    return json.loads(completed.stdout.strip().splitlines()[-1]), completed.stderr


@pytest.mark.integration
def test_env_speed_prints_one_json_line():
    result, stderr = _run_benchmark("env_speed.py", ["--seconds", "0.2"], timeout=300)
    assert result["benchmark"] == "env_speed"
    assert {r["env"] for r in result["results"]} == {"alfworld-mini", "webshop-mini", "searchqa-mini"}
    assert all(r["steps"] > 0 and r["steps_per_second"] > 0 for r in result["results"])
    assert "steps/s" in stderr


@pytest.mark.integration
def test_env_workers_cost_prints_both_modes():
    result, stderr = _run_benchmark("env_workers_cost.py", ["--envs", "4", "--steps", "3", "--repeats", "1"])
    assert result["benchmark"] == "env_workers_cost" and result["steps_per_rollout"] == 12
    assert result["ms_per_step_env_workers_0"] > 0 and result["ms_per_step_env_workers_n"] > 0
    assert "worker start-up" in stderr


@pytest.mark.integration
def test_gate_overhead_prints_the_instrumented_share():
    args = ["--steps", "1", "--warmup", "1", "--completion-length", "8", "--episode-length", "2"]
    result, stderr = _run_benchmark("gate_overhead.py", args)
    assert result["benchmark"] == "gate_overhead" and result["rows_per_step"] == 16 and result["every"] == 1
    # Step 2 is timed, and with every=1 it dumps: the diagnostics took some time, a small part of the step.
    assert 0 < result["diagnostics_s_per_step"] < result["step_s_on"]
    assert 0 < result["instrumented_share"] < 1 and result["step_s_off"] > 0
    assert "% of the step time" in stderr


def test_answer_errors_classifies_episodes_by_hand(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import answer_errors

    prompt = "Doc 1(Title: Fairbirica) Fairbirica is a country whose capital is Cavo.</information>"
    classify = answer_errors.classify_episode
    assert classify(True, "<answer>Cavo</answer>", prompt) == "won"
    assert classify(False, "<think></think><answer>Fairbirica</answer>", prompt) == "copied_wrong"
    assert classify(False, "<answer> Cavo capital </answer>", prompt) == "miscopied"
    assert classify(False, "<answer>Cav</answer>", prompt) == "miscopied"  # a prefix of a shown name is no copy
    assert classify(False, "<answer>Fairbiricaland</answer>", prompt) == "miscopied"
    assert classify(False, "<answer>Architect</answer>", prompt) == "guessed"  # a profession it was not shown
    assert classify(False, "<search>Cavo</search>", prompt) == "no_answer"
    assert classify(False, "<answer> </answer>", prompt) == "no_answer"
    counts = answer_errors.count_outcomes([("compare", "won"), ("compare", "miscopied"), ("direct", "miscopied")])
    assert counts == {
        "tasks": 3,
        "won": 1,
        "copied_wrong": 0,
        "guessed": 0,
        "miscopied": 2,
        "no_answer": 0,
        "by_task_type": {
            "compare": {"won": 1, "copied_wrong": 0, "guessed": 0, "miscopied": 1, "no_answer": 0},
            "direct": {"won": 0, "copied_wrong": 0, "guessed": 0, "miscopied": 1, "no_answer": 0},
        },
    }
    # By the gold answer's length in tokens, shortest first (a length as a JSON key).
    by_length = answer_errors.count_by_answer_tokens([(3, "miscopied"), (1, "won"), (3, "won"), (3, "miscopied")])
    assert list(by_length) == ["1", "3"]
    assert by_length["3"] == {"tasks": 3, "won": 1, "copied_wrong": 0, "guessed": 0, "miscopied": 2, "no_answer": 0}


@pytest.mark.integration
def test_answer_errors_prints_one_json_line():
    result, stderr = _run_benchmark("answer_errors.py", ["--tasks", "6"], timeout=300)
    assert result["benchmark"] == "answer_errors" and result["tasks"] == 6 and result["first_seed"] == 20_000_000
    assert result["stride"] == 101
    assert sum(result[o] for o in ("won", "copied_wrong", "guessed", "miscopied", "no_answer")) == 6
    assert sum(sum(c.values()) for c in result["by_task_type"].values()) == 6
    assert result["temperature"] == 0.4 and "miscopied" in stderr
    assert sum(c["tasks"] for c in result["by_answer_tokens"].values()) == 6 and "answer tokens" in stderr


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from sdar_trl.testing import save_tiny

    return str(save_tiny(tmp_path_factory.mktemp("tiny") / "model"))


@pytest.mark.integration
def test_table1_writes_its_output_contract(table1, tmp_path, tiny_model_dir):
    """Two methods x one seed on searchqa-mini (4 turns), one optimizer step, two runs at once in their own processes:
    table1.json (in the plan's order, whichever run finishes first), table1.md, JSON line; a rerun resumes."""
    command = [sys.executable, str(ROOT / "benchmarks" / "table1.py"), "--model", tiny_model_dir]
    command += ["--envs", "searchqa-mini", "--methods", "starter,sdar", "--seeds", "1", "--max_steps", "1"]
    command += ["--eval_tasks", "2", "--output_dir", str(tmp_path), "--jobs", "2"]
    command += ["--bf16"]  # cpu-small's precision on any CI CPU: a CPU without native bf16 only warns, if asked
    completed = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    record = json.loads(completed.stdout.strip().splitlines()[-1])
    assert record["benchmark"] == "table1" and set(record["summary"]["searchqa-mini"]) == {"starter", "sdar"}
    stored = json.loads((tmp_path / "table1.json").read_text())
    assert stored["preset_settings"]["max_steps"] == 2 and stored["preset_settings"]["bf16"] is True  # cpu-small's
    runs = stored["runs"]
    assert [(r["method"], r["steps"]) for r in runs] == [("starter", 0), ("sdar", 1)]
    for run in runs:
        assert {"env", "method", "seed", "success", "success_by_task_type", "steps", "wall_s"} <= set(run)
        assert 0.0 <= run["success"] <= 1.0 and run["eval_tasks"] == 2
        assert run["eval_first_seed"] == 24  # past the held-out tasks the starter build was chosen on
        assert run["machine"]["cpu"] and run["machine"]["torch_threads"] >= 1 and run["machine"]["torch"]
    assert runs[1]["curve"] and "env/success" in runs[1]["curve"][0]
    for run in runs:  # per held-out task, in task order; they add up to the run's success
        assert [o["seed"] for o in run["eval_outcomes"]] == [24, 25]
        assert sum(o["won"] for o in run["eval_outcomes"]) / 2 == pytest.approx(run["success"])
    table = (tmp_path / "table1.md").read_text()
    assert "| Starter (no training) |" in table and "| SDAR |" in table
    assert "overridden by --max_steps 1 --eval_tasks 2" in table  # the header says what actually ran
    # A rerun skips the runs already recorded (it only re-renders the table).
    again = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    assert "seed 0: success" not in again.stderr
    assert len(json.loads((tmp_path / "table1.json").read_text())["runs"]) == 2
    # Each run records which model files it started from; a rebuilt model cannot add runs to the same table.
    fingerprint = table1.model_fingerprint(tiny_model_dir)
    assert {(r["model"], r["model_sha256"]) for r in runs} == {(tiny_model_dir, fingerprint)}
    rebuilt = tmp_path / "rebuilt"
    shutil.copytree(tiny_model_dir, rebuilt)
    (rebuilt / "tokenizer.json").write_text((rebuilt / "tokenizer.json").read_text().replace("\n", "\n "))
    command[command.index(tiny_model_dir)] = str(rebuilt)
    command[command.index("starter,sdar")] = "starter,sdar,grpo"
    refused = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "made from model files with sha256" in refused.stderr
    assert len(json.loads((tmp_path / "table1.json").read_text())["runs"]) == 2  # nothing ran


@pytest.fixture
def table1(monkeypatch):
    """benchmarks/table1.py as a module (the scripts import their siblings, so their directory goes on sys.path)."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import table1

    return table1


def test_table1_presets_build_the_documented_configs(table1, tmp_path, recwarn):
    """cpu-small: no KL, no gradient checkpointing, bf16 autocast, 2 steps of 2 tasks x 4; paper: the reference."""
    options = table1.parse_args(["--preset", "cpu-small"])
    small = table1.build_config("alfworld-mini", "sdar", 1, table1.PRESETS["cpu-small"], options, str(tmp_path))
    assert (small.beta, small.gradient_checkpointing, small.bf16) == (0.0, False, True)
    # Set through the name this transformers reads, so no deprecation warning (transformers >= 5.23).
    assert not [w for w in recwarn.list if "checkpointing" in str(w.message)]
    assert (small.max_steps, small.num_generations, small.max_completion_length) == (2, 4, 160)
    assert small.per_device_train_batch_size * small.gradient_accumulation_steps == 2 * 4  # one rollout per step
    # Smaller chunks where prompts are long: the same rollout of 2 x 4 trajectories per optimizer step.
    chunks = {
        env_name: table1.build_config(env_name, "grpo", 0, table1.PRESETS["cpu-small"], options, str(tmp_path))
        for env_name in table1.ENVS
    }
    assert {e: c.per_device_train_batch_size for e, c in chunks.items()} == {
        "alfworld-mini": 4,
        "webshop-mini": 2,
        "searchqa-mini": 8,
    }
    assert all(c.per_device_train_batch_size * c.gradient_accumulation_steps == 8 for c in chunks.values())
    assert small.privileged_context_source == "facts" and small.method == "sdar" and small.seed == 1
    assert table1.PRESETS["cpu-small"].eval_tasks == 12 and table1.PRESETS["cpu-small"].eval_first_seed == 24

    options = table1.parse_args(["--preset", "paper", "--no-bf16", "--max_steps", "3"])
    paper = table1.build_config("searchqa-mini", "starter", 0, table1.PRESETS["paper"], options, str(tmp_path))
    assert paper.beta == table1.ENV_SETTINGS["searchqa-mini"]["beta"] == 0.001  # the reference's KL
    assert paper.gradient_checkpointing is True and paper.bf16 is False and paper.max_steps == 3
    assert paper.method == "grpo" and paper.privileged_context_source == "skills"
    assert paper.per_device_train_batch_size * paper.gradient_accumulation_steps == 16 * 8


def test_table1_cpu_micro_preset_uses_each_envs_micro_starter_with_a_held_out_curve(table1, tmp_path):
    from sdar_trl.starter import MICRO_PATH

    preset = table1.PRESETS["cpu-micro"]
    options = table1.parse_args(["--preset", "cpu-micro"])
    config = table1.build_config("alfworld-mini", "sdar", 0, preset, options, str(tmp_path))
    assert (config.beta, config.gradient_checkpointing, config.bf16) == (0.0, False, False)
    assert (config.max_steps, config.num_generations, config.learning_rate) == (100, 4, 3e-4)
    assert config.per_device_train_batch_size * config.gradient_accumulation_steps == 8 * 4
    assert (config.eval_strategy, config.eval_steps) == ("steps", 10)
    assert config.privileged_context_source == "facts" and preset.seeds == 5
    # searchqa-mini trains with its own budget (GRPO learnt nothing clear there at 8 x 4); the others share one.
    own = table1.build_config("searchqa-mini", "sdar", 0, preset, options, str(tmp_path))
    assert (own.max_steps, own.num_generations, own.learning_rate) == (300, 8, 3e-4)
    assert own.per_device_train_batch_size * own.gradient_accumulation_steps == 16 * 8
    assert "own budget on searchqa-mini: max_steps 300, tasks_per_step 16, num_generations 8" in table1.env_budgets(
        preset
    )
    assert table1.model_for("alfworld-mini", preset, options) == str(MICRO_PATH / "alfworld-mini")
    assert table1.model_for("alfworld-mini", preset, table1.parse_args(["--model", "/m"])) == "/m"
    # The final evaluation: the whole held-out split; the curve: its first 50 tasks.
    rows = table1.held_out_rows("alfworld-mini", preset, options)
    assert [r["seed"] for r in rows] == list(range(134))
    trainer = table1.make_trainer("alfworld-mini", "grpo", 0, preset, options, str(tmp_path))
    assert [r["seed"] for r in trainer.eval_dataset] == list(range(50))
    trainer.close_environments()
    # Gate diagnostics for the methods with a gated term only (they would warn, and describe nothing, elsewhere).
    gated = {
        method: table1.build_config("webshop-mini", method, 0, preset, options, str(tmp_path)).gate_diagnostics
        for method in table1.METHODS
    }
    assert {method for method, on in gated.items() if on} == {"sdar", "grpo_opsd", "opsd"}
    assert not table1.build_config(
        "webshop-mini", "sdar", 0, table1.PRESETS["cpu-small"], options, str(tmp_path)
    ).gate_diagnostics


@pytest.mark.integration
def test_table1_records_a_finished_run_whose_gate_report_fails(table1, tmp_path, monkeypatch, caplog):
    """The gate report is written after training and evaluation: its failure (a full disk, a plotting bug) must
    not lose the run (it once lost a finished SDAR run); the record says what went wrong instead."""
    import sdar_trl.report

    def broken_report(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(sdar_trl.report, "write_run_report", broken_report)
    argv = ["--preset", "cpu-micro", "--max_steps", "1", "--tasks_per_step", "2", "--eval_tasks", "2"]
    options = table1.parse_args([*argv, "--output_dir", str(tmp_path)])
    preset = table1.active_preset(options)
    with caplog.at_level("WARNING"):
        record = table1.run_one("searchqa-mini", "sdar", 0, preset, options)
    assert record["steps"] == 1 and record["eval_tasks"] == 2 and len(record["eval_outcomes"]) == 2
    assert "No space left on device" in record["gate_report_error"]
    assert "gate report" in caplog.text and "No space left on device" in caplog.text
    # A run whose report is written records no error.
    monkeypatch.undo()
    record = table1.run_one("searchqa-mini", "sdar", 0, preset, options)
    assert record["gate_report_error"] is None
    assert (tmp_path / "gate" / "searchqa-mini-sdar-seed0" / "report.md").is_file()


def test_step_cost_takes_a_table1_preset():
    code = (
        "import step_cost as s; o = s.parse_args(['--preset', 'cpu-micro']); "
        "print(o.tasks, o.num_generations, o.max_completion_length, o.context, o.learning_rate, "
        "o.gradient_checkpointing, o.beta, o.model.endswith('micro/alfworld-mini'))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT / "benchmarks", capture_output=True, text=True, check=True, timeout=120
    )
    assert completed.stdout.split() == ["8", "4", "32", "facts", "0.0003", "False", "0.0", "True"]
    # An env with its own budget in the preset is timed at that budget.
    code = "import step_cost as s; o = s.parse_args(['--preset', 'cpu-micro', '--env', 'searchqa-mini']); "
    code += "print(o.tasks, o.num_generations)"
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT / "benchmarks", capture_output=True, text=True, check=True, timeout=120
    )
    assert completed.stdout.split() == ["16", "8"]


def test_table1_sensitivity_overrides_touch_sdar_only(table1, tmp_path):
    options = table1.parse_args(["--sdar_gate_beta", "20", "--sdar_distill_coef", "0.1"])
    configs = {
        method: table1.build_config("webshop-mini", method, 0, table1.PRESETS["cpu-small"], options, str(tmp_path))
        for method in ("sdar", "grpo_opsd", "grpo")
    }
    assert (configs["sdar"].gate_beta, configs["sdar"].distill_coef) == (20.0, 0.1)
    assert (configs["grpo_opsd"].gate_beta, configs["grpo_opsd"].distill_coef) == (0.0, 0.01)  # its paper preset
    assert configs["grpo"].distill_coef == 0.0
    defaults = table1.build_config(
        "webshop-mini", "sdar", 0, table1.PRESETS["cpu-small"], table1.parse_args([]), str(tmp_path)
    )
    assert (defaults.gate_beta, defaults.distill_coef) == (5.0, 0.01)  # β = 5, λ = 0.01 (docs/methods.md)


@pytest.mark.integration
def test_table1_stops_at_a_failing_parallel_run_and_says_why(tmp_path, tiny_model_dir):
    """A run that raises inside a worker process ends the table with that error, not a hang or a silent gap."""
    command = [sys.executable, str(ROOT / "benchmarks" / "table1.py"), "--model", tiny_model_dir, "--jobs", "2"]
    command += ["--envs", "searchqa-mini", "--methods", "grpo,sdar", "--seeds", "1", "--context", "no-such-context"]
    command += ["--output_dir", str(tmp_path), "--no-bf16"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert completed.returncode != 0
    assert "privileged_context_source='no-such-context' is not supported" in completed.stderr
    assert not (tmp_path / "table1.json").exists() or not json.loads((tmp_path / "table1.json").read_text())["runs"]


def _stored_run(env_name, method, seed, success):
    return {
        "env": env_name,
        "method": method,
        "seed": seed,
        "success": success,
        "curve": [],
        "success_by_task_type": {"t": success},
        "steps": 0,
        "wall_s": 1.0,
    }


def test_table1_renders_every_stored_env_in_the_papers_order(table1, tmp_path, capsys):
    """A table filled one env per call keeps all its envs in table1.md and the JSON line, in the paper's order."""
    stored = {
        "runs": [
            _stored_run("searchqa-mini", "sdar", 0, 0.25),
            {**_stored_run("alfworld-mini", "grpo", 1, 0.5), "curve": [{"step": 1, "env/success": 0.25}]},
            _stored_run("searchqa-mini", "starter", 0, 0.5),
            {**_stored_run("alfworld-mini", "starter", 0, 0.75), "machine": {"cpu": "Some CPU", "gpu": None}},
        ]
    }
    (tmp_path / "table1.json").write_text(json.dumps(stored))
    # Everything this call asks for is stored already, so nothing runs: only the table is rendered again.
    argv = ["--envs", "searchqa-mini", "--methods", "starter", "--seeds", "1", "--model", str(tmp_path)]
    assert table1.main([*argv, "--output_dir", str(tmp_path)]) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(record["summary"]) == ["alfworld-mini", "searchqa-mini"]
    assert record["summary"]["alfworld-mini"]["grpo"]["mean"] == 0.5
    assert record["sdar_minus_grpo"] == {}  # no env has both
    table = (tmp_path / "table1.md").read_text()
    assert table.index("### alfworld-mini") < table.index("### searchqa-mini")
    assert "| SDAR | 25.0 ± 0.0 | **25.0 ± 0.0** | 1 |" in table
    # Where each env's runs were made: the same seed samples other rollouts on another CPU.
    assert "Runs made on: Some CPU (1), not recorded (1)." in table
    assert "Runs made on: not recorded (2)." in table
    # A learning curve for the env with a trained run only (if matplotlib is installed): none for an empty plot.
    matplotlib = importlib.util.find_spec("matplotlib") is not None
    assert record["plots"] == (["table1_alfworld-mini.png"] if matplotlib else [])
    assert not (tmp_path / "table1_searchqa-mini.png").exists()
    order = [(r["env"], r["method"], r["seed"]) for r in json.loads((tmp_path / "table1.json").read_text())["runs"]]
    assert order == [
        ("alfworld-mini", "starter", 0),
        ("alfworld-mini", "grpo", 1),
        ("searchqa-mini", "starter", 0),
        ("searchqa-mini", "sdar", 0),
    ]


def test_table1_keeps_the_runs_another_call_added_meanwhile(table1, tmp_path, monkeypatch, capsys):
    """Two table1.py calls filling one output directory (say one env each, at the same time) both keep their runs:
    each finished run is merged into table1.json as it is on disk, not into the copy read at start."""
    (tmp_path / "table1.json").write_text(json.dumps({"runs": [_stored_run("alfworld-mini", "starter", 0, 0.25)]}))

    def other_call_finishes_first(todo, options):
        # Meanwhile another call recorded a run of its own (and rewrote the file with its copy).
        on_disk = json.loads((tmp_path / "table1.json").read_text())
        on_disk["runs"].append(_stored_run("webshop-mini", "starter", 0, 0.5))
        (tmp_path / "table1.json").write_text(json.dumps(on_disk))
        for env_name, method, seed in todo:
            yield _stored_run(env_name, method, seed, 0.75)

    monkeypatch.setattr(table1, "_run_all", other_call_finishes_first)
    argv = ["--envs", "searchqa-mini", "--methods", "starter", "--seeds", "1", "--no-bf16", "--model", str(tmp_path)]
    assert table1.main([*argv, "--output_dir", str(tmp_path)]) == 0
    runs = [(r["env"], r["method"], r["seed"]) for r in json.loads((tmp_path / "table1.json").read_text())["runs"]]
    assert runs == [("alfworld-mini", "starter", 0), ("webshop-mini", "starter", 0), ("searchqa-mini", "starter", 0)]
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(record["summary"]) == ["alfworld-mini", "webshop-mini", "searchqa-mini"]  # the table shows all three


def test_cpu_model_name_reads_proc_cpuinfo(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from _common import cpu_model_name

    cpuinfo = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n\nprocessor\t: 1\n"
    assert cpu_model_name(cpuinfo) == "Intel(R) Xeon(R) Processor"
    assert cpu_model_name("processor\t: 0\nBogoMIPS\t: 50.00\n") is None  # ARM: no model name line
    assert cpu_model_name("model name\t:\n") is None


def test_cpu_native_bf16_reads_the_cpu_flags(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from _common import cpu_native_bf16

    assert cpu_native_bf16("model name\t: AMD EPYC\nflags\t\t: fpu sse avx2 fma\n") is False  # emulated bf16
    assert cpu_native_bf16("flags\t\t: avx2 avx512f avx512_bf16\n") is True
    assert cpu_native_bf16("flags\t\t: avx2 avx512f amx_bf16 amx_tile\n") is True
    assert cpu_native_bf16("flags\t\t: avx2 avx512f avx512bw\n") is False  # AVX-512 alone is not bf16
    assert cpu_native_bf16("Features\t: fp asimd sve bf16 i8mm\n") is True  # ARM v8.6
    assert cpu_native_bf16("Features\t: fp asimd\n") is False
    assert cpu_native_bf16("") is None  # no /proc/cpuinfo: cannot tell


def test_table1_bf16_check_stops_the_presets_emulated_bf16(table1):
    assert table1.bf16_check(True, False, native_bf16=True, cuda=False) is None
    assert table1.bf16_check(True, False, native_bf16=None, cuda=False) is None  # cannot tell: no claim
    assert table1.bf16_check(True, False, native_bf16=False, cuda=True) is None  # runs on the GPU
    assert table1.bf16_check(False, True, native_bf16=False, cuda=False) is None  # --no-bf16
    kind, message = table1.bf16_check(True, False, native_bf16=False, cuda=False)
    assert kind == "error" and "--no-bf16" in message and "--bf16" in message and "cpu_bf16.py" in message
    kind, message = table1.bf16_check(True, True, native_bf16=False, cuda=False)
    assert kind == "warning" and "continuing as asked" in message


def test_table1_refuses_emulated_bf16_before_running(table1, tmp_path, monkeypatch):
    monkeypatch.setattr(table1, "read_cpuinfo", lambda: "flags\t\t: fpu avx2\n")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["--envs", "searchqa-mini", "--methods", "starter", "--seeds", "1", "--model", str(tmp_path)]
    with pytest.raises(SystemExit, match=r"no native bf16.*pass --no-bf16"):
        table1.main([*argv, "--output_dir", str(tmp_path)])
    assert not (tmp_path / "table1.json").exists()  # stopped before anything ran or was written


def test_table1_keeps_one_preset_and_precision_per_table(table1, tmp_path):
    stored = {"preset": "cpu-small", "preset_settings": {"bf16": True}, "runs": [_stored_run("e", "grpo", 0, 0.5)]}
    assert table1.settings_conflict(stored, "cpu-small", True) is None
    assert table1.settings_conflict({"runs": []}, "paper", False) is None  # nothing recorded yet
    assert table1.settings_conflict({"runs": stored["runs"]}, "cpu-small", False) is None  # older file: no record
    message = table1.settings_conflict(stored, "cpu-small", False)
    assert "1 runs made with --preset cpu-small and bf16=True" in message and "bf16=False" in message
    assert "--output_dir" in message and "--fresh" in message
    assert "--preset paper" in table1.settings_conflict(stored, "paper", True)
    (tmp_path / "table1.json").write_text(json.dumps(stored))
    with pytest.raises(SystemExit, match="one table compares runs of one budget and precision"):
        table1.main(["--no-bf16", "--model", str(tmp_path), "--output_dir", str(tmp_path)])
    assert json.loads((tmp_path / "table1.json").read_text()) == stored  # untouched


def _outcomes(won):
    return [{"seed": 24 + i, "task_type": "t", "won": w} for i, w in enumerate(won)]


def test_table1_pairs_sdar_and_grpo_task_by_task(table1):
    runs = [
        {"env": "e", "method": "grpo", "seed": 0, "eval_outcomes": _outcomes([True, True, False, False])},
        {"env": "e", "method": "sdar", "seed": 0, "eval_outcomes": _outcomes([True, False, True, True])},
        {"env": "e", "method": "grpo", "seed": 1, "eval_outcomes": _outcomes([False, True])},
        {"env": "e", "method": "sdar", "seed": 1, "eval_outcomes": _outcomes([True, True])},
        {"env": "e", "method": "sdar", "seed": 2, "eval_outcomes": _outcomes([True])},  # no GRPO run to pair with
        {"env": "old", "method": "sdar", "seed": 0},  # made before per-task outcomes were recorded
        {"env": "old", "method": "grpo", "seed": 0},
    ]
    assert table1.paired_outcomes(runs, "sdar", "grpo") == {"e": {"pairs": 6, "only_sdar": 3, "only_grpo": 1}}
    # Every method against GRPO, in table order, with the exact McNemar p of its discordant pairs.
    runs.append({"env": "e", "method": "opsd", "seed": 1, "eval_outcomes": _outcomes([False, False])})
    paired = table1.paired_against(runs, "grpo")
    assert list(paired["e"]) == ["opsd", "sdar"] and "old" not in paired
    sdar, opsd = (
        {k: v for k, v in paired["e"][m].items() if not k.startswith("difference")} for m in ("sdar", "opsd")
    )
    assert sdar == {"pairs": 6, "only_method": 3, "only_baseline": 1, "p": 0.625}
    assert opsd == {"pairs": 2, "only_method": 0, "only_baseline": 1, "p": 1.0}
    # The difference pairs the seeds both ran (0 and 1) over the tasks all four runs recorded (24, 25):
    # SDAR wins 1, 0 | 1, 1 against GRPO's 1, 1 | 0, 1, i.e. differences 0, -1 | +1, 0.
    assert paired["e"]["sdar"]["difference"]["mean"] == 0.0
    assert (paired["e"]["sdar"]["difference"]["seeds"], paired["e"]["sdar"]["difference"]["tasks"]) == (2, 2)
    summary = table1.summarize([_stored_run("e", "grpo", 0, 0.5), _stored_run("e", "sdar", 0, 0.75)])
    table = table1.render_markdown(summary, "header", paired)
    assert "| method | − GRPO, points (95 % interval) | pairs | solved by it, not GRPO |" in table
    assert "| SDAR | +0.0 (" in table and "| 6 | 3 | 1 | 0.62 |" in table and "| 2 | 0 | 1 | 1 |" in table


def _outcome_run(method, seed, won, env_name="e", types=None):
    outcomes = [{"seed": i, "task_type": (types or "t" * len(won))[i], "won": bool(w)} for i, w in enumerate(won)]
    return {"env": env_name, "method": method, "seed": seed, "eval_outcomes": outcomes}


def test_bootstrap_interval_by_hand(table1):
    """The 95 % interval resamples held-out tasks and seeds; its bounds are checked where they can be counted."""
    interval = table1.bootstrap_interval
    # Every task solved: no resample can say otherwise.
    assert interval([_outcome_run("grpo", 0, [1] * 5)], "e", "grpo") == {
        "mean": 1.0,
        "low": 1.0,
        "high": 1.0,
        "seeds": 1,
        "tasks": 5,
        "clusters": 5,
    }
    # Two tasks, one solved: a resample's mean is 0, 1/2 or 1 with chances 1/4, 1/2, 1/4, so the 2.5 % and 97.5 %
    # quantiles are 0 and 1.
    found = interval([_outcome_run("grpo", 0, [1, 0])], "e", "grpo")
    assert (found["mean"], found["low"], found["high"]) == (0.5, 0.0, 1.0)
    # 400 tasks, half solved: the normal approximation's half-width 1.96 * sqrt(0.25 / 400) = 0.049.
    found = interval([_outcome_run("grpo", 0, [1, 0] * 200)], "e", "grpo")
    assert found["mean"] == 0.5 and found["low"] == pytest.approx(0.451, abs=0.01)
    assert found["high"] == pytest.approx(0.549, abs=0.01)
    # Two seeds that disagree on everything: resampling the seeds gives 0, 1/2 or 1, so the interval is [0, 1]
    # although each seed's own rate is exact (tasks alone would give a zero-width interval).
    runs = [_outcome_run("grpo", 0, [1] * 50), _outcome_run("grpo", 1, [0] * 50)]
    found = interval(runs, "e", "grpo")
    assert (found["mean"], found["low"], found["high"], found["seeds"]) == (0.5, 0.0, 1.0, 2)
    # A difference against the starter's one run: task by task, for every seed; per task type on its tasks only.
    runs = [
        _outcome_run("starter", 0, [0, 0, 1, 0], types="aabb"),
        _outcome_run("grpo", 0, [1, 1, 1, 0], types="aabb"),
        _outcome_run("grpo", 1, [1, 0, 1, 1], types="aabb"),
    ]
    assert interval(runs, "e", "grpo", baseline="starter")["mean"] == pytest.approx((2 + 2) / 8)
    assert interval(runs, "e", "grpo", baseline="starter", task_type="a")["mean"] == pytest.approx(3 / 4)
    assert interval(runs, "e", "grpo", baseline="starter", task_type="b")["mean"] == pytest.approx(1 / 4)
    # paired_against gives the same per task type, and the table renders them with each type's task count.
    against = table1.paired_against(runs, "starter")["e"]["grpo"]["difference_by_task_type"]
    assert (against["a"]["mean"], against["b"]["mean"]) == (pytest.approx(3 / 4), pytest.approx(1 / 4))
    rows = [{**r, "success": 0.5, "success_by_task_type": {"a": 0.5}, "wall_s": 1} for r in runs]
    table = table1.render_markdown(table1.summarize(rows), "header", table1.paired_against(runs, "starter"))
    assert "| method | a (2) | b (2) |" in table and "| GRPO | +75.0 (" in table
    assert interval(runs, "e", "sdar", baseline="starter") is None  # no SDAR run
    assert interval([{"env": "e", "method": "grpo", "seed": 0}], "e", "grpo") is None  # no per-task outcomes


def test_bootstrap_interval_resamples_groups_of_tasks_first(table1):
    """Tasks that come in groups (searchqa-mini's worlds) are resampled group first: two groups of 50 tasks, one
    all solved and one all failed, give resample means 0, 1/2 or 1 with chances 1/4, 1/2, 1/4, so the interval is
    [0, 1], where 100 independent tasks would give about 0.5 ± 0.1."""
    runs = [_outcome_run("grpo", 0, [1] * 50 + [0] * 50)]
    alone = table1.bootstrap_interval(runs, "e", "grpo")
    assert alone["clusters"] == 100 and alone["low"] == pytest.approx(0.40, abs=0.02)
    grouped = table1.bootstrap_interval(runs, "e", "grpo", cluster_of=lambda task: task // 50)
    assert (grouped["mean"], grouped["low"], grouped["high"], grouped["clusters"]) == (0.5, 0.0, 1.0, 2)
    # Within a drawn group its tasks are resampled too: one group, half solved, keeps the task-level interval.
    one = table1.bootstrap_interval(runs, "e", "grpo", cluster_of=lambda task: 0)
    assert one["clusters"] == 1 and one["low"] == pytest.approx(0.40, abs=0.02) and one["high"] < 0.61
    # searchqa-mini's task i is question i % 100 of world i // 100: its groups are its worlds.
    questions = [{"seed": s, "task_type": "t", "won": s < 100} for s in range(300)]
    run = {"env": "searchqa-mini", "method": "grpo", "seed": 0, "eval_outcomes": questions}
    assert table1.bootstrap_interval([run], "searchqa-mini", "grpo")["clusters"] == 3
    # The table says where groups were resampled first.
    summary = table1.summarize([{**run, "success": 1 / 3, "success_by_task_type": {"t": 1 / 3}, "wall_s": 1}])
    table = table1.render_markdown(summary, "header")
    assert "over seeds and 300 held-out tasks in 3 groups resampled first)" in table


def test_validity_line_needs_a_15_point_gain_with_its_interval_above_zero(table1):
    starter = [0] * 60 + [1] * 40
    runs = [
        _outcome_run("starter", 0, starter, "clear"),
        _outcome_run("grpo", 0, [1] * 70 + [0] * 30, "clear"),  # +30 points
        _outcome_run("starter", 0, starter, "small"),
        _outcome_run("grpo", 0, [1] * 5 + starter[5:], "small"),  # +5 points
    ]
    valid = table1.validity(runs)
    assert valid["clear"]["met"] and valid["clear"]["mean"] == pytest.approx(0.30) and valid["clear"]["low"] > 0
    assert not valid["small"]["met"] and valid["small"]["mean"] == pytest.approx(0.05)
    summary = table1.summarize([{**r, "success": 0.5, "success_by_task_type": {"t": 0.5}, "wall_s": 1} for r in runs])
    table = table1.render_markdown(summary, "header", validity=valid)
    assert "(GRPO − starter ≥ +15 points with the 95 % interval above 0, on every env): **not met**" in table
    assert "- clear: +30.0 (" in table and "100 tasks × 1 seed (the interval resamples tasks only) — met" in table
    assert "- small: +5.0 (" in table and "**not met**: change its budget (on training tasks)" in table
    assert "### clear (success %, mean and 95 % interval over seeds and 100 held-out tasks)" in table
    assert "| method | t (100) | **all** | seeds |" in table and "| GRPO | 70.0 (" in table
    valid["small"]["met"] = True
    assert "on every env): **met**" in table1.render_markdown(summary, "header", validity=valid)


def test_steps_to_reach_grpos_final_curve_value(table1):
    def curve(method, seed, values, env_name="e"):
        points = [{"step": 10 * (i + 1), "success": v, "tasks": 50} for i, v in enumerate(values)]
        return {"env": env_name, "method": method, "seed": seed, "held_out_curve": points}

    runs = [
        curve("grpo", 0, [0.2, 0.4, 0.6]),
        curve("grpo", 1, [0.2, 0.6, 0.4]),  # final mean (0.6 + 0.4) / 2 = 0.5
        curve("sdar", 0, [0.4, 0.6, 0.6]),
        curve("sdar", 1, [0.4, 0.2, 0.6]),  # means 0.4, 0.4, 0.6: reaches 0.5 at step 30
        curve("opsd", 0, [0.0, 0.1, 0.2]),
        curve("sdar", 0, [0.9], env_name="no-grpo"),
    ]
    reach = table1.steps_to_reach(runs)
    assert reach == {"e": {"grpo": 20, "sdar": 30, "opsd": None}}  # GRPO's own mean is 0.5 at step 20 already
    summary = table1.summarize([{**r, "success": 0.5, "success_by_task_type": {}, "wall_s": 1} for r in runs[:5]])
    table = table1.render_markdown(summary, "header", reach=reach)
    assert "| method | **all** | seeds | steps to GRPO's final (curve) |" in table
    assert "| OPSD | 50.0 ± 0.0 | 1 | not reached |" in table and "| 2 | 30 |" in table


def test_table1_budget_overrides_evaluate_on_unused_training_tasks_only(table1, tmp_path, capsys):
    budget = ["--learning_rate", "1e-3", "--tasks_per_step", "16", "--num_generations", "8", "--temperature", "0.7"]
    options = table1.parse_args(["--preset", "cpu-micro", *budget])
    preset = table1.active_preset(options)
    assert (preset.learning_rate, preset.tasks_per_step, preset.num_generations, preset.temperature) == (
        1e-3,
        16,
        8,
        0.7,
    )
    assert table1.PRESETS["cpu-micro"].learning_rate == 3e-4  # the preset itself is untouched
    config = table1.build_config("searchqa-mini", "grpo", 0, preset, options, str(tmp_path))
    # One rollout of 16 tasks x 8 trajectories per optimizer step, sampled at the overridden temperature.
    assert (config.num_generations, config.temperature) == (8, 0.7)
    assert config.per_device_train_batch_size * config.gradient_accumulation_steps == 128
    assert table1.build_config("searchqa-mini", "grpo", 0, table1.PRESETS["cpu-micro"], options, "o").temperature == 1
    # A rollout smaller than the preset's 32-trajectory chunk is one chunk (a chunk it cannot fill would stop the
    # trainer at step 0); one that is not a whole number of chunks is refused.
    small = table1.active_preset(table1.parse_args(["--preset", "cpu-micro", "--tasks_per_step", "2"]))
    config = table1.build_config("webshop-mini", "grpo", 0, small, options, str(tmp_path))
    assert (config.per_device_train_batch_size, config.gradient_accumulation_steps) == (8, 1)
    odd = table1.active_preset(table1.parse_args(["--preset", "cpu-micro", "--tasks_per_step", "12"]))
    with pytest.raises(ValueError, match="12 tasks x 4 trajectories = 48 per step is not a multiple of"):
        table1.build_config("webshop-mini", "grpo", 0, odd, options, str(tmp_path))
    for bad, message in ((["--num_generations", "1"], "group of >= 2"), (["--temperature", "0"], "temperature > 0")):
        with pytest.raises(SystemExit):
            table1.parse_args(["--preset", "cpu-micro", *bad])
        assert message in capsys.readouterr().err
    argv = ["--preset", "cpu-micro", "--eval_split", "train", "--eval_tasks", "200"]
    with pytest.raises(ValueError, match=r"--eval_first_seed >= 20,000,000 \(got None\)"):
        table1.active_preset(table1.parse_args(argv))
    with pytest.raises(ValueError, match="got 10000000"):
        table1.active_preset(table1.parse_args([*argv, "--eval_first_seed", "10000000"]))
    options = table1.parse_args([*argv, "--eval_first_seed", "20000000"])
    preset = table1.active_preset(options)
    assert table1.eval_plan("searchqa-mini", preset, options) == ("train", 200)
    # One selection task per searchqa-mini world (task i is question i % 100 of world i // 100), consecutive elsewhere.
    assert table1.held_out_rows("searchqa-mini", preset, options)[:2] == [{"seed": 20_000_000}, {"seed": 20_000_101}]
    assert table1.held_out_rows("webshop-mini", preset, options)[:2] == [{"seed": 20_000_000}, {"seed": 20_000_001}]
    held_out = table1.parse_args(["--preset", "cpu-micro"])
    assert table1.held_out_rows("searchqa-mini", table1.active_preset(held_out), held_out)[:2] == [
        {"seed": 0},
        {"seed": 1},
    ]
    no_count = table1.parse_args(["--preset", "cpu-micro", "--eval_split", "train", "--eval_first_seed", "20000000"])
    with pytest.raises(ValueError, match="needs --eval_tasks N"):
        table1.eval_plan("searchqa-mini", table1.active_preset(no_count), no_count)
    # One table, one budget: runs made with other overrides (or none) are not mixed in.
    stored = {"preset": "cpu-micro", "preset_settings": {"bf16": False}, "runs": [_stored_run("e", "grpo", 0, 0.5)]}
    message = table1.settings_conflict(stored, "cpu-micro", False, {"learning_rate": 1e-3})
    assert "preset overrides {}" in message and "{'learning_rate': 0.001}" in message and "--output_dir" in message
    stored["overrides"] = {"learning_rate": 1e-3}
    assert table1.settings_conflict(stored, "cpu-micro", False, {"learning_rate": 1e-3}) is None


def test_table1_an_envs_own_budget_applies_to_that_env_only(table1, tmp_path, monkeypatch):
    import dataclasses

    base = dataclasses.replace(
        table1.PRESETS["cpu-micro"],
        budget_by_env={"searchqa-mini": {"max_steps": 200, "tasks_per_step": 16, "num_generations": 8}},
    )
    options = table1.parse_args(["--preset", "cpu-micro"])
    own = table1.build_config("searchqa-mini", "grpo", 0, base, options, str(tmp_path))
    shared = table1.build_config("webshop-mini", "grpo", 0, base, options, str(tmp_path))
    assert (own.max_steps, own.num_generations, own.per_device_train_batch_size * own.gradient_accumulation_steps) == (
        200,
        8,
        128,
    )
    assert (shared.max_steps, shared.num_generations) == (100, 4)
    assert "own budget on searchqa-mini: max_steps 200, tasks_per_step 16, num_generations 8" in table1.env_budgets(
        base
    )
    # The command line wins over the env's own budget (a budget search on that env), and the header says so.
    monkeypatch.setitem(table1.PRESETS, "cpu-micro", base)
    options = table1.parse_args(["--preset", "cpu-micro", "--tasks_per_step", "8", "--max_steps", "50"])
    preset = table1.active_preset(options)
    config = table1.build_config("searchqa-mini", "grpo", 0, preset, options, str(tmp_path))
    assert (config.max_steps, config.num_generations) == (50, 8)
    assert config.per_device_train_batch_size * config.gradient_accumulation_steps == 8 * 8
    assert table1.env_budgets(preset) == "; own budget on searchqa-mini: num_generations 8"
    with pytest.raises(ValueError, match=r"sets \['eval_tasks'\]: an env's own budget may set only"):
        dataclasses.replace(base, budget_by_env={"webshop-mini": {"eval_tasks": 3}})


@pytest.mark.parametrize(
    ("only_first", "only_second", "expected"),
    [
        (3, 19, 2 * (1 + 22 + 231 + 1540) / 2**22),  # webshop-mini OPSD vs GRPO: p ≈ 0.0009
        (19, 3, 2 * (1 + 22 + 231 + 1540) / 2**22),  # symmetric
        (6, 14, 2 * sum(math.comb(20, k) for k in range(7)) / 2**20),  # ≈ 0.115
        (6, 7, 1.0),  # a twice-tail above 1 is capped
        (0, 0, 1.0),  # no discordant pair: no evidence either way
        (0, 5, 2 / 32),
    ],
)
def test_mcnemar_exact_p(table1, only_first, only_second, expected):
    assert table1.mcnemar_p(only_first, only_second) == pytest.approx(expected)


def test_curve_styles_keep_every_method_apart(table1):
    methods = list(table1.METHODS)[1:]  # the seven trained methods
    styles = table1.curve_styles(methods)
    assert len({s["marker"] for s in styles.values()}) == len({s["color"] for s in styles.values()}) == len(methods)
    assert len({(str(s["linestyle"]), s["linewidth"]) for s in styles.values()}) == len(methods)  # SDAR: thicker
    offsets = [s["offset"] for s in styles.values()]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(methods)
    assert offsets[0] == pytest.approx(-offsets[-1]) and max(map(abs, offsets)) < 0.5  # each stays by its step
    # A method looks the same in every env's plot, whichever other methods have runs there.
    alone = table1.curve_styles(["sdar"])["sdar"]
    assert alone["offset"] == 0.0
    assert {k: v for k, v in alone.items() if k != "offset"} == {
        k: v for k, v in styles["sdar"].items() if k != "offset"
    }


def _fake_run(job):
    """A stand-in for one table run in a spawned worker: its method name says how it ends."""
    (env_name, method, seed), _, _ = job
    if method == "dies":
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer would
    if method == "raises":
        raise ValueError("this run failed")
    if method == "slow":
        time.sleep(120)
    return {"env": env_name, "method": method, "seed": seed}


def test_table1_parallel_runs_report_and_a_dead_worker_stops_the_table(table1):
    options = table1.parse_args(["--jobs", "2"])
    records = list(table1._run_all([("e", "ok", 0), ("e", "ok", 1), ("e", "ok", 2)], options, work=_fake_run))
    assert sorted(r["seed"] for r in records) == [0, 1, 2]
    # A worker killed by a signal (multiprocessing.Pool would wait for it forever) ends the table at once, and the
    # run still going beside it is terminated rather than waited for.
    start = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"run e dies 0: .*died without a result \(killed by signal 9, .*OOM"):
        list(table1._run_all([("e", "slow", 0), ("e", "dies", 0)], options, work=_fake_run))
    with pytest.raises(RuntimeError, match=r"(?s)run e raises 1 failed in its worker.*ValueError: this run failed"):
        list(table1._run_all([("e", "slow", 1), ("e", "raises", 1)], options, work=_fake_run))
    assert time.perf_counter() - start < 60


@pytest.mark.integration
def test_cpu_bf16_compares_both_precisions(tiny_model_dir):
    record, stderr = _run_benchmark(
        "cpu_bf16.py",
        ["--model", tiny_model_dir, "--rows", "16", "--tokens", "8", "--repeats", "1", "--seconds", "0.05"],
    )
    assert record["cpu_native_bf16"] in (True, False, None) and record["cpu_capability"]
    for key in ("matmul_gflops_fp32", "matmul_gflops_bf16", "step_s_fp32", "step_s_bf16"):
        assert record[key] > 0
    assert record["matmul_bf16_speedup"] == pytest.approx(
        record["matmul_gflops_bf16"] / record["matmul_gflops_fp32"], rel=0.02
    )
    assert record["step_bf16_speedup"] == pytest.approx(record["step_s_fp32"] / record["step_s_bf16"], rel=0.02)
    assert "| forward + backward" in stderr


@pytest.mark.integration
def test_step_cost_prints_the_ratio_keys(tiny_model_dir):
    args = ["--model", tiny_model_dir, "--env", "searchqa-mini"]
    args += ["--steps", "1", "--warmup", "0", "--max_completion_length", "16"]
    record, stderr = _run_benchmark("step_cost.py", args)
    assert {"full_step_ratio", "loss_path_ratio", "peak_memory_ratio", "env_time_share"} <= set(record)
    assert record["full_step_ratio"] > 0 and record["loss_path_ratio"] > 0 and record["peak_memory_ratio"] > 0
    assert 0.0 <= record["env_time_share"] <= 1.0
    assert record["runs"]["sdar"]["step_samples"] == record["runs"]["grpo"]["step_samples"]  # same first rollout
    assert "full step" in stderr
    assert record["teacher_prefix_cache"] is True
    assert record["context"] == "skills"  # SDARConfig's default teacher context


def test_step_cost_measures_the_default_teacher_context():
    from sdar_trl import SDARConfig

    # In a subprocess: importing step_cost pins OMP_NUM_THREADS=1 for everything launched after it.
    code = "import step_cost as s; print(s.parse_args([]).context, s.parse_args(['--context', 'facts']).context)"
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT / "benchmarks", capture_output=True, text=True, check=True, timeout=120
    )
    default, explicit = completed.stdout.split()
    assert default == SDARConfig(output_dir="unused", bf16=False).privileged_context_source == "skills"
    assert explicit == "facts"


@pytest.mark.integration
def test_teacher_forward_times_both_paths_and_they_agree(tiny_model_dir):
    record, stderr = _run_benchmark(
        "teacher_forward.py", ["--model", tiny_model_dir, "--tasks", "2", "--copies", "2", "--repeats", "1"]
    )
    assert record["benchmark"] == "teacher_forward" and record["distinct_prefixes"] == 2
    assert record["max_abs_logp_diff"] < 1e-4  # the cache changes the cost, not the log-probs
    assert min(record[k] for k in ("full_s", "prefix_only_s", "cached_s", "student_s")) > 0
    assert record["cached_over_full"] == pytest.approx(record["cached_s"] / record["full_s"])
    assert record["cached_over_prefix_only"] == pytest.approx(record["cached_s"] / record["prefix_only_s"])
    assert "cache of the prefix only" in stderr and "cache of prefix + shared prompt" in stderr


@pytest.fixture
def first_update(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import first_update

    return first_update


def test_first_update_compares_gradients_and_adam_steps_by_hand(first_update):
    # GRPO (1, -2, 0.001, 0); SDAR adds the distillation gradient (0.1, 0, -0.003, 0). Adam's first update per
    # unit of lr is g / (|g| + eps): about (1, -1, 1, 0) vs (1, -1, -1, 0); the last coordinate stays 0, not NaN.
    grpo = torch.tensor([1.0, -2.0, 0.001, 0.0])
    sdar = torch.tensor([1.1, -2.0, -0.002, 0.0])
    result = first_update.compare_updates(grpo, sdar)
    distill_share = (0.1**2 + 0.003**2) ** 0.5 / (1 + 4 + 0.001**2) ** 0.5
    assert result["distill_over_grpo_norm"] == pytest.approx(distill_share, rel=1e-4)
    assert result["cos_first_update"] == pytest.approx(1 / 3, rel=1e-4)  # (1 + 1 - 1) / (√3 · √3)
    assert result["first_update_change"] == pytest.approx(2 / 3**0.5, rel=1e-4)  # ‖(0, 0, -2, 0)‖ / √3
    assert result["amplification"] == pytest.approx(2 / 3**0.5 / distill_share, rel=1e-4)
    assert result["sign_flip_share"] == pytest.approx(1 / 3)  # of the 3 coordinates either gradient touches
    assert result["distill_dominates_share"] == pytest.approx(1 / 3)  # only |-0.003| > |0.001|
    assert result["cos_grad"] == pytest.approx(float(torch.nn.functional.cosine_similarity(grpo, sdar, dim=0)))
    with pytest.raises(ValueError, match=r"shapes \(4,\) and \(3,\)"):
        first_update.compare_updates(grpo, sdar[:3])


def test_first_update_plays_the_first_step_tasks_of_the_table1_run(table1, tmp_path, tiny_model_dir):
    """first_update.py's one-step trainer shuffles the full run's training rows with the run's seed, so its first
    rollout has the tasks of table1's first step. Seed 1 is where that needs the full row count: a shuffle of one
    step's 2 rows would start with task 1, 0 where the run's 4 rows start with task 1, 3."""
    preset = table1.PRESETS["cpu-small"]
    full_options = table1.parse_args(["--model", tiny_model_dir])
    one_step = table1.parse_args(["--model", tiny_model_dir, "--max_steps", "1"])
    full = table1.make_trainer("searchqa-mini", "sdar", 1, preset, full_options, str(tmp_path / "a"))
    short = table1.make_trainer(
        "searchqa-mini",
        "sdar",
        1,
        preset,
        one_step,
        str(tmp_path / "b"),
        train_tasks=preset.max_steps * preset.tasks_per_step,
    )
    assert (full.args.max_steps, short.args.max_steps) == (2, 1)
    assert len(full.train_dataset) == len(short.train_dataset) == 4
    rollout = preset.tasks_per_step * preset.num_generations  # one optimizer step's trajectories

    def first_step_tasks(trainer):
        indexes = list(trainer._get_train_sampler())[:rollout]
        return [trainer.train_dataset[i]["seed"] for i in indexes]

    assert first_step_tasks(short) == first_step_tasks(full)
    assert sorted(set(first_step_tasks(full))) == [2_000_001, 2_000_003]  # rows 1 and 3 of seed 1's 2,000,000 + i
    # The held-out tasks are the same for both: the preset's 12 from task 24 on.
    assert [row["seed"] for row in short.eval_dataset] == list(range(24, 36))
    for trainer in (full, short):
        trainer.close_environments()


@pytest.mark.integration
def test_first_update_runs_both_methods_on_the_same_rollout(tiny_model_dir):
    record, stderr = _run_benchmark(
        "first_update.py", ["--model", tiny_model_dir, "--env", "searchqa-mini", "--seed", "0"], timeout=900
    )
    assert record["benchmark"] == "first_update" and record["env"] == "searchqa-mini"
    assert "the two rollouts differ" not in stderr
    assert record["distill_over_grpo_norm"] > 0.0 and -1.0 <= record["cos_first_update"] <= 1.0
    assert 0.0 <= record["sign_flip_share"] <= 1.0
    assert "sign_flip_share" in stderr


def test_held_out_series_starts_every_curve_from_the_starter_on_the_curve_tasks(table1):
    def outcomes(wins):
        return [{"seed": k, "task_type": "t", "won": won} for k, won in enumerate(wins)]

    runs = [
        # The starter wins 1 of the curve's first 2 tasks (the third task is outside the curve).
        {"env": "e", "method": "starter", "held_out_curve": [], "eval_outcomes": outcomes([True, False, True])},
        {"env": "e", "method": "grpo", "held_out_curve": [{"step": 10, "success": 0.5, "tasks": 2.0}]},
        {
            "env": "e",
            "method": "grpo",
            "held_out_curve": [{"step": 10, "success": 1.0, "tasks": 2.0}, {"step": 20, "success": 1.0, "tasks": 2.0}],
        },
        {"env": "other", "method": "sdar", "held_out_curve": [{"step": 10, "success": 0.0, "tasks": 2.0}]},
    ]
    assert table1.held_out_series(runs, "e") == {"starter": [(0, 0.5, 2)], "grpo": [(10, 0.75, 2), (20, 1.0, 2)]}
    # Without a curve (cpu-small) there is nothing to start from.
    assert table1.held_out_series(runs[:1], "e") == {}


def test_model_fingerprint_and_conflict(table1, tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "metrics.json").write_text("{}")
    first = table1.model_fingerprint(str(tmp_path))
    assert len(first) == 64
    (tmp_path / "metrics.json").write_text('{"eval": 1}')  # a new measurement is not a new model
    assert table1.model_fingerprint(str(tmp_path)) == first
    (tmp_path / "tokenizer.json").write_text('{"a": 1}')  # another tokenizer is
    second = table1.model_fingerprint(str(tmp_path))
    assert second != first
    assert table1.model_fingerprint("Qwen/Qwen2.5-1.5B-Instruct") is None  # a hub id: nothing to hash here
    runs = [
        {"env": "e", "method": "grpo", "model": "micro:e", "model_sha256": first},
        {"env": "e", "method": "starter", "model": "micro:e"},  # recorded before fingerprints: taken at its word
        {"env": "other", "method": "grpo", "model": "micro:other", "model_sha256": second},
    ]
    assert table1.model_conflict(runs, "e", first) is None
    assert table1.model_conflict(runs, "new-env", second) is None
    message = table1.model_conflict(runs, "e", second)
    assert f"1 e run(s) made from model files with sha256 {first[:12]}" in message
    assert f"micro:e is now {second[:12]}" in message and "--output_dir" in message and "--fresh" in message
    options = table1.parse_args(["--preset", "cpu-micro"])
    assert table1.model_label("webshop-mini", table1.PRESETS["cpu-micro"], options) == "micro:webshop-mini"
