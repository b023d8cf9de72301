"""Checks on a resolved set, before anything is installed: CUDA variant, xformers ABI, GPU
coverage and the known-incompatibility rules of ``data/rules.toml``.

Every function here is pure (pins and already-read wheel facts in, a :class:`CheckResult` out) so
the recorded facts of ``docs/evidence.md`` are their test oracles; ``sdenv.lock`` does the I/O.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from sdenv.errors import UsageError
from sdenv.gpu.compat import TORCH_ARCH_LISTS, arch_coverage
from sdenv.lock.lockfile import Pin
from sdenv.lock.spec import CUDA_VARIANTS
from sdenv.status import FAIL, PASS, SKIP, Outcome

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

# Where a PyPI torch's CUDA shows, in order of preference: the runtime package it pins (torch <=
# 2.10 directly, -cu12 suffixed; >= 2.11 through cuda-toolkit[cudart]), else the cuda-toolkit
# meta-package itself (torch 2.11+ Requires-Dist: cuda-toolkit[cudart,...]==13.0.3).
_CUDA_RUNTIMES = (
    "nvidia-cuda-runtime-cu12",
    "nvidia-cuda-runtime-cu11",
    "nvidia-cuda-runtime",
    "cuda-toolkit",
)
_LOCAL_CUDA_RE = re.compile(r"^cu(\d+)$")


class RulesError(UsageError):
    """A rules or table data file that cannot be used; names file, rule and field."""


@dataclass(frozen=True)
class CheckResult:
    name: str  # "cuda-variant", "xformers-abi", "gpu-coverage", "rules"
    status: Outcome
    detail: str
    packages: tuple[str, ...] = ()
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status != FAIL

    def line(self) -> str:
        tail = f"; fix: {self.fix}" if self.fix and self.status == FAIL else ""
        return f"{self.name}: {self.detail}{tail}"


# --- CUDA variant ---------------------------------------------------------------------------


def cuda_of_pins(pins: Mapping[str, str]) -> tuple[str, str] | None:
    """(variant, how we know) of the locked torch: its ``+cuXYZ`` tag, else the runtime pin."""
    torch = pins.get("torch")
    if torch is None:
        return None
    local = Version(torch).local or ""
    m = _LOCAL_CUDA_RE.match(local)
    if m:
        return f"cu{m.group(1)}", f"torch {torch}"
    if local:
        return local, f"torch {torch}"  # +cpu, +rocm6.1: not a CUDA build
    return cuda_of_runtime(pins)


def cuda_of_runtime(pins: Mapping[str, str]) -> tuple[str, str] | None:
    """(variant, how) from the CUDA runtime (or cuda-toolkit) pin in ``pins``: 13.2.86 -> cu132."""
    for runtime in _CUDA_RUNTIMES:
        if runtime in pins:
            release = Version(pins[runtime]).release
            if len(release) >= 2:
                return f"cu{release[0]}{release[1]}", f"{runtime}=={pins[runtime]}"
    return None


def check_cuda(pins: Mapping[str, str], cuda: str) -> CheckResult:
    found = cuda_of_pins(pins)
    if found is None:
        return CheckResult(
            "cuda-variant",
            FAIL,
            f"torch {pins.get('torch', '(not locked)')} pins no CUDA runtime: a CPU build",
            ("torch",),
            f"lock torch from an index that has {cuda} builds (e.g. the PyTorch {cuda} index)",
        )
    variant, how = found
    if variant == cuda:
        return CheckResult("cuda-variant", PASS, f"{cuda} ({how})", ("torch",))
    return CheckResult(
        "cuda-variant",
        FAIL,
        f"locked torch is built for {variant} ({how}), the spec wants {cuda}",
        ("torch",),
        f"bound torch to a release built for {cuda} (data/torch_cuda.toml) or change env.cuda "
        f"to {variant}",
    )


# --- PyPI torch -> CUDA table -----------------------------------------------------------------


@dataclass(frozen=True)
class TorchSeries:
    series: str  # "2.4"
    cuda: str
    runtime: str

    @property
    def key(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.series.split("."))


@cache
def torch_cuda_table() -> tuple[TorchSeries, ...]:
    text = resources.files("sdenv.data").joinpath("torch_cuda.toml").read_text()
    data = tomllib.loads(text)
    rows = [
        TorchSeries(series, str(row["cuda"]), str(row["runtime"]))
        for series, row in data["series"].items()
    ]
    return tuple(sorted(rows, key=lambda r: r.key))


def pypi_torch_series(cuda: str, torch_spec: str) -> list[TorchSeries]:
    """PyPI torch series built for ``cuda`` whose releases may satisfy the spec's torch range."""
    spec = SpecifierSet(torch_spec)
    return [
        s
        for s in torch_cuda_table()
        if s.cuda == cuda
        and any(spec.contains(v, prereleases=False) for v in (f"{s.series}.0", f"{s.series}.99"))
    ]


def pypi_torch_bound(cuda: str, torch_spec: str) -> str:
    """A PEP 440 range of the PyPI torch releases built for ``cuda``, e.g. '>=2.4,<2.5'.

    The table is ``data/torch_cuda.toml`` (``docs/evidence.md#E-torch-cuda-lines``).

    Raises when PyPI has none: the user needs the PyTorch index of that variant.
    """
    series = pypi_torch_series(cuda, torch_spec)
    if not series:
        known = sorted({s.cuda for s in torch_cuda_table()})
        raise UsageError(
            f"no PyPI torch release in 'torch{torch_spec}' is built for {cuda} (PyPI has "
            f"{', '.join(known)}); widen requirements.torch or add the PyTorch {cuda} index "
            f"(https://download.pytorch.org/whl/{cuda}) under [[indexes]]"
        )
    first, last = series[0], series[-1]
    nxt = (*last.key[:-1], last.key[-1] + 1)
    parts = [f">={first.series}", f"<{'.'.join(map(str, nxt))}"]
    # Series of another CUDA in between (none today) are cut out one by one.
    between = [s for s in torch_cuda_table() if first.key < s.key < last.key and s not in series]
    parts += [f"!={s.series}.*" for s in between]
    return ",".join(parts)


def is_pypi(url: str) -> bool:
    return url.rstrip("/") in ("https://pypi.org/simple", "https://pypi.python.org/simple")


# --- xformers ABI -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CppLib:
    """What ``xformers/cpp_lib.json`` says the wheel's C++ extension was built against."""

    torch: str  # "2.4.1+cu121"
    cuda: int | None  # 1201
    arch_list: str | None  # TORCH_CUDA_ARCH_LIST

    @classmethod
    def parse(cls, raw: bytes) -> CppLib:
        data: dict[str, Any] = json.loads(raw)
        version = data.get("version", {})
        env = data.get("env", {})
        return cls(
            str(version.get("torch", "")), version.get("cuda"), env.get("TORCH_CUDA_ARCH_LIST")
        )

    @property
    def cuda_major(self) -> int | None:
        return self.cuda // 100 if self.cuda else None


def xformers_matches(cpp: CppLib, torch: str, cuda: str) -> bool:
    try:
        built, locked = Version(cpp.torch), Version(torch)
    except InvalidVersion:
        return False
    spec_major = CUDA_VARIANTS[cuda][0] if cuda in CUDA_VARIANTS else None
    return built.public == locked.public and cpp.cuda_major == spec_major


def check_xformers_abi(pins: Mapping[str, str], cpp: CppLib | None, cuda: str) -> CheckResult:
    xf, torch = pins.get("xformers"), pins.get("torch")
    if xf is None or torch is None:
        return CheckResult("xformers-abi", SKIP, "xformers not in the lock")
    if cpp is None:
        return CheckResult(
            "xformers-abi",
            FAIL,
            f"xformers {xf}: its wheel has no xformers/cpp_lib.json to say what it was built for",
            ("xformers",),
            "pin an xformers release that ships cpp_lib.json (every PyPI wheel since 0.0.20 does)",
        )
    if xformers_matches(cpp, torch, cuda):
        return CheckResult(
            "xformers-abi",
            PASS,
            f"xformers {xf} was built for torch {cpp.torch} (CUDA {cpp.cuda}); "
            f"locked torch {torch}",
            ("xformers", "torch"),
        )
    return CheckResult(
        "xformers-abi",
        FAIL,
        f"xformers {xf} was built for torch {cpp.torch} (CUDA {cpp.cuda}) but the lock has torch "
        f"{torch} for {cuda}: its C++ extension will not load",
        ("xformers", "torch"),
        f"pin the xformers built for torch {Version(torch).public} (its cpp_lib.json), or pin "
        f"torch=={Version(cpp.torch).public}",
    )


# --- GPU coverage -----------------------------------------------------------------------------


def check_coverage(
    torch_cuda: str | None, xformers_archs: str | None, ccs: Sequence[str]
) -> CheckResult:
    torch_archs = TORCH_ARCH_LISTS.get(torch_cuda or "")
    if torch_archs is None:
        return CheckResult("gpu-coverage", SKIP, f"no recorded arch list for torch {torch_cuda}")
    gaps: list[str] = []
    hows: list[str] = []
    for cc in ccs:
        cov = arch_coverage(torch_archs, cc)
        (hows if cov.covered else gaps).append(f"torch {cc}: {cov.how}")
        if xformers_archs:
            xcov = arch_coverage(xformers_archs, cc)
            (hows if xcov.covered else gaps).append(f"xformers {cc}: {xcov.how}")
    if gaps:
        return CheckResult(
            "gpu-coverage",
            FAIL,
            "; ".join(gaps),
            ("torch", "xformers") if xformers_archs else ("torch",),
            "drop those compute capabilities from the spec or use a CUDA variant whose builds "
            "cover them (Blackwell needs cu128+)",
        )
    names = "torch and xformers" if xformers_archs else "torch"
    return CheckResult("gpu-coverage", PASS, f"{names} cover {', '.join(ccs)}", ("torch",))


# --- known-incompatibility rules ----------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    id: str
    when: Mapping[str, str]
    require: Mapping[str, str]
    reason: str
    evidence: str = ""
    source: str = field(default="", compare=False)

    def holds_for(self, pins: Mapping[str, str]) -> bool:
        """True when the ``when`` ranges all contain the pinned versions."""
        return all(
            name in pins and SpecifierSet(spec).contains(pins[name], prereleases=True)
            for name, spec in self.when.items()
        )

    def violations(self, pins: Mapping[str, str]) -> list[str]:
        return [
            f"{name}=={pins[name]}"
            for name, spec in self.require.items()
            if name in pins and not SpecifierSet(spec).contains(pins[name], prereleases=True)
        ]

    def constraints(self) -> list[str]:
        return [f"{name}{spec}" for name, spec in sorted(self.require.items())]

    def summary(self) -> str:
        cond = ", ".join(f"{n}{s}" for n, s in sorted(self.when.items()))
        return f"{self.id}: {', '.join(self.constraints())} when {cond}"

    def to_toml(self) -> str:
        def table(d: Mapping[str, str]) -> str:
            return "{ " + ", ".join(f'{n} = "{s}"' for n, s in sorted(d.items())) + " }"

        lines = [
            "[[rules]]",
            f'id = "{self.id}"',
            f"when = {table(self.when)}",
            f"require = {table(self.require)}",
            f"reason = {json.dumps(self.reason)}",
        ]
        if self.evidence:
            lines.append(f"evidence = {json.dumps(self.evidence)}")
        return "\n".join(lines) + "\n"


def default_rules_text() -> str:
    return resources.files("sdenv.data").joinpath("rules.toml").read_text()


def parse_rules(text: str, where: str = "rules.toml") -> list[Rule]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{where}: invalid TOML: {exc}") from exc
    rules: list[Rule] = []
    for i, raw in enumerate(data.get("rules", [])):
        field_ = f"{where}: rules[{i}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            raise RulesError(f"{field_}: needs an id string")
        tables: dict[str, dict[str, str]] = {}
        for key in ("when", "require"):
            table = raw.get(key)
            if not isinstance(table, dict) or not table:
                raise RulesError(f"{field_}.{key}: needs a table of name = 'range'")
            tables[key] = {}
            for name, spec in table.items():
                try:
                    SpecifierSet(str(spec))
                except InvalidSpecifier:
                    raise RulesError(f"{field_}.{key}.{name}: bad range {spec!r}") from None
                tables[key][canonicalize_name(name)] = str(spec)
        rules.append(
            Rule(
                raw["id"],
                tables["when"],
                tables["require"],
                str(raw.get("reason", "")),
                str(raw.get("evidence", "")),
                where,
            )
        )
    return rules


def fp8_backend_rules() -> list[Rule]:
    """``data/fp8_backends.json`` as rules: per torch range, the torchao range built for it."""
    from sdenv.fp8 import BACKEND, backend_pairs

    return [
        Rule(
            pair.id,
            {"torch": _pep440(pair.torch)},
            {BACKEND: _pep440(pair.torchao)},
            pair.reason,
            pair.evidence,
            "sdenv/data/fp8_backends.json",
        )
        for pair in backend_pairs()
    ]


def _pep440(spec: str) -> str:
    return str(SpecifierSet(spec))  # validates and normalises the table's ranges


@cache
def default_rules() -> tuple[Rule, ...]:
    shipped = parse_rules(default_rules_text(), "sdenv/data/rules.toml")
    return (*shipped, *fp8_backend_rules())


def check_fp8_backend(pins: Mapping[str, str], fp8: str) -> CheckResult:
    """An env that promises native FP8 must lock a backend built for its torch."""
    from sdenv.fp8 import BACKEND, backend_support

    if fp8 != "native":
        held = f"; {BACKEND} {pins[BACKEND]} locked" if BACKEND in pins else ""
        return CheckResult("fp8-backend", PASS, f"fp8 = {fp8!r}: no native backend needed{held}")
    if "torch" not in pins:
        return CheckResult(
            "fp8-backend", FAIL, "fp8 = 'native' but no torch is locked", ("torch",), "add torch"
        )
    support = backend_support(pins["torch"], pins.get(BACKEND))
    if support.ok:
        return CheckResult("fp8-backend", PASS, support.reason, (BACKEND, "torch"))
    return CheckResult(
        "fp8-backend",
        FAIL,
        f"fp8 = 'native': {support.reason}",
        (BACKEND, "torch"),
        f"add {BACKEND} to the spec's [requirements], or set fp8 = 'emulated'",
    )


def rules_before_resolve(rules: Iterable[Rule], torch_candidates: Sequence[str]) -> list[Rule]:
    """Rules whose ``when`` is only on torch and holds for every torch release the target may get.

    ``torch_candidates`` are the edges of the possible torch series ("2.4.0", "2.4.99"); empty when
    unknown (a non-PyPI index): then rules act only after resolving.
    """
    if not torch_candidates:
        return []
    return [
        r
        for r in rules
        if set(r.when) == {"torch"} and all(r.holds_for({"torch": v}) for v in torch_candidates)
    ]


def violated_rules(rules: Iterable[Rule], pins: Mapping[str, str]) -> list[Rule]:
    return [r for r in rules if r.holds_for(pins) and r.violations(pins)]


def check_rules(rules: Iterable[Rule], pins: Mapping[str, str]) -> CheckResult:
    rules = list(rules)
    bad = violated_rules(rules, pins)
    if not bad:
        return CheckResult("rules", PASS, f"{len(rules)} known-incompatibility rules hold")
    r = bad[0]
    return CheckResult(
        "rules",
        FAIL,
        f"{', '.join(r.violations(pins))} with "
        + ", ".join(f"{n}=={pins[n]}" for n in sorted(r.when))
        + f": {r.reason} (rule {r.id})",
        tuple(sorted({*r.require, *r.when})),
        f"constrain {', '.join(r.constraints())}",
    )


def versions_of(pins: Iterable[Pin]) -> dict[str, str]:
    return {p.name: p.version for p in pins}
