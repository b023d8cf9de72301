"""The ``sdenv`` command line: parse arguments, call the core, render results.

Each subcommand lives in its own module in this package, named as the command, and exposes
``register(subparsers)``; modules are discovered, so a capability adds its command without
touching this file. Only the module of the command being run is imported (the others can take a
second to import: pip-audit, the Docker SDK, Ray); the rest appear in ``--help`` with the first
line of their module docstring, read without importing them. Core code raises ``SdenvError``s;
here they become one line and an exit code.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path

from sdenv import __version__
from sdenv._cleanup import Interrupted, handle_signals, reap_stale
from sdenv.cli._output import error_line, fit_pipes
from sdenv.errors import SdenvError


@cache
def commands() -> dict[str, str]:
    """Command name -> one-line summary, from each module's docstring (parsed, not imported)."""
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        source = Path(__path__[0], f"{info.name}.py").read_text(encoding="utf-8")
        doc = ast.get_docstring(ast.parse(source)) or ""
        first = doc.strip().splitlines()[0] if doc.strip() else info.name
        found[info.name] = first.split("``: ", 1)[-1]  # "``sdenv x``: what" -> "what"
    return found


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with ``command``'s real arguments (every command's when None: docs, tests)."""
    parser = argparse.ArgumentParser(
        prog="sdenv", description="Reproducible Stable Diffusion 3.5 FP8 environments."
    )
    parser.add_argument("--version", action="version", version=f"sdenv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, summary in commands().items():
        if command is None or name == command:
            importlib.import_module(f"{__name__}.{name}").register(sub)
        else:
            sub.add_parser(name, help=summary.replace("%", "%%"), add_help=False)
    return parser


def _command_in(argv: Sequence[str]) -> str:
    """The command named on the line (its first word that is one), or "" for none."""
    return next((a for a in argv if a in commands()), "")


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_in(words))
    args = parser.parse_args(words)
    # What a SIGKILLed run left behind (its throwaway dirs) goes before this run makes its own.
    reap_stale()
    fit_pipes()
    try:
        with handle_signals():
            code: int = args.func(args)
    except SdenvError as exc:
        error_line(str(exc))
        return exc.exit_code
    except Interrupted as exc:
        error_line(f"{exc}: stopped child processes and removed temp dirs")
        return exc.exit_code
    except KeyboardInterrupt:  # SIGINT outside the handler (a test calling main in a thread)
        error_line("interrupted by SIGINT")
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
