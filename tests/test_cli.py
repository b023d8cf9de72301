"""The command line loads only the command it runs; every command still shows in --help."""

from __future__ import annotations

import subprocess
import sys

from sdenv.cli import build_parser, commands


def _modules_after(args: list[str]) -> set[str]:
    code = (
        f"import sys; from sdenv.cli import main; main({args!r}); "
        "print('MODULES', *sorted(sys.modules), file=sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES ")]
    return set(line.split()[1:])


def test_a_command_imports_no_other_command() -> None:
    loaded = _modules_after(["probe", "--no-torch", "--json"])
    assert "sdenv.cli.probe" in loaded
    others = {f"sdenv.cli.{name}" for name in commands()} - {"sdenv.cli.probe"}
    assert not loaded & others
    assert not {m for m in loaded if m.split(".")[0] in ("pip_audit", "docker", "ray")}


def test_help_lists_every_command_module() -> None:
    text = build_parser("probe").format_help()
    for name in commands():
        assert name in text
    assert commands()["lock"].startswith("pin a compatible")  # docstring, prefix stripped


def test_the_full_parser_registers_every_command() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == set(commands())  # type: ignore[attr-defined]
