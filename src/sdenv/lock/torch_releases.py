"""PyPI torch releases that no shipped env covers, so the env matrix cannot lag torch silently.

A PyPI torch wheel carries no ``+cuXYZ`` tag: its CUDA line shows only in what its METADATA
requires (``nvidia-cuda-runtime-cu12==12.8.90`` up to torch 2.10, ``cuda-toolkit[cudart]==13.2.2``
from 2.11 on). ``data/torch_cuda.toml`` records that per series; a release is covered when an env
built for its series' CUDA line admits it in ``requirements.torch``. For every release that is not
(or whose series the table lacks), the CUDA line is read from the wheel's own METADATA by HTTP
range requests (:mod:`sdenv.lock.wheelmeta`), so the report says which env to add or widen.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from packaging.markers import InvalidMarker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from sdenv.lock import checks, wheelmeta
from sdenv.lock.spec import EnvSpec

MIN_TORCH = Version("2.4")  # the oldest torch any sdenv env targets (cu121 is torch 2.4.x)
# The wheel whose METADATA is read: the one the table was measured on (cp311, linux x86_64), else
# another CPython of the same platform when a release has no cp311 wheel.
READ_PYTHONS = ("3.11", "3.12", "3.13", "3.10")
READ_PLATFORM = "x86_64-manylinux_2_28"
_MARKER_ENV = {
    "platform_system": "Linux",
    "sys_platform": "linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}


@dataclass(frozen=True)
class UncoveredTorch:
    """One torch release on the index that no shipped env locks."""

    version: str
    series: str  # "2.15"
    cuda: str | None  # the CUDA line its wheel's METADATA names (None: not readable)
    how: str  # where the CUDA line comes from: "cuda-toolkit==13.2.2 in torch-2.15.0-....whl"
    table_cuda: str | None  # what data/torch_cuda.toml says for the series (None: absent)
    reason: str  # one line for people

    @property
    def in_table(self) -> bool:
        return self.table_cuda is not None


@dataclass(frozen=True)
class TorchCoverage:
    index: str
    releases: tuple[str, ...]  # the final releases >= MIN_TORCH the index lists
    uncovered: tuple[UncoveredTorch, ...]
    error: str = ""  # the index could not be listed: nothing is known, say so


def final_releases(index_url: str) -> list[Version]:
    """Final torch releases >= MIN_TORCH with a wheel on ``index_url`` (PEP 503 simple page)."""
    files = wheelmeta.list_files(index_url, "torch", strict=True)
    found = {
        v
        for f in files
        if f.is_wheel
        and (v := f.version) is not None
        and not (v.is_prerelease or v.is_devrelease or v.local)
        and v >= MIN_TORCH
    }
    return sorted(found)


def series_of(version: Version) -> str:
    return f"{version.major}.{version.minor}"


def covering_envs(specs: Iterable[EnvSpec], version: Version, cuda: str) -> list[str]:
    """Envs built for ``cuda`` whose torch range admits ``version``."""
    return [
        s.name
        for s in specs
        if s.cuda == cuda
        and SpecifierSet(s.requirements.get("torch", "")).contains(version, prereleases=False)
    ]


def cuda_of_requires(requires: Iterable[str]) -> tuple[str, str] | None:
    """(variant, requirement) from a linux x86_64 wheel's Requires-Dist lines, e.g. ('cu132',
    'cuda-toolkit==13.2.2'): the pinned CUDA runtime, else the pinned cuda-toolkit."""
    pins: dict[str, str] = {}
    for line in requires:
        try:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate(_MARKER_ENV):
                continue
        except (InvalidRequirement, InvalidMarker):
            continue
        for spec in req.specifier:
            if spec.operator == "==":
                pins[canonicalize_name(req.name)] = spec.version.removesuffix(".*")
    try:
        return checks.cuda_of_runtime(pins)
    except InvalidVersion:
        return None


def requires_dist(metadata: bytes) -> list[str]:
    """The Requires-Dist values of a METADATA file (an email-header document)."""
    from email.parser import BytesHeaderParser

    return [str(v) for v in BytesHeaderParser().parsebytes(metadata).get_all("Requires-Dist", [])]


def wheel_cuda(index_url: str, version: Version) -> tuple[str | None, str]:
    """The CUDA line torch ``version``'s own wheel pins, and where that was read."""
    for python in READ_PYTHONS:
        wheel = wheelmeta.find_wheel([index_url], "torch", str(version), python, READ_PLATFORM)
        if wheel is None:
            continue
        meta = wheelmeta.read_member(wheel, f"torch-{version}.dist-info/METADATA")
        if meta is None:
            return None, f"{wheel.filename} has no torch-{version}.dist-info/METADATA"
        found = cuda_of_requires(requires_dist(meta))
        if found is None:
            return None, f"{wheel.filename} pins no CUDA runtime (a CPU build?)"
        return found[0], f"{found[1]} in {wheel.filename}"
    return None, f"no linux x86_64 CPython wheel of torch {version} on {index_url}"


def uncovered_torch(specs: Sequence[EnvSpec], index_url: str) -> TorchCoverage:
    """Every final torch release on ``index_url`` that no env of ``specs`` covers.

    Only releases not covered through the table are read from their wheel: with an up-to-date
    matrix that is none, so the check costs one index page.
    """
    try:
        releases = final_releases(index_url)
    except wheelmeta.WheelMetaError as exc:
        return TorchCoverage(index_url, (), (), str(exc))
    table = {row.series: row.cuda for row in checks.torch_cuda_table()}
    out: list[UncoveredTorch] = []
    for v in releases:
        series = series_of(v)
        table_cuda = table.get(series)
        if table_cuda is not None and covering_envs(specs, v, table_cuda):
            continue
        cuda, how = wheel_cuda(index_url, v)
        if table_cuda is None:
            reason = (
                f"torch {v}: series {series} is not in data/torch_cuda.toml, so no PyPI lock "
                f"can pick it"
                + (f"; its wheel is built for {cuda}" if cuda else "")
                + f"; add the row ({how}) and an env for it"
            )
        elif cuda is not None and cuda != table_cuda:
            reason = (
                f"torch {v}: data/torch_cuda.toml says {table_cuda} for {series} but its wheel "
                f"pins {cuda} ({how}); fix the row"
            )
        else:
            line = cuda or table_cuda
            envs = [s.name for s in specs if s.cuda == line]
            where = (
                f"widen requirements.torch of {', '.join(envs)}"
                if envs
                else f"add an env with cuda = {line!r}"
            )
            reason = f"torch {v} ({line}, {how}) is in no shipped env's torch range; {where}"
        out.append(UncoveredTorch(str(v), series, cuda, how, table_cuda, reason))
    return TorchCoverage(index_url, tuple(str(v) for v in releases), tuple(out))


def check_specs(checked: Sequence[EnvSpec], shipped: Sequence[EnvSpec]) -> list[TorchCoverage]:
    """``sdenv lock --check``'s report: torch releases on the checked envs' indexes that neither
    the shipped envs nor the checked ones cover (one :class:`TorchCoverage` per index)."""
    by_name = {s.name: s for s in shipped}
    by_name.update({s.name: s for s in checked})
    indexes = list(dict.fromkeys(i.url.rstrip("/") for s in checked for i in s.indexes))
    return [uncovered_torch(list(by_name.values()), url) for url in indexes]
