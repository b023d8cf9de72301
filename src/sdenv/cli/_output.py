"""Shared rendering: rich for people (on stderr for progress), JSON for machines (stdout)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.table import Table

from sdenv._json import dumps

# Results go to stdout; progress, warnings and errors to stderr so `--json | jq` stays clean.
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
# Piped (CI logs, `| grep`, `| less`) rich would lay tables out for 80 columns and cut the ids and
# paths in them; there is no screen to fit then, so lines are as long as their content.
PIPE_WIDTH = 4096


def fit_pipes() -> None:
    """Called once per run: a console that is not a terminal gets no width limit (unless COLUMNS
    says otherwise)."""
    for console in (out, err):
        if not console.is_terminal and "COLUMNS" not in os.environ:
            console.width = PIPE_WIDTH


def table(columns: Sequence[str], **kwargs: Any) -> Table:
    """A rich table whose cells fold instead of being cut: an id or a path is never shortened."""
    t = Table(**kwargs)
    for col in columns:
        t.add_column(col, overflow="fold")
    return t


@contextmanager
def progress(label: str, *, quiet: bool = False) -> Iterator[Callable[[str], None]]:
    """Progress of a long step on stderr: a spinner on a terminal; on a pipe or a CI log, where a
    spinner shows nothing, one line per new message."""
    if quiet:
        yield lambda msg: None
        return
    if err.is_terminal:
        with err.status(label) as status:
            yield lambda msg: status.update(msg)
        return
    last: list[str] = []

    def line(msg: str) -> None:
        if not last or last[-1] != msg:
            print(f"sdenv: {msg}", file=sys.stderr, flush=True)
            last[:] = [msg]

    # No line for the label itself: a run that fails at once stays one error line.
    yield line


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
