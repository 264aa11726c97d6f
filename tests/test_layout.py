"""The code's shape: short functions, and a test tree that mirrors the package."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 60  # a function longer than this needs its reason beside its def: "# long: WHY"


def long_functions(limit: int = MAX_LINES) -> list[str]:
    """Functions of selfsup/ over ``limit`` lines (def to last line) that give no reason."""
    found = []
    for path in sorted((ROOT / "selfsup").rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > limit and "# long:" not in lines[node.lineno - 1]:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_is_over_60_lines_without_a_reason():
    assert long_functions() == []


def test_the_test_tree_mirrors_the_package():
    packages = {p.name for p in (ROOT / "selfsup").iterdir() if (p / "__init__.py").exists()}
    folders = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and any(p.glob("test_*.py"))}
    assert folders <= packages, folders - packages
