"""sdenv.target: what runs inside target interpreters imports only the standard library (plus
the packages under test, lazily), and speaks one result protocol."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from sdenv import _target
from sdenv.target import protocol

TARGET = Path(_target.TARGET_PACKAGE)
# Imported inside the check functions only: the packages a smoke check tests.
UNDER_TEST = {"torch", "xformers", "diffusers", "transformers", "accelerate", "safetensors"}
UNDER_TEST |= {"torchao"}


def _imports(tree: ast.Module) -> list[tuple[str, bool]]:
    """(top-level module, imported at module level) for every import of a module."""
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name.split(".")[0], id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, id(node) in top_level))
    return found


@pytest.mark.parametrize("path", sorted(TARGET.glob("*.py")), ids=lambda p: p.name)
def test_target_modules_import_only_the_standard_library(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    for module, at_top in _imports(tree):
        top = module.split(".")[0]
        if top == "sdenv":  # its own package, which the host stages beside it
            assert module.startswith("sdenv.target"), (path.name, module)
        elif top in UNDER_TEST:
            assert not at_top, f"{path.name}: {module} imported at module level"
        else:
            assert top in sys.stdlib_module_names or top == "__future__", (path.name, module)


def test_the_checker_sees_a_third_party_import() -> None:
    tree = ast.parse(
        "import packaging.version\nfrom rich import print\ndef f():\n    import torch\n"
    )
    tops = [(m.split(".")[0], top) for m, top in _imports(tree)]
    assert tops == [("packaging", True), ("rich", True), ("torch", False)]
    assert "packaging" not in sys.stdlib_module_names and "rich" not in sys.stdlib_module_names


def test_protocol_round_trip_ignores_chatter_and_torn_lines() -> None:
    out = "\n".join(
        [
            "a package printed this",
            protocol.MARKER + ' {"check": "torch", "status": "pass"}',
            protocol.MARKER + ' {"check": "diff',  # cut short by a crash
            protocol.MARKER + " [1, 2]",  # not an object
            protocol.MARKER + ' {"check": "diffusers", "status": "fail"}',
        ]
    )
    assert [r["check"] for r in protocol.results(out)] == ["torch", "diffusers"]
    assert protocol.last_result(out) == {"check": "diffusers", "status": "fail"}
    assert protocol.last_result("Traceback ...\nKeyError: 'x'\n") is None


def test_staged_target_runs_isolated_and_answers_once_per_check(tmp_path: Path) -> None:
    root = _target.stage(tmp_path)
    assert (root / "sdenv" / "target" / "protocol.py").is_file()
    cmd = _target.command(sys.executable, root, "smoke", ["env", "env"], isolated=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=root)
    records = protocol.results(proc.stdout)
    assert [r["check"] for r in records] == ["env", "env"]
    assert all(r["status"] == "pass" for r in records)
    # The staging dir is not where packages under test come from: not in the facts' sys.path.
    assert str(root) not in records[0]["facts"]["sys_path"]


def test_child_env_puts_pythonpath_first_and_goes_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/old")
    env = _target.child_env(pythonpath=["/new"])
    assert env["PYTHONPATH"].split(":") == ["/new", "/old"]
    assert env["HF_HUB_OFFLINE"] == "1" and env["PYTHONFAULTHANDLER"] == "1"
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert "HF_HUB_OFFLINE" not in _target.child_env(offline=False)
