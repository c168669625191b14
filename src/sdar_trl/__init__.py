"""sdar_trl: SDAR (Self-Distilled Agentic Reinforcement Learning) for the Hugging Face TRL stack.

```python
from sdar_trl import SDARConfig, SDARTrainer
```
"""

from .config import METHOD_PRESETS, SDARConfig
from .loss import (
    compute_gate,
    compute_opsd_loss,
    compute_rlsd_advantages,
    compute_rlsd_weight,
    compute_sdar_loss,
    compute_skill_sd_loss,
)
from .trainer import SDARTrainer

__version__ = "0.1.0.dev0"

__all__ = [
    "METHOD_PRESETS",
    "SDARConfig",
    "SDARTrainer",
    "__version__",
    "compute_gate",
    "compute_opsd_loss",
    "compute_rlsd_advantages",
    "compute_rlsd_weight",
    "compute_sdar_loss",
    "compute_skill_sd_loss",
]
