"""Shared rendering: rich for people (on stderr for progress), JSON for machines (stdout)."""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console

from sdenv._json import dumps

# Results go to stdout; progress, warnings and errors to stderr so `--json | jq` stays clean.
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def error_line(message: str) -> None:
    # One line, no rich markup interpretation: messages quote user input such as '[env]'.
    print(f"sdenv: error: {message}", file=sys.stderr)


def print_json(obj: Any) -> None:
    sys.stdout.write(dumps(obj) + "\n")
    sys.stdout.flush()


def status_style(status: str) -> str:
    """One colour scheme for every table: pass/fail/skip/warn and the FP8 verdicts."""
    return {
        "pass": "green",
        "ok": "green",
        "native": "green",
        "fail": "bold red",
        "error": "bold red",
        "unsupported": "red",
        "skip": "yellow",
        "skipped": "yellow",
        "warn": "yellow",
        "emulated": "yellow",
        "unverified": "yellow",
    }.get(status, "")


def styled(status: str) -> str:
    """``status`` as rich markup in its colour (plain when it has none: ``[]x[/]`` is invalid)."""
    style = status_style(status)
    return f"[{style}]{status}[/]" if style else status
