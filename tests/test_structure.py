"""The shape the code keeps: small modules and functions under src/ (issue 15's limits).

ruff's C90 caps each function's branching at 12 (pyproject.toml); length is not a ruff rule, so it
is checked here, from the source, the same way for every module.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "sdenv"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def _over_limits(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        name = path.relative_to(root.parent)
        if lines > MAX_MODULE_LINES:
            found.append(f"{name}: {lines} lines > {MAX_MODULE_LINES}")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{name}:{node.lineno} {node.name}: {length} lines")
    return found


def test_no_module_over_600_lines_and_no_function_over_80() -> None:
    assert _over_limits(SRC) == []


def test_the_limits_are_seen(tmp_path: Path) -> None:
    pkg = tmp_path / "sdenv"
    pkg.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(81))
    (pkg / "long.py").write_text(f"def f() -> None:\n{body}\n" + "\n" * 600)
    found = _over_limits(pkg)
    assert found == ["sdenv/long.py: 682 lines > 600", "sdenv/long.py:1 f: 82 lines"]
