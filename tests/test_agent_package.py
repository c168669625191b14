"""`sdar_trl.agent` on its own, without a trainer: the step batch, the held-out loop and the environment pools."""

from __future__ import annotations

import pytest
import torch

from sdar_trl.agent import (
    EnvironmentPools,
    EpisodeRecord,
    RolloutResult,
    StepRecord,
    build_training_batch,
    play_held_out,
    shuffle_into_slices,
)
from sdar_trl.testing import ScriptedEnv


def _step(trajectory: int, group: int, step: int, *, valid: bool = True) -> StepRecord:
    return StepRecord(trajectory, group, step, "p", [1, 2], [3, 4], "r", "a", valid)


def test_training_batch_masks_failed_episodes_and_pads_with_dummy_rows():
    episodes = [EpisodeRecord(0, 0, reward=1.0), EpisodeRecord(1, 0, reward=0.0), EpisodeRecord(2, 0, reward=5.0)]
    episodes[2].env_error = "RuntimeError: boom"  # failed: no loss tokens, out of the group statistics
    steps = [_step(0, 0, 0), _step(1, 0, 0, valid=False), _step(2, 0, 0), _step(0, 0, 1)]
    result = RolloutResult(steps=steps, episodes=episodes)
    batch, rows = build_training_batch(result, pad_token_id=0, invalid_action_penalty=0.5, num_rows=6)
    assert len(rows) == 6 and rows[4].trajectory == -1  # two dummy rows after the four samples
    assert batch["completion_mask"].sum(dim=1).tolist() == [2, 2, 0, 2, 0, 0]
    # Group statistics over the valid samples only: rewards 1, -0.5 (invalid action), 1.
    valid = torch.tensor([1.0, -0.5, 1.0])
    expected = (valid - valid.mean()) / (valid.std() + 1e-6)
    torch.testing.assert_close(batch["advantages"][[0, 1, 3]], expected)
    assert batch["advantages"][[2, 4, 5]].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="num_rows=3 is smaller than the rollout's 4 step samples"):
        build_training_batch(result, pad_token_id=0, invalid_action_penalty=0.5, num_rows=3)


def test_slices_cover_every_row_once():
    batch = {"prompt_ids": torch.arange(7).unsqueeze(1), "num_items_in_batch": torch.tensor(7)}
    slices = shuffle_into_slices(batch, 3)
    assert [s["prompt_ids"].size(0) for s in slices] == [3, 2, 2]
    assert sorted(torch.cat([s["prompt_ids"] for s in slices]).flatten().tolist()) == list(range(7))
    assert all(s["num_items_in_batch"] is batch["num_items_in_batch"] for s in slices)  # shared entries


def test_held_out_loop_plays_this_processes_share_in_as_many_batches_as_the_busiest():
    played, progress = [], []

    def play(rows, group_ids):
        played.append(([row["seed"] for row in rows], group_ids))
        return RolloutResult(
            steps=[],
            episodes=[EpisodeRecord(i, g, row=r) for i, (r, g) in enumerate(zip(rows, group_ids, strict=True))],
        )

    rows = [{"seed": i} for i in range(7)]
    episodes = play_held_out(
        rows,
        play,
        batch_size=2,
        process_index=1,
        num_processes=2,
        max_over_processes=lambda count: 3,  # as if process 0 (4 rows) needed 2 and another process 3
        on_progress=lambda done, total: progress.append((done, total)),
    )
    assert played == [([1, 3], [0, 1]), ([5], [0]), ([], [])]
    assert [episode.row["seed"] for episode in episodes] == [1, 3, 5]
    assert progress == [(2, 3), (3, 3), (3, 3)]


def test_environment_pools_grow_drop_name_and_close():
    built = []

    def factory():
        built.append(ScriptedEnv())
        return built[-1]

    pools = EnvironmentPools(factory, eval_env_factory=lambda: ScriptedEnv(length=5))
    assert pools.name() == "factory"  # nothing pooled yet: the factory's name
    assert pools.get(2) == built and pools.get(1) == built[:1]  # reused, not rebuilt
    pools.drop([0])  # abandoned (timed out): replaced on the next request
    assert pools.get(2) == [built[1], built[2]] and pools.name() == "ScriptedEnv"
    assert pools.get(1, evaluation=True)[0].length == 5 and pools.eval != pools.train
    pools.close()
    assert pools.train == [] and pools.eval == [] and all(env.close_calls == 1 for env in built[1:])
    with pytest.raises(RuntimeError, match="no env_factory was given"):
        EnvironmentPools(None).get(1)
    with pytest.raises(TypeError, match="env_factory\\(\\) returned object, which lacks"):
        EnvironmentPools(object).get(1)
