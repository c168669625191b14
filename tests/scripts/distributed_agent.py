"""Two-process CPU run of SDARTrainer in agent mode (launched by tests/test_distributed.py through torchrun).

The two processes play tasks whose episodes have different lengths (seed-dependent), so they hold
different numbers of live episodes and step samples: the run must neither deadlock nor let the
processes' backward counts drift. Prints one JSON line from the main process.

With a second argument `sharded`, `_weights_sharded()` reports FSDP / ZeRO-3 (simulated on plain DDP):
then every forward outside generation (teacher, old/reference log-probs) must run as often on both
processes, since sharded weights are gathered by every forward. `nograd_forwards` counts them per rollout.
"""

import json
import os
import sys

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from _leave import leave_together
from accelerate.utils import gather_object
from datasets import Dataset

from sdar_trl import SDARConfig, SDARTrainer
from sdar_trl.skills import Skill, SkillBank
from sdar_trl.testing import ScriptedEnv, build_tiny_model, build_tiny_tokenizer


class SeedLengthEnv(ScriptedEnv):
    """Episodes of task `seed` last 1 + seed steps, so the processes' rollouts differ in length."""

    def reset(self, *, seed=None, options=None):
        result = super().reset(seed=seed, options=options)
        self.length = 1 + self.seed
        return result


class CountingTrainer(SDARTrainer):
    def training_step(self, model, inputs, num_items_in_batch=None):
        before = self.backward_calls
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.per_step.append(self.backward_calls - before)
        return loss

    def _agent_generate_and_score(self, rows):
        before = self.forwards
        batch = super()._agent_generate_and_score(rows)
        self.samples.append(int(batch["completion_mask"].any(dim=1).sum()))  # real step samples (not padding rows)
        self.nograd_forwards.append(self.forwards - before)
        return batch

    def _agent_generate(self, prompts):
        self.generating = True
        try:
            return super()._agent_generate(prompts)
        finally:
            self.generating = False

    def count_forward(self, module, args, kwargs):
        if not torch.is_grad_enabled() and not self.generating:
            self.forwards += 1

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.backward_calls += 1
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def main(output_dir: str, sharded: bool = False) -> None:
    if sharded:
        CountingTrainer._weights_sharded = lambda self: True
    tokenizer = build_tiny_tokenizer()
    # Rank 0 gets tasks 0 and 1 (2 copies each), rank 1 gets tasks 4 and 5: episodes of 1-2 vs 5-6 steps.
    dataset = Dataset.from_list([{"seed": s} for s in (0, 1, 4, 5)])
    args = SDARConfig(
        output_dir=output_dir,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        num_generations=2,
        max_completion_length=8,
        max_steps=2,
        logging_steps=1,
        report_to="none",
        bf16=False,
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
        shuffle_dataset=False,
    )
    bank = SkillBank(general=[Skill("Finish", "Say win when ready.", "Always.")])
    trainer = CountingTrainer(
        build_tiny_model(tokenizer),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        env_factory=SeedLengthEnv,
        skill_bank=bank,
    )
    trainer.backward_calls, trainer.per_step, trainer.samples = 0, [], []
    trainer.forwards, trainer.nograd_forwards, trainer.generating = 0, [], False
    trainer.model.register_forward_pre_hook(trainer.count_forward, with_kwargs=True)
    trainer.train()
    per_rank = gather_object(
        [
            {
                "rank": trainer.accelerator.process_index,
                "per_step": trainer.per_step,
                "samples": trainer.samples,
                "nograd_forwards": trainer.nograd_forwards,
            }
        ]
    )
    if trainer.accelerator.is_main_process:
        logs = [entry for entry in trainer.state.log_history if "loss" in entry]
        print("RESULT " + json.dumps({"per_rank": per_rank, "logs": logs}), flush=True)
    leave_together(trainer)


if __name__ == "__main__":
    main(sys.argv[1], sharded=sys.argv[2:] == ["sharded"])
