"""Environment steps per second on one core, for every shipped mini environment.

A random policy plays full episodes: a uniformly random admissible action when the environment lists
them (ALFWorld, WebShop; on WebShop's search page the expert's query, otherwise the random policy could
never reach a product page), and for Search-QA a random `<search>` over words of the question or, one
time in four, an `<answer>`. Task construction (`reset`) is timed separately from `step`. Prints a human
table on stderr and one JSON line (the last line on stdout, starting with `{"benchmark"`):

    OMP_NUM_THREADS=1 python benchmarks/env_speed.py --seconds 3

Target (issue "Three offline benchmark environments"): >= 2,000 steps/second for each environment.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

from sdar_trl.environments import make_env

ENVIRONMENTS = {
    "alfworld-mini": {"split": "train"},
    "webshop-mini": {"split": "train"},
    "searchqa-mini": {"split": "train"},
}
TARGET_STEPS_PER_SECOND = 2000


def random_action(env, info: dict, rng: random.Random) -> str:
    admissible = info.get("admissible_actions")
    if admissible:
        choices = [a for a in admissible if a != "search[<your query>]"]
        if not choices:  # WebShop's search page: only a query template is listed
            return env.expert_action()
        return rng.choice(choices)
    words = info.get("task", "x").split()
    if rng.random() < 0.25:
        return f"<answer>{rng.choice(words)}</answer>"
    start = rng.randrange(len(words))
    return "<search>" + " ".join(words[start : start + 3]) + "</search>"


def measure(name: str, kwargs: dict, seconds: float, seed: int) -> dict:
    env = make_env(name, **kwargs)
    rng = random.Random(seed)
    steps = episodes = 0
    step_time = reset_time = 0.0
    task = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        _, info = env.reset(seed=task)
        reset_time += time.perf_counter() - start
        task += 1
        episodes += 1
        done = False
        while not done:
            action = random_action(env, info, rng)
            start = time.perf_counter()
            _, _, terminated, truncated, step_info = env.step(action)
            step_time += time.perf_counter() - start
            info = {**info, **step_info}
            steps += 1
            done = terminated or truncated
    env.close()
    return {
        "env": name,
        "steps": steps,
        "episodes": episodes,
        "steps_per_second": steps / step_time if step_time else float("inf"),
        "resets_per_second": episodes / reset_time if reset_time else float("inf"),
        "meets_target": steps / step_time >= TARGET_STEPS_PER_SECOND if step_time else True,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="wall time per environment")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--envs", nargs="*", default=list(ENVIRONMENTS), choices=list(ENVIRONMENTS))
    args = parser.parse_args()
    for name in args.envs:  # build catalogues/worlds once before timing
        make_env(name, **ENVIRONMENTS[name]).reset(seed=0)
    results = [measure(name, ENVIRONMENTS[name], args.seconds, args.seed) for name in args.envs]
    print(f"{'environment':<15} {'steps/s':>10} {'resets/s':>10} {'steps':>8} {'episodes':>9}", file=sys.stderr)
    for r in results:
        print(
            f"{r['env']:<15} {r['steps_per_second']:>10.0f} {r['resets_per_second']:>10.0f} {r['steps']:>8} "
            f"{r['episodes']:>9}",
            file=sys.stderr,
        )
    print(
        json.dumps({"benchmark": "env_speed", "target_steps_per_second": TARGET_STEPS_PER_SECOND, "results": results})
    )


if __name__ == "__main__":
    main()
