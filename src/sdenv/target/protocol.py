"""The one result protocol between target code and the host.

A target process reports each result as one line on stdout: ``@@SDENV-RESULT@@ {json object}``,
written and flushed as soon as it is known. A tool with one answer (the drift inventory, the
probe's facts) writes one such line; the smoke target writes one per check, each carrying its
``"check"`` name, so the host can act on a result while later checks still run. Anything else
on stdout (a package's chatter) is ignored; a process that ends without a result line crashed,
whatever it printed. Both sides import this module: ``emit`` in the target, ``results`` /
``last_result`` in the host. Standard library only.
"""

from __future__ import annotations

import json
import sys
from typing import Any

MARKER = "@@SDENV-RESULT@@"


def emit(record: dict[str, Any]) -> None:
    """Write one result line (after a newline: the line starts with the marker whatever was
    printed before without one) and flush, so a crash right after cannot lose it."""
    sys.stdout.flush()
    sys.stdout.write("\n" + MARKER + " " + json.dumps(record, default=str) + "\n")
    sys.stdout.flush()


def parse_line(line: str) -> dict[str, Any] | None:
    """The record of one stdout line, or None when it is not a result line."""
    if not line.startswith(MARKER):
        return None
    try:
        record = json.loads(line[len(MARKER) :])
    except ValueError:  # a line cut short by a crash mid-write carries no result
        return None
    return record if isinstance(record, dict) else None


def results(stdout: str) -> list[dict[str, Any]]:
    """Every result record of a process's stdout, in the order written."""
    found = (parse_line(line) for line in stdout.splitlines())
    return [record for record in found if record is not None]


def last_result(stdout: str) -> dict[str, Any] | None:
    """The last result record (a one-answer tool's answer), or None: no result was written."""
    found = results(stdout)
    return found[-1] if found else None
