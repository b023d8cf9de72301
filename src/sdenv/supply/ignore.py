"""The audit's ignore file: ``[[ignore]]`` entries with an id, a reason and an expiry date.

Every entry must end, so that it gets reviewed: past its date it no longer applies and the audit
reports it as expired. A bad file is one line naming the file, the entry, the field and the fix.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from sdenv.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

DEFAULT_IGNORE_FILE = Path("audit-ignore.toml")
_FIELDS = ("id", "reason", "expires", "package")
_REQUIRED_TEXT = {
    "id": "give the advisory id (PYSEC-..., GHSA-..., CVE-...)",
    "reason": "say why the finding is acceptable",
}


class IgnoreFileError(UsageError):
    """An ignore file that cannot be used; the message names file, entry, field and fix."""


@dataclass(frozen=True)
class IgnoreRule:
    id: str
    reason: str
    expires: str  # ISO date, the last day the entry applies (a string: it goes into --json)
    package: str | None = None  # canonical name; None: the id is ignored in every package

    def matches(self, package: str, ids: Iterable[str]) -> bool:
        return (self.package is None or self.package == package) and self.id in set(ids)


@dataclass(frozen=True)
class IgnoreList:
    path: Path | None
    active: tuple[IgnoreRule, ...]
    expired: tuple[IgnoreRule, ...]  # past their date: they no longer apply, and are reported

    def rule_for(self, package: str, ids: Iterable[str]) -> IgnoreRule | None:
        ids = tuple(ids)
        return next((r for r in self.active if r.matches(package, ids)), None)


NO_IGNORES = IgnoreList(None, (), ())


def load_ignore_file(path: Path, today: dt.date | None = None) -> IgnoreList:
    """Read ``[[ignore]]`` entries (``id``, ``reason``, ``expires``, optional ``package``)."""
    today = today or dt.date.today()
    entries = _read_entries(path)
    active: list[IgnoreRule] = []
    expired: list[IgnoreRule] = []
    for n, entry in enumerate(entries):
        rule = _parse_entry(entry, f"{path}: ignore[{n}]")
        # An entry is good through its expiry date, and gone the day after.
        (active if dt.date.fromisoformat(rule.expires) >= today else expired).append(rule)
    return IgnoreList(path, tuple(active), tuple(expired))


def _read_entries(path: Path) -> list[Any]:
    """The ``ignore`` array of tables of the file, with nothing else beside it."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IgnoreFileError(f"{path}: no such ignore file; check --ignore-file") from None
    except OSError as exc:
        raise IgnoreFileError(f"{path}: cannot read the ignore file ({exc.strerror})") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise IgnoreFileError(f"{path}: invalid TOML: {exc}; fix the syntax") from exc
    unknown = sorted(set(data) - {"ignore"})
    if unknown:
        raise IgnoreFileError(
            f"{path}: unknown table {unknown[0]!r}; entries go in [[ignore]] tables"
        )
    entries = data.get("ignore", [])
    if not isinstance(entries, list):
        raise IgnoreFileError(f"{path}: 'ignore' must be an array of tables ([[ignore]])")
    return entries


def _parse_entry(entry: Any, where: str) -> IgnoreRule:
    if not isinstance(entry, dict):
        raise IgnoreFileError(f"{where}: must be a table with id, reason and expires")
    extra = sorted(set(entry) - set(_FIELDS))
    if extra:
        raise IgnoreFileError(f"{where}.{extra[0]}: unknown field; allowed: {', '.join(_FIELDS)}")
    for key, fix in _REQUIRED_TEXT.items():
        value = entry.get(key)
        if not isinstance(value, str) or not value.strip():
            raise IgnoreFileError(f"{where}.{key}: required non-empty string; {fix}")
    expires = _expiry(entry, where)
    package = entry.get("package")
    if package is not None and (not isinstance(package, str) or not package.strip()):
        raise IgnoreFileError(f"{where}.package: must be a project name, e.g. 'torch'")
    return IgnoreRule(
        id=entry["id"].strip(),
        reason=entry["reason"].strip(),
        expires=expires.isoformat(),
        package=canonicalize_name(package) if package else None,
    )


def _expiry(entry: Mapping[str, Any], where: str) -> dt.date:
    """A TOML date or an ISO date string; a datetime is not a day, so it is refused too."""
    expires = entry.get("expires")
    if isinstance(expires, str):
        try:
            expires = dt.date.fromisoformat(expires)
        except ValueError:
            expires = None
    if isinstance(expires, dt.datetime) or not isinstance(expires, dt.date):
        raise IgnoreFileError(
            f"{where}.expires: required date such as 2027-01-31; "
            "every ignore must end so it gets reviewed"
        )
    return expires
