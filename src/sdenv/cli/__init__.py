"""The ``sdenv`` command line: parse arguments, call the core, render results.

Each subcommand lives in its own module in this package and exposes
``register(subparsers)``; modules are discovered, so a capability adds its command without
touching this file. Core code raises ``SdenvError``s; here they become one line and an exit code.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from sdenv import __version__
from sdenv._cleanup import Interrupted, handle_signals, reap_stale
from sdenv.cli._output import error_line, fit_pipes
from sdenv.errors import SdenvError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sdenv", description="Reproducible Stable Diffusion 3.5 FP8 environments."
    )
    parser.add_argument("--version", action="version", version=f"sdenv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
