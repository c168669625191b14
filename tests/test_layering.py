"""Import layering of the package (issue 31): agent mode and the privileged context never reach back up.

Module-level imports (those that run when a module loads; not the ones under `if TYPE_CHECKING:` or inside a
function): `sdar_trl.agent` imports neither the trainer nor TRL/transformers, `sdar_trl.context` imports neither the
SFT module nor anything above it, and the package's modules form no cycle. The environments form no cycle even
counting the imports inside functions (alfworld's world → engine → expert loop was one).
"""

from __future__ import annotations

import ast
from pathlib import Path

import sdar_trl

ROOT = Path(sdar_trl.__file__).parent


def _module_name(path: Path) -> str:
    parts = ["sdar_trl", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_names(node: ast.Import | ast.ImportFrom, package: str) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    base = node.module or ""
    if node.level:
        anchor = package.split(".")
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, *([base] if base else [])])
    return {base, *(f"{base}.{alias.name}" for alias in node.names)}


def _package_of(path: Path) -> str:
    name = _module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _top_level_imports(path: Path) -> set[str]:
    """Absolute names of the modules `path` imports when it is loaded (`from . import x` gives `pkg.x` and `pkg`)."""
    package = _package_of(path)
    found: set[str] = set()
    body = list(ast.parse(path.read_text(encoding="utf-8")).body)
    while body:
        node = body.pop(0)
        if isinstance(node, ast.If) and not _is_type_checking(node):
            body.extend([*node.body, *node.orelse])
        elif isinstance(node, ast.Try):
            body.extend([*node.body, *node.orelse, *node.finalbody, *(s for h in node.handlers for s in h.body)])
        elif isinstance(node, ast.Import | ast.ImportFrom):
            found.update(_import_names(node, package))
    return found


def _all_imports(path: Path) -> set[str]:
    """Every import in `path`, inside functions too (what it may load at some point)."""
    package = _package_of(path)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.update(_import_names(node, package))
    return found


def _graph(imports=_top_level_imports) -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for target in imports(path):
            parts = target.split(".")
            # Importing `a.b.c` also loads the packages `a.b` and `a`.
            targets.update(".".join(parts[:end]) for end in range(2, len(parts) + 1))
        # A module's own packages are loaded before it: an import of one of them is no edge.
        graph[name] = {t for t in targets if t in modules and t != name and not name.startswith(t + ".")}
    return graph


def _imports_of(prefix: str) -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in ROOT.rglob("*.py")}
    return {
        name: _top_level_imports(path)
        for name, path in modules.items()
        if name == prefix or name.startswith(prefix + ".")
    }


def test_agent_package_imports_neither_the_trainer_nor_trl():
    banned = (
        "sdar_trl.trainer",
        "sdar_trl.agent_mode",
        "sdar_trl.teacher_branch",
        "sdar_trl.config",
        "trl",
        "transformers",
    )
    for module, targets in _imports_of("sdar_trl.agent").items():
        bad = sorted(t for t in targets if any(t == b or t.startswith(b + ".") for b in banned))
        assert not bad, f"{module} imports {bad}: sdar_trl.agent must stay below the trainer and free of TRL"


def test_context_imports_nothing_above_it():
    banned = ("sdar_trl.sft", "sdar_trl.trainer", "sdar_trl.agent", "sdar_trl.teacher", "trl", "transformers", "torch")
    for module, targets in _imports_of("sdar_trl.context").items():
        bad = sorted(t for t in targets if any(t == b or t.startswith(b + ".") for b in banned))
        assert not bad, f"{module} imports {bad}: the privileged context is a bottom layer (sft imports it)"


def test_sft_takes_the_context_from_the_context_module():
    assert "sdar_trl.context" in _imports_of("sdar_trl.sft")["sdar_trl.sft"]


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_environments_have_no_import_cycle_even_inside_functions():
    prefix = "sdar_trl.environments"
    graph = {
        name: {t for t in targets if t.startswith(prefix + ".")}
        for name, targets in _graph(_all_imports).items()
        if name.startswith(prefix + ".")
    }
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
