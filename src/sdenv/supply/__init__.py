"""Supply chain of the locks: known vulnerabilities (``sdenv audit``) and SBOMs (``sdenv sbom``).

This module is the public surface: the CLI and other packages use only the names in ``__all__``;
tests of one concern import its module. By concern: ``locks`` (which lockfiles a command reads),
``service`` (pip-audit's OSV/PyPI services, one query per pin), ``ignore`` (the ignore file),
``audit`` (findings, what no fix in the env can clear, ``--fix`` proposals), ``fixplan`` (each
proposed bump checked against the spec and by a dry-run re-lock), ``sbom`` (CycloneDX per lock).
pip-audit and cyclonedx are imported inside functions: CLI discovery imports this package on
machines without them.
"""

from __future__ import annotations

from sdenv.supply.audit import AuditReport, Finding, FixProposal, Unaudited, audit_locks
from sdenv.supply.fixplan import FixCheck, FixPlan, SetCheck, check_fixes
from sdenv.supply.ignore import (
    DEFAULT_IGNORE_FILE,
    NO_IGNORES,
    IgnoreFileError,
    IgnoreList,
    IgnoreRule,
    load_ignore_file,
)
from sdenv.supply.locks import LockTarget, lockfiles_for
from sdenv.supply.sbom import SbomError, render_sbom, sbom_path, write_sbom
from sdenv.supply.service import (
    DEFAULT_OSV_URL,
    DEFAULT_SERVICE,
    DEFAULT_TIMEOUT,
    SERVICES,
    AuditError,
    AuditServiceError,
)

__all__ = [
    "DEFAULT_IGNORE_FILE",
    "DEFAULT_OSV_URL",
    "DEFAULT_SERVICE",
    "DEFAULT_TIMEOUT",
    "NO_IGNORES",
    "SERVICES",
    "AuditError",
    "AuditReport",
    "AuditServiceError",
    "Finding",
    "FixCheck",
    "FixPlan",
    "FixProposal",
    "IgnoreFileError",
    "IgnoreList",
    "IgnoreRule",
    "LockTarget",
    "SbomError",
    "SetCheck",
    "Unaudited",
    "audit_locks",
    "check_fixes",
    "load_ignore_file",
    "lockfiles_for",
    "render_sbom",
    "sbom_path",
    "write_sbom",
]
