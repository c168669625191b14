"""make_env("textworld") without the extra names the install command (runs whether or not textworld is installed)."""

from __future__ import annotations

import sys

import pytest

from sdar_trl.environments import list_envs, make_env


def test_missing_textworld_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    assert "textworld" in list_envs()
    monkeypatch.setitem(sys.modules, "textworld", None)  # makes `import textworld` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "sdar-trl\[textworld\]"'):
        make_env("textworld", game_files=str(tmp_path))
