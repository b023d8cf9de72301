"""Compatibility facts shared by lock, probe and verify: CUDA driver floors and arch coverage.

Standard library only: the probe imports this inside target environments.
Sources: NVIDIA CUDA Toolkit release notes, Table 2 (driver floors) and the CUDA C programming
guide's binary/PTX compatibility rules; PyTorch wheels' ``torch.cuda.get_arch_list()``. Each
fact with its source: docs/evidence.md#E-driver-floors, docs/evidence.md#E-arch-lists,
docs/evidence.md#E-xformers-cpp-lib and docs/evidence.md#E-scaled-mm.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# FP8 tensor cores (and torch._scaled_mm) start at Ada (8.9); Hopper 9.0, Blackwell 10.x/12.x.
FP8_NATIVE_MIN_CC = (8, 9)

# Full-feature driver floor per CUDA toolkit (NVIDIA CUDA release notes, Table 2, Linux x86_64,
# the GA row of each minor). 13.1 and 13.2: Table 2 of the CUDA 13.2 release notes
# (https://docs.nvidia.com/cuda/archive/13.2.0/cuda-toolkit-release-notes/) lists
# "CUDA 13.1 GA >=590.44.01" and "CUDA 13.2 GA >=595.45.04" (Update rows: 590.48.01, 595.58.03).
DRIVER_FLOORS: Mapping[tuple[int, int], str] = {
    (11, 8): "520.61.05",
    (12, 1): "530.30.02",
    (12, 4): "550.54.14",
    (12, 6): "560.28.03",
    (12, 8): "570.26",
    (12, 9): "575.51.03",
    (13, 0): "580.65.06",
    (13, 1): "590.44.01",
    (13, 2): "595.45.04",
}
# Minor-version compatibility: any runtime of a major runs on this driver (PTX JIT excluded).
MINOR_COMPAT_FLOORS: Mapping[int, str] = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}

# Arch lists of the CUDA builds of torch on PyPI and download.pytorch.org, per CUDA variant.
TORCH_ARCH_LISTS: Mapping[str, tuple[str, ...]] = {
    "cu118": ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"),
    "cu121": ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"),
    "cu124": ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"),
    "cu126": ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"),
    "cu128": ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"),
    "cu129": ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"),
    "cu130": ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"),
    # PyPI torch 2.15.0 (cu132), read from the wheel's torch/lib/libtorch_python.so, which holds
    # the string torch._C._cuda_getArchFlags() returns (a ranged read, no GPU or install needed):
    #   python -c "import re; from sdenv.lock import wheelmeta as w; f = w.find_wheel(
    #     ['https://pypi.org/simple'], 'torch', '2.15.0', '3.11', 'x86_64-manylinux_2_28');
    #     print(set(re.findall(rb'sm_[0-9]+[af]?(?: sm_[0-9]+[af]?)+',
    #     w.read_member(f, 'torch/lib/libtorch_python.so'))))"
    # -> 'sm_75 sm_80 sm_86 sm_90 sm_100 sm_120' (2.14.1, cu130, gives the same string).
    "cu132": ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"),
}

# TORCH_CUDA_ARCH_LIST of the xformers wheels a resolver pairs with each torch CUDA variant, as
# their xformers/cpp_lib.json records it (0.0.28.post1/0.0.29.post1 cu121 builds serve the
# cu121/cu124 torches; 0.0.33.post2/0.0.35 are cu128 builds: docs/evidence.md#E-xformers-cpp-lib).
# Read with sdenv's wheel reader
# (wheelmeta.read_member(find_wheel(..., 'xformers', V, ...), 'xformers/cpp_lib.json')):
# 0.0.29.post3 (cp310-cp312): torch 2.6.0+cu124, "6.0+PTX 7.0 7.5 8.0+PTX 9.0a";
# 0.0.31.post1 (abi3): torch 2.7.1+cu126 (version.cuda 1208), "7.5 8.0+PTX 9.0a".
# No xformers on PyPI is built for a CUDA 13 torch: cu130/cu132 have no entry.
XFORMERS_ARCH_LISTS: Mapping[str, str] = {
    "cu121": "6.0+PTX 7.0 7.5 8.0+PTX 9.0a",
    "cu124": "6.0+PTX 7.0 7.5 8.0+PTX 9.0a",
    "cu126": "7.5 8.0+PTX 9.0a",
    "cu128": "7.5 8.0+PTX 8.0 9.0a",
}

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
