"""What a probe saw on a machine: the fact types, read from and written as JSON.

Standard library only (the probe fills them inside target envs). The recorded table
(``sdenv/data/machines/*.json``) uses exactly this shape; ``MachineFacts.from_json`` names the
field of a fact set that does not match it.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdenv import _data
from sdenv.fp8 import BACKEND, TransformFacts
from sdenv.gpu.compat import parse_cc

SCHEMA = 1
MACHINES_DIR = _data.data_dir() / "machines"


# --------------------------------------------------------------------------------------------
# Facts: what a probe saw (JSON-serialisable; the recorded table uses exactly this shape).
# --------------------------------------------------------------------------------------------


@dataclass
class DriverFacts:
    version: str | None = None  # "580.159.04"; None: no NVIDIA driver seen
    cuda: str | None = None  # highest CUDA this driver supports, "13.0"
    source: str = "none"  # nvml | nvidia-smi | proc | none


@dataclass
class GpuFacts:
    index: int
    name: str
    cc: str | None = None  # "9.0"; None where the source cannot tell (/proc)
    memory_total_mib: int | None = None
    memory_free_mib: int | None = None
    mig_mode: str | None = None  # "enabled" | "disabled" | None (not supported / unknown)
    uuid: str | None = None
    source: str = "nvml"  # nvml | nvidia-smi | proc | torch


@dataclass
class ScaledMmFacts:
    """A real ``torch._scaled_mm`` on small e4m3 inputs against a bf16 reference."""

    ran: bool = False
    ok: bool = False
    signature: str | None = None  # "tensor" (torch >= 2.4) | "tuple" (2.1-2.3: (out, amax))
    shape: str = ""  # "MxKxN", all multiples of 16 as _scaled_mm demands
    max_rel_err: float | None = None
    tolerance: float | None = None
    error: str | None = None  # the exception, one line
    skipped: str | None = None  # why it was not run


@dataclass
class TorchDeviceFacts:
    index: int  # torch's index (after CUDA_VISIBLE_DEVICES)
    name: str
    cc: str
    uuid: str | None = None
    memory_total_mib: int | None = None
    memory_free_mib: int | None = None
    kernel_ok: bool = False
    kernel_error: str | None = None
    scaled_mm: ScaledMmFacts | None = None
    # The native FP8 transform sdenv deploys (sdenv.fp8.apply_native) on a tiny Linear here.
    fp8_transform: TransformFacts | None = None


@dataclass
class Fp8BackendFacts:
    """The FP8 backend of this interpreter (torchao), as imported by the probe."""

    name: str = BACKEND
    version: str | None = None  # None: not installed
    import_error: str | None = None  # installed but ``import torchao`` failed


@dataclass
class XformersFacts:
    """What an installed xformers records in ``xformers/cpp_lib.json`` (read, never imported)."""

    version: str | None = None
    built_for_torch: str | None = None  # "2.4.1+cu121"
    built_for_cuda: str | None = None  # "12.1"
    arch_list: str | None = None  # TORCH_CUDA_ARCH_LIST, "6.0+PTX 7.0 7.5 8.0+PTX 9.0a"
    error: str | None = None


@dataclass
class TorchFacts:
    installed: bool = False
    version: str | None = None
    import_error: str | None = None
    cuda_build: str | None = None  # torch.version.cuda; None for CPU builds
    arch_list: list[str] = field(default_factory=list)
    float8_dtypes: list[str] = field(default_factory=list)
    cuda_available: bool = False
    cuda_error: str | None = None  # why torch.cuda is unavailable, as torch said it
    devices: list[TorchDeviceFacts] = field(default_factory=list)
    seconds: float = 0.0
    fp8_backend: Fp8BackendFacts | None = None  # None: not checked (recorded before it existed)


@dataclass
class MachineFacts:
    schema: int = SCHEMA
    label: str = ""
    source: str = "collected"  # provenance: "recorded ..." or "public: ..." with its sources
    collected_at: str = ""
    python: str = ""
    platform: str = ""
    driver: DriverFacts = field(default_factory=DriverFacts)
    gpus: list[GpuFacts] = field(default_factory=list)
    torch: TorchFacts | None = None  # None: not checked (--no-torch)
    xformers: XformersFacts | None = None  # None: not installed
    notes: list[str] = field(default_factory=list)  # why each fact source failed
    seconds: float = 0.0
    # Installed versions read from package metadata without importing (torch, torchao, ...):
    # what a torch-free probe predicts the stack verdict from.
    packages: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "facts") -> MachineFacts:
        facts = _from_json_value(cls, data, where)
        assert isinstance(facts, MachineFacts)
        if facts.schema != SCHEMA:
            raise FactsError(f"{where}: schema {facts.schema} unsupported; expected {SCHEMA}")
        # A cc is compared as a version everywhere after this: refuse one that is not, here.
        ccs = [(f"gpus[{i}]", g.cc) for i, g in enumerate(facts.gpus)]
        if facts.torch is not None:
            ccs += [(f"torch.devices[{i}]", d.cc) for i, d in enumerate(facts.torch.devices)]
        for field_, cc in ccs:
            if cc is None:
                continue
            try:
                parse_cc(cc)
            except ValueError:
                raise FactsError(
                    f"{where}.{field_}.cc: {cc!r} is not a compute capability such as '8.9'; "
                    "fix it or re-record the facts with `sdenv probe --save-facts`"
                ) from None
        return facts

    @classmethod
    def from_json(cls, text: str, where: str = "facts") -> MachineFacts:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FactsError(f"{where}: invalid JSON: {exc}; fix or re-record the file") from exc
        if not isinstance(data, dict):
            raise FactsError(f"{where}: expected a JSON object; re-record with `sdenv probe`")
        return cls.from_dict(data, where)


class FactsError(ValueError):
    """A fact set that does not match the schema; the message names the field."""


def _from_json_value(tp: Any, value: Any, where: str) -> Any:
    """``value`` (parsed JSON) as type ``tp``: dataclasses, lists, optionals, scalars."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _from_json_value(inner, value, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise FactsError(f"{where}: expected an object, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise FactsError(f"{where}: unknown field {unknown[0]!r}; known: {sorted(names)}")
        kwargs = {k: _from_json_value(hints[k], v, f"{where}.{k}") for k, v in value.items()}
        try:
            return typing.cast(Any, tp)(**kwargs)
        except TypeError as exc:
            raise FactsError(f"{where}: {exc}") from exc
    if origin is list:
        if not isinstance(value, list):
            raise FactsError(f"{where}: expected a list, got {type(value).__name__}")
        (inner,) = typing.get_args(tp)
        return [_from_json_value(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (str, int, float, bool) and not (
        isinstance(value, tp) and not (tp is int and isinstance(value, bool))
    ):
        raise FactsError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def recorded_machines(directory: Path = MACHINES_DIR) -> dict[str, MachineFacts]:
    """The recorded table: file stem -> facts (``h100``, ``a100``, ``rtx5090-cu121``, ...)."""
    return {
        p.stem: MachineFacts.from_json(p.read_text(encoding="utf-8"), str(p))
        for p in sorted(directory.glob("*.json"))
    }
