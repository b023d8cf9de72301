"""Vulnerability audit of lockfiles through pip-audit's vulnerability services.

Nothing is installed or resolved: every lock already pins each package with hashes, so each pin is
audited as it stands (pip-audit's ``--disable-pip --require-hashes --no-deps`` semantics) by
handing pip-audit's ``OsvService`` or ``PyPIService`` a resolved dependency per pin. Three rules
matter more than the table:

- a local version (``2.4.1+cu121``) is audited as its public version (``2.4.1``): advisory
  databases know releases, not local builds, so asking for the local one would find nothing;
- a package the service cannot answer for is *unaudited* and keeps the run from passing;
- a service that cannot be reached is an error (``AuditServiceError``), never a clean result.

pip-audit is imported inside functions: CLI discovery imports this module on machines without it.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from packaging.utils import canonicalize_name
from packaging.version import Version

from sdenv._fs import require_dir_arg, require_file_arg
from sdenv.errors import SdenvError, UsageError
from sdenv.lock.lockfile import DEFAULT_LOCK_DIR, Lockfile, read_lockfile
from sdenv.lock.spec import DEFAULT_ENV, DEFAULT_ENVS_DIR, EnvSpec, Target, load_spec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

SERVICES = ("osv", "pypi")
DEFAULT_SERVICE = "osv"
DEFAULT_OSV_URL = "https://api.osv.dev/v1/query"  # pip-audit's OsvService.DEFAULT_OSV_URL
DEFAULT_IGNORE_FILE = Path("audit-ignore.toml")
DEFAULT_TIMEOUT = 15
_WORKERS = 8  # pip-audit queries one package per request; a few in flight cut wall time


class AuditError(SdenvError):
    """The audit could not run to a verdict."""


class AuditServiceError(AuditError):
    """The vulnerability service could not be reached or answered nothing usable."""


class IgnoreFileError(UsageError):
    """An ignore file that cannot be used; the message names file, entry, field and fix."""


@dataclass(frozen=True)
class LockTarget:
    """A lockfile to audit, and the env target it was made for when known."""

    path: Path
    spec: EnvSpec | None = None
    target: Target | None = None

    @property
    def label(self) -> str:
        return self.path.stem


def lockfiles_for(
    envs: Sequence[str],
    locks: Sequence[Path] = (),
    lock_dir: Path = DEFAULT_LOCK_DIR,
    envs_dir: Path = DEFAULT_ENVS_DIR,
) -> list[LockTarget]:
    """``ENV ...`` -> every target lock of those envs; ``--lock FILE`` -> those files.

    No ENV and no --lock means the default env. A missing env lock is a usage error naming the
    command that makes it, never an empty audit.
    """
    found: list[LockTarget] = []
    for path in locks:
        require_file_arg(path, "--lock", "lockfile", "check --lock or run `sdenv lock`")
        found.append(LockTarget(path))
    if envs or not locks:
        require_dir_arg(lock_dir, "--lock-dir")
    for name in envs or ([] if locks else [DEFAULT_ENV]):
        spec = load_spec(name, envs_dir)
        for target in spec.targets:
            path = target.lockfile(lock_dir)
            if not path.is_file():
                raise UsageError(
                    f"{path}: no lockfile for {target.slug}; "
                    f"create it with `sdenv lock {spec.name}`"
                )
            found.append(LockTarget(path, spec, target))
    labels = [t.label for t in found]
    dupes = sorted({n for n in labels if labels.count(n) > 1})
    if dupes:
        raise UsageError(f"lockfile {dupes[0]} given twice; name each lock once")
    return found


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
    active: list[IgnoreRule] = []
    expired: list[IgnoreRule] = []
    for n, entry in enumerate(entries):
        where = f"{path}: ignore[{n}]"
        if not isinstance(entry, dict):
            raise IgnoreFileError(f"{where}: must be a table with id, reason and expires")
        extra = sorted(set(entry) - {"id", "reason", "expires", "package"})
        if extra:
            raise IgnoreFileError(
                f"{where}.{extra[0]}: unknown field; allowed: id, reason, expires, package"
            )
        for key in ("id", "reason"):
            value = entry.get(key)
            if not isinstance(value, str) or not value.strip():
                raise IgnoreFileError(
                    f"{where}.{key}: required non-empty string; "
                    + (
                        "give the advisory id (PYSEC-..., GHSA-..., CVE-...)"
                        if key == "id"
                        else "say why the finding is acceptable"
                    )
                )
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
        package = entry.get("package")
        if package is not None and (not isinstance(package, str) or not package.strip()):
            raise IgnoreFileError(f"{where}.package: must be a project name, e.g. 'torch'")
        rule = IgnoreRule(
            id=entry["id"].strip(),
            reason=entry["reason"].strip(),
            expires=expires.isoformat(),
            package=canonicalize_name(package) if package else None,
        )
        # An entry is good through its expiry date, and gone the day after.
        (active if expires >= today else expired).append(rule)
    return IgnoreList(path, tuple(active), tuple(expired))


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


def osv_query_url(url: str) -> str:
    """pip-audit wants the full query endpoint; accept a mirror's base URL as well."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--osv-url {url!r}: not an http(s) URL; e.g. {DEFAULT_OSV_URL}")
    if parts.path.rstrip("/").endswith("/query"):
        return url
    return url.rstrip("/") + "/v1/query"


def _cache_dir() -> Path:
    # Passed explicitly: otherwise PyPIService shells out to `pip cache dir` to find pip's cache.
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pip-audit"


def _make_service(service: str, osv_url: str, timeout: int) -> Any:
    from pip_audit._service import OsvService, PyPIService

    svc: Any
    if service == "osv":
        svc = OsvService(cache_dir=_cache_dir(), timeout=timeout, osv_url=osv_url)
    elif service == "pypi":
        svc = PyPIService(cache_dir=_cache_dir(), timeout=timeout)
    else:
        raise UsageError(f"--service {service!r}: unknown; choose one of {', '.join(SERVICES)}")
    # requests trusts REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE but not SSL_CERT_FILE, which is how an
    # inspecting proxy's CA is often given; without this, TLS fails and the service is "down".
    ca = os.environ.get("SSL_CERT_FILE")
    if ca and not (os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")):
        svc.session.verify = ca
    return svc


class _Unreachable(Exception):
    """A connection-level failure: the whole service is down or blocked, not one package."""


def _query(service: Any, name: str, version: str) -> tuple[list[Any] | None, str]:
    """One pip-audit query: (results, "") or (None, why the service could not answer)."""
    import requests
    from pip_audit._service import ConnectionError as ServiceConnectionError
    from pip_audit._service import ResolvedDependency, ServiceError

    dep = ResolvedDependency(name=name, version=Version(version))
    try:
        answered, results = service.query(dep)
    except requests.ReadTimeout:
        # Connected, but no answer in time for this one package: the service is up (a slow
        # mirror, one heavy record); that package is unaudited, the others stand.
        return None, f"no answer for {name} {version} within {service.timeout} s (--timeout)"
    except (ServiceConnectionError, requests.ConnectionError, requests.Timeout) as exc:
        raise _Unreachable(str(exc) or type(exc).__name__) from exc
    except ServiceError as exc:
        cause = exc.__cause__
        response = getattr(cause, "response", None)
        if response is not None:
            return None, f"service answered HTTP {response.status_code} for {name} {version}"
        return None, f"service error for {name} {version}: {exc or cause}"
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        # A body that is not the JSON the service's schema promises (ValueError covers JSON
        # decoding and InvalidVersion): that package cannot be judged.
        return None, f"unreadable answer for {name} {version}: {type(exc).__name__}: {exc}"
    if answered.is_skipped():
        return None, str(answered.skip_reason)
    return list(results), ""


def _dedupe(results: list[Any]) -> list[Any]:
    """OSV lists one vulnerability under several records (PYSEC, GHSA): merge aliases, as
    pip-audit's own auditor does, so one hole is one row."""
    merged: list[Any] = []
    for res in results:
        for i, seen in enumerate(merged):
            if res.alias_of(seen):
                merged[i] = seen.merge_aliases(res)
                break
        else:
            merged.append(res)
    return merged


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
    if service not in SERVICES:
        raise UsageError(f"--service {service!r}: unknown; choose one of {', '.join(SERVICES)}")
    url = osv_query_url(osv_url or os.environ.get("PIP_AUDIT_OSV_URL") or DEFAULT_OSV_URL)
    shown_url = url if service == "osv" else "https://pypi.org/pypi/<name>/<version>/json"
    locks = [read_lockfile(p) for p in lockfiles]

    # (name, pinned version) -> the locks pinning it
    where: dict[tuple[str, str], list[str]] = {}
    for lock in locks:
        for pin in lock.pins:
            where.setdefault((pin.name, pin.version), []).append(_lock_label(lock))
    public = {key: Version(key[1]).public for key in where}
    to_ask = sorted(set((name, public[(name, v)]) for name, v in where))

    local = threading.local()

    def ask(key: tuple[str, str]) -> tuple[list[Any] | None, str]:
        if not hasattr(local, "service"):
            # One service (one HTTP session) per thread: requests sessions are not thread-safe.
            local.service = _make_service(service, url, timeout)
        return _query(local.service, *key)

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(_WORKERS, len(to_ask)))) as pool:
            answers = dict(zip(to_ask, pool.map(ask, to_ask), strict=True))
    except _Unreachable as exc:
        raise AuditServiceError(
            f"cannot reach the {service} vulnerability service at {shown_url}: {exc}; "
            "audit where it is reachable, or point --osv-url at an OSV mirror"
        ) from None
    if to_ask and all(results is None for results, _ in answers.values()):
        first = answers[to_ask[0]][1]
        raise AuditServiceError(
            f"the {service} vulnerability service at {shown_url} answered none of "
            f"{len(to_ask)} packages (first: {first}); check --service/--osv-url"
        )

    findings: list[Finding] = []
    unaudited: list[Unaudited] = []
    raw: dict[tuple[str, str], list[Any]] = {}
    blocked: dict[tuple[str, str], str] = {}
    other_envs = _env_pins(lock_dir, envs_dir)
    for (name, version), lock_names in sorted(where.items()):
        audited = public[(name, version)]
        results, why = answers[(name, audited)]
        if results is None:
            unaudited.append(Unaudited(name, version, why, tuple(lock_names)))
            continue
        for res in _dedupe(results):
            ids = (str(res.id), *sorted(str(a) for a in res.aliases))
            rule = ignores.rule_for(name, ids)
            fixes_above = [str(v) for v in res.fix_versions if v > Version(audited)]
            why_not = ""
            if rule is None and fixes_above:
                why_not = _not_fixable_here(
                    name,
                    fixes_above,
                    [k for k in locks if _lock_label(k) in lock_names],
                    other_envs,
                )
                if why_not:
                    blocked[(name, version)] = why_not
            findings.append(
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
                raw.setdefault((name, version), []).append(res)

    fixes: tuple[FixProposal, ...] = ()
    if fix and raw:
        fixes = _propose_fixes(
            raw, where, public, lambda: _make_service(service, url, timeout), ignores, blocked
        )
    return AuditReport(
        service=service,
        url=shown_url,
        locks=tuple(str(p) for p in lockfiles),
        packages=len(where),
        findings=tuple(findings),
        unaudited=tuple(unaudited),
        ignore_file=str(ignores.path) if ignores.path else None,
        expired_ignores=ignores.expired,
        fixes=fixes,
    )


def _propose_fixes(
    raw: Mapping[tuple[str, str], list[Any]],
    where: Mapping[tuple[str, str], list[str]],
    public: Mapping[tuple[str, str], str],
    make_service: Any,
    ignores: IgnoreList = NO_IGNORES,
    blocked: Mapping[tuple[str, str], str] | None = None,
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
        current = Version(public[(name, version)])
        pending = results
        proposed: str | None = None
        note = ""
        while pending:
            step = []
            for res in pending:
                above = [v for v in sorted(res.fix_versions) if v > current]
                if not above:
                    note = f"no fixed version of {name} above {current} for {res.id}"
                    break
                step.append(above[0])
            if note:
                break
            current = max(step)
            try:
                answer, why = _query(service, name, str(current))
            except _Unreachable as exc:
                raise AuditServiceError(
                    f"cannot reach the vulnerability service for --fix: {exc}"
                ) from None
            if answer is None:
                note = f"{current} could not be checked: {why}"
                break
            pending = [
                r
                for r in _dedupe(answer)
                if ignores.rule_for(name, (str(r.id), *(str(a) for a in r.aliases))) is None
            ]
        else:
            proposed = str(current)
        proposals.append(FixProposal(name, version, proposed, clears, locks, note))
    return tuple(proposals)


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


@dataclass(frozen=True)
class FixCheck:
    """Whether one proposed bump fits its env: the spec's specifiers, then a real re-lock."""

    env: str
    package: str
    version: str
    proposed: str | None
    spec_status: str  # ok | fail | skip
    spec_note: str
    lock_status: str  # ok | fail | skip
    lock_note: str


@dataclass(frozen=True)
class SetCheck:
    """The bumps of one env that fit on their own, re-locked together: the set must hold too."""

    env: str
    pins: tuple[str, ...]
    lock_status: str
    lock_note: str
    command: str  # applies the set; "" when it does not re-lock


@dataclass(frozen=True)
class FixPlan:
    checks: tuple[FixCheck, ...] = ()
    sets: tuple[SetCheck, ...] = ()


def spec_allows(spec: EnvSpec, name: str, version: str) -> tuple[str, str]:
    """Does ``name==version`` satisfy the spec's requirement and constraint for ``name``?"""
    from packaging.specifiers import SpecifierSet

    parts = [s for s in (spec.requirements.get(name), spec.constraints.get(name)) if s]
    if not parts:
        return "ok", "not constrained by the spec"
    wanted = SpecifierSet(",".join(parts))
    if wanted.contains(Version(version), prereleases=True):
        return "ok", f"{name}{wanted} allows it"
    return "fail", f"{name}{wanted} excludes {version}; widen envs/{spec.name}.toml"


def check_fixes(
    fixes: Sequence[FixProposal],
    targets: Sequence[LockTarget],
    lock_dir: Path = DEFAULT_LOCK_DIR,
) -> FixPlan:
    """Check each proposal in each env whose locks pin it: against the env spec, then by a dry-run
    re-lock with that one bump (so a failure names its bump); then re-lock each env with all of
    its bumps that passed (the bumped *set* must resolve and pass the compat rules as well)."""
    by_label = {t.label: t for t in targets}
    checks: list[FixCheck] = []
    passed: dict[str, list[str]] = {}
    specs: dict[str, EnvSpec] = {}
    for fix in fixes:
        envs = {
            t.spec.name: t.spec
            for t in (by_label.get(label) for label in fix.locks)
            if t is not None and t.spec is not None
        }
        specs.update(envs)
        if not envs:
            envs_note = "lock given by path (--lock): no env spec; audit by ENV name to re-lock"
            checks.append(
                FixCheck("-", fix.package, fix.version, fix.proposed, "skip", envs_note, "skip", "")
            )
            continue
        for env, spec in sorted(envs.items()):
            if fix.proposed is None:
                checks.append(
                    FixCheck(env, fix.package, fix.version, None, "skip", fix.note, "skip", "")
                )
                continue
            spec_status, spec_note = spec_allows(spec, fix.package, fix.proposed)
            pin = f"{fix.package}=={fix.proposed}"
            if spec_status == "fail":
                lock_status, lock_note = "skip", "the spec excludes it"
            else:
                lock_status, lock_note = relock_with(spec, [pin], lock_dir)
            checks.append(
                FixCheck(
                    env,
                    fix.package,
                    fix.version,
                    fix.proposed,
                    spec_status,
                    spec_note,
                    lock_status,
                    lock_note,
                )
            )
            if spec_status == "ok" and lock_status == "ok":
                passed.setdefault(env, []).append(pin)

    sets: list[SetCheck] = []
    for env, pins in sorted(passed.items()):
        if len(pins) == 1:
            (one,) = [c for c in checks if c.env == env and f"{c.package}=={c.proposed}" in pins]
            status, note = one.lock_status, one.lock_note
        else:
            status, note = relock_with(specs[env], pins, lock_dir)
        command = (
            f"sdenv lock {env} " + " ".join(f"--upgrade-package {p}" for p in pins)
            if status == "ok"
            else ""
        )
        sets.append(SetCheck(env, tuple(pins), status, note, command))
    return FixPlan(tuple(checks), tuple(sets))


def relock_with(spec: EnvSpec, pins: Sequence[str], lock_dir: Path) -> tuple[str, str]:
    """Re-lock ``spec`` with ``pins`` (``name==version``) as ``--upgrade-package`` bumps, as a dry
    run: the resolve and every compatibility check of ``sdenv lock`` run, the locks stay as they
    are. ("ok", what would change) or ("fail", why) or ("skip", why it could not run)."""
    try:
        from sdenv.lock import LockOptions, lock_env
    except ImportError as exc:  # pragma: no cover - only before the lock engine exists
        return "skip", f"`sdenv lock --upgrade-package` is not available here ({exc})"
    # verify=False: the import proof installs the whole stack per target (GBs); `sdenv lock`
    # runs it when the bump is applied. The resolve and the compat rules are the question here.
    opts = LockOptions(lock_dir=lock_dir, upgrade_packages=tuple(pins), dry_run=True, verify=False)
    try:
        results = lock_env(spec, opts)
    except SdenvError as exc:
        return "fail", f"{spec.name}: {exc}"
    notes: list[str] = []
    status = "ok"
    wanted = dict(p.split("==", 1) for p in pins)
    for res in results:
        if not res.ok:
            status = "fail"
            notes.append(res.message or f"{res.target.slug}: {res.status}")
            continue
        got = {n: res.pins.get(n) for n in wanted}
        off = [
            f"{n} {v} (wanted {wanted[n]})"
            for n, v in got.items()
            if v is None or Version(v).public != Version(wanted[n]).public
        ]
        if off:
            status = "fail"
            notes.append(f"{res.target.slug}: resolved {', '.join(off)}")
            continue
        moved = [f"{n} {a or '-'}->{b or '-'}" for n, a, b in res.changes]
        notes.append(
            f"{res.target.slug}: resolves and passes the compat checks"
            + (f"; changes {', '.join(moved)}" if moved else "")
        )
    return status, "; ".join(notes)
