"""The root of sdenv's exception hierarchy.

Every subsystem derives its own small hierarchy from ``SdenvError`` (like pip-audit's
``ServiceError``); the CLI turns any of them into one line on stderr and ``exit_code``.
A skipped check is data in a result, never an exception.
"""

from __future__ import annotations


class SdenvError(Exception):
    """An expected failure with a message fit for a user: what went wrong and the fix."""

    exit_code: int = 1


class UsageError(SdenvError):
    """Bad input given by the user (a file, a field, an option): exit code 2."""

    exit_code = 2
