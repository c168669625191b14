"""Two-process CPU run of SDARTrainer (launched by tests/test_distributed.py through `accelerate launch`).

Prints one JSON line from the main process with the logged sdar/* metrics, so the test can check that
metrics were gathered across processes and training ran in lockstep.
"""

import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from _leave import leave_together
from accelerate.utils import gather_object
from datasets import Dataset

from sdar_trl import SDARConfig, SDARTrainer
from sdar_trl.testing import build_tiny_model, build_tiny_tokenizer


def reward(completions, **kwargs):
    return [len(c[0]["content"]) / 10.0 for c in completions]


class RecordingTrainer(SDARTrainer):
    """Keeps each process's local (value, token count) pairs so the test can redo the cross-process mean."""

    def _log_sdar_stats(self, mode, stats, mask):
        self.local_stats.append(
            {
                "rank": self.accelerator.process_index,
                "count": mask.sum().item(),
                **{k: v.item() for k, v in stats.items()},
            }
        )
        super()._log_sdar_stats(mode, stats, mask)


def main(output_dir: str) -> None:
    tokenizer = build_tiny_tokenizer()
    dataset = Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": f"What is {i} + {i}?"}], "privileged_context": f"It is {2 * i}."}
            for i in range(16)
        ]
    )
    args = SDARConfig(
        output_dir=output_dir,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=8,
        max_steps=2,
        logging_steps=1,
        report_to="none",
        bf16=False,
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = RecordingTrainer(
        build_tiny_model(tokenizer), reward_funcs=reward, args=args, train_dataset=dataset, processing_class=tokenizer
    )
    trainer.local_stats = []
    trainer.train()
    local_stats = gather_object(trainer.local_stats)
    if trainer.accelerator.is_main_process:
        records = [{k: v for k, v in r.items() if k.startswith("sdar/")} for r in trainer.state.log_history]
        result = {
            "num_processes": trainer.accelerator.num_processes,
            "records": [r for r in records if r],
            "local_stats": local_stats,
        }
        print("RESULT " + json.dumps(result), flush=True)
    leave_together(trainer)


if __name__ == "__main__":
    main(sys.argv[1])
