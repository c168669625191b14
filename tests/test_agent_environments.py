"""The shipped environments inside agent mode: expert responses, decoded by the trainer's real pipeline, win."""

from __future__ import annotations

import pytest
from datasets import Dataset

from sdar_trl import SDARConfig, SDARTrainer
from sdar_trl.environments import make_env
from sdar_trl.skills import SkillBank
from sdar_trl.testing import build_tiny_model, patch_generation

ENVIRONMENTS = [
    ("webshop-mini", "webshop", {"split": "test", "difficulty": "easy"}),
    ("searchqa-mini", "searchqa", {"split": "test", "difficulty": "easy"}),
    ("alfworld-mini", "alfworld", {"split": "valid_unseen", "difficulty": "easy"}),
]


class DoneTracking:
    """Wraps an environment and remembers whether its episode ended, to know which copies are live."""

    def __init__(self, env):
        self.env, self.done = env, False

    def reset(self, *, seed=None, options=None):
        self.done = False
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        result = self.env.step(action)
        self.done = result[2] or result[3]
        return result

    def __getattr__(self, name):
        return getattr(self.env, name)


@pytest.mark.integration
@pytest.mark.parametrize(("name", "skills", "kwargs"), ENVIRONMENTS, ids=[e[0] for e in ENVIRONMENTS])
def test_expert_wins_through_the_trainer_pipeline(tmp_path, tiny_tokenizer, name, skills, kwargs):
    try:
        make_env(name, **kwargs)
    except ImportError as error:  # an environment module still missing in a partial checkout
        pytest.skip(str(error))
    bank = SkillBank.from_package(skills)
    trainer = SDARTrainer(
        build_tiny_model(tiny_tokenizer),
        args=SDARConfig(
            output_dir=str(tmp_path),
            per_device_train_batch_size=4,
            num_generations=2,
            report_to="none",
            bf16=False,
            max_steps=1,
            max_observation_length=None,
            disable_tqdm=True,
        ),
        train_dataset=Dataset.from_list([{"seed": i} for i in range(4)]),
        processing_class=tiny_tokenizer,
        env_factory=lambda: DoneTracking(make_env(name, **kwargs)),
        skill_bank=bank,
    )

    def respond(text, call, position):
        live = [env for env in trainer._envs.train[:4] if not env.done]  # the 4 trajectories, in order
        return live[position].expert_response()

    patch_generation(trainer, respond)
    batch = trainer._agent_generate_and_score([{"seed": 0}, {"seed": 0}, {"seed": 1}, {"seed": 1}])
    assert trainer._metrics["train"]["env/success"] == [1.0]
    assert trainer._metrics["train"]["env/invalid_action_rate"] == [0.0]
    # Every step of a won episode has the same positive reward; groups are all-equal, so advantages are 0.
    assert batch["advantages"].abs().max() < 1e-4
    assert batch["teacher_row_mask"].all()  # every task type gets at least the general skills
