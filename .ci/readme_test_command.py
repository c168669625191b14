"""Print the test command README.md gives (first line of the bash block under "Run the tests").

CI runs exactly that command, so README and CI cannot drift apart.
"""

import re
import sys
from pathlib import Path

text = Path(__file__).resolve().parents[1].joinpath("README.md").read_text(encoding="utf-8")
section = re.search(r"^#+ Run the tests\s*$(.*?)(?=^#+ |\Z)", text, flags=re.M | re.S)
if section is None:
    sys.exit("README.md has no 'Run the tests' section: CI cannot know the test command.")
block = re.search(r"```(?:bash|sh|console)?\n(.*?)```", section.group(1), flags=re.S)
if block is None:
    sys.exit("README.md's 'Run the tests' section has no fenced code block.")
commands = [line.strip() for line in block.group(1).splitlines() if line.strip().startswith("pytest")]
if len(commands) != 1:
    sys.exit(f"Expected exactly one pytest command under 'Run the tests', found {commands}.")
print(commands[0])
