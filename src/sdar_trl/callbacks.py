"""Progress display for agent-mode training: rollout, training and evaluation bars with Rich.

`SDARTrainer` in agent mode calls two extra events on any callback that defines them:
`on_rollout_step(args, state, control, step, live, total)` after every lock-step environment step,
and `on_evaluate_progress(args, state, control, done, total)` after every batch of eval episodes.

The two callbacks `SDARTrainer` adds itself live here too: `EMAUpdateCallback` (`teacher_mode="ema"`) and
`CloseEnvironmentsCallback` (agent mode). `StepTimeCallback` records the wall time (and on CUDA the peak memory) of
every optimizer step, for benchmarks and hardware checks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from transformers import TrainerCallback

if TYPE_CHECKING:
    from .teacher import EMATeacherWeights

__all__ = ["AgentProgressCallback", "CloseEnvironmentsCallback", "EMAUpdateCallback", "StepTimeCallback"]

_SHOWN = ("env/success", "env/invalid_action_rate", "env/episode_length", "sdar/gate_mean", "sdar/teacher_gap_mean")


class AgentProgressCallback(TrainerCallback):
    """Rich bars for the rollout (steps, live episodes), optimizer steps and evaluation episodes.

    Only the main process draws. Add it with `trainer.add_callback(AgentProgressCallback())`; pass
    `disable_tqdm=True` in the config to drop transformers' own tqdm bar. When the output is not a terminal
    (redirected to a file, a CI log), live bars would show nothing until the end: the callback then prints one
    plain line per logged step and per evaluation batch instead.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.plain = not self.console.is_terminal
        self._progress: Progress | None = None
        self._live: Live | None = None
        self._tasks: dict[str, Any] = {}
        self._last: dict[str, float] = {}

    # -- helpers ---------------------------------------------------------------------------------------
    def _line(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def _start(self) -> None:
        if self._live is not None or self.plain:
            return
        self._progress = Progress(
            TextColumn("{task.description:<11}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self._live = Live(self._render(), console=self.console, refresh_per_second=4)
        self._live.start()

    def _render(self) -> Group:
        table = Table(box=None, show_header=False)
        for key, value in self._last.items():
            table.add_row(key, f"{value:.3f}")
        parts: list[Any] = [self._progress] if self._progress is not None else []
        if self._last:
            parts.append(Panel(table, title="last logged", border_style="cyan"))
        return Group(*parts)

    def _bar(self, name: str, total: int, note: str = "") -> Any:
        assert self._progress is not None  # internal invariant: _start ran
        if name not in self._tasks:
            self._tasks[name] = self._progress.add_task(name, total=total, note=note)
        return self._tasks[name]

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.refresh()

    def _drop(self, name: str) -> None:
        if self._progress is not None and name in self._tasks:
            self._progress.remove_task(self._tasks.pop(name))

    # -- events ------------------------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero and self.plain:
            self._line(f"[train] {state.max_steps} optimizer steps")
        elif state.is_world_process_zero:
            self._start()
            self._bar("Training", state.max_steps)

    def on_rollout_step(self, args: Any, state: Any, control: Any, *, step: int, live: int, total: int) -> None:
        if not state.is_world_process_zero or self.plain:
            return
        self._start()
        assert self._progress is not None  # internal invariant: _start ran
        task = self._bar("Rollout", total)
        self._progress.update(task, completed=total - live, note=f"step {step}, {live} live")
        self._refresh()  # a rollout can finish between two automatic refreshes
        if live == 0:
            self._drop("Rollout")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero and self._progress is not None and "Training" in self._tasks:
            self._progress.update(self._tasks["Training"], completed=state.global_step)
            self._refresh()

    def on_evaluate_progress(self, args: Any, state: Any, control: Any, *, done: int, total: int) -> None:
        if not state.is_world_process_zero:
            return
        if self.plain:
            self._line(f"[eval] {done}/{total} episodes")
            return
        self._start()
        assert self._progress is not None  # internal invariant: _start ran
        self._progress.update(self._bar("Evaluation", total), completed=done)
        self._refresh()

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._drop("Evaluation")

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        shown = {}
        for key, value in logs.items():
            short = key.removeprefix("eval_")
            if short in _SHOWN and isinstance(value, (int, float)):
                self._last[key] = shown[key] = float(value)
        if self.plain and shown:
            where = f"step {state.global_step}/{state.max_steps}" if state.max_steps else f"step {state.global_step}"
            timing = f", {logs['step_time']:.1f} s/step" if isinstance(logs.get("step_time"), (int, float)) else ""
            values = ", ".join(f"{key} {value:.3f}" for key, value in shown.items())
            kind = "eval" if any(key.startswith("eval") for key in shown) else "train"
            self._line(f"[{kind}] {where}: {values}{timing}")
        if self._live is not None:
            self._live.update(self._render())

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._drop("Training")
        self.stop()

    def stop(self) -> None:
        """Stop drawing (call after a standalone `evaluate()`)."""
        if self._live is not None:
            self._live.update(self._render())
            self._live.stop()
        self._live, self._progress, self._tasks = None, None, {}


class EMAUpdateCallback(TrainerCallback):
    """Updates the EMA teacher after every `every`-th optimizer step (`teacher_mode="ema"`; added by `SDARTrainer`)."""

    def __init__(self, ema: EMATeacherWeights, *, every: int) -> None:
        self.ema = ema
        self.every = every

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step % self.every == 0:
            self.ema.update()


class CloseEnvironmentsCallback(TrainerCallback):
    """Calls `close` (the trainer's `close_environments`) when training ends (agent mode; added by `SDARTrainer`)."""

    def __init__(self, close: Callable[[], None]) -> None:
        self.close = close

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.close()


class StepTimeCallback(TrainerCallback):
    """Wall seconds of every optimizer step and, on CUDA, the peak GPU memory seen at the steps' ends.

    Add it with `callbacks=[StepTimeCallback()]` (or `trainer.add_callback`); after training read

    - `seconds`: one entry per optimizer step, from `on_step_begin` to `on_step_end` (all its micro-batches,
      generation included, since TRL generates inside the step);
    - `peak_memory_bytes`: the largest of torch's peak reserved memory and the device's used memory (which also
      counts the CUDA context and other processes) at any step end; None when CUDA is not available.

    It only records: nothing is logged, so it adds no work to the step it times.
    """

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.peak_memory_bytes: int | None = None
        self._started = 0.0

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._started = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.seconds.append(time.perf_counter() - self._started)
        if torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info()
            used = max(torch.cuda.max_memory_reserved(), total - free)
            self.peak_memory_bytes = max(self.peak_memory_bytes or 0, used)
