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


def test_loading_a_starter_does_not_import_the_build_code():
    """`sdar_trl.starter` loads starters by name without the agent loop, TRL or transformers (issue 31)."""
    code = (
        "import sys\n"
        "from sdar_trl.starter import DEMO_ENVS, load_starter, resolve_model_name, starter_model_path\n"
        "heavy = ('sdar_trl.starter.build', 'sdar_trl.rollout', 'sdar_trl.teacher', 'sdar_trl.config', 'trl', "
        "'transformers', 'gguf')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    import sdar_trl.starter as starter

    assert callable(starter.play_with_model) and callable(starter.download_base)  # served from starter.build


def test_webshop_vocabulary_is_package_data():
    """webshop-mini's vocabulary is a data file inside the package (the wheel ships the package directory whole)."""
    from importlib import resources

    from sdar_trl.environments.webshop._vocab import CATEGORY_SPECS

    assert resources.files("sdar_trl.environments.webshop").joinpath("vocab.json").is_file()
    assert len(CATEGORY_SPECS) == 7 and all(isinstance(spec.types, tuple) for spec in CATEGORY_SPECS)
