"""The layering rule of docs/architecture.md: a package imports only the packages below it.

Every import statement of every module is read with `ast` (those inside functions too: a
lazy import is still a dependency), so an upward import fails here, naming the file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["storage", "camera", "engines", "pipeline", "edge"]  # bottom first, as docs/architecture.md


def imported(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in a module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def upward_imports() -> list[str]:
    rank = {name: i for i, name in enumerate(LAYERS)}
    wrong = []
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            for line, target in imported(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if rank.get(target, -1) > rank[package]:
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {target} (a higher layer)")
    return wrong


def test_no_package_imports_a_higher_layer():
    assert upward_imports() == []


def test_the_rule_is_the_one_docs_architecture_states():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert "`" + "` < `".join(LAYERS) + "`" in text


def test_the_check_sees_an_upward_import():
    tree = ast.parse("import os\nfrom edge.config import AppConfig\n\ndef f():\n    import pipeline.codec\n")
    assert imported(tree) == [(1, "os"), (2, "edge"), (5, "pipeline")]
