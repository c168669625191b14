"""SDAR on TextWorld games: generates a few tiny games offline with `tw-make`, then trains for a couple of steps.

Needs the extra: `pip install "sdar-trl[textworld]"`. (Not named textworld.py: the script's folder comes first on
sys.path, so that name would shadow the `textworld` package, in the worker processes too.)

Offline and on a CPU (about a minute):

    python examples/textworld_sdar.py

The games go to --games_dir (default outputs/textworld-games; existing game files are reused). The default model is
the package's tiny test model (`sdar_trl.testing.save_tiny`): this shows the plumbing, not learning. The
environments run in a worker process (`--env_workers 1`): TextWorld's interpreter is native code, and a crash in it
then fails the episodes it held instead of the training process. A real run passes its own model and games:

    python examples/textworld_sdar.py --model_name_or_path Qwen/Qwen2.5-1.5B-Instruct --max_steps 150 \
        --env_kwargs '{"game_files": "my_games/*.z8", "max_episode_steps": 50}'

Every flag of examples/alfworld.py (SDARConfig / TrainingArguments / ModelConfig) is accepted; `--help` lists them.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from _common import _flag_value, main

#: How many games to generate and their tw-make seeds.
GAME_SEEDS = (1, 2, 3)


def tw_make_command() -> list[str]:
    """tw-make next to this interpreter (a venv), or next to the package (`pip install --target`), else on PATH."""
    import textworld

    candidates = (Path(sys.executable).parent / "tw-make", Path(textworld.__file__).parents[1] / "bin" / "tw-make")
    script = next((c for c in candidates if c.is_file()), None)
    return [sys.executable, str(script)] if script else ["tw-make"]


def generate_games(folder: Path) -> str:
    """`tw-make tw-simple` games in `folder` (kept when already there); returns their glob for `game_files`."""
    folder.mkdir(parents=True, exist_ok=True)
    for seed in GAME_SEEDS:
        path = folder / f"game_{seed}.z8"
        if not path.is_file():
            command = [*tw_make_command(), "tw-simple", "--rewards", "dense", "--goal", "detailed",
                       "--seed", str(seed), "--output", str(path), "--silent"]  # fmt: skip
            subprocess.run(command, check=True)
    return str(folder / "*.z8")


def demo_argv(argv: list[str]) -> list[str]:
    """`argv` plus the demo's defaults for the flags it does not set: games, tiny model, worker, short episodes."""
    try:
        import textworld  # noqa: F401  (only to fail early with the install command)
    except ImportError:
        sys.exit('This example needs TextWorld: pip install "sdar-trl[textworld]"')
    games_dir = _flag_value(argv, "--games_dir") or "outputs/textworld-games"
    argv = [a for i, a in enumerate(argv) if not (a.startswith("--games_dir") or (i and argv[i - 1] == "--games_dir"))]
    extra: list[str] = []
    if _flag_value(argv, "--env_kwargs") is None:
        extra += ["--env_kwargs", f'{{"game_files": "{generate_games(Path(games_dir))}", "max_episode_steps": 8}}']
    if _flag_value(argv, "--model_name_or_path") is None:
        from sdar_trl.testing import save_tiny

        extra += ["--model_name_or_path", str(save_tiny(Path(tempfile.mkdtemp(prefix="sdar-tiny-"))))]
    defaults = {
        "--env_workers": "1",
        "--max_steps": "2",
        "--train_tasks": "6",
        "--eval_tasks": "3",
        "--max_steps_per_episode": "4",
        "--max_completion_length": "24",
        "--privileged_context_source": "skills",  # TextWorld games have no oracle facts
    }  # no --output_dir: main's default (outputs/textworld-sdar) moves to -2, -3, ... instead of refusing a rerun
    for flag, value in defaults.items():
        if _flag_value(argv, flag) is None:
            extra += [flag, value]
    return [*argv, *extra]


if __name__ == "__main__":
    # The tiny test model this demo supplies gets the CPU demo's defaults, as a packaged starter would; a model the
    # user names gets the paper's ALFWorld settings (TextWorld is the engine under ALFWorld).
    own_model = _flag_value(sys.argv[1:], "--model_name_or_path") is not None
    sys.argv = [sys.argv[0], *demo_argv(sys.argv[1:])]
    main(default_env="textworld", skills_name="alfworld", history_length=2, invalid_action_penalty=0.1,
         demo=not own_model)  # fmt: skip
