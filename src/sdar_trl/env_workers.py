"""Environments in worker processes (`SDARConfig.env_workers`): a crash of native environment code ends episodes,
never training.

A `WorkerEnvironment` is an `AgentEnvironment` proxy: its `reset`/`step`/`privileged_facts`/`close` are sent over a
`multiprocessing` pipe to the real environment, which the env factory built inside one of the `EnvWorkerPool`'s
processes (started with the "spawn" context: no forked copy of the trainer's threads, CUDA state or model). Python
cannot catch a segfault, but a parent process can see its child die: then the call raises `EnvWorkerDiedError`
(fault kind `worker_died`), the worker is restarted with fresh environments, and every other environment it held fails
its next `step` (their state is gone) and is rebuilt by its next `reset`. A call that does not answer within the
pool's `timeout` kills its worker (the only way to stop a hung native call) and raises `EnvStepTimeoutError`.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import pickle
import signal
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from ._mistakes import check_environment_protocol
from .env_guard import EnvStepTimeoutError, EnvWorkerDiedError

__all__ = ["EnvWorkerPool", "WorkerEnvironment", "check_picklable_factory"]

#: Seconds `close()` waits for a worker to exit on its own before killing it.
_JOIN_SECONDS = 5.0


def check_picklable_factory(factory: object, *, name: str) -> None:
    """Raise TypeError naming `factory` when it cannot be sent to a worker process (`pickle.dumps` fails)."""
    try:
        pickle.dumps(factory)
    except Exception as error:  # pickling raises PicklingError, AttributeError or TypeError
        raise TypeError(
            f"env_workers >= 1 builds the environments in worker processes, so {name} must be picklable; {name}="
            f"{factory!r} is not ({type(error).__name__}: {error}). Pass a module-level class or function (or "
            f"functools.partial of one) instead of a lambda or a function defined inside another, or set "
            "env_workers=0."
        ) from error


def _worker_main(conn: Connection) -> None:
    """The worker loop: build environments and run their calls until told to stop (None) or the pipe closes."""
    envs: dict[int, Any] = {}
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the trainer process is gone
            break
        if message is None:
            break
        op, env_id, payload = message
        try:
            if op == "create":
                env = payload()
                check_environment_protocol(env, factory_name="env_factory")
                envs[env_id] = env
                reply: Any = {
                    "class_name": type(env).__name__,
                    "action_format": getattr(env, "action_format", "think_action"),
                    "prompt_template": getattr(env, "prompt_template", None),
                    "max_episode_steps": getattr(env, "max_episode_steps", None),
                    "has_facts": callable(getattr(env, "privileged_facts", None)),
                }
            elif op == "close":
                env = envs.pop(env_id, None)
                reply = env.close() if env is not None else None
            else:
                args, kwargs = payload
                reply = getattr(envs[env_id], op)(*args, **kwargs)
            conn.send(("ok", reply))
        except Exception as error:  # noqa: BLE001 - the error travels to the trainer, which fails the episode
            # As text: the exception object itself may not pickle (or unpickle) outside this process.
            conn.send(("error", f"{type(error).__name__}: {error}", traceback.format_exc(limit=5)))
    for env in envs.values():
        with contextlib.suppress(Exception):  # exiting anyway: one broken close() must not skip the others
            env.close()


class _Worker:
    """One worker process, its pipe, and a generation number that grows at every restart."""

    def __init__(self, context: Any, index: int) -> None:
        self.context, self.index = context, index
        self.generation = 0
        self.lock = threading.Lock()  # one request/answer on the pipe at a time
        self.process: Any = None
        self.conn: Connection | None = None

    def ensure_started(self) -> None:
        if self.process is not None:
            return
        parent, child = self.context.Pipe()
        self.process = self.context.Process(
            target=_worker_main, args=(child,), name=f"sdar-env-worker-{self.index}", daemon=True
        )
        self.process.start()
        child.close()  # only the worker holds its end: its death is then seen as EOF here
        self.conn = parent

    def stop(self, *, kill: bool) -> int | None:
        """Stop the process (politely unless `kill`); returns its exit code. The next use starts a new one."""
        process, conn = self.process, self.conn
        self.process, self.conn = None, None
        self.generation += 1
        if process is None:
            return None
        if not kill and conn is not None:
            with contextlib.suppress(OSError):  # already dead
                conn.send(None)
            process.join(_JOIN_SECONDS)
        if process.is_alive():
            process.kill()
        process.join()
        if conn is not None:
            conn.close()
        return process.exitcode


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class EnvWorkerPool:
    """`num_workers` processes holding environments; `make_env(factory)` returns a `WorkerEnvironment`.

    Args:
        num_workers: processes to spread the environments over (round robin).
        timeout: seconds a reset/step/privileged_facts call may take before its worker is killed and restarted and
            the call raises `EnvStepTimeoutError` (None: no limit). Building an environment has no limit (a fresh
            worker first imports the environment's modules).
        start_method: the `multiprocessing` start method, "spawn" (default) or "forkserver".

    Use it as a context manager, or call `close()`: it stops every worker (killing those that do not exit).
    """

    def __init__(self, num_workers: int, *, timeout: float | None = None, start_method: str = "spawn") -> None:
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
            raise ValueError(f"num_workers must be an int >= 1, got {num_workers!r}. Use env_workers=0 for none.")
        if start_method not in ("spawn", "forkserver"):
            raise ValueError(
                f"start_method must be 'spawn' or 'forkserver', got {start_method!r} (fork would copy the trainer's "
                "threads and CUDA state into the worker)."
            )
        self.timeout = timeout
        context = multiprocessing.get_context(start_method)
        self._workers = [_Worker(context, index) for index in range(num_workers)]
        self._ids = itertools.count()
        self._next = itertools.cycle(range(num_workers))
        self.restarts = 0  # workers restarted after a crash or a time-out
        self.closed = False

    def __enter__(self) -> EnvWorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        """The process ids of the running workers."""
        return [w.process.pid for w in self._workers if w.process is not None]

    def make_env(self, factory: Callable[[], Any]) -> WorkerEnvironment:
        """Build `factory()` in the next worker (round robin); raises what the factory raised, as `RuntimeError`."""
        return WorkerEnvironment(self, next(self._next), factory)

    def close(self) -> None:
        """Stop every worker; idempotent. Their environments are closed by the worker on its way out."""
        self.closed = True
        for worker in self._workers:
            with worker.lock:
                worker.stop(kill=False)

    def _call(self, index: int, generation: int | None, message: tuple, *, what: str, timed: bool) -> tuple[Any, int]:
        """Send `message` to worker `index`; its answer and the worker's generation.

        `generation` None: any generation (building an environment); else the call fails with `EnvWorkerDiedError`
        when the worker has been restarted since (the environment it addressed is gone).
        """
        if self.closed:
            raise RuntimeError(f"{what}: the EnvWorkerPool is closed.")
        worker = self._workers[index]
        with worker.lock:
            if generation is not None and generation != worker.generation:
                raise EnvWorkerDiedError(
                    f"{what}: environment worker {index} was restarted after a crash or time-out since this "
                    "environment was built; its state is lost (the next reset() rebuilds it)."
                )
            worker.ensure_started()
            assert worker.conn is not None  # internal invariant: set by ensure_started
            timeout = self.timeout if timed else None
            try:
                worker.conn.send(message)
                answered = worker.conn.poll(timeout)  # True also when the pipe closed: the worker died
                answer = worker.conn.recv() if answered else None
            except (EOFError, OSError) as error:
                code = worker.stop(kill=True)
                self.restarts += 1
                hint = (
                    " It died while building the environment: if your training script has no "
                    '`if __name__ == "__main__":` guard, add one (a spawned worker imports the script).'
                    if generation is None
                    else ""
                )
                raise EnvWorkerDiedError(
                    f"{what}: environment worker {index} died ({_describe_exit(code)}), e.g. a crash in native "
                    f"environment code; the episodes it held fail and it is restarted.{hint}"
                ) from error
            if not answered:
                worker.stop(kill=True)  # Python cannot interrupt a hung call any other way
                self.restarts += 1
                raise EnvStepTimeoutError(
                    f"{what} did not return within env_step_timeout={timeout:g} s; environment worker {index} was "
                    "killed and is restarted."
                )
            current = worker.generation
        if answer[0] == "error":
            raise RuntimeError(f"{what} raised in environment worker {index}: {answer[1]}\n{answer[2]}")
        return answer[1], current


class WorkerEnvironment:
    """An `AgentEnvironment` living in an `EnvWorkerPool` worker (see the module docstring).

    `enforces_timeout` tells `play_episodes` that the pool applies the time-out itself (by killing the worker), so the
    call needs no watchdog thread.
    """

    enforces_timeout = True

    def __init__(self, pool: EnvWorkerPool, worker: int, factory: Callable[[], Any]) -> None:
        self._pool, self._worker, self._factory = pool, worker, factory
        self._id = next(pool._ids)
        self._generation: int | None = None
        self._build()

    def _build(self) -> None:
        meta, self._generation = self._pool._call(
            self._worker, None, ("create", self._id, self._factory), what="env_factory()", timed=False
        )
        self.env_class_name: str = meta["class_name"]
        self.action_format: str = meta["action_format"]
        self.prompt_template: str | None = meta["prompt_template"]
        self.max_episode_steps: int | None = meta["max_episode_steps"]
        self._has_facts: bool = meta["has_facts"]

    def _stale(self) -> bool:
        return self._generation != self._pool._workers[self._worker].generation

    def _call(self, op: str, *args: Any, **kwargs: Any) -> Any:
        return self._pool._call(
            self._worker, self._generation, (op, self._id, (args, kwargs)), what=f"{op}()", timed=True
        )[0]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        if self._stale():  # its worker was restarted: a new episode can start on a freshly built environment
            self._build()
        return self._call("reset", seed=seed, options=options)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        return self._call("step", action)

    def privileged_facts(self) -> str:
        return self._call("privileged_facts") if self._has_facts else ""

    def close(self) -> None:
        """Close the remote environment; harmless twice, after a worker crash and after the pool closed."""
        if self._pool.closed or self._stale():
            return
        self._pool._call(self._worker, self._generation, ("close", self._id, None), what="close()", timed=True)
        self._generation = -1  # closed: nothing left to close
