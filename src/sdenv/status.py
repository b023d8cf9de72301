"""The one vocabulary of check outcomes, shared by lock checks, probe checks, smoke and verify.

A ``Literal`` rather than an enum: the values are what every ``--json`` output already carries,
and target-side code (standard library only, Python 3.10) compares plain strings.
"""

from __future__ import annotations

from typing import Literal

Status = Literal["pass", "warn", "fail", "skip"]
# What smoke and verify report: a smoke check or a verify part never only warns.
Outcome = Literal["pass", "fail", "skip"]

PASS: Literal["pass"] = "pass"
WARN: Literal["warn"] = "warn"
FAIL: Literal["fail"] = "fail"
SKIP: Literal["skip"] = "skip"
