"""``sdenv lock``: resolve each target of an env, check the set, prove it imports, write it.

Per target (env, python, platform):

1. inputs: the spec's requirements plus sdenv's own in-image runtime deps; constraints from the
   spec, the PyPI torch/CUDA table (data/torch_cuda.toml) and the rules (data/rules.toml) whose
   torch condition holds for every torch the target may get;
2. resolve for the target (uv by default), then check: rules against the pins (re-resolve with the
   rule's constraint when one fires), CUDA variant, xformers ABI (its cpp_lib.json, read by range
   requests; re-resolve with the matching xformers when wrong), GPU coverage;
3. the import proof: install the lock into a throwaway venv and run the smoke there, for every
   target whose Python exists here; ``--search`` bisects the culprit of a failure;
4. write atomically, under a file lock per env, with its PEP 751 twin (``sdenv.pylock``) beside
   it. A target that fails is not written.
"""

from __future__ import annotations

import hashlib
import platform
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from sdenv import checks, wheelmeta
from sdenv._cleanup import throwaway_dir
from sdenv.checks import CheckResult, CppLib, Rule
from sdenv.errors import SdenvError
from sdenv.lockfile import (
    DEFAULT_LOCK_DIR,
    Lockfile,
    LockfileError,
    Pin,
    make_lockfile,
    read_lockfile,
    render_lockfile,
)
from sdenv.pylock import disagreement, index_files, pylock_path, render_pylock
from sdenv.resolve import Resolution, ResolveError, ResolveInput, resolve
from sdenv.spec import EnvSpec, Target
from sdenv.venv import find_python, install_lock, run_uv

Progress = Callable[[str], None]
MAX_FIXES = 6  # re-resolutions after a rule or the xformers check changed the constraints
XFORMERS_SEARCH_LIMIT = 12  # newest xformers releases read when looking for the matching one
SEARCH_ROUNDS = 6  # --search: culprits bounded one after the other, each with a fresh proof


class LockError(SdenvError):
    """A target could not be locked: no solution, a failed check or a failed proof."""


# --- the proof -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProofFailure:
    check: str
    detail: str
    culprits: tuple[str, ...]
    hint: str = ""
    kind: str = ""  # the smoke's failure kind: too-new-for-torch, backend-disabled, ...


@dataclass(frozen=True)
class Proof:
    status: str  # "passed", "failed", "unverified"
    detail: str
    failures: tuple[ProofFailure, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status != "failed"


def smoke_prover(python: Path, checks: Sequence[str] | None = None) -> Proof:
    """The ``sdenv smoke`` checks (all, or the named ones), run in the venv of ``python``."""
    from sdenv.smoke import run_smoke

    report = run_smoke(python, gpu=None, checks=checks)
    done = [c for c in report.checks if c.status != "skip"]
    if report.ok:
        return Proof(
            "passed", f"smoke {len(done)} checks passed, {len(report.checks) - len(done)} skipped"
        )
    failures = []
    for c in report.checks:
        if c.status != "fail":
            continue
        f = getattr(c, "failure", None)
        culprits = tuple(canonicalize_name(n) for n in (getattr(f, "culprits", None) or ()))
        failures.append(
            ProofFailure(
                c.name,
                str(c.detail),
                culprits,
                str(getattr(f, "hint", "") or ""),
                str(getattr(f, "kind", "") or ""),
            )
        )
    names = ", ".join(f.check for f in failures)
    return Proof("failed", f"smoke failed: {names}", tuple(failures))


# --- results -------------------------------------------------------------------------------------


@dataclass
class TargetResult:
    target: Target
    path: Path
    status: str = "pending"  # written, unchanged, failed, fresh, stale
    proof: Proof = field(default_factory=lambda: Proof("unverified", "not run"))
    checks: list[CheckResult] = field(default_factory=list)
    pins: dict[str, str] = field(default_factory=dict)
    changes: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    learned: list[str] = field(default_factory=list)  # rules.toml text from --search
    resolver: str = ""
    resolve_seconds: float = 0.0
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status not in ("failed", "stale")


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


# --- inputs --------------------------------------------------------------------------------------


def runtime_requirements(python: str) -> list[str]:
    """sdenv's own in-image deps: the app image installs sdenv --no-deps from the lock."""
    reqs = ["packaging>=24", "rich>=13"]
    if python == "3.10":
        reqs.append("tomli>=2")
    return reqs


def data_sha256() -> str:
    """Hash of the shipped data the lock depends on: a changed rule makes locks stale."""
    h = hashlib.sha256()
    from sdenv import _data

    for name in _data.LOCK_DATA:
        h.update(_data.data_file(name).read_bytes())
    return h.hexdigest()


def _canon_all(names: Iterable[str]) -> set[str]:
    return {canonicalize_name(n) for n in names}


def _req_name(requirement: str) -> str:
    return canonicalize_name(Requirement(requirement).name)


@dataclass
class Inputs:
    requirements: list[str]
    constraints: list[tuple[str, str]]  # (constraint, why)

    def constraint_lines(self) -> list[str]:
        return [c for c, _ in self.constraints]


def base_inputs(spec: EnvSpec, target: Target, rules: Sequence[Rule]) -> Inputs:
    reqs = spec.requirement_lines()
    present = {_req_name(r) for r in reqs}
    reqs += [r for r in runtime_requirements(target.python) if _req_name(r) not in present]
    cons: list[tuple[str, str]] = [(c, "spec") for c in spec.constraint_lines()]
    torch_spec = spec.requirements.get("torch", "")
    candidates: list[str] = []
    if spec.indexes and checks.is_pypi(spec.indexes[0].url) and len(spec.indexes) == 1:
        bound = checks.pypi_torch_bound(spec.cuda, torch_spec)
        cons.append((f"torch{bound}", f"PyPI torch built for {spec.cuda}: data/torch_cuda.toml"))
        series = checks.pypi_torch_series(spec.cuda, torch_spec)
        candidates = [v for s in series for v in (f"{s.series}.0", f"{s.series}.99")]
    for rule in checks.rules_before_resolve(rules, candidates):
        for c in rule.constraints():
            cons.append((c, f"rule {rule.id}"))
    return Inputs(reqs, cons)


# --- resolve + checks ----------------------------------------------------------------------------


@dataclass
class Checked:
    resolution: Resolution
    checks: list[CheckResult]
    constraints: list[tuple[str, str]]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def _cpp_lib(spec: EnvSpec, target: Target, pin: Pin) -> tuple[CppLib | None, str]:
    # Every hash of a pin is a file of that one release, and the wheels of one xformers release
    # are built for one torch/CUDA (per Python only): a cached cpp_lib.json of any of them does.
    found, raw = wheelmeta.cached_member(pin.hashes, "xformers/cpp_lib.json")
    if found:
        return (CppLib.parse(raw) if raw else None), "cache"
    urls = [i.url for i in spec.indexes]
    wheel = wheelmeta.find_wheel(
        urls, pin.name, pin.version, target.python, target.uv_platform, pin.hashes
    )
    if wheel is None:
        return None, f"no wheel of {pin.name} {pin.version} for {target.slug} on {', '.join(urls)}"
    raw = wheelmeta.read_member(wheel, "xformers/cpp_lib.json")
    return (CppLib.parse(raw) if raw else None), wheel.filename


def find_matching_xformers(
    spec: EnvSpec, target: Target, torch: str, exclude: Iterable[str] = ()
) -> str | None:
    """Newest xformers release whose own cpp_lib.json says it was built for ``torch``."""
    wanted = SpecifierSet(spec.requirements.get("xformers", ""))
    skip = {Version(v) for v in exclude}
    seen: dict[Version, wheelmeta.IndexFile] = {}
    for index in (i.url for i in spec.indexes):
        for f in wheelmeta.list_files(index, "xformers"):
            v = f.version
            if v is None or v in skip or v in seen or not wanted.contains(v, prereleases=False):
                continue
            if f.is_wheel and wheelmeta.wheel_fits(f.filename, target.python, target.uv_platform):
                seen[v] = f
    # Releases built for this torch are near it in time: read newest first, a bounded number.
    for v in sorted(seen, reverse=True)[:XFORMERS_SEARCH_LIMIT]:
        raw = wheelmeta.read_member(seen[v], "xformers/cpp_lib.json")
        if raw and checks.xformers_matches(CppLib.parse(raw), torch, spec.cuda):
            return str(v)
    return None


def _rules_involved(message: str, cons: Sequence[tuple[str, str]], opts: LockOptions) -> str:
    """The rules whose constraints bear on a failed resolve: the resolver sees a bare
    ``diffusers<0.36`` and cannot say that a shipped rule put it there."""
    text = message.lower()
    source = opts.rules_source or "src/sdenv/data/rules.toml"
    named = [
        f"{c} from {why} ({source})"
        for c, why in cons
        if why.startswith("rule ") and re.search(rf"\b{re.escape(_req_name(c))}\b", text)
    ]
    return f" [constraints from known-incompatibility rules: {'; '.join(named)}]" if named else ""


def resolve_and_check(
    spec: EnvSpec,
    target: Target,
    inputs: Inputs,
    opts: LockOptions,
    rules: Sequence[Rule],
    preferences: Sequence[Pin] = (),
) -> Checked:
    cons = list(inputs.constraints)
    tried_xformers: list[str] = []
    for _ in range(MAX_FIXES):
        opts.progress(f"{target.slug}: resolving with {opts.resolver}")
        try:
            res = resolve(
                target,
                ResolveInput(
                    tuple(inputs.requirements),
                    tuple(c for c, _ in cons),
                    tuple(i.url for i in spec.indexes),
                    tuple(preferences),
                    opts.upgrade,
                    opts.upgrade_packages,
                ),
                opts.resolver,
            )
        except ResolveError as exc:
            raise ResolveError(str(exc) + _rules_involved(str(exc), cons, opts)) from None
        pins = res.versions()
        fired = checks.violated_rules(rules, pins)
        if fired:
            # A rule whose condition only shows after resolving (e.g. a torch range spanning 2.6).
            for rule in fired:
                cons += [(c, f"rule {rule.id}") for c in rule.constraints()]
            continue
        results = [
            checks.check_rules(rules, pins),
            checks.check_cuda(pins, spec.cuda),
            checks.check_fp8_backend(pins, spec.fp8),
        ]
        xf = res.pin("xformers")
        cpp: CppLib | None = None
        if xf is not None and results[-1].ok:
            opts.progress(f"{target.slug}: reading xformers {xf.version} cpp_lib.json")
            cpp, _where = _cpp_lib(spec, target, xf)
            abi = checks.check_xformers_abi(pins, cpp, spec.cuda)
            if not abi.ok:
                tried_xformers.append(xf.version)
                opts.progress(
                    f"{target.slug}: searching the xformers built for torch {pins['torch']}"
                )
                match = find_matching_xformers(spec, target, pins["torch"], tried_xformers)
                if match is not None:
                    cons = [c for c in cons if not c[0].startswith("xformers==")]
                    cons.append(
                        (
                            f"xformers=={match}",
                            f"xformers built for torch {pins['torch']}: cpp_lib.json",
                        )
                    )
                    continue
                abi = replace(abi, detail=abi.detail + "; no xformers release on the index matches")
            results.append(abi)
        cuda_found = checks.cuda_of_pins(pins)
        results.append(
            checks.check_coverage(
                cuda_found[0] if cuda_found else None,
                cpp.arch_list if cpp else None,
                spec.compute_capabilities,
            )
        )
        return Checked(res, results, cons)
    raise LockError(
        f"{target.slug}: the checks kept changing the constraints after {MAX_FIXES} resolutions: "
        + ", ".join(c for c, _ in cons)
    )


# --- rendering -----------------------------------------------------------------------------------


def build_lockfile(
    spec: EnvSpec, target: Target, checked: Checked, proof: Proof, rules_source: str | None = None
) -> Lockfile:
    res = checked.resolution
    pins = res.versions()
    cuda = checks.cuda_of_pins(pins)
    header: list[tuple[str, str]] = [
        ("env", spec.name),
        ("spec", spec.path.name),
        ("spec-sha256", spec.sha256),
        ("data-sha256", data_sha256()),
        ("python", target.python),
        ("platform", f"{target.platform} ({target.uv_platform})"),
        ("cuda", f"{spec.cuda}" + (f" ({cuda[1]})" if cuda else "")),
        ("compute-capabilities", " ".join(spec.compute_capabilities)),
        ("fp8", spec.fp8),
        ("resolver", res.resolver),
        *((("rules", rules_source),) if rules_source else ()),
    ]
    header += [("index", i.url) for i in spec.indexes]
    header += [("constraint", f"{c} ({why})") for c, why in checked.constraints]
    header.append(
        (
            "extra",
            "sdenv runtime ("
            + ", ".join(r.split(">")[0] for r in runtime_requirements(target.python))
            + ")",
        )
    )
    header += [("check", f"{c.status} {c.name}: {c.detail}") for c in checked.checks]
    header.append(("proof", f"{proof.status}: {proof.detail}"))
    return make_lockfile(header, res.pins)


def constraints_from_header(lock: Lockfile) -> list[tuple[str, str]]:
    out = []
    for value in lock.get_all("constraint"):
        c, _, why = value.partition(" (")
        out.append((c, why.rstrip(")")))
    return out


# --- the proof in a venv -------------------------------------------------------------------------


def prove(
    spec: EnvSpec,
    target: Target,
    lock: Lockfile,
    opts: LockOptions,
    workdir: Path,
    only: Sequence[str] | None = None,
) -> Proof:
    arch = target.uv_platform.split("-", 1)[0]
    if not sys.platform.startswith("linux") or platform.machine() != arch:
        return Proof("unverified", f"this machine is not {target.platform}")
    python = find_python(target.python)
    if python is None:
        return Proof("unverified", f"no Python {target.python} on this machine")
    workdir.mkdir(parents=True, exist_ok=True)
    req = workdir / "lock.txt"
    req.write_text(render_lockfile(lock))
    venv = workdir / "venv"
    opts.progress(f"{target.slug}: installing the lock into a throwaway venv")
    try:
        # No --seed (pip/setuptools): the proof needs exactly what the lock pins.
        run_uv(["venv", "--quiet", "--python", str(python), str(venv)])
        vpy = venv / "bin" / "python"
        install_lock(vpy, req, index_urls=[i.url for i in spec.indexes])
    except SdenvError as exc:
        return Proof("failed", f"install failed: {exc}", (ProofFailure("install", str(exc), ()),))
    opts.progress(f"{target.slug}: running the smoke checks in it")
    return smoke_prover(vpy, only or opts.smoke_checks)


# --- --search: bisect the culprit ----------------------------------------------------------------


def _short(detail: str) -> str:
    """A failure detail fit for a rule's evidence: no machine-local paths, one short line."""
    return re.sub(r"\s*\(/[^)]*\)?", "", detail).strip()[:200]


def _candidate_versions(
    spec: EnvSpec, target: Target, name: str, below: str, cons: Sequence[str]
) -> list[Version]:
    allowed = SpecifierSet(spec.requirements.get(name, ""))
    for c in cons:
        req = Requirement(c)
        if canonicalize_name(req.name) == name and not str(req.specifier).startswith("=="):
            allowed &= req.specifier
    top = Version(below)
    found: set[Version] = set()
    for index in (i.url for i in spec.indexes):
        for f in wheelmeta.list_files(index, name):
            v = f.version
            if v is None or v >= top or v.is_prerelease or not allowed.contains(v):
                continue
            if wheelmeta.wheel_fits(f.filename, target.python, target.uv_platform):
                found.add(v)
    return sorted(found)


def search_fix(
    spec: EnvSpec,
    target: Target,
    inputs: Inputs,
    checked: Checked,
    proof: Proof,
    opts: LockOptions,
    rules: Sequence[Rule],
    workdir: Path,
) -> tuple[Checked, Proof, list[Rule]]:
    """Bisect each culprit's releases for the newest one whose own check passes, bound it, retry."""
    learned: list[Rule] = []
    for round_ in range(SEARCH_ROUNDS):
        if proof.ok:
            break
        pins = checked.resolution.versions()
        culprits = [c for f in proof.failures for c in f.culprits if c in pins and c != "torch"]
        culprits = list(dict.fromkeys(culprits))
        if not culprits:
            break
        progressed = False
        for name in culprits:
            cons = [c for c, _ in checked.constraints]
            versions = _candidate_versions(spec, target, name, pins[name], cons)
            opts.progress(
                f"{target.slug}: --search bisecting {name} over {len(versions)} releases "
                f"below {pins[name]}"
            )

            base = [c for c in checked.constraints if _req_name(c[0]) != name]
            checks_of = [f.check for f in proof.failures if name in f.culprits]
            kinds = {f.kind for f in proof.failures if name in f.culprits}
            if "install" in checks_of:
                continue  # not an import failure: nothing to bisect

            def probe(
                v: Version,
                name: str = name,
                base: list[tuple[str, str]] = base,
                only: list[str] = checks_of,
                kinds: set[str] = kinds,
            ) -> bool:
                trial = Inputs(inputs.requirements, [*base, (f"{name}=={v}", "--search probe")])
                try:
                    c = resolve_and_check(spec, target, trial, opts, rules)
                except (ResolveError, LockError):
                    return False  # no solution with it: counts as failing
                if not c.ok:
                    return False
                lock = build_lockfile(spec, target, c, Proof("unverified", "probe"))
                work = workdir / f"probe-{name}-{v}"
                # Only the checks this culprit failed (the smoke adds their prerequisites).
                p = prove(spec, target, lock, opts, work, only)
                shutil.rmtree(work, ignore_errors=True)
                # Judged on this culprit's own failure alone: an older release may fail another
                # way (e.g. against a transformers that a later round bounds); the next round
                # bisects that failure in turn.
                return p.status != "unverified" and not any(
                    name in f.culprits and f.kind in kinds for f in p.failures
                )

            lo, hi, best = 0, len(versions) - 1, -1
            while lo <= hi:
                mid = (lo + hi) // 2
                if probe(versions[mid]):
                    best, lo = mid, mid + 1
                else:
                    hi = mid - 1
            if best < 0:
                continue
            first_bad = versions[best + 1] if best + 1 < len(versions) else Version(pins[name])
            torch_v = Version(pins["torch"]) if "torch" in pins else None
            when = (
                {"torch": f"=={torch_v.major}.{torch_v.minor}.*"}
                if torch_v
                else {name: f">={first_bad}"}
            )
            failing = next(f for f in proof.failures if name in f.culprits)
            rule = Rule(
                f"learned-{name}-{first_bad}",
                when,
                {name: f"<{first_bad}"},
                f"{name} >= {first_bad} fails the smoke check {failing.check!r} "
                f"with torch {pins.get('torch')}",
                f"sdenv lock --search on {target.slug}: {_short(failing.detail)}; "
                f"{name} {versions[best]} passes",
            )
            learned.append(rule)
            new_inputs = Inputs(
                inputs.requirements,
                [
                    *checked.constraints,
                    *((c, f"learned by --search: {rule.id}") for c in rule.constraints()),
                ],
            )
            checked = resolve_and_check(spec, target, new_inputs, opts, rules)
            # The probes ran only this culprit's checks: the bounded set gets the full proof.
            lock = build_lockfile(spec, target, checked, Proof("unverified", "search"))
            proof = prove(spec, target, lock, opts, workdir / f"round-{round_}")
            progressed = True
            break
        if not progressed:
            break
    return checked, proof, learned


# --- per target and per env ----------------------------------------------------------------------


def _changes(
    old: Mapping[str, str], new: Mapping[str, str]
) -> list[tuple[str, str | None, str | None]]:
    return [
        (n, old.get(n), new.get(n)) for n in sorted(set(old) | set(new)) if old.get(n) != new.get(n)
    ]


def _existing(path: Path) -> Lockfile | None:
    try:
        return read_lockfile(path) if path.exists() else None
    except LockfileError:
        return None  # an unreadable lock is replaced, not trusted


def lock_target(spec: EnvSpec, target: Target, opts: LockOptions) -> TargetResult:
    rules = list(opts.rules if opts.rules is not None else checks.default_rules())
    path = target.lockfile(opts.lock_dir)
    result = TargetResult(target, path)
    old = _existing(path)
    inputs = base_inputs(spec, target, rules)
    carried: list[tuple[str, str]] = []
    if old is not None and not opts.upgrade:
        # What the checks and --search found last time is kept, so a re-lock is a no-op; it is
        # dropped again if the spec moved and it no longer fits.
        carried = [
            c
            for c in constraints_from_header(old)
            if c not in inputs.constraints
            and c[1] != "spec"
            and not c[1].startswith("PyPI torch")
            and not (opts.upgrade_packages and _req_name(c[0]) in _canon_all(opts.upgrade_packages))
        ]
    preferences = old.pins if old is not None else ()
    try:
        try:
            checked = resolve_and_check(
                spec,
                target,
                Inputs(inputs.requirements, inputs.constraints + carried),
                opts,
                rules,
                preferences,
            )
            inputs.constraints += [c for c in carried if c[1].startswith("learned")]
        except (ResolveError, LockError):
            if not carried:
                raise
            checked = resolve_and_check(spec, target, inputs, opts, rules, preferences)
    except (ResolveError, LockError) as exc:
        result.status, result.message = "failed", str(exc)
        return result
    result.resolver = checked.resolution.resolver
    result.resolve_seconds = checked.resolution.seconds
    result.pins = checked.resolution.versions()
    result.checks = checked.checks
    result.changes = _changes(old.versions(), result.pins) if old else []
    result.constraints = [f"{c} ({why})" for c, why in checked.constraints]
    if not checked.ok:
        bad = [c for c in checked.checks if not c.ok]
        result.status = "failed"
        result.message = f"{target.slug}: " + "; ".join(c.line() for c in bad)
        return result

    proof = Proof("unverified", "--no-verify")
    if opts.verify:
        with throwaway_dir(f"sdenv-proof-{target.slug}-") as work:
            lock = build_lockfile(spec, target, checked, Proof("unverified", "pending"))
            proof = prove(spec, target, lock, opts, work / "proof")
            if not proof.ok and opts.search:
                checked, proof, learned = search_fix(
                    spec, target, inputs, checked, proof, opts, rules, work
                )
                result.learned = [r.to_toml() for r in learned]
                result.pins = checked.resolution.versions()
                result.checks = checked.checks
                result.changes = _changes(old.versions(), result.pins) if old else []
                result.constraints = [f"{c} ({why})" for c, why in checked.constraints]
            shutil.rmtree(work, ignore_errors=True)
    result.proof = proof
    if not proof.ok:
        result.status = "failed"
        details = "; ".join(
            f"{f.check}: {f.detail}"
            + (f" (culprits: {', '.join(f.culprits)})" if f.culprits else "")
            for f in proof.failures
        )
        fix = " Re-run with --search to bisect the culprit." if not opts.search else ""
        result.message = f"{target.slug}: import proof failed, lock not written: {details}.{fix}"
        return result

    lock = build_lockfile(spec, target, checked, proof, opts.rules_source)
    text = render_lockfile(lock)
    if opts.dry_run:
        result.status = "planned"
        return result
    same_txt = path.exists() and path.read_text() == text
    py_path = pylock_path(path)
    if same_txt and disagreement(replace(lock, path=path), py_path) is None:
        result.status = "unchanged"
        return result
    # The PEP 751 twin: the same pins and hashes, with each file's url from the index listing.
    opts.progress(f"{target.slug}: listing the index for {py_path.name}")
    try:
        py_text = render_pylock(lock, index_files(lock.pins, [i.url for i in spec.indexes]))
    except LockfileError as exc:
        result.status, result.message = "failed", f"{target.slug}: {exc}"
        return result
    from sdenv._fs import write_atomic

    if not same_txt:
        write_atomic(path, text)
    write_atomic(py_path, py_text)
    result.status = "written"
    return result


def env_file_lock(lock_dir: Path, env: str):  # type: ignore[no-untyped-def]
    """Serialise runs on one env: a lock file beside the lockfiles (not committed: dot-prefixed)."""
    from filelock import FileLock

    key = hashlib.sha256(str(lock_dir.resolve()).encode()).hexdigest()[:16]
    return FileLock(str(Path(tempfile.gettempdir()) / f"sdenv-lock-{env}-{key}.lock"), timeout=3600)


def lock_env(spec: EnvSpec, opts: LockOptions) -> list[TargetResult]:
    with env_file_lock(opts.lock_dir, spec.name):
        return [lock_target(spec, t, opts) for t in spec.targets]


# --- --check -------------------------------------------------------------------------------------


def check_target(spec: EnvSpec, target: Target, opts: LockOptions) -> TargetResult:
    """Is the committed lock still what the spec and data make? Header first, then a re-resolve."""
    path = target.lockfile(opts.lock_dir)
    result = TargetResult(target, path, status="fresh")
    try:
        lock = read_lockfile(path)
    except LockfileError as exc:
        result.status, result.message = "stale", f"{exc}"
        return result
    result.pins = lock.versions()
    # The header first: a field edited to another target is named as such (the pylock twin
    # check below would only say that the two files differ).
    fix = f"run `sdenv lock {spec.name}`"
    wrong = header_mismatch(lock, spec, target)
    if wrong:
        result.status, result.message = "stale", f"{path}: {wrong}; {fix}"
        return result
    disagrees = disagreement(lock, pylock_path(path))
    if disagrees:
        result.status, result.message = "stale", disagrees
        return result
    if lock.get("spec-sha256") != spec.sha256:
        result.status = "stale"
        result.message = (
            f"{path}: made from another version of {spec.path.name}; run `sdenv lock {spec.name}`"
        )
        return result
    if lock.get("data-sha256") != data_sha256():
        result.status = "stale"
        result.message = (
            f"{path}: made with other rules/torch tables than this sdenv; "
            f"run `sdenv lock {spec.name}`"
        )
        return result
    rules = list(opts.rules if opts.rules is not None else checks.default_rules())
    inputs = base_inputs(spec, target, rules)
    inputs.constraints += [c for c in constraints_from_header(lock) if c not in inputs.constraints]
    try:
        checked = resolve_and_check(
            spec,
            target,
            inputs,
            replace(opts, upgrade=False, upgrade_packages=()),
            rules,
            lock.pins,
        )
    except (ResolveError, LockError) as exc:
        result.status, result.message = "stale", f"{path}: no longer resolves: {exc}"
        return result
    result.changes = _changes(lock.versions(), checked.resolution.versions())
    if result.changes:
        result.status = "stale"
        result.message = (
            f"{path}: a fresh resolve differs in {len(result.changes)} pins; "
            f"run `sdenv lock {spec.name}`"
        )
        return result
    # Same versions: every hash must still be one the index serves (an edited or re-uploaded
    # file is refused by `pip --require-hashes` at install time; say so now), and the header's
    # CUDA line must be what these pins make.
    fresh = {p.name: set(p.hashes) for p in checked.resolution.pins}
    for pin in lock.pins:
        unknown = sorted(set(pin.hashes) - fresh.get(pin.name, set()))
        if unknown:
            result.status = "stale"
            result.message = (
                f"{path}: {pin.name}=={pin.version} has {len(unknown)} hash(es) the index does "
                f"not serve ({unknown[0][:20]}...): install would refuse it; {fix}"
            )
            return result
    want_cuda = build_lockfile(spec, target, checked, Proof("unverified", "")).get("cuda")
    if lock.get("cuda") != want_cuda:
        result.status = "stale"
        result.message = (
            f"{path}: header cuda is {lock.get('cuda')!r}, the pins make {want_cuda!r}; {fix}"
        )
    return result


def header_mismatch(lock: Lockfile, spec: EnvSpec, target: Target) -> str:
    """What in the lock's header says it is not ``target``'s lock of ``spec`` ("" if nothing).

    Compared field by field before any resolve: a lock whose header was edited to another
    Python, platform or CUDA line is not fresh, whatever its pins say.
    """
    expected = {
        "env": spec.name,
        "python": target.python,
        "platform": f"{target.platform} ({target.uv_platform})",
        "compute-capabilities": " ".join(spec.compute_capabilities),
        "fp8": spec.fp8,  # verify holds the box to this promise
    }
    for key, want in expected.items():
        if lock.get(key) != want:
            return f"header {key} is {lock.get(key)!r}, {target.slug} needs {want!r}"
    cuda = (lock.get("cuda") or "").split(" ", 1)[0]
    if cuda != spec.cuda:
        return f"header cuda is {lock.get('cuda')!r}, {spec.name} is built for {spec.cuda}"
    indexes = [i.url for i in spec.indexes]
    if lock.get_all("index") != indexes:
        return f"header index is {lock.get_all('index')}, {spec.name} uses {indexes}"
    return ""


def check_env(spec: EnvSpec, opts: LockOptions) -> list[TargetResult]:
    return [check_target(spec, t, opts) for t in spec.targets]


def host_python() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"
