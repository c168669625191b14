"""OpenEnv both ways: `python -m sdar_trl.serve` serves a mini environment, `make_env("openenv")` plays any server.

Every server here is a real `python -m sdar_trl.serve` subprocess on a free port of 127.0.0.1, shut down by its
fixture's finalizer whatever the test does.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from datasets import Dataset

pytest.importorskip("openenv")

from openenv import GenericEnvClient
from openenv.core.env_server import Action, Environment, Observation, State, create_fastapi_app

from sdar_trl import SDARTrainer
from sdar_trl.environments import check_agent_environment, make_env
from sdar_trl.environments.base import EnvOutputError, ResetNeededError
from sdar_trl.environments.openenv_client import OpenEnvConnectionError, OpenEnvEnv, parse_openenv_result
from sdar_trl.environments.webshop import WebShopMiniEnv
from sdar_trl.serve import build_app, json_safe, main
from sdar_trl.testing import build_tiny_model, tiny_agent_config

ROOT = Path(__file__).resolve().parents[1]
SRC = str(ROOT / "src")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A `python -m sdar_trl.serve` subprocess; `start()` waits until `/health` answers."""

    def __init__(self, env: str, *args: str, port: int | None = None) -> None:
        self.port = port or _free_port()
        self.command = [sys.executable, "-m", "sdar_trl.serve", env, "--port", str(self.port), *args]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> Server:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
        self.process = subprocess.Popen(self.command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.process.stderr.read()!r}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"{self.command} did not answer /health within {timeout} s")

    def kill(self) -> None:
        """SIGKILL, as a crash: no clean WebSocket close reaches the clients."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()


@pytest.fixture(scope="module")
def webshop_server():
    server = Server("webshop-mini", "--split", "train")
    try:
        yield server.start()
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------------- pure mapping
def test_parse_openenv_result_maps_fields_and_metadata():
    text, info, metadata = parse_openenv_result(
        {"echoed_message": "hi", "metadata": {"legal_actions": ["a", "b"], "task": "say hi"}},
        {"won": True, "score": 0.5},
    )
    assert text == "hi"
    assert info == {"admissible_actions": ["a", "b"], "task": "say hi", "won": True, "score": 0.5}
    assert metadata == {"legal_actions": ["a", "b"], "task": "say hi", "won": True, "score": 0.5}
    # No text field: the fields as JSON; nothing else known.
    text, info, _ = parse_openenv_result({"board": [1, 2], "turn": 3}, None)
    assert text == '{"board": [1, 2], "turn": 3}' and info == {"admissible_actions": None}
    # A non-finite score and a non-bool won are left out rather than guessed at.
    _, info, _ = parse_openenv_result({"text": "x", "score": float("nan"), "won": "yes"}, {})
    assert info == {"admissible_actions": None}
    with pytest.raises(EnvOutputError, match="JSON object"):
        parse_openenv_result(["not", "a", "dict"], None)


def test_json_safe_keeps_plain_values_and_drops_the_rest():
    import numpy as np

    assert json_safe({"a": np.int64(3), "b": (np.float32(0.5), "x"), "c": float("inf"), "d": object()}) == {
        "a": 3,
        "b": [0.5, "x"],
        "c": None,
        "d": None,
    }


def test_adapter_arguments_are_checked():
    with pytest.raises(ValueError, match="exactly one of base_url"):
        OpenEnvEnv()
    with pytest.raises(ValueError, match="must be a URL"):
        OpenEnvEnv("127.0.0.1:8000", action_field="text")
    # Nothing listens there: building works (a factory must not crash training), the reset fails the episode.
    env = OpenEnvEnv(f"http://127.0.0.1:{_free_port()}", timeout=2)
    with pytest.raises(OpenEnvConnectionError, match="Is the server running"):
        env.reset(seed=0)
    env = OpenEnvEnv(f"http://127.0.0.1:{_free_port()}", action_field="text", timeout=2)
    with pytest.raises(OpenEnvConnectionError, match=r"reset at http://127\.0\.0\.1:\d+ failed: ConnectionError"):
        env.reset(seed=0)
    env.close()


# ------------------------------------------------------------------------------------------ the server in-process
def _ws_call(ws, message: dict) -> dict:
    ws.send_text(json.dumps(message))
    return json.loads(ws.receive_text())


def test_served_observations_follow_the_environment_and_no_privileged_hides_the_oracle():
    from starlette.testclient import TestClient

    local = make_env("toy-keys")
    local_obs, local_info = local.reset(seed=5)
    for privileged in (True, False):
        with TestClient(build_app("toy-keys", privileged=privileged)) as http, http.websocket_connect("/ws") as ws:
            before = _ws_call(ws, {"type": "step", "data": {"text": "look"}})
            assert before["type"] == "error" and "step() before reset()" in before["data"]["message"]
            data = _ws_call(ws, {"type": "reset", "data": {"seed": 5}})["data"]
            observation = data["observation"]
            assert (observation["text"], observation["task"]) == (local_obs, local_info["task"])
            assert observation["admissible_actions"] == local_info["admissible_actions"]
            assert ("privileged_facts" in data["metadata"]) is privileged
            assert ("expert_action" in data["metadata"]) is privileged
            if privileged:
                assert data["metadata"]["privileged_facts"] == local.privileged_facts()
                assert data["metadata"]["expert_action"] == local.expert_action()


def test_serve_command_line_checks_its_arguments():
    served = []
    main(["toy-keys", "--port", "8123", "--env_kwargs", '{"num_rooms": 4}'], run=lambda app, **kw: served.append(kw))
    assert served == [{"host": "127.0.0.1", "port": 8123, "log_level": "warning"}]
    with pytest.raises(SystemExit, match="must be a JSON object"):
        main(["toy-keys", "--env_kwargs", "[1, 2]"], run=lambda app, **kw: None)
    with pytest.raises(SystemExit, match="must be a JSON object"):
        main(["toy-keys", "--env_kwargs", "{oops"], run=lambda app, **kw: None)
    with pytest.raises(ValueError, match="unknown environment 'nope'"):
        build_app("nope")
    with pytest.raises(ValueError, match="max_sessions must be a positive int, got 0"):
        build_app("toy-keys", max_sessions=0)


# ------------------------------------------------------------------------------------- a foreign OpenEnv server
class _GuessAction(Action):
    message: str


class _GuessObservation(Observation):
    prompt: str = ""


class _GuessEnv(Environment):
    """An OpenEnv environment written without sdar_trl in mind: its own field names, a boolean reward, the legal
    actions in the metadata, no task, no `won`."""

    def __init__(self) -> None:
        super().__init__()
        self.secret, self.steps = None, 0

    def reset(self, seed=None, episode_id=None, **kwargs):
        self.secret, self.steps = (seed or 0) % 3, 0
        return _GuessObservation(prompt="Guess a number from 0 to 2.", metadata={"legal_actions": ["0", "1", "2"]})

    def step(self, action, timeout_s=None, **kwargs):
        if self.secret is None:
            raise RuntimeError("reset first")
        self.steps += 1
        won = action.message.strip() == str(self.secret)
        return _GuessObservation(
            prompt="Right!" if won else f"Wrong ({action.message[:20]}).",
            reward=won,
            done=won or self.steps >= 3,
            metadata={"legal_actions": ["0", "1", "2"]},
        )

    @property
    def state(self):
        return State(step_count=self.steps)


@pytest.fixture
def guess_server():
    import threading

    import uvicorn

    port = _free_port()
    app = create_fastapi_app(_GuessEnv, _GuessAction, _GuessObservation, max_concurrent_envs=1)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_adapter_plays_a_foreign_openenv_server(guess_server):
    env = make_env("openenv", base_url=guess_server)
    obs, info = env.reset(seed=4)
    assert env.action_field == "message"  # the action's only string field, from /schema
    assert obs == info["task"] == "Guess a number from 0 to 2."
    assert info["task_type"] == "openenv" and info["admissible_actions"] == ["0", "1", "2"]
    assert env.step("0") == ("Wrong (0).", 0.0, False, False, {**info, "won": False})
    # The boolean reward True is 1.0, and a done episode with a positive reward is won.
    assert env.step("1") == ("Right!", 1.0, True, False, {**info, "won": True})
    env.close()
    check_agent_environment(make_env("openenv", base_url=guess_server))


# ----------------------------------------------------------------------------------------------- against a server
def test_openenv_own_client_answers_reset_and_step(webshop_server):
    local = WebShopMiniEnv(split="test")
    local_obs, local_info = local.reset(seed=3)
    with GenericEnvClient(base_url=webshop_server.url).sync() as client:
        result = client.reset(seed=3, split="test")
        observation = result.observation
        assert observation["text"] == local_obs  # the same episode as the environment played locally
        assert observation["task"] == local_info["task"] and observation["task_type"] == local_info["task_type"]
        assert observation["admissible_actions"] == ["search[<your query>]"]
        assert result.reward is None and result.done is False
        assert result.metadata["goal_index"] == 3 and result.metadata["truncated"] is False
        assert result.metadata["privileged_facts"] == local.privileged_facts()
        assert result.metadata["expert_action"] == local.expert_action()
        result = client.step({"text": "search[leather belt]"})
        local_obs, reward, terminated, truncated, _ = local.step("search[leather belt]")
        assert result.observation["text"] == local_obs
        assert (result.reward, result.done) == (reward, terminated or truncated) == (0.0, False)
        assert "click[back to search]" in result.observation["admissible_actions"]
        state = client.state()
        assert state["step_count"] == 1


def test_each_connection_is_its_own_session(webshop_server):
    with (
        GenericEnvClient(base_url=webshop_server.url).sync() as first,
        GenericEnvClient(base_url=webshop_server.url).sync() as second,
    ):
        task_a = first.reset(seed=1, split="test").observation["task"]
        task_b = second.reset(seed=2, split="test").observation["task"]
        assert task_a != task_b
        first.step({"text": "search[anything]"})
        # The second session is still on its search page, with its own task.
        assert second.state()["step_count"] == 0
        assert second.step({"text": "click[nothing]"}).observation["task"] == task_b


def test_expert_played_through_openenv_client_wins(webshop_server):
    with GenericEnvClient(base_url=webshop_server.url).sync() as client:
        for seed in range(3):
            result = client.reset(seed=seed, split="test")
            for _ in range(15):
                result = client.step({"text": result.metadata["expert_action"]})
                if result.done:
                    break
            assert result.done and result.reward == 10.0
            assert result.observation["won"] is True and result.observation["score"] == 1.0


def test_adapter_passes_the_environment_checker_and_its_expert_wins(webshop_server):
    env = make_env("openenv", base_url=webshop_server.url, split="test")
    assert isinstance(env, OpenEnvEnv) and env.action_field is None
    check_agent_environment(env)  # closes env
    assert env.action_field == "text"  # read from the server's /schema at the first reset
    env = make_env("openenv", base_url=webshop_server.url, split="test")
    local = WebShopMiniEnv(split="test")
    obs, info = env.reset(seed=7)
    assert (obs, info["task"]) == (local.reset(seed=7)[0], local.goal.text)
    assert env.privileged_facts() == local.privileged_facts()
    with pytest.raises(ResetNeededError):
        OpenEnvEnv(webshop_server.url).step("look")
    for _ in range(15):
        obs, reward, terminated, truncated, info = env.step(env.expert_action())
        if terminated or truncated:
            break
    assert (reward, terminated, truncated, info["won"], info["score"]) == (10.0, True, False, True, 1.0)
    env.close()
    env.close()


def test_truncation_comes_back_as_truncated(webshop_server):
    with GenericEnvClient(base_url=webshop_server.url).sync() as client:
        env = OpenEnvEnv(client=client, split="test")  # an OpenEnv client instead of a URL
        env.reset(seed=0)
        for _ in range(15):  # webshop-mini's step limit is 15
            _, _, terminated, truncated, info = env.step("click[nothing here]")
        assert (terminated, truncated, info["won"]) == (False, True, False)


# ------------------------------------------------------------------------------------------------------ training
def _trainer(tmp_path, tokenizer, env_factory, **config):
    return SDARTrainer(
        build_tiny_model(tokenizer),
        # The teacher's privileged context: the oracle facts the server sends in the observation metadata.
        args=tiny_agent_config(tmp_path, max_steps_per_episode=2, privileged_context_source="facts", **config),
        train_dataset=Dataset.from_list([{"seed": i} for i in range(8)]),
        processing_class=tokenizer,
        env_factory=env_factory,
        skill_bank=None,
    )


def _logged(trainer: SDARTrainer) -> list[dict[str, float]]:
    """The training log without wall-clock entries."""
    timing = ("runtime", "per_second", "time", "throughput")
    return [
        {k: v for k, v in entry.items() if not any(word in k for word in timing)}
        for entry in trainer.state.log_history
    ]


@pytest.mark.integration
def test_sdar_trains_two_steps_against_the_server(tmp_path, tiny_tokenizer, webshop_server):
    factory = functools.partial(make_env, "openenv", base_url=webshop_server.url)
    trainer = _trainer(tmp_path / "served", tiny_tokenizer, factory)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2 and trainer.state.global_step == 2
    for entry in logs:
        assert entry["env/episodes"] == 4 and entry["env/errors"] == 0
        assert "sdar/gate_mean" in entry and "sdar/distill_loss" in entry
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))
    assert all(isinstance(env, OpenEnvEnv) for env in trainer._envs.train)
    # The facts came over the wire (the teacher's privileged context with privileged_context_source="facts").
    assert all(env.privileged_facts().startswith("Target product: ") for env in trainer._envs.train)
    trainer.close_environments()
    # Nothing is lost on the wire: the same run on the environment in this process logs exactly the same numbers.
    local = _trainer(tmp_path / "local", tiny_tokenizer, functools.partial(make_env, "webshop-mini", split="train"))
    local.train()
    assert _logged(trainer) == _logged(local)


@pytest.mark.integration
def test_the_example_script_trains_against_a_server(tmp_path):
    server = Server(
        "webshop-mini", "--split", "train", "--env_kwargs", '{"difficulty": "easy", "max_episode_steps": 10}'
    )
    try:
        server.start()
        out = tmp_path / "out"
        completed = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "webshop.py"), "--env", "openenv",
             "--env_kwargs", json.dumps({"base_url": server.url}), "--eval_split", "test",
             "--model_name_or_path", "micro:webshop-mini", "--output_dir", str(out),
             "--max_steps", "1", "--train_tasks", "4", "--eval_tasks", "4", "--per_device_train_batch_size", "4",
             "--num_generations", "2", "--cpu_threads", "1"],
            capture_output=True, text=True, timeout=600, check=False,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": SRC},
        )  # fmt: skip
    finally:
        server.stop()
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "Eval success before training:" in completed.stdout and (out / "report.md").is_file()
    logs = json.loads((out / "metrics.json").read_text())["log_history"]
    train = [entry for entry in logs if "env/episodes" in entry]
    assert len(train) == 1 and train[0]["env/episodes"] == 4 and train[0]["env/errors"] == 0
    # The micro starter plays the served easy WebShop as it plays it locally: every action well-formed.
    assert train[0]["env/invalid_action_rate"] == 0


class _KillOnce:
    """Environment factory alternating between two servers; the first step of the second round of steps on
    server A kills A (SIGKILL) and starts it again on the same port, so the episodes in flight on A are lost."""

    def __init__(self, server_a: Server, url_b: str) -> None:
        self.server_a, self.url_b, self.built, self.killed = server_a, url_b, 0, False

    def __call__(self) -> OpenEnvEnv:
        self.built += 1
        url = self.server_a.url if self.built % 2 else self.url_b
        env = OpenEnvEnv(url, action_field="text")
        if url == self.server_a.url:
            original, steps = env.step, [0]

            def step(action: str):
                steps[0] += 1
                if steps[0] == 2 and not self.killed:
                    self.killed = True
                    self.server_a.kill()
                    self.server_a.start()  # back for the next training step; this session is gone
                return original(action)

            env.step = step
        return env


@pytest.mark.integration
def test_a_server_killed_mid_episode_fails_its_episodes_and_training_goes_on(tmp_path, tiny_tokenizer, webshop_server):
    server_a = Server("webshop-mini", "--split", "train")
    try:
        server_a.start()
        factory = _KillOnce(server_a, webshop_server.url)
        trainer = _trainer(tmp_path, tiny_tokenizer, factory)
        trainer.train()
        assert factory.killed
        logs = [entry for entry in trainer.state.log_history if "loss" in entry]
        assert trainer.state.global_step == 2 and len(logs) == 2
        # Step 1: the two episodes on A failed (kind "exception"); the two on B were played to their end.
        assert (logs[0]["env/errors"], logs[0]["env/errors/exception"], logs[0]["env/episodes"]) == (2, 2, 4)
        # Step 2: the restarted server gives new sessions at the next reset: no failure.
        assert logs[1]["env/errors"] == 0
        trainer.close_environments()
    finally:
        server_a.stop()
