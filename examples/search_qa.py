"""SDAR on Search-QA: the offline starter agent on `searchqa-mini` by default, or any model and the real benchmark.

CPU demo (offline, a few minutes):

    accelerate launch examples/search_qa.py

A real model on a GPU (LoRA + 4-bit; add --use_vllm for vLLM generation; see the README):

    accelerate launch examples/search_qa.py --model_name_or_path Qwen/Qwen2.5-1.5B-Instruct \
        --use_peft --load_in_4bit --bf16 --max_steps 150 --per_device_train_batch_size 8 \
        --gradient_accumulation_steps 16 --num_generations 8 --max_completion_length 512

Every SDARConfig / TrainingArguments / ModelConfig flag is accepted; `--help` lists them.
"""

from _common import main

if __name__ == "__main__":
    main(default_env="searchqa-mini", skills_name="searchqa", history_length=4, invalid_action_penalty=0.01)
