"""The native FP8 transform sdenv deploys, and the table of torch/torchao pairs that run it.

One transform for every caller: ``generate`` loads models with it, ``bench`` measures it and the
probe applies it to a tiny Linear on each GPU, so "native" in a probe report means exactly what
the loader will do. Standard library only at import time (the probe runs inside target envs);
torch and torchao are imported inside the functions that use them.

The table (``data/fp8_backends.json``) says which torchao range runs the transform on which torch
series, each row with its evidence. torchao declares no torch requirement on PyPI, so this table
is the only thing that keeps the pair in step: ``sdenv lock`` applies its rows as rules, the
probe's stack verdict checks the installed pair against it.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

BACKENDS_FILE = Path(__file__).parent / "data" / "fp8_backends.json"
BACKEND = "torchao"
# _scaled_mm wants both matrix dims to be multiples of 16 (torch's own check).
DIM_MULTIPLE = 16
# The tiny Linear the probe quantizes: tokens x in -> out, all multiples of 16.
CHECK_SHAPE = (64, 256, 128)
# Relative L2 error of the FP8 Linear against bf16 on the same weights: e4m3 keeps 3 mantissa
# bits (~3% per element); dynamic per-row scales keep the product well inside 10%.
CHECK_TOLERANCE = 0.1


@dataclass(frozen=True)
class BackendPair:
    """One row: on torch in ``torch``, torchao in ``torchao`` runs native FP8 (or cannot)."""

    id: str
    torch: str  # ">=2.5,<2.8"
    torchao: str  # ">=0.12,<0.13"
    native: bool
    reason: str
    evidence: str


@cache
def backend_pairs(path: Path = BACKENDS_FILE) -> tuple[BackendPair, ...]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return tuple(
        BackendPair(
            str(row["id"]),
            str(row["torch"]),
            str(row["torchao"]),
            bool(row["native"]),
            str(row["reason"]),
            str(row["evidence"]),
        )
        for row in data["pairs"]
    )


# --------------------------------------------------------------------------- version ranges
# packaging is not guaranteed inside a target env; the table uses only >=, >, <, <=, ==, != on
# release numbers, which this handles (local versions such as +cu121 and pre-release tags are
# compared by their release part).

_CLAUSE = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*([0-9][0-9.]*)\s*$")


def release(version: str) -> tuple[int, ...]:
    """``2.4.1+cu121`` -> (2, 4, 1); ``0.14.1.dev0`` -> (0, 14, 1)."""
    m = re.match(r"^\s*v?(\d+(?:\.\d+)*)", version)
    if not m:
        raise ValueError(f"not a version: {version!r}")
    parts = [int(p) for p in m.group(1).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()  # 2.5.0 == 2.5
    return tuple(parts)


def in_range(version: str, spec: str) -> bool:
    """True when ``version`` satisfies every comma-separated clause of ``spec`` ("" = any)."""
    have = release(version)
    for clause in filter(None, (c.strip() for c in spec.split(","))):
        m = _CLAUSE.match(clause)
        if not m:
            raise ValueError(f"unsupported range clause {clause!r} in {spec!r}")
        op, want = m.group(1), release(m.group(2))
        ok = {
            ">=": have >= want,
            "<=": have <= want,
            ">": have > want,
            "<": have < want,
            "==": have == want,
            "!=": have != want,
        }[op]
        if not ok:
            return False
    return True


def pair_for_torch(torch_version: str) -> BackendPair | None:
    return next((p for p in backend_pairs() if in_range(torch_version, p.torch)), None)


@dataclass(frozen=True)
class Support:
    """Whether an installed (torch, torchao) pair runs the native transform, per the table."""

    ok: bool
    reason: str
    pair: str | None  # the table row's id


def backend_support(torch_version: str, torchao_version: str | None) -> Support:
    pair = pair_for_torch(torch_version)
    if pair is None:
        return Support(False, f"torch {torch_version}: no row in data/fp8_backends.json", None)
    if not pair.native:
        return Support(False, f"torch {torch_version}: {pair.reason}", pair.id)
    if torchao_version is None:
        return Support(
            False,
            f"torchao is not installed (torch {torch_version} needs torchao{pair.torchao})",
            pair.id,
        )
    if not in_range(torchao_version, pair.torchao):
        return Support(
            False,
            f"torchao {torchao_version} is outside torchao{pair.torchao}, the range built for "
            f"torch {torch_version} ({pair.id})",
            pair.id,
        )
    return Support(True, f"torchao {torchao_version} is built for torch {torch_version}", pair.id)


# --------------------------------------------------------------------------- the transform


def linear_filter(module: Any, fqn: str) -> bool:
    """The Linears the transform quantizes: both dims multiples of 16, as _scaled_mm demands."""
    import torch

    return (
        isinstance(module, torch.nn.Linear)
        and module.in_features % DIM_MULTIPLE == 0
        and module.out_features % DIM_MULTIPLE == 0
    )


def native_config(
    granularity: str = "row", fast_accum: bool = True, set_inductor_config: bool = True
) -> Any:
    """torchao's FP8 dynamic activation + weight config (cc >= 8.9).

    The defaults are what sdenv deploys: per-row scales, fast accumulation (torchao's inference
    default). ``sdenv bench`` varies them to measure the alternatives with the same code path.
    """
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        Float8MMConfig,
        PerRow,
        PerTensor,
    )

    return Float8DynamicActivationFloat8WeightConfig(
        granularity=PerRow() if granularity == "row" else PerTensor(),
        mm_config=Float8MMConfig(use_fast_accum=fast_accum),
        set_inductor_config=set_inductor_config,
    )


def apply_native(module: Any, **options: Any) -> Any:
    """Quantize ``module``'s eligible Linears in place: the one native FP8 path sdenv deploys.

    ``options`` go to ``native_config``; generate and the probe use the defaults.
    """
    from torchao.quantization import quantize_

    quantize_(module, native_config(**options), filter_fn=linear_filter)
    return module


@dataclass
class TransformFacts:
    """The native transform applied to a tiny bf16 Linear on one GPU, against plain bf16."""

    ran: bool = False
    ok: bool = False
    shape: str = ""  # "tokens x in -> out"
    rel_err: float | None = None  # relative L2 error against the bf16 Linear
    tolerance: float | None = None
    seconds: float | None = None
    error: str | None = None  # the exception, one line
    skipped: str | None = None  # why it was not run


def check_transform(torch: Any, device: str) -> TransformFacts:
    """Apply ``apply_native`` to a tiny Linear on ``device``; compare its output with bf16."""
    tokens, n_in, n_out = CHECK_SHAPE
    facts = TransformFacts(shape=f"{tokens}x{n_in}->{n_out}", tolerance=CHECK_TOLERANCE)
    start = time.perf_counter()
    try:
        gen = torch.Generator(device="cpu").manual_seed(0)
        lin = torch.nn.Linear(n_in, n_out, bias=True).to(torch.bfloat16)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(n_out, n_in, generator=gen) / n_in**0.5)
        lin = lin.to(device)
        x = torch.randn(tokens, n_in, generator=gen).to(device=device, dtype=torch.bfloat16)
        with torch.no_grad():
            ref = lin(x).float()
            model = torch.nn.Sequential(lin)
            facts.ran = True
            apply_native(model)
            out = model(x).float()
        err = (out - ref).norm() / ref.norm()
        facts.rel_err = round(float(err), 6)
        facts.ok = facts.rel_err <= CHECK_TOLERANCE and tuple(out.shape) == (tokens, n_out)
        if facts.ok and not is_fp8_weight(model[0].weight):
            facts.ok, facts.error = False, "the transform left the Linear's weight unquantized"
    except Exception as exc:  # the failure is the finding; the probe reports it, never crashes
        lines = str(exc).strip().splitlines()
        facts.error = f"{type(exc).__name__}: {lines[0] if lines else ''}".strip().rstrip(":")
    facts.seconds = round(time.perf_counter() - start, 3)
    return facts


def is_fp8_weight(t: Any) -> bool:
    """A weight stored in float8: a plain float8 tensor, or a tensor subclass holding one."""
    import torch

    fp8 = {getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, n)}
    if t.dtype in fp8:
        return True
    # torchao keeps quantized weights in tensor subclasses (Float8Tensor: qdata + scale) whose
    # dtype is the logical bf16; look at the tensors they are made of.
    flatten = getattr(t, "__tensor_flatten__", None)
    if flatten is not None:
        names, _ = flatten()
        if any(bool(is_fp8_weight(getattr(t, n))) for n in names):
            return True
    inner = getattr(t, "qdata", None)
    return inner is not None and inner is not t and bool(is_fp8_weight(inner))
