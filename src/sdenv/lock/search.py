"""``sdenv lock --search``: when the proof fails, bisect each culprit's releases and bound it.

Per round, for the first culprit that has a passing release: list its releases below the failing
pin (wheels that fit the target), bisect them for the newest one whose own failing checks pass
(each probe a full resolve, checks and a proof of those checks), learn a rule ``name < first bad``
with the evidence, re-resolve with it and prove the bounded set in full. At most
:data:`SEARCH_ROUNDS` rounds: an older release may fail another way, which the next round bisects.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from sdenv.lock import wheelmeta
from sdenv.lock.checked import Checked, Constraint, resolve_and_check
from sdenv.lock.checks import Rule
from sdenv.lock.header import build_lockfile
from sdenv.lock.inputs import Inputs, req_name
from sdenv.lock.options import LockError, LockOptions
from sdenv.lock.proof import Proof, ProofFailure, prove
from sdenv.lock.resolve import ResolveError
from sdenv.lock.spec import EnvSpec, Target

SEARCH_ROUNDS = 6  # --search: culprits bounded one after the other, each with a fresh proof


def _evidence_detail(detail: str) -> str:
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


def newest_passing(versions: Sequence[Version], passes: Callable[[Version], bool]) -> int:
    """Index of the newest version that passes (-1: none), bisecting: an old enough release
    passes and every newer one from the first failure on fails."""
    lo, hi, best = 0, len(versions) - 1, -1
    while lo <= hi:
        mid = (lo + hi) // 2
        if passes(versions[mid]):
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def learned_rule(
    name: str,
    good: Version,
    first_bad: Version,
    pins: dict[str, str],
    failing: ProofFailure,
    slug: str,
) -> Rule:
    """The rules.toml rule a search learned: ``name < first_bad`` on this torch series."""
    torch_v = Version(pins["torch"]) if "torch" in pins else None
    when = (
        {"torch": f"=={torch_v.major}.{torch_v.minor}.*"} if torch_v else {name: f">={first_bad}"}
    )
    return Rule(
        f"learned-{name}-{first_bad}",
        when,
        {name: f"<{first_bad}"},
        f"{name} >= {first_bad} fails the smoke check {failing.check!r} "
        f"with torch {pins.get('torch')}",
        f"sdenv lock --search on {slug}: {_evidence_detail(failing.detail)}; {name} {good} passes",
    )


@dataclass(frozen=True)
class _Search:
    spec: EnvSpec
    target: Target
    inputs: Inputs
    opts: LockOptions
    rules: Sequence[Rule]
    workdir: Path

    def passes(
        self, name: str, v: Version, base: list[Constraint], only: list[str], kinds: set[str]
    ) -> bool:
        """Does the set with ``name==v`` resolve, check and pass the checks ``name`` failed?"""
        trial = Inputs(self.inputs.requirements, [*base, (f"{name}=={v}", "--search probe")])
        try:
            c = resolve_and_check(self.spec, self.target, trial, self.opts, self.rules)
        except (ResolveError, LockError):
            return False  # no solution with it: counts as failing
        if not c.ok:
            return False
        lock = build_lockfile(self.spec, self.target, c, Proof("unverified", "probe"))
        work = self.workdir / f"probe-{name}-{v}"
        # Only the checks this culprit failed (the smoke adds their prerequisites).
        p = prove(self.spec, self.target, lock, self.opts, work, only)
        shutil.rmtree(work, ignore_errors=True)
        # Judged on this culprit's own failure alone: an older release may fail another way
        # (e.g. against a transformers that a later round bounds); the next round bisects that
        # failure in turn.
        return p.status != "unverified" and not any(
            name in f.culprits and f.kind in kinds for f in p.failures
        )

    def rule_for(self, name: str, checked: Checked, proof: Proof) -> Rule | None:
        """The rule bounding ``name`` below its first failing release (None: nothing passes)."""
        pins = checked.resolution.versions()
        cons = [c for c, _ in checked.constraints]
        versions = _candidate_versions(self.spec, self.target, name, pins[name], cons)
        self.opts.progress(
            f"{self.target.slug}: --search bisecting {name} over {len(versions)} releases "
            f"below {pins[name]}"
        )
        base = [c for c in checked.constraints if req_name(c[0]) != name]
        checks_of = [f.check for f in proof.failures if name in f.culprits]
        kinds = {f.kind for f in proof.failures if name in f.culprits}
        if "install" in checks_of:
            return None  # not an import failure: nothing to bisect
        best = newest_passing(versions, lambda v: self.passes(name, v, base, checks_of, kinds))
        if best < 0:
            return None
        first_bad = versions[best + 1] if best + 1 < len(versions) else Version(pins[name])
        failing = next(f for f in proof.failures if name in f.culprits)
        return learned_rule(name, versions[best], first_bad, pins, failing, self.target.slug)

    def round(self, checked: Checked, proof: Proof, n: int) -> tuple[Checked, Proof, Rule] | None:
        """Bound the first culprit that has a passing release; the bounded set, fully proven."""
        pins = checked.resolution.versions()
        culprits = [c for f in proof.failures for c in f.culprits if c in pins and c != "torch"]
        for name in dict.fromkeys(culprits):
            rule = self.rule_for(name, checked, proof)
            if rule is None:
                continue
            learned = ((c, f"learned by --search: {rule.id}") for c in rule.constraints())
            new_inputs = Inputs(self.inputs.requirements, [*checked.constraints, *learned])
            checked = resolve_and_check(self.spec, self.target, new_inputs, self.opts, self.rules)
            # The probes ran only this culprit's checks: the bounded set gets the full proof.
            lock = build_lockfile(self.spec, self.target, checked, Proof("unverified", "search"))
            proof = prove(self.spec, self.target, lock, self.opts, self.workdir / f"round-{n}")
            return checked, proof, rule
        return None


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
    search = _Search(spec, target, inputs, opts, rules, workdir)
    learned: list[Rule] = []
    for n in range(SEARCH_ROUNDS):
        if proof.ok:
            break
        step = search.round(checked, proof, n)
        if step is None:
            break
        checked, proof, rule = step
        learned.append(rule)
    return checked, proof, learned
