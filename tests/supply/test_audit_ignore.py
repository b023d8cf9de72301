"""The audit's ignore file: every bad entry is one line naming file, entry, field and fix; the
shipped example parses and expires on its date. (How ignores apply to findings: test_audit.py.)"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from sdenv.supply.ignore import IgnoreFileError, load_ignore_file

TODAY = dt.date(2026, 11, 21)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[[ignore]]\nid = "X"\nreason = "r"\n', r"ignore\[0\]\.expires: required date"),
        ('[[ignore]]\nid = "X"\nexpires = 2027-01-01\n', r"ignore\[0\]\.reason: required"),
        ('[[ignore]]\nreason = "r"\nexpires = 2027-01-01\n', r"ignore\[0\]\.id: required"),
        ('[[ignore]]\nid = "X"\nreason = "r"\nexpires = "soon"\n', r"expires: required date"),
        ('[[ignore]]\nid = "X"\nreason = "r"\nexpires = 2027-01-01\nwhy = 1\n', r"\.why: unknown"),
        ("[[ignores]]\n", r"unknown table 'ignores'"),
        ("ignore = [", r"invalid TOML"),
    ],
)
def test_bad_ignore_file(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "i.toml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(IgnoreFileError, match=message):
        load_ignore_file(path, today=TODAY)


def test_shipped_example_ignore_file_is_valid(repo: Path) -> None:
    example = repo / "src" / "sdenv" / "data" / "audit-ignore.example.toml"
    ignores = load_ignore_file(example, today=dt.date(2026, 11, 21))
    assert [(r.id, r.package) for r in ignores.active] == [("GHSA-xxxx-xxxx-xxxx", "pillow")]
    # The same file the day after its entry's date: expired, reported, not applied.
    later = load_ignore_file(example, today=dt.date(2027, 4, 1))
    assert later.active == () and len(later.expired) == 1
