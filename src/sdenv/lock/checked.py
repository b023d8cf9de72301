"""Resolve a target, check the set, and re-resolve with each fix until the checks hold.

Two checks fix what they find instead of failing: a rule whose torch condition only shows after
resolving adds its constraint; an xformers built for another torch (its own ``cpp_lib.json``, read
by range requests through :mod:`sdenv.lock.wheelmeta`) is replaced by the newest release built for
the resolved torch. Both are bounded (:data:`MAX_FIXES`); every constraint keeps its why.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from sdenv.lock import checks, wheelmeta
from sdenv.lock.checks import CheckResult, CppLib, Rule
from sdenv.lock.inputs import Inputs, req_name
from sdenv.lock.lockfile import Pin
from sdenv.lock.options import LockError, LockOptions
from sdenv.lock.resolve import Resolution, ResolveError, ResolveInput, resolve
from sdenv.lock.spec import EnvSpec, Target

MAX_FIXES = 6  # re-resolutions after a rule or the xformers check changed the constraints
XFORMERS_SEARCH_LIMIT = 12  # newest xformers releases read when looking for the matching one

Constraint = tuple[str, str]  # (constraint line, why)


@dataclass
class Checked:
    resolution: Resolution
    checks: list[CheckResult]
    constraints: list[Constraint]

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


def _rules_involved(message: str, cons: Sequence[Constraint], opts: LockOptions) -> str:
    """The rules whose constraints bear on a failed resolve: the resolver sees a bare
    ``diffusers<0.36`` and cannot say that a shipped rule put it there."""
    text = message.lower()
    source = opts.rules_source or "src/sdenv/data/rules.toml"
    named = [
        f"{c} from {why} ({source})"
        for c, why in cons
        if why.startswith("rule ") and re.search(rf"\b{re.escape(req_name(c))}\b", text)
    ]
    return f" [constraints from known-incompatibility rules: {'; '.join(named)}]" if named else ""


def _resolve(
    spec: EnvSpec,
    target: Target,
    requirements: Sequence[str],
    cons: Sequence[Constraint],
    opts: LockOptions,
    preferences: Sequence[Pin],
) -> Resolution:
    opts.progress(f"{target.slug}: resolving with {opts.resolver}")
    try:
        return resolve(
            target,
            ResolveInput(
                tuple(requirements),
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


def _xformers_abi(
    spec: EnvSpec,
    target: Target,
    xf: Pin,
    pins: dict[str, str],
    tried: list[str],
    opts: LockOptions,
) -> tuple[CheckResult, CppLib | None, Constraint | None]:
    """The xformers ABI check, its cpp_lib.json, and the constraint that fixes a mismatch (if an
    xformers release built for the resolved torch exists)."""
    opts.progress(f"{target.slug}: reading xformers {xf.version} cpp_lib.json")
    cpp, _where = _cpp_lib(spec, target, xf)
    abi = checks.check_xformers_abi(pins, cpp, spec.cuda)
    if abi.ok:
        return abi, cpp, None
    tried.append(xf.version)
    opts.progress(f"{target.slug}: searching the xformers built for torch {pins['torch']}")
    match = find_matching_xformers(spec, target, pins["torch"], tried)
    if match is not None:
        why = f"xformers built for torch {pins['torch']}: cpp_lib.json"
        return abi, cpp, (f"xformers=={match}", why)
    return replace(abi, detail=abi.detail + "; no xformers release on the index matches"), cpp, None


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
        res = _resolve(spec, target, inputs.requirements, cons, opts, preferences)
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
            abi, cpp, fix = _xformers_abi(spec, target, xf, pins, tried_xformers, opts)
            if fix is not None:
                cons = [c for c in cons if not c[0].startswith("xformers==")] + [fix]
                continue
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
