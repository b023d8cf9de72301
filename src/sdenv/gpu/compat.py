"""Compatibility facts shared by lock, probe and verify: CUDA driver floors and arch coverage.

Standard library only: the probe imports this inside target environments. The tables are data,
each row with its source: ``data/driver_floors.json`` (NVIDIA CUDA Toolkit release notes),
``data/torch_arch_lists.json`` (torch's ``torch.cuda.get_arch_list()``) and
``data/xformers_arch_lists.json`` (each xformers wheel's ``cpp_lib.json``); the coverage rules are
the CUDA C programming guide's binary/PTX compatibility (docs/evidence.md#E-arch-lists,
docs/evidence.md#E-scaled-mm).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sdenv import _data

# FP8 tensor cores (and torch._scaled_mm) start at Ada (8.9); Hopper 9.0, Blackwell 10.x/12.x.
FP8_NATIVE_MIN_CC = (8, 9)

_ARCH_RE = re.compile(r"^(?:(sm|compute)_)?(\d+)\.?(\d)([af]?)(\+PTX)?$")


@dataclass(frozen=True)
class Arch:
    """One entry of an arch list: SASS for ``major.minor``, or PTX that the driver can JIT."""

    major: int
    minor: int
    ptx: bool
    specific: bool  # sm_90a / sm_100f style: runs only on that exact family member

    def __str__(self) -> str:
        suffix = "a" if self.specific else ""
        return f"{'compute' if self.ptx else 'sm'}_{self.major}{self.minor}{suffix}"


def parse_arch(entry: str) -> list[Arch]:
    """Accept torch's ``sm_90``/``compute_90`` and TORCH_CUDA_ARCH_LIST's ``8.0+PTX``/``9.0a``."""
    m = _ARCH_RE.match(entry.strip())
    if not m:
        raise ValueError(f"not a CUDA arch: {entry!r}")
    kind, major_s, minor_s, suffix, plus_ptx = m.groups()
    if kind is None and "." not in entry:
        raise ValueError(f"not a CUDA arch: {entry!r}")
    major, minor = int(major_s), int(minor_s)
    specific = bool(suffix)
    if kind == "compute":
        return [Arch(major, minor, ptx=True, specific=specific)]
    archs = [Arch(major, minor, ptx=False, specific=specific)]
    if plus_ptx:
        archs.append(Arch(major, minor, ptx=True, specific=False))
    return archs


def parse_arch_list(entries: Iterable[str] | str) -> list[Arch]:
    if isinstance(entries, str):
        entries = entries.replace(";", " ").split()
    return [arch for entry in entries for arch in parse_arch(entry)]


def parse_cc(cc: str | tuple[int, int]) -> tuple[int, int]:
    if isinstance(cc, tuple):
        return cc
    major, minor = cc.split(".")
    return int(major), int(minor)


def _load_driver_floors() -> tuple[dict[tuple[int, int], str], dict[int, str]]:
    """``data/driver_floors.json``: (full-feature floor per CUDA minor, floor per CUDA major)."""
    data = _data.load_json("driver_floors.json")
    full = {parse_cc(str(row["cuda"])): str(row["driver"]) for row in data["full"]}
    minor = {int(row["cuda_major"]): str(row["driver"]) for row in data["minor_compat"]}
    return full, minor


def _load_torch_arch_lists() -> dict[str, tuple[str, ...]]:
    """``data/torch_arch_lists.json``: CUDA variant (``cu128``) -> torch's arch list."""
    rows = _data.load_json("torch_arch_lists.json")["builds"]
    return {str(row["cuda"]): tuple(str(a) for a in row["archs"]) for row in rows}


def _load_xformers_arch_lists() -> dict[str, str]:
    """``data/xformers_arch_lists.json``: torch CUDA variant -> its xformers' arch list."""
    rows = _data.load_json("xformers_arch_lists.json")["builds"]
    return {str(row["cuda"]): str(row["arch_list"]) for row in rows}


# The tables, each row with its evidence, in src/sdenv/data/ (each file is part of every lock's
# data-sha256). Full-feature driver floor per CUDA (major, minor) and, per major, the floor of
# minor-version compatibility (runs, PTX JIT excluded).
DRIVER_FLOORS, MINOR_COMPAT_FLOORS = _load_driver_floors()
# Arch lists of the CUDA builds of torch on PyPI and download.pytorch.org, per CUDA variant.
TORCH_ARCH_LISTS: Mapping[str, tuple[str, ...]] = _load_torch_arch_lists()
# TORCH_CUDA_ARCH_LIST of the xformers wheels a resolver pairs with each torch CUDA variant.
XFORMERS_ARCH_LISTS: Mapping[str, str] = _load_xformers_arch_lists()


@dataclass(frozen=True)
class Coverage:
    covered: bool
    how: str  # e.g. "sm_86 SASS runs on 8.9 (same major)", "PTX compute_80 JIT", or why not


def arch_coverage(arch_list: Iterable[str] | str, cc: str | tuple[int, int]) -> Coverage:
    """Can kernels from ``arch_list`` run on a GPU of compute capability ``cc``?

    SASS for X.y runs on X.z for z >= y (so sm_86 serves Ada 8.9, which torch never lists);
    ``a``-suffixed SASS only on exactly X.y; PTX for X.y is JIT-compiled on any cc >= X.y.
    """
    major, minor = parse_cc(cc)
    archs = parse_arch_list(arch_list)
    target = f"{major}.{minor}"
    sass = [
        a
        for a in archs
        if not a.ptx and a.major == major and (a.minor == minor if a.specific else a.minor <= minor)
    ]
    if sass:
        best = max(sass, key=lambda a: (a.minor, not a.specific))
        exact = best.minor == minor
        return Coverage(True, f"{best} SASS" + ("" if exact else f" runs on {target} (same major)"))
    ptx = [a for a in archs if a.ptx and (a.major, a.minor) <= (major, minor)]
    if ptx:
        best = max(ptx, key=lambda a: (a.major, a.minor))
        return Coverage(True, f"PTX {best} JIT-compiled for {target} (slow first run)")
    listed = " ".join(str(a) for a in archs) or "nothing"
    return Coverage(False, f"no kernel for {target}: the build has {listed}")


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version))


@dataclass(frozen=True)
class DriverFit:
    status: str  # "full", "minor-compat" (runs, PTX JIT excluded) or "too-old"
    floor: str
    reason: str


def driver_fit(driver: str, cuda: tuple[int, int]) -> DriverFit:
    """Does NVIDIA driver ``driver`` run a CUDA ``cuda`` runtime (e.g. (12, 1))?"""
    have = _version_tuple(driver)
    full = DRIVER_FLOORS.get(cuda)
    label = f"CUDA {cuda[0]}.{cuda[1]}"
    if full and have >= _version_tuple(full):
        return DriverFit("full", full, f"driver {driver} >= {full}, the full {label} floor")
    compat = MINOR_COMPAT_FLOORS.get(cuda[0])
    if compat and have >= _version_tuple(compat):
        return DriverFit(
            "minor-compat",
            compat,
            f"driver {driver} runs {label} by minor-version compatibility (>= {compat}); "
            f"PTX JIT needs >= {full or 'a newer driver'}",
        )
    floor = compat or full or "unknown"
    return DriverFit(
        "too-old", floor, f"driver {driver} is too old for {label}: needs >= {floor}; update it"
    )
