"""The supervised fine-tuning pieces of the starter builds (scripts/build_starter.py), beside the loader.

`PlainLossSFTTrainer` is TRL's `SFTTrainer` with the model's own cross-entropy as its loss, scored from the
batch's first labelled token on; `copy_rows` makes the synthetic copying rows a from-scratch build starts with.
Imports TRL: only the build script uses this module (`sdar_trl.starter` never imports it).
"""

from __future__ import annotations

import random

import torch
from trl import SFTTrainer

__all__ = ["PlainLossSFTTrainer", "copy_rows"]


class PlainLossSFTTrainer(SFTTrainer):
    """`SFTTrainer` whose loss is the model's own cross-entropy over full logits.

    TRL's default loss path (`fused_lm_head=True`, a chunked log-prob kernel) compacts to the labelled positions
    only on Triton devices; on a CPU it scores every prompt position in Python-level vocabulary tiles, and a smoke
    build with it held 9 GB for batches of 8 rows. The plain loss is what the shipped build was measured with.
    Metrics other than the loss (entropy, token accuracy) are not logged on this path.
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]  # (B, T), -100 outside the completion
        # Score only the positions from the batch's first labelled token on: the prompt positions need no logits,
        # and SmolLM2's 49k-entry LM head is about a fifth of each forward and backward.
        labelled = (labels != -100).any(dim=0)  # (T,)
        first = int(labelled.float().argmax()) if bool(labelled.any()) else labels.size(1) - 1
        keep = labels.size(1) - max(first - 1, 0)  # logits at position t predict token t + 1
        outputs = model(
            input_ids=inputs["input_ids"],  # (B, T)
            attention_mask=inputs.get("attention_mask"),  # (B, T)
            logits_to_keep=keep,
            use_cache=False,
        )
        logits = outputs.logits[:, :-1].float()  # (B, K - 1, V) predictions of tokens T - K + 1 .. T - 1
        targets = labels[:, labels.size(1) - keep + 1 :]  # (B, K - 1)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100, reduction="sum"
        )
        count = num_items_in_batch if num_items_in_batch is not None else (targets != -100).sum().clamp(min=1)
        loss = loss / count
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # as Trainer.compute_loss: DDP averages the gradients
        return (loss, outputs) if return_outputs else loss


def copy_rows(tokenizer, count: int, *, seed: int, span_tokens: int = 16) -> list[dict[str, str]]:
    """Rows whose second half repeats their first: `completion` = span + " |" + span (empty prompt).

    A span is `span_tokens` random word pieces of the tokenizer's vocabulary, so the only way to predict
    the repeat is to look back and copy; that is the skill the agent needs for names it never saw in
    training. Pieces start with a space, so the span tokenizes the same way both times.
    """
    rng = random.Random(seed)
    vocab = [
        piece
        for piece in (tokenizer.convert_tokens_to_string([t]) for t in tokenizer.get_vocab())
        if piece.startswith(" ") and piece[1:].isalnum()
    ]
    rows = []
    for _ in range(count):
        span = "".join(rng.choice(vocab) for _ in range(span_tokens))
        rows.append({"prompt": "", "completion": f"{span} |{span}{tokenizer.eos_token}"})
    return rows
