"""SDAR on ALFWorld: the offline starter agent on `alfworld-mini` by default, or any model and the real benchmark.

CPU demo (offline, a few minutes):

    accelerate launch examples/alfworld.py

Any other model gets the paper's settings for this benchmark (docs/recipes.md); a recipe spells them out:

    accelerate launch examples/alfworld.py --config recipes/alfworld/qwen2.5-7b-instruct.yaml

LoRA + 4-bit on one consumer GPU (add --use_vllm true for vLLM generation; see the README):

    accelerate launch examples/alfworld.py --model_name_or_path Qwen/Qwen2.5-1.5B-Instruct \
        --use_peft --load_in_4bit --bf16

The run's first lines list the settings in force and where each came from (starter demo, paper, recipe, command
line). Every SDARConfig / TrainingArguments / ModelConfig flag is accepted; `--help` lists them.
"""

from _common import main

if __name__ == "__main__":
    main(default_env="alfworld-mini", skills_name="alfworld", history_length=2, invalid_action_penalty=0.1)
