"""What `env_workers` costs per environment step: alfworld-mini played through `play_episodes` in-process
(`env_workers=0`) and in worker processes (`env_workers=2`), with a fixed policy (always `look`, so every episode
runs its full length and the model costs nothing). Worker start-up (spawn + imports + building the environments) is
timed separately: it is paid once per run and once per restart. Prints a human table on stderr and one JSON line
(the last line on stdout, starting with `{"benchmark"`):

    OMP_NUM_THREADS=1 python benchmarks/env_workers_cost.py --envs 16 --steps 15 --repeats 3
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time

from _common import cpu_model_name, read_cpuinfo

from sdar_trl.env_workers import EnvWorkerPool
from sdar_trl.environments import make_env
from sdar_trl.rollout import play_episodes

RESPONSE = "<think>fixed policy</think><action>look</action>"


def fixed_policy(prompts: list[str]) -> list[tuple[list[int], list[int], str]]:
    return [([0], [0], RESPONSE) for _ in prompts]


def seconds_per_step(envs: list, steps: int, repeats: int) -> tuple[float, int]:
    """Median wall seconds per environment step (reset included, as a rollout pays it) over `repeats` rollouts."""
    rows = [{"seed": i} for i in range(len(envs))]
    timings, played = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        result = play_episodes(
            envs, rows, fixed_policy, group_ids=list(range(len(envs))), max_steps=steps, history_length=2
        )
        elapsed = time.perf_counter() - start
        played = len(result.steps)
        if any(episode.failed for episode in result.episodes):
            raise RuntimeError(f"an episode failed: {[e.env_error for e in result.episodes if e.failed]}")
        timings.append(elapsed / played)
    return statistics.median(timings), played


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", type=int, default=16, help="environments (trajectories) per rollout")
    parser.add_argument("--steps", type=int, default=15, help="steps per episode")
    parser.add_argument("--repeats", type=int, default=3, help="rollouts timed per mode (the median is reported)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    factory = functools.partial(make_env, "alfworld-mini", split="train")

    local = [factory() for _ in range(args.envs)]
    in_process, played = seconds_per_step(local, args.steps, args.repeats)
    for env in local:
        env.close()

    with EnvWorkerPool(args.workers) as pool:
        start = time.perf_counter()
        remote = [pool.make_env(factory) for _ in range(args.envs)]
        startup = time.perf_counter() - start
        in_workers, _ = seconds_per_step(remote, args.steps, args.repeats)

    record = {
        "benchmark": "env_workers_cost",
        "env": "alfworld-mini",
        "cpu": cpu_model_name(read_cpuinfo()),
        "envs": args.envs,
        "steps_per_rollout": played,
        "workers": args.workers,
        "ms_per_step_env_workers_0": in_process * 1e3,
        "ms_per_step_env_workers_n": in_workers * 1e3,
        "overhead_ms_per_step": (in_workers - in_process) * 1e3,
        "startup_seconds": startup,
    }
    print(f"{'env_workers':<12} {'ms/step':>9} {'steps/s':>9}", file=sys.stderr)
    print(f"{0:<12} {in_process * 1e3:>9.3f} {1 / in_process:>9.0f}", file=sys.stderr)
    print(f"{args.workers:<12} {in_workers * 1e3:>9.3f} {1 / in_workers:>9.0f}", file=sys.stderr)
    print(f"worker start-up (spawn, imports, {args.envs} environments built): {startup:.2f} s", file=sys.stderr)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
