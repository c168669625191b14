"""Package surface: lazy top-level exports, and environments usable without loading torch/TRL."""

from __future__ import annotations

import subprocess
import sys

import sdar_trl


def test_every_exported_name_resolves():
    for name in sdar_trl.__all__:
        assert getattr(sdar_trl, name) is not None, name
    assert set(dir(sdar_trl)) >= set(sdar_trl.__all__)


def test_environments_do_not_import_torch_or_trl():
    code = (
        "import sys, sdar_trl.environments, sdar_trl.actions, sdar_trl.skills, sdar_trl.rollout\n"
        "print(sorted(m for m in ('trl', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
