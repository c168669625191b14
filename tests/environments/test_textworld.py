"""TextWorldEnv on real TextWorld games generated in tmp_path (skipped without `pip install "sdar-trl[textworld]"`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sdar_trl.environments import ResetNeededError, check_agent_environment, make_env
from sdar_trl.environments.textworld import resolve_game_files

textworld = pytest.importorskip("textworld")


def make_games(folder: Path, seeds: tuple[int, ...] = (1, 2)) -> list[Path]:
    """tw-make's tw-simple games, offline (textworld's own command-line entry point)."""
    paths = []
    for seed in seeds:
        path = folder / f"game_{seed}.z8"
        subprocess.run(
            _tw_make(seed, path),
            check=True,
            capture_output=True,
            timeout=120,
        )
        paths.append(path)
    return paths


def _tw_make(seed: int, path: Path) -> list[str]:
    """tw-make next to this interpreter (a venv), else next to the package (`pip install --target`), else on PATH."""
    candidates = (Path(sys.executable).parent / "tw-make", Path(textworld.__file__).parents[1] / "bin" / "tw-make")
    script = next((c for c in candidates if c.is_file()), None)
    launcher = [sys.executable, str(script)] if script else ["tw-make"]
    return [*launcher, "tw-simple", "--rewards", "dense", "--goal", "detailed", "--seed", str(seed),
            "--output", str(path), "--silent"]  # fmt: skip


@pytest.fixture(scope="module")
def games(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return make_games(tmp_path_factory.mktemp("tw_games"))


def test_passes_the_environment_checker(games: list[Path]) -> None:
    env = make_env("textworld", game_files=[str(p) for p in games], max_episode_steps=20)
    check_agent_environment(env, seed=1, num_steps=12)


def test_walkthrough_wins_with_reward_one(games: list[Path]) -> None:
    env = make_env("textworld", game_files=str(games[0].parent / "*.z8"))
    assert env.num_tasks == 2
    for seed in (0, 1, 2):
        obs, info = env.reset(seed=seed)
        assert info["task"] and info["task"] in obs
        assert info["task_type"] == "textworld" and info["admissible_actions"]
        assert info["task_id"] == env.game_files[seed % 2]
        rewards = []
        for _ in range(env.max_episode_steps):
            obs, reward, terminated, truncated, info = env.step(env.expert_action())
            rewards.append(reward)
            if terminated or truncated:
                break
        assert terminated and not truncated and info["won"]
        assert rewards[-1] == 1.0 and sum(rewards) == 1.0
        assert info["score"] == 1.0
        # After the end, further commands never reach the interpreter's RESTART/QUIT prompt.
        assert env.step("look")[1:4] == (0.0, True, False)
    env.close()
    env.close()


def test_same_seed_same_episode_and_row_seed(games: list[Path]) -> None:
    env = make_env("textworld", game_files=str(games[0].parent))
    first = env.reset(seed=3)
    assert env.reset(options={"seed": 3}) == first
    env.close()


def test_garbage_and_nul_commands_are_answered(games: list[Path]) -> None:
    env = make_env("textworld", game_files=[games[0]], max_episode_steps=12)
    with pytest.raises(ResetNeededError):
        env.step("look")
    env.reset(seed=0)
    for action in ("", "   ", "\x00", "open\x00door", "☃ ünïcödé", "x" * 5000, "<action>look</action>", "xyzzy"):
        obs, reward, terminated, truncated, info = env.step(action)
        assert isinstance(obs, str) and obs and reward == 0.0 and not terminated and not info["won"]
    obs, *_ = env.step("look")
    assert "-=" in obs  # the interpreter still answers normal commands
    for _ in range(3):
        *_, truncated, _ = env.step("")
    assert truncated  # 12 steps
    env.close()


def test_step_limit_truncates(games: list[Path]) -> None:
    env = make_env("textworld", game_files=[games[0]], max_episode_steps=2)
    env.reset(seed=0)
    assert env.step("look")[3] is False
    assert env.step("look")[2:4] == (False, True)
    env.close()


def test_bad_game_files_name_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="tw-make"):
        resolve_game_files(str(tmp_path / "*.z8"))
    with pytest.raises(TypeError, match="game_files"):
        resolve_game_files(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_episode_steps"):
        make_env("textworld", game_files=str(tmp_path), max_episode_steps=0)


@pytest.mark.slow
@pytest.mark.integration
def test_example_generates_games_and_trains_in_a_worker(tmp_path: Path) -> None:
    """examples/textworld_sdar.py: tw-make games, tiny model, env_workers=1, two SDAR steps, a report; offline."""
    import os

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "out"
    script = root / "examples" / "textworld_sdar.py"
    command = [sys.executable, str(script), "--games_dir", str(tmp_path / "games"), "--output_dir", str(out)]
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert len(list((tmp_path / "games").glob("*.z8"))) == 3
    assert (out / "report.md").is_file()
    assert "step 2/2" in completed.stdout + completed.stderr
