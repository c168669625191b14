"""sdar_trl: SDAR (Self-Distilled Agentic Reinforcement Learning) for the Hugging Face TRL stack.

```python
from sdar_trl import SDARConfig, SDARTrainer
```

The trainer, config and losses are imported lazily (PEP 562), so `sdar_trl.environments`,
`sdar_trl.actions` and `sdar_trl.skills` can be used without loading torch and TRL.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import METHOD_PRESETS, SDARConfig
    from .loss import (
        compute_gate,
        compute_opsd_loss,
        compute_rlsd_advantages,
        compute_rlsd_weight,
        compute_sdar_loss,
        compute_skill_sd_loss,
        compute_step_advantages,
    )
    from .skills import Skill, SkillBank
    from .trainer import SDARTrainer

__version__ = "0.1.0.dev0"

_LAZY = {
    "METHOD_PRESETS": "config",
    "SDARConfig": "config",
    "SDARTrainer": "trainer",
    "Skill": "skills",
    "SkillBank": "skills",
    "compute_gate": "loss",
    "compute_opsd_loss": "loss",
    "compute_rlsd_advantages": "loss",
    "compute_rlsd_weight": "loss",
    "compute_sdar_loss": "loss",
    "compute_skill_sd_loss": "loss",
    "compute_step_advantages": "loss",
}

__all__ = [
    "METHOD_PRESETS",
    "SDARConfig",
    "SDARTrainer",
    "Skill",
    "SkillBank",
    "__version__",
    "compute_gate",
    "compute_opsd_loss",
    "compute_rlsd_advantages",
    "compute_rlsd_weight",
    "compute_sdar_loss",
    "compute_skill_sd_loss",
    "compute_step_advantages",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    raise AttributeError(f"module 'sdar_trl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
