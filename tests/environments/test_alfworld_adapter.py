"""AlfWorldEnv (real ALFWorld) against a stub `alfworld` package; the real-package test runs only when installed."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import types
from pathlib import Path
from typing import ClassVar

import pytest

from sdar_trl.environments import ResetNeededError, check_agent_environment, make_env
from sdar_trl.environments.alfworld import AlfWorldEnv
from sdar_trl.environments.alfworld.adapter import default_alfworld_config, task_type_from_game

WELCOME = (
    "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room. Looking quickly around you, you see "
)
GAMES = {
    "pick_cool_then_place_in_recep-Apple-None-CounterTop-1/trial_T1": "put a cool apple in countertop.",
    "look_at_obj_in_light-Book-None-DeskLamp-301/trial_T2": "look at book under the desklamp.",
}


class FakeBatchEnv:
    """TextWorld's batch gym env for one game: scripted observations and batched infos."""

    instances: ClassVar[list[FakeBatchEnv]] = []

    def __init__(self, game_file: str, max_steps: int) -> None:
        self.game_file = game_file
        self.task = json.loads(Path(game_file).read_text())["task"]
        self.max_steps = max_steps
        self.commands: list[str] = []
        self.closed = False
        FakeBatchEnv.instances.append(self)

    def _infos(self, admissible: list[str], won: bool) -> dict[str, list[object]]:
        return {"admissible_commands": [admissible], "won": [won], "extra.gamefile": [self.game_file]}

    def reset(self):
        self.location = None
        obs = f"{WELCOME}a countertop 1, and a fridge 1.\n\nYour task is to: {self.task}"
        return [obs], self._infos(["go to countertop 1", "go to fridge 1", "help", "inventory", "look"], False)

    def step(self, commands: list[str]):
        assert isinstance(commands, list) and len(commands) == 1
        command = commands[0]
        self.commands.append(command)
        done = len(self.commands) >= self.max_steps
        if command == "go to fridge 1":
            admissible = ["examine fridge 1", "go to countertop 1", "help", "inventory", "look", "open fridge 1"]
            return ["You arrive at fridge 1. The fridge 1 is closed."], [0], [done], self._infos(admissible, False)
        if command == "win":
            return ["You move the apple 1 to the countertop 1."], [1], [True], self._infos(["look"], True)
        return ["Nothing happens."], [0], [done], self._infos(["go to fridge 1", "help", "look"], False)

    def close(self) -> None:
        self.closed = True


class FakeAlfredTWEnv:
    """alfworld's AlfredTWEnv: collects game files from the configured folder, builds batch envs."""

    configs: ClassVar[list[tuple[dict, str]]] = []

    def __init__(self, config: dict, train_eval: str = "train") -> None:
        FakeAlfredTWEnv.configs.append((config, train_eval))
        self.config = config
        key = {"train": "data_path", "eval_in_distribution": "eval_id_data_path"}.get(train_eval, "eval_ood_data_path")
        root = Path(os.path.expandvars(config["dataset"][key]))
        self.game_files = [str(path) for path in sorted(root.rglob("game.tw-pddl"), reverse=True)]
        self.num_games = len(self.game_files)

    def init_env(self, batch_size: int) -> FakeBatchEnv:
        assert batch_size == 1 and len(self.game_files) == 1
        return FakeBatchEnv(self.game_files[0], self.config["rl"]["training"]["max_nb_steps_per_episode"])


@pytest.fixture
def fake_alfworld(monkeypatch):
    package = types.ModuleType("alfworld")
    agents = types.ModuleType("alfworld.agents")
    environment = types.ModuleType("alfworld.agents.environment")
    environment.get_environment = lambda name: {"AlfredTWEnv": FakeAlfredTWEnv}[name]
    package.agents, agents.environment = agents, environment
    for name, module in (
        ("alfworld", package),
        ("alfworld.agents", agents),
        ("alfworld.agents.environment", environment),
    ):
        monkeypatch.setitem(sys.modules, name, module)
    FakeBatchEnv.instances.clear()
    FakeAlfredTWEnv.configs.clear()
    return environment


@pytest.fixture
def data_path(tmp_path):
    for split in ("train", "valid_seen", "valid_unseen"):
        for folder, task in GAMES.items():
            game_dir = tmp_path / "json_2.1.1" / split / folder
            game_dir.mkdir(parents=True)
            (game_dir / "game.tw-pddl").write_text(json.dumps({"task": task}))
    return tmp_path


def test_reset_maps_the_batch_api(fake_alfworld, data_path):
    env = AlfWorldEnv(split="valid_seen", data_path=data_path)
    assert env.num_tasks == 2 and env.game_files == sorted(env.game_files)
    config, train_eval = FakeAlfredTWEnv.configs[0]
    assert train_eval == "eval_in_distribution"
    assert config["dataset"]["eval_id_data_path"] == str(data_path / "json_2.1.1" / "valid_seen")
    obs, info = env.reset(seed=1)
    assert obs.endswith("Your task is to: put a cool apple in countertop.")
    assert info["task"] == "put a cool apple in countertop."
    assert info["task_type"] == "pick_cool_then_place_in_recep"
    assert info["admissible_actions"] == ["go to countertop 1", "go to fridge 1", "inventory", "look"]
    assert info["task_id"].endswith("game.tw-pddl")
    assert env.reset(seed=0)[1]["task_type"] == "look_at_obj_in_light"
    assert env.reset(seed=2)[1]["task_type"] == "look_at_obj_in_light"  # modulo the number of games


def test_step_reward_and_termination(fake_alfworld, data_path):
    env = AlfWorldEnv(split="train", data_path=data_path, max_episode_steps=5)
    env.reset(seed=1)
    obs, reward, terminated, truncated, info = env.step("  Go To Fridge 1 ")
    assert obs == "You arrive at fridge 1. The fridge 1 is closed."
    assert (reward, terminated, truncated, info["won"]) == (0.0, False, False, False)
    assert FakeBatchEnv.instances[-1].commands == ["go to fridge 1"]
    assert "help" not in info["admissible_actions"] and "open fridge 1" in info["admissible_actions"]
    obs, reward, terminated, truncated, info = env.step("win")
    assert (reward, terminated, truncated, info["won"]) == (10.0, True, False, True)
    after = env.step("look")
    assert after[:4] == (obs, 0.0, True, False) and after[4]["won"]
    assert len(FakeBatchEnv.instances[-1].commands) == 2, "no command reaches the game after the end"


def test_truncation_and_implausible_strings(fake_alfworld, data_path):
    env = AlfWorldEnv(split="valid_unseen", data_path=data_path, max_episode_steps=4)
    env.reset(seed=0)
    for step, action in enumerate(["", "x" * 5000, "☃ ünïcödé", "look"], start=1):
        obs, reward, terminated, truncated, _ = env.step(action)
        assert obs == "Nothing happens." and reward == 0.0 and not terminated
        assert truncated == (step == 4)
    assert FakeBatchEnv.instances[-1].commands == ["look"], "only plausible commands reach TextWorld"


def test_same_game_reuses_the_env_and_switching_closes_it(fake_alfworld, data_path):
    env = AlfWorldEnv(split="train", data_path=data_path)
    env.reset(seed=0)
    env.reset(seed=0)
    assert len(FakeBatchEnv.instances) == 1
    env.reset(seed=1)
    assert len(FakeBatchEnv.instances) == 2 and FakeBatchEnv.instances[0].closed
    env.close()
    env.close()
    assert FakeBatchEnv.instances[1].closed
    with pytest.raises(ResetNeededError):
        env.step("look")


def test_checker_passes_on_the_stub(fake_alfworld, data_path):
    check_agent_environment(AlfWorldEnv(split="valid_seen", data_path=data_path), seed=1, num_steps=3)
    assert isinstance(make_env("alfworld", split="valid_seen", data_path=data_path), AlfWorldEnv)


def test_config_overrides_and_env_var(fake_alfworld, data_path, monkeypatch):
    monkeypatch.setenv("ALFWORLD_DATA", str(data_path))
    env = AlfWorldEnv(split="train", config={"env": {"domain_randomization": True}}, max_episode_steps=7)
    assert env.data_path == data_path
    assert env.config["env"]["domain_randomization"] is True
    assert env.config["env"]["task_types"] == [1, 2, 3, 4, 5, 6]
    assert env.config["rl"]["training"]["max_nb_steps_per_episode"] == 7
    assert default_alfworld_config(data_path)["dataset"]["data_path"] == str(data_path / "json_2.1.1" / "train")


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "alfworld", None)
    monkeypatch.setitem(sys.modules, "alfworld.agents", None)
    monkeypatch.setitem(sys.modules, "alfworld.agents.environment", None)
    with pytest.raises(ImportError, match=r'pip install "sdar-trl\[alfworld\]"'):
        AlfWorldEnv()


def test_missing_data_names_the_download(fake_alfworld, tmp_path):
    with pytest.raises(FileNotFoundError, match="alfworld-download") as error:
        AlfWorldEnv(split="valid_unseen", data_path=tmp_path / "nowhere")
    assert "ALFWORLD_DATA" in str(error.value)
    (tmp_path / "json_2.1.1" / "train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no solvable ALFWorld game"):
        AlfWorldEnv(split="train", data_path=tmp_path)


def test_bad_arguments(fake_alfworld, data_path):
    with pytest.raises(ValueError, match="split"):
        AlfWorldEnv(split="test", data_path=data_path)
    with pytest.raises(ValueError, match="single level"):
        AlfWorldEnv(difficulty="easy", data_path=data_path)


@pytest.mark.parametrize(
    ("path", "task", "expected"),
    [
        ("json_2.1.1/train/pick_two_obj_and_place-CD-None-Shelf-1/trial_1/game.tw-pddl", "", "pick_two_obj_and_place"),
        ("x/pick_and_place_simple-Pen-None-Desk-3/t/game.tw-pddl", "", "pick_and_place_simple"),
        ("game.tw-pddl", "examine the cd with the desklamp.", "look_at_obj_in_light"),
        ("game.tw-pddl", "heat some egg and put it in diningtable.", "pick_heat_then_place_in_recep"),
        ("game.tw-pddl", "put a cool mug in cabinet.", "pick_cool_then_place_in_recep"),
        ("game.tw-pddl", "clean some cloth and put it in toilet.", "pick_clean_then_place_in_recep"),
        ("game.tw-pddl", "find two pen and put them in desk.", "pick_two_obj_and_place"),
        ("game.tw-pddl", "put some spraybottle on toilet.", "pick_and_place_simple"),
    ],
)
def test_task_type_from_game(path, task, expected):
    assert task_type_from_game(path, task) == expected


def _real_alfworld_available() -> bool:
    if importlib.util.find_spec("alfworld") is None:
        return False
    root = Path(os.environ.get("ALFWORLD_DATA") or Path.home() / ".cache" / "alfworld")
    return (root / "json_2.1.1" / "valid_seen").is_dir()


@pytest.mark.integration
@pytest.mark.skipif(not _real_alfworld_available(), reason="needs `alfworld` and its data (alfworld-download)")
def test_real_alfworld_valid_seen():
    env = AlfWorldEnv(split="valid_seen")
    assert env.num_tasks == 140
    obs, info = env.reset(seed=0)
    assert obs.startswith("-= Welcome to TextWorld, ALFRED! =-")
    assert info["task_type"] in {"pick_and_place_simple", "look_at_obj_in_light", "pick_two_obj_and_place"} | {
        "pick_clean_then_place_in_recep",
        "pick_heat_then_place_in_recep",
        "pick_cool_then_place_in_recep",
    }
    obs, reward, *_ = env.step(info["admissible_actions"][0])
    assert isinstance(obs, str) and reward == 0.0
    assert env.step("jump around")[0] == "Nothing happens."
    env.close()
