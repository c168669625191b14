"""TextWorld: text games generated with `tw-make` (or any TextWorld game you own) as an `AgentEnvironment`.

- `TextWorldEnv` (`make_env("textworld", game_files=...)`): plays one game file per episode through
  `textworld.start` (`pip install "sdar-trl[textworld]"`); see `sdar_trl.environments.textworld.adapter`.
"""

from .adapter import INSTALL_HINT, TextWorldEnv, resolve_game_files

__all__ = ["INSTALL_HINT", "TextWorldEnv", "resolve_game_files"]
