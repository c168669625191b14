"""SDAR quickstart: two SDARTrainer steps on a tiny random model, offline, on CPU (about ten seconds).

    python examples/quickstart.py

The model and tokenizer are built in memory by `sdar_trl.testing`, so nothing is downloaded. Apart
from the environment settings at the top and the metric printout at the end, this is the README's
quickstart, line for line.
"""

import os

# Keep the Hugging Face stack offline and quiet; must happen before transformers/trl are imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from datasets import Dataset

from sdar_trl import SDARConfig, SDARTrainer
from sdar_trl.testing import build_tiny_model, build_tiny_tokenizer

tokenizer = build_tiny_tokenizer()  # offline byte-level BPE with the Qwen3 chat template
model = build_tiny_model(tokenizer)  # tiny random Qwen2; any causal LM is used the same way
prompt = [{"role": "user", "content": "What is 2 + 2?"}]
dataset = Dataset.from_dict({"prompt": [prompt] * 8, "privileged_context": ["Answer with one number."] * 8})


def reward_short(completions, **kwargs):  # toy reward: shorter completions score higher
    return [-float(len(c[0]["content"])) for c in completions]


args = SDARConfig(output_dir="outputs/quickstart", max_completion_length=16, max_steps=2, bf16=False, report_to="none")
trainer = SDARTrainer(model, reward_short, args=args, train_dataset=dataset, processing_class=tokenizer)
trainer.train()

# Every logged SDAR metric (see docs/metrics.md); TRL logs every `logging_steps` and at the last step.
for entry in trainer.state.log_history:
    sdar_metrics = {key: round(value, 4) for key, value in entry.items() if key.startswith("sdar/")}
    if sdar_metrics:
        print(f"step {entry['step']}: {sdar_metrics}")
