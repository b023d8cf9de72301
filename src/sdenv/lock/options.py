"""What a ``sdenv lock`` run is asked to do, and the error a target that cannot be locked raises.

Every step of the lock (resolve and checks, proof, search, write) reads these options; they sit
apart so those steps import them without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sdenv.errors import SdenvError
from sdenv.lock import checks
from sdenv.lock.checks import Rule
from sdenv.lock.lockfile import DEFAULT_LOCK_DIR

Progress = Callable[[str], None]


class LockError(SdenvError):
    """A target could not be locked: no solution, a failed check or a failed proof."""


@dataclass
class LockOptions:
    lock_dir: Path = DEFAULT_LOCK_DIR
    resolver: str = "uv"
    verify: bool = True
    search: bool = False
    upgrade: bool = False
    upgrade_packages: tuple[str, ...] = ()
    dry_run: bool = False  # --upgrade without writing: show what would change
    rules: tuple[Rule, ...] | None = None
    rules_source: str | None = None  # recorded in the header when not the shipped rules
    smoke_checks: tuple[str, ...] | None = None  # None: every smoke check
    progress: Progress = lambda msg: None

    def rule_set(self) -> list[Rule]:
        """The rules this run applies: the ones given (``--rules``), else the shipped ones."""
        return list(self.rules if self.rules is not None else checks.default_rules())
