"""``sdenv lock`` per target and per env: inputs, resolve and checks, proof (and search), write.

A re-lock starts from the existing lock: its pins are preferences and the constraints the checks
and ``--search`` found are carried over (dropped again if the spec moved and they no longer fit),
so re-locking an unchanged spec rewrites nothing. A target that fails is not written; one that is
written gets its PEP 751 twin (:mod:`sdenv.lock.pylock`) beside it, both atomically, under a file
lock per env.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from sdenv._cleanup import throwaway_dir
from sdenv.lock.checked import Checked, Constraint, resolve_and_check
from sdenv.lock.checks import CheckResult, Rule
from sdenv.lock.header import build_lockfile, constraints_from_header
from sdenv.lock.inputs import Inputs, base_inputs, canon_all, req_name
from sdenv.lock.lockfile import Lockfile, LockfileError, read_lockfile, render_lockfile
from sdenv.lock.options import LockError, LockOptions
from sdenv.lock.proof import Proof, prove
from sdenv.lock.pylock import disagreement, index_files, pylock_path, render_pylock
from sdenv.lock.resolve import ResolveError
from sdenv.lock.search import search_fix
from sdenv.lock.spec import EnvSpec, Target


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

    def done(self, status: str, message: str) -> TargetResult:
        """This result, ended with ``status`` (failed, stale) and why."""
        self.status, self.message = status, message
        return self


def pin_changes(
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


def _carried(old: Lockfile | None, inputs: Inputs, opts: LockOptions) -> list[Constraint]:
    """What the checks and --search found last time is kept, so a re-lock is a no-op."""
    if old is None or opts.upgrade:
        return []
    return [
        c
        for c in constraints_from_header(old)
        if c not in inputs.constraints
        and c[1] != "spec"
        and not c[1].startswith("PyPI torch")
        and not (opts.upgrade_packages and req_name(c[0]) in canon_all(opts.upgrade_packages))
    ]


def _resolve_keeping(
    spec: EnvSpec,
    target: Target,
    inputs: Inputs,
    old: Lockfile | None,
    opts: LockOptions,
    rules: list[Rule],
) -> Checked:
    """Resolve with the old lock's pins as preferences and its carried constraints; without
    them again if the spec moved and they no longer fit. Learned rules join ``inputs``."""
    carried = _carried(old, inputs, opts)
    preferences = old.pins if old is not None else ()
    with_carried = Inputs(inputs.requirements, inputs.constraints + carried)
    try:
        checked = resolve_and_check(spec, target, with_carried, opts, rules, preferences)
    except (ResolveError, LockError):
        if not carried:
            raise
        return resolve_and_check(spec, target, inputs, opts, rules, preferences)
    inputs.constraints += [c for c in carried if c[1].startswith("learned")]
    return checked


def _record(result: TargetResult, checked: Checked, old: Lockfile | None) -> None:
    result.pins = checked.resolution.versions()
    result.checks = checked.checks
    result.changes = pin_changes(old.versions(), result.pins) if old else []
    result.constraints = [f"{c} ({why})" for c, why in checked.constraints]


def _prove(
    spec: EnvSpec,
    inputs: Inputs,
    checked: Checked,
    opts: LockOptions,
    rules: list[Rule],
    result: TargetResult,
    old: Lockfile | None,
) -> tuple[Checked, Proof]:
    """The import proof in a throwaway dir; on failure with --search, the bisected set."""
    target = result.target
    if not opts.verify:
        return checked, Proof("unverified", "--no-verify")
    with throwaway_dir(f"sdenv-proof-{target.slug}-") as work:
        lock = build_lockfile(spec, target, checked, Proof("unverified", "pending"))
        proof = prove(spec, target, lock, opts, work / "proof")
        if not proof.ok and opts.search:
            checked, proof, learned = search_fix(
                spec, target, inputs, checked, proof, opts, rules, work
            )
            result.learned = [r.to_toml() for r in learned]
            _record(result, checked, old)
        shutil.rmtree(work, ignore_errors=True)
    return checked, proof


def _proof_failed(target: Target, proof: Proof, opts: LockOptions) -> str:
    details = "; ".join(
        f"{f.check}: {f.detail}" + (f" (culprits: {', '.join(f.culprits)})" if f.culprits else "")
        for f in proof.failures
    )
    fix = " Re-run with --search to bisect the culprit." if not opts.search else ""
    return f"{target.slug}: import proof failed, lock not written: {details}.{fix}"


def _write(
    spec: EnvSpec, checked: Checked, proof: Proof, opts: LockOptions, result: TargetResult
) -> TargetResult:
    target, path = result.target, result.path
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
        return result.done("failed", f"{target.slug}: {exc}")
    from sdenv._fs import write_atomic

    if not same_txt:
        write_atomic(path, text)
    write_atomic(py_path, py_text)
    result.status = "written"
    return result


def lock_target(spec: EnvSpec, target: Target, opts: LockOptions) -> TargetResult:
    rules = opts.rule_set()
    result = TargetResult(target, target.lockfile(opts.lock_dir))
    old = _existing(result.path)
    inputs = base_inputs(spec, target, rules)
    try:
        checked = _resolve_keeping(spec, target, inputs, old, opts, rules)
    except (ResolveError, LockError) as exc:
        return result.done("failed", str(exc))
    result.resolver = checked.resolution.resolver
    result.resolve_seconds = checked.resolution.seconds
    _record(result, checked, old)
    if not checked.ok:
        bad = [c for c in checked.checks if not c.ok]
        return result.done("failed", f"{target.slug}: " + "; ".join(c.line() for c in bad))
    checked, result.proof = _prove(spec, inputs, checked, opts, rules, result, old)
    if not result.proof.ok:
        return result.done("failed", _proof_failed(target, result.proof, opts))
    return _write(spec, checked, result.proof, opts, result)


def env_file_lock(lock_dir: Path, env: str):  # type: ignore[no-untyped-def]
    """Serialise runs on one env: a lock file beside the lockfiles (not committed: dot-prefixed)."""
    from filelock import FileLock

    key = hashlib.sha256(str(lock_dir.resolve()).encode()).hexdigest()[:16]
    return FileLock(str(Path(tempfile.gettempdir()) / f"sdenv-lock-{env}-{key}.lock"), timeout=3600)


def lock_env(spec: EnvSpec, opts: LockOptions) -> list[TargetResult]:
    with env_file_lock(opts.lock_dir, spec.name):
        return [lock_target(spec, t, opts) for t in spec.targets]


def host_python() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"
