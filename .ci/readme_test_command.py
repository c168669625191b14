"""Print a command README.md gives: the first line starting with PREFIX in the bash block under SECTION.

    python .ci/readme_test_command.py                                   # the test command ("Run the tests", pytest)
    python .ci/readme_test_command.py "Run the demo" "accelerate launch"  # the demo command

CI runs exactly these commands, so README and CI cannot drift apart.
"""

import re
import sys
from pathlib import Path

title = sys.argv[1] if len(sys.argv) > 1 else "Run the tests"
prefix = sys.argv[2] if len(sys.argv) > 2 else "pytest"
text = Path(__file__).resolve().parents[1].joinpath("README.md").read_text(encoding="utf-8")
section = re.search(rf"^#+ {re.escape(title)}\s*$(.*?)(?=^#+ |\Z)", text, flags=re.M | re.S)
if section is None:
    sys.exit(f"README.md has no {title!r} section: CI cannot know the command.")
block = re.search(r"```(?:bash|sh|console)?\n(.*?)```", section.group(1), flags=re.S)
if block is None:
    sys.exit(f"README.md's {title!r} section has no fenced code block.")
commands = [line.strip() for line in block.group(1).splitlines() if line.strip().startswith(prefix)]
if len(commands) != 1:
    sys.exit(f"Expected exactly one {prefix!r} command under {title!r}, found {commands}.")
print(commands[0])
