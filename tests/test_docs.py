"""README and examples stay in sync, and the documented config table covers every SDARConfig field."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

from trl import GRPOConfig

from sdar_trl import SDARConfig

ROOT = Path(__file__).resolve().parents[1]


def _quickstart_block() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quickstart", 1)[1]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def test_readme_quickstart_is_the_example_line_for_line():
    example = (ROOT / "examples" / "quickstart.py").read_text(encoding="utf-8")
    assert _quickstart_block().strip() in example


def test_readme_gives_the_test_command_ci_runs():
    command = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "readme_test_command.py")], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert command.startswith("pytest ")
    assert "not slow" in command


def test_trainer_page_documents_every_sdar_field():
    page = (ROOT / "docs" / "trainer.md").read_text(encoding="utf-8")
    inherited = {f.name for f in dataclasses.fields(GRPOConfig)}
    missing = [
        f.name for f in dataclasses.fields(SDARConfig) if f.name not in inherited and f"| `{f.name}` |" not in page
    ]
    assert not missing, f"docs/trainer.md configuration table lacks {missing}"
