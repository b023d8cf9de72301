"""Vulnerability audit of lockfiles through pip-audit's vulnerability services.

Nothing is installed or resolved: every lock already pins each package with hashes, so each pin is
audited as it stands (pip-audit's ``--disable-pip --require-hashes --no-deps`` semantics) by
handing pip-audit's ``OsvService`` or ``PyPIService`` a resolved dependency per pin. Three rules
matter more than the table:

- a local version (``2.4.1+cu121``) is audited as its public version (``2.4.1``): advisory
  databases know releases, not local builds, so asking for the local one would find nothing;
- a package the service cannot answer for is *unaudited* and keeps the run from passing;
- a service that cannot be reached is an error (``AuditServiceError``), never a clean result.

A finding whose fixes no release of its env's CUDA line (or a known-incompatibility rule) admits
says so, and names an env that has one; ``--fix`` proposes the smallest bump that clears the rest.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import Version

from sdenv.errors import SdenvError
from sdenv.lock.lockfile import DEFAULT_LOCK_DIR, Lockfile, read_lockfile
from sdenv.lock.spec import DEFAULT_ENVS_DIR, load_spec
from sdenv.supply.ignore import NO_IGNORES, IgnoreList, IgnoreRule
from sdenv.supply.service import (
    DEFAULT_OSV_URL,
    DEFAULT_SERVICE,
    DEFAULT_TIMEOUT,
    AuditServiceError,
    Unreachable,
    advisory_ids,
    check_service,
    dedupe,
    make_service,
    osv_query_url,
    query,
)

_WORKERS = 8  # pip-audit queries one package per request; a few in flight cut wall time
# (name, version as pinned): one pin, whichever locks share it.
_Key = tuple[str, str]
_Answer = tuple[list[Any] | None, str]


@dataclass(frozen=True)
class Finding:
    package: str
    version: str  # as pinned, local label included
    audited_version: str  # what the service was asked about (the public version)
    id: str
    aliases: tuple[str, ...]
    description: str
    fix_versions: tuple[str, ...]
    locks: tuple[str, ...]
    ignored: IgnoreRule | None = None
    # Why no fixed release fits the env of the lock (its CUDA line's torch, a known-incompatibility
    # rule), and which env has one; "" when a fix fits or none is known.
    not_fixable_here: str = ""


@dataclass(frozen=True)
class Unaudited:
    package: str
    version: str
    reason: str
    locks: tuple[str, ...]


@dataclass(frozen=True)
class FixProposal:
    package: str
    version: str  # as pinned
    proposed: str | None  # smallest version with no known advisory; None: no fix known
    clears: tuple[str, ...]  # advisory ids it clears
    locks: tuple[str, ...]
    note: str = ""


@dataclass(frozen=True)
class AuditReport:
    service: str
    url: str
    locks: tuple[str, ...]
    packages: int  # distinct (name, version) pins audited or attempted
    findings: tuple[Finding, ...]
    unaudited: tuple[Unaudited, ...]
    ignore_file: str | None
    expired_ignores: tuple[IgnoreRule, ...]
    fixes: tuple[FixProposal, ...] = ()
    status: str = field(default="")

    def __post_init__(self) -> None:
        if not self.status:
            object.__setattr__(self, "status", self._status())

    @property
    def active(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.ignored is None)

    @property
    def not_fixable_here(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.active if f.not_fixable_here)

    def _status(self) -> str:
        if self.active:
            return "vulnerable"
        if self.unaudited:
            return "incomplete"
        return "pass"

    @property
    def exit_code(self) -> int:
        """0 clean; 1 an un-ignored finding; 3 no finding but some packages went unaudited."""
        return {"pass": 0, "vulnerable": 1, "incomplete": 3}[self.status]


@dataclass
class _Verdict:
    findings: list[Finding] = field(default_factory=list)
    unaudited: list[Unaudited] = field(default_factory=list)
    raw: dict[_Key, list[Any]] = field(default_factory=dict)  # un-ignored: what --fix must clear
    blocked: dict[_Key, str] = field(default_factory=dict)  # no fix fits the env: why


def _lock_label(lock: Lockfile) -> str:
    return lock.path.stem if lock.path is not None else "<lock>"


def audit_locks(
    lockfiles: Sequence[Path],
    *,
    service: str = DEFAULT_SERVICE,
    osv_url: str | None = None,
    ignores: IgnoreList = NO_IGNORES,
    fix: bool = False,
    timeout: int = DEFAULT_TIMEOUT,
    lock_dir: Path = DEFAULT_LOCK_DIR,
    envs_dir: Path = DEFAULT_ENVS_DIR,
) -> AuditReport:
    """Audit every pin of ``lockfiles``, each distinct (name, version) once."""
    check_service(service)
    url = osv_query_url(osv_url or os.environ.get("PIP_AUDIT_OSV_URL") or DEFAULT_OSV_URL)
    shown_url = url if service == "osv" else "https://pypi.org/pypi/<name>/<version>/json"
    locks = [read_lockfile(p) for p in lockfiles]
    where: dict[_Key, list[str]] = {}  # the locks pinning each (name, version)
    for lock in locks:
        for pin in lock.pins:
            where.setdefault((pin.name, pin.version), []).append(_lock_label(lock))
    public = {key: Version(key[1]).public for key in where}
    to_ask = sorted({(name, public[(name, v)]) for name, v in where})
    answers = _ask_all(
        lambda: make_service(service, url, timeout),
        to_ask,
        f"the {service} vulnerability service at {shown_url}",
    )
    verdict = _judge(where, public, answers, locks, ignores, _env_pins(lock_dir, envs_dir))
    fixes: tuple[FixProposal, ...] = ()
    if fix and verdict.raw:
        fixes = _propose_fixes(
            verdict.raw,
            where,
            public,
            lambda: make_service(service, url, timeout),
            ignores,
            verdict.blocked,
        )
    return AuditReport(
        service=service,
        url=shown_url,
        locks=tuple(str(p) for p in lockfiles),
        packages=len(where),
        findings=tuple(verdict.findings),
        unaudited=tuple(verdict.unaudited),
        ignore_file=str(ignores.path) if ignores.path else None,
        expired_ignores=ignores.expired,
        fixes=fixes,
    )


def _ask_all(make: Callable[[], Any], to_ask: list[_Key], what: str) -> dict[_Key, _Answer]:
    """Every (name, public version) asked once, a few at a time; ``what`` names the service."""
    local = threading.local()

    def ask(key: _Key) -> _Answer:
        if not hasattr(local, "service"):
            # One service (one HTTP session) per thread: requests sessions are not thread-safe.
            local.service = make()
        return query(local.service, *key)

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(_WORKERS, len(to_ask)))) as pool:
            answers = dict(zip(to_ask, pool.map(ask, to_ask), strict=True))
    except Unreachable as exc:
        raise AuditServiceError(
            f"cannot reach {what}: {exc}; "
            "audit where it is reachable, or point --osv-url at an OSV mirror"
        ) from None
    if to_ask and all(results is None for results, _ in answers.values()):
        first = answers[to_ask[0]][1]
        raise AuditServiceError(
            f"{what} answered none of {len(to_ask)} packages (first: {first}); "
            "check --service/--osv-url"
        )
    return answers


def _judge(
    where: Mapping[_Key, list[str]],
    public: Mapping[_Key, str],
    answers: Mapping[_Key, _Answer],
    locks: Sequence[Lockfile],
    ignores: IgnoreList,
    other_envs: Mapping[str, Mapping[str, tuple[Version, str]]],
) -> _Verdict:
    """Each pin's answer as findings (ignored or not, fixable in its env or not) or unaudited."""
    verdict = _Verdict()
    for (name, version), lock_names in sorted(where.items()):
        audited = public[(name, version)]
        results, why = answers[(name, audited)]
        if results is None:
            verdict.unaudited.append(Unaudited(name, version, why, tuple(lock_names)))
            continue
        pin_locks = [k for k in locks if _lock_label(k) in lock_names]
        for res in dedupe(results):
            ids = advisory_ids(res)
            rule = ignores.rule_for(name, ids)
            fixes_above = [str(v) for v in res.fix_versions if v > Version(audited)]
            why_not = ""
            if rule is None and fixes_above:
                why_not = _not_fixable_here(name, fixes_above, pin_locks, other_envs)
            if why_not:
                verdict.blocked[(name, version)] = why_not
            verdict.findings.append(
                Finding(
                    package=name,
                    version=version,
                    audited_version=audited,
                    id=ids[0],
                    aliases=ids[1:],
                    description=str(res.description),
                    fix_versions=tuple(str(v) for v in sorted(res.fix_versions)),
                    locks=tuple(lock_names),
                    ignored=rule,
                    not_fixable_here=why_not,
                )
            )
            if rule is None:
                verdict.raw.setdefault((name, version), []).append(res)
    return verdict


def _propose_fixes(
    raw: Mapping[_Key, list[Any]],
    where: Mapping[_Key, list[str]],
    public: Mapping[_Key, str],
    make_service: Callable[[], Any],
    ignores: IgnoreList = NO_IGNORES,
    blocked: Mapping[_Key, str] | None = None,
) -> tuple[FixProposal, ...]:
    """pip-audit's fix resolution (``pip_audit._fix``): for every advisory the smallest fix
    version above the pin, the largest of those; then ask the service about that version and
    repeat while it has advisories of its own. Written out here so that one package the service
    cannot answer for becomes a note instead of aborting every proposal; the ignore file applies
    to each step's advisories as it does to the pin's, and a package whose fixes lie outside its
    env's CUDA line (or a rule) gets no proposal but the reason."""
    service = make_service()
    proposals: list[FixProposal] = []
    for (name, version), results in sorted(raw.items()):
        clears = tuple(sorted(str(r.id) for r in results))
        locks = tuple(where[(name, version)])
        why_not = (blocked or {}).get((name, version))
        if why_not:
            proposals.append(FixProposal(name, version, None, clears, locks, why_not))
            continue
        start = Version(public[(name, version)])
        proposed, note = _climb(service, name, start, results, ignores)
        proposals.append(FixProposal(name, version, proposed, clears, locks, note))
    return tuple(proposals)


def _climb(
    service: Any, name: str, current: Version, pending: list[Any], ignores: IgnoreList
) -> tuple[str | None, str]:
    """From ``current``, step to the largest of the smallest fixes of ``pending`` advisories until
    a version has none left: (that version, "") or (None, why the climb stopped)."""
    while pending:
        step = []
        for res in pending:
            above = [v for v in sorted(res.fix_versions) if v > current]
            if not above:
                return None, f"no fixed version of {name} above {current} for {res.id}"
            step.append(above[0])
        current = max(step)
        try:
            answer, why = query(service, name, str(current))
        except Unreachable as exc:
            raise AuditServiceError(
                f"cannot reach the vulnerability service for --fix: {exc}"
            ) from None
        if answer is None:
            return None, f"{current} could not be checked: {why}"
        pending = [r for r in dedupe(answer) if ignores.rule_for(name, advisory_ids(r)) is None]
    return str(current), ""


def _env_pins(lock_dir: Path, envs_dir: Path) -> dict[str, dict[str, tuple[Version, str]]]:
    """env name -> package -> (the newest version the env may hold, how it is known): the public
    versions its committed locks pin; for torch in an env not locked yet, the top of the PyPI
    torch series built for its CUDA line (data/torch_cuda.toml). Where a fix may already be."""
    from sdenv.lock import checks

    found: dict[str, dict[str, tuple[Version, str]]] = {}
    for path in sorted(envs_dir.glob("*.toml")) if envs_dir.is_dir() else []:
        try:
            spec = load_spec(path, envs_dir)
        except SdenvError:
            continue  # a broken spec elsewhere must not stop this audit
        pins = found.setdefault(spec.name, {})
        for target in spec.targets:
            try:
                lock = read_lockfile(target.lockfile(lock_dir))
            except SdenvError:
                continue
            pins.update({p.name: (Version(p.public_version), p.public_version) for p in lock.pins})
        pypi_only = len(spec.indexes) == 1 and checks.is_pypi(spec.indexes[0].url)
        if "torch" not in pins and pypi_only:
            series = checks.pypi_torch_series(spec.cuda, spec.requirements.get("torch", ""))
            if series:
                top, first = series[-1].series, series[0].series
                line = first if first == top else f"{first}-{top}"
                pins["torch"] = (Version(f"{top}.999"), f"{line} on {spec.cuda}, not locked yet")
    return found


def _not_fixable_here(
    name: str,
    fixes: Sequence[str],
    locks: Sequence[Lockfile],
    other_envs: Mapping[str, Mapping[str, tuple[Version, str]]],
) -> str:
    """Why none of ``fixes`` (versions above the pin) can go into the env of ``locks``: a
    constraint that the lock's header records as coming from its CUDA line (the PyPI torch
    series built for it) or from a known-incompatibility rule excludes every one of them. The
    spec's own ranges do not count (widening the spec is a fix), nor do the checks' pins (the
    dry-run re-lock judges those). "" when a fix fits."""
    from packaging.requirements import Requirement

    from sdenv.lock import constraints_from_header

    wanted = [Version(v) for v in fixes]
    for lock in locks:
        for constraint, why in constraints_from_header(lock):
            req = Requirement(constraint)
            if canonicalize_name(req.name) != name or not why.startswith(("PyPI torch", "rule ")):
                continue
            if any(req.specifier.contains(v, prereleases=True) for v in wanted):
                continue
            env = lock.get("env") or _lock_label(lock)
            cuda = (lock.get("cuda") or "?").split(" ", 1)[0]
            lowest = min(wanted)
            has_fix = sorted(
                f"{e} ({name} {pins[name][1]})"
                for e, pins in other_envs.items()
                if e != env and name in pins and pins[name][0] >= lowest
            )
            return (
                f"no fixed release fits {env}: fixed in {name} {lowest}, but {constraint} "
                f"({why}) holds on its {cuda} line"
                + (f"; fixed in env {', '.join(has_fix)}" if has_fix else "")
            )
    return ""
