"""Env specs (``envs/*.toml``): what an SD3.5 deployment needs, validated with context paths.

A spec is the input of every other command: ``lock`` resolves its targets, ``image`` builds
them, ``probe`` picks the variant that suits a GPU. Errors name the file, the field and the fix,
in the style of ``packaging.pylock``: ``envs/x.toml: requirements.torch: ...``.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from sdenv.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

DEFAULT_ENV = "sd35-fp8-cu121"
DEFAULT_ENVS_DIR = Path("envs")

# CUDA variants as PyTorch names them (the local version tag of its wheels and its index paths).
CUDA_VARIANTS: Mapping[str, tuple[int, int]] = {
    "cu118": (11, 8),
    "cu121": (12, 1),
    "cu124": (12, 4),
    "cu126": (12, 6),
    "cu128": (12, 8),
    "cu129": (12, 9),
    "cu130": (13, 0),
    "cu132": (13, 2),
}

# sdenv platform name -> uv's --python-platform (manylinux_2_28 is what torch >= 2.4 wheels need).
PLATFORMS: Mapping[str, str] = {
    "linux_x86_64": "x86_64-manylinux_2_28",
    "linux_aarch64": "aarch64-manylinux_2_28",
}

FP8_MODES = ("auto", "native", "emulated", "off")
MIN_PYTHON = (3, 10)

_ENV_FIELDS = {
    "name",
    "description",
    "pythons",
    "platforms",
    "cuda",
    "compute_capabilities",
    "fp8",
}
_TOP_FIELDS = {"env", "indexes", "requirements", "constraints"}
_INDEX_FIELDS = {"name", "url"}
_PY_RE = re.compile(r"^3\.(\d+)$")
_CC_RE = re.compile(r"^(\d+)\.(\d+)$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


class SpecError(UsageError):
    """An env spec that cannot be used; the message names file, field and fix."""


@dataclass(frozen=True)
class Index:
    name: str
    url: str


@dataclass(frozen=True)
class Target:
    """One thing a lock resolves: an env for one Python on one platform."""

    env: str
    python: str
    platform: str

    @property
    def slug(self) -> str:
        return f"{self.env}-py{self.python}-{self.platform}"

    @property
    def uv_platform(self) -> str:
        return PLATFORMS[self.platform]

    def lockfile(self, lock_dir: Path) -> Path:
        return lock_dir / f"{self.slug}.txt"


@dataclass(frozen=True)
class EnvSpec:
    path: Path
    sha256: str
    name: str
    description: str
    pythons: tuple[str, ...]
    platforms: tuple[str, ...]
    cuda: str
    compute_capabilities: tuple[str, ...]
    fp8: str
    indexes: tuple[Index, ...]
    # Canonical project name -> PEP 440 specifier ("" means any version).
    requirements: Mapping[str, str]
    constraints: Mapping[str, str]

    @property
    def cuda_version(self) -> tuple[int, int]:
        return CUDA_VARIANTS[self.cuda]

    @property
    def targets(self) -> tuple[Target, ...]:
        return tuple(Target(self.name, py, plat) for py in self.pythons for plat in self.platforms)

    def requirement_lines(self) -> list[str]:
        return [f"{name}{spec}" for name, spec in sorted(self.requirements.items())]

    def constraint_lines(self) -> list[str]:
        return [f"{name}{spec}" for name, spec in sorted(self.constraints.items())]


def resolve_spec_path(name_or_path: str, envs_dir: Path = DEFAULT_ENVS_DIR) -> Path:
    """``sd35-fp8-cu121`` -> ``envs/sd35-fp8-cu121.toml``; an existing path is taken as is."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists():
        if not candidate.is_file():
            raise SpecError(f"{candidate}: no such env spec file; check the path")
        return candidate
    path = envs_dir / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in envs_dir.glob("*.toml"))) or "none"
        raise SpecError(f"{path}: no env named {name_or_path!r}; known envs in {envs_dir}: {known}")
    return path


def load_spec(name_or_path: str | Path, envs_dir: Path = DEFAULT_ENVS_DIR) -> EnvSpec:
    path = resolve_spec_path(str(name_or_path), envs_dir)
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text ({exc.reason}); save the file as UTF-8") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: invalid TOML: {exc}; fix the syntax at that line") from exc
    return parse_spec(data, path, hashlib.sha256(raw).hexdigest())


def load_specs(envs_dir: Path = DEFAULT_ENVS_DIR) -> tuple[list[EnvSpec], list[SpecError]]:
    """Every spec in ``envs_dir`` (none if it is absent), and the ones that failed to load."""
    specs: list[EnvSpec] = []
    errors: list[SpecError] = []
    for path in sorted(envs_dir.glob("*.toml")) if envs_dir.is_dir() else []:
        try:
            specs.append(load_spec(path, envs_dir))
        except SpecError as exc:  # one broken spec must not hide the others
            errors.append(exc)
    return specs, errors


def parse_spec(data: Mapping[str, Any], path: Path, sha256: str) -> EnvSpec:
    def err(field: str, msg: str) -> SpecError:
        return SpecError(f"{path}: {field}: {msg}")

    _no_unknown(data, _TOP_FIELDS, "", err)
    env = data.get("env")
    if not isinstance(env, Mapping):
        raise err("env", "missing [env] table; add one with name, pythons, platforms and cuda")
    _no_unknown(env, _ENV_FIELDS, "env.", err)

    name = _str(env, "name", "env.name", err)
    if not _NAME_RE.match(name):
        raise err("env.name", f"{name!r} is not a valid env name; use lowercase letters, digits, -")
    if name != path.stem:
        raise err("env.name", f"{name!r} differs from the file name; rename one to match")

    pythons = _valid_list(
        env,
        "pythons",
        err,
        _supported_python,
        "{!r} is not a supported Python; use '3.10' or newer",
    )
    platforms = _valid_list(
        env,
        "platforms",
        err,
        lambda plat: plat in PLATFORMS,
        f"unsupported platform {{!r}}; use one of {', '.join(PLATFORMS)}",
    )
    cuda = _str(env, "cuda", "env.cuda", err)
    if cuda not in CUDA_VARIANTS:
        raise err(
            "env.cuda", f"unknown CUDA variant {cuda!r}; use one of {', '.join(CUDA_VARIANTS)}"
        )
    ccs = _valid_list(
        env,
        "compute_capabilities",
        err,
        lambda cc: bool(_CC_RE.match(cc)),
        "{!r} is not a compute capability; write it as major.minor, e.g. '8.9'",
    )
    fp8 = env.get("fp8", "auto")
    if fp8 not in FP8_MODES:
        raise err("env.fp8", f"unknown FP8 mode {fp8!r}; use one of {', '.join(FP8_MODES)}")

    requirements = _requirements(data, "requirements", err, required=True)
    if "torch" not in requirements:
        raise err("requirements.torch", "missing; every SD3.5 env needs torch, e.g. '>=2.4'")
    constraints = _requirements(data, "constraints", err, required=False)

    return EnvSpec(
        path=path,
        sha256=sha256,
        name=name,
        description=str(env.get("description", "")),
        pythons=tuple(pythons),
        platforms=tuple(platforms),
        cuda=cuda,
        compute_capabilities=tuple(ccs),
        fp8=str(fp8),
        indexes=_indexes(data, err),
        requirements=requirements,
        constraints=constraints,
    )


def _supported_python(py: str) -> bool:
    m = _PY_RE.match(py)
    return m is not None and (3, int(m.group(1))) >= MIN_PYTHON


def _valid_list(
    env: Mapping[str, Any], key: str, err: Any, valid: Callable[[str], bool], problem: str
) -> list[str]:
    """``env.<key>``, a non-empty list of strings each ``valid``; ``problem`` formats a bad one."""
    values = _str_list(env, key, f"env.{key}", err)
    for i, value in enumerate(values):
        if not valid(value):
            raise err(f"env.{key}[{i}]", problem.format(value))
    return values


def _no_unknown(table: Mapping[str, Any], known: set[str], prefix: str, err: Any) -> None:
    for key in table:
        if key not in known:
            raise err(
                f"{prefix}{key}", f"unknown field; expected one of {', '.join(sorted(known))}"
            )


def _str(table: Mapping[str, Any], key: str, field: str, err: Any) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value:
        raise err(field, "missing or not a non-empty string")
    return value


def _str_list(table: Mapping[str, Any], key: str, field: str, err: Any) -> list[str]:
    value = table.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise err(field, "missing or not a non-empty list of strings")
    if len(set(value)) != len(value):
        raise err(field, "lists a value twice; remove the duplicate")
    return list(value)


def _requirements(data: Mapping[str, Any], key: str, err: Any, *, required: bool) -> dict[str, str]:
    table = data.get(key, None if required else {})
    if not isinstance(table, Mapping) or (required and not table):
        raise err(key, f"missing [{key}] table of name = 'version range' entries")
    out: dict[str, str] = {}
    for raw_name, spec in table.items():
        field = f"{key}.{raw_name}"
        if not isinstance(spec, str):
            raise err(field, "must be a version range string such as '>=2.4,<2.5' ('' for any)")
        try:
            SpecifierSet(spec)
        except InvalidSpecifier:
            raise err(
                field, f"malformed version range {spec!r}; write PEP 440 ranges like '>=2.4,<2.5'"
            ) from None
        name = canonicalize_name(raw_name)
        if name in out:
            raise err(field, f"names {name!r} twice (names are case/punctuation-insensitive)")
        out[name] = spec.replace(" ", "")
    return out


def _indexes(data: Mapping[str, Any], err: Any) -> tuple[Index, ...]:
    raw = data.get("indexes")
    if not isinstance(raw, list) or not raw:
        raise err("indexes", "missing; add [[indexes]] with name and url (e.g. PyPI's simple API)")
    out: list[Index] = []
    for i, item in enumerate(raw):
        field = f"indexes[{i}]"
        if not isinstance(item, Mapping):
            raise err(field, "must be a table with name and url")
        _no_unknown(item, _INDEX_FIELDS, f"{field}.", err)
        name = _str(item, "name", f"{field}.name", err)
        url = _str(item, "url", f"{field}.url", err)
        if not url.startswith(("https://", "http://", "file://")):
            raise err(f"{field}.url", f"{url!r} is not an http(s) or file URL")
        if "@" in url.split("://", 1)[1].split("/", 1)[0]:
            raise err(
                f"{field}.url",
                "contains credentials; put them in the environment (UV_INDEX_*_PASSWORD / netrc)",
            )
        out.append(Index(name, url.rstrip("/")))
    return tuple(out)
