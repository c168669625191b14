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


def _python_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "docs" / page).read_text(encoding="utf-8"), flags=re.S)


def test_agents_page_environment_example_runs_and_passes_the_checker():
    example = next(block for block in _python_blocks("agents.md") if "class GuessNumberEnv" in block)
    assert len(example.strip().splitlines()) <= 50
    namespace: dict = {}
    exec(compile(example, "docs/agents.md", "exec"), namespace)  # ends with check_agent_environment(...)
    env = namespace["GuessNumberEnv"]()
    _, info = env.reset(seed=3)
    assert info["task_type"] == "guess"
    secret = env.secret
    assert env.step(f"guess {secret}")[1:3] == (1.0, True)


def test_agents_page_skill_example_runs(tmp_path, monkeypatch):
    example = next(block for block in _python_blocks("agents.md") if "bank.save" in block)
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "docs/agents.md", "exec"), {})
    assert (tmp_path / "skills.json").is_file()


def test_environments_page_example_runs():
    (example,) = _python_blocks("environments.md")
    exec(compile(example, "docs/environments.md", "exec"), {})


def test_every_doc_link_resolves():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to missing {target}"
