"""Collect a GPU box's facts, then decide: native FP8, emulated FP8 or none, before any model loads.

Standard library only at import time: this module runs inside target envs where nothing but
what is under test is installed. NVML (``pynvml`` from nvidia-ml-py) and torch are imported
lazily, inside the functions that need them. Fact sources, first that answers wins:
NVML -> ``nvidia-smi --query-gpu`` -> ``/proc/driver/nvidia``. No GPU / no driver is a normal
answer (empty ``gpus``, a note saying why), never an exception.

The decision itself is the pure ``sdenv.gpu.decide.decide``; this module only gathers facts.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import importlib.metadata
import importlib.util
import json
import platform
import re
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sdenv.fp8 import BACKEND, TransformFacts, check_transform
from sdenv.gpu.compat import FP8_NATIVE_MIN_CC
from sdenv.gpu.decide import Check, EnvFit, EnvLike, GpuReport, ProbeReport, decide
from sdenv.gpu.facts import (
    DriverFacts,
    Fp8BackendFacts,
    GpuFacts,
    MachineFacts,
    ScaledMmFacts,
    TorchDeviceFacts,
    TorchFacts,
    XformersFacts,
    recorded_machines,
)
from sdenv.gpu.memory import MemoryPlan, MemoryReport
from sdenv.gpu.verdict import Fp8Verdict

__all__ = [
    "Check",
    "DriverFacts",
    "EnvFit",
    "Fp8Verdict",
    "GpuFacts",
    "GpuReport",
    "MachineFacts",
    "MemoryPlan",
    "MemoryReport",
    "ProbeReport",
    "ScaledMmFacts",
    "TorchDeviceFacts",
    "TorchFacts",
    "XformersFacts",
    "collect_facts",
    "decide",
    "probe",
    "recorded_machines",
]

PROC_VERSION = Path("/proc/driver/nvidia/version")
PROC_GPUS = Path("/proc/driver/nvidia/gpus")
SMI_TIMEOUT_S = 10.0
MIB = 1024 * 1024
# _scaled_mm check: dims must be multiples of 16; small enough to take microseconds.
MM_SHAPE = (64, 128, 32)  # M, K, N
MM_TOLERANCE = 0.02  # relative to the reference's max magnitude; fp32-accumulated e4m3 GEMM


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip().rstrip(":")


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


# --------------------------------------------------------------------------------------------
# Driver and GPUs without torch
# --------------------------------------------------------------------------------------------


def _from_nvml(notes: list[str]) -> tuple[DriverFacts, list[GpuFacts]] | None:
    try:
        import pynvml
    except ImportError:
        notes.append("NVML: nvidia-ml-py not installed")
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        notes.append(f"NVML: {exc}")
        return None
    try:
        driver = DriverFacts(_text(pynvml.nvmlSystemGetDriverVersion()), None, "nvml")
        with contextlib.suppress(pynvml.NVMLError):
            v = pynvml.nvmlSystemGetCudaDriverVersion_v2()
            driver.cuda = f"{v // 1000}.{v % 1000 // 10}"
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
            mig: str | None = None
            with contextlib.suppress(pynvml.NVMLError):  # NotSupported on non-MIG GPUs
                current = pynvml.nvmlDeviceGetMigMode(h)[0]
                mig = "enabled" if current == pynvml.NVML_DEVICE_MIG_ENABLE else "disabled"
            gpus.append(
                GpuFacts(
                    i,
                    _text(pynvml.nvmlDeviceGetName(h)),
                    f"{major}.{minor}",
                    int(mem.total) // MIB,
                    int(mem.free) // MIB,
                    mig,
                    _text(pynvml.nvmlDeviceGetUUID(h)),
                    "nvml",
                )
            )
        return driver, gpus
    except pynvml.NVMLError as exc:
        notes.append(f"NVML: {exc}")
        return None
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


_SMI_FIELDS = "index,name,uuid,compute_cap,memory.total,memory.free,mig.mode.current,driver_version"


def _from_smi(notes: list[str]) -> tuple[DriverFacts, list[GpuFacts]] | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        notes.append("nvidia-smi: not on PATH")
        return None
    try:
        proc = subprocess.run(
            [smi, f"--query-gpu={_SMI_FIELDS}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        notes.append(f"nvidia-smi: {_one_line(exc)}")
        return None
    if proc.returncode != 0:
        notes.append(f"nvidia-smi: exit {proc.returncode}: {(proc.stdout + proc.stderr).strip()}")
        return None
    gpus, version = [], None
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 8:
            continue
        idx, name, uuid, cc, total, free, mig, version = cells

        def num(s: str) -> int | None:
            return int(s) if s.isdigit() else None

        gpus.append(
            GpuFacts(
                int(idx),
                name,
                cc if re.match(r"^\d+\.\d+$", cc) else None,
                num(total),
                num(free),
                mig.lower() if mig.lower() in ("enabled", "disabled") else None,
                uuid,
                "nvidia-smi",
            )
        )
    driver = DriverFacts(version, _smi_cuda(smi), "nvidia-smi")
    return driver, gpus


def _smi_cuda(smi: str) -> str | None:
    """The plain ``nvidia-smi`` banner is the only place it prints 'CUDA Version: 13.0'."""
    try:
        banner = subprocess.run(
            [smi], capture_output=True, text=True, timeout=SMI_TIMEOUT_S, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"CUDA Version:\s*(\d+\.\d+)", banner)
    return m.group(1) if m else None


def _from_proc(notes: list[str]) -> tuple[DriverFacts, list[GpuFacts]] | None:
    try:
        text = PROC_VERSION.read_text()
    except OSError:
        notes.append(f"{PROC_VERSION}: absent (no NVIDIA kernel module)")
        return None
    m = re.search(r"Kernel Module(?: for [\w.]+)?\s+(\d+\.\d+(?:\.\d+)?)", text)
    driver = DriverFacts(m.group(1) if m else None, None, "proc")
    gpus = []
    for i, info in enumerate(sorted(PROC_GPUS.glob("*/information"))):
        with contextlib.suppress(OSError):
            model = re.search(r"^Model:\s*(.+)$", info.read_text(), re.M)
            gpus.append(
                GpuFacts(i, model.group(1).strip() if model else "NVIDIA GPU", source="proc")
            )
    return driver, gpus


DRIVER_SOURCES = ("nvml", "nvidia-smi", "proc")


def collect_driver(
    notes: list[str], sources: Sequence[str] = DRIVER_SOURCES
) -> tuple[DriverFacts, list[GpuFacts]]:
    """Driver and GPUs from the first source that answers (each can be run alone, for tests)."""
    readers = {"nvml": _from_nvml, "nvidia-smi": _from_smi, "proc": _from_proc}
    for name in sources:
        found = readers[name](notes)
        if found is not None:
            return found
    return DriverFacts(), []


# --------------------------------------------------------------------------------------------
# Torch
# --------------------------------------------------------------------------------------------


def _scaled_mm_check(torch: Any, device: str) -> ScaledMmFacts:
    """Run a real FP8 GEMM and compare with bf16 on the same (dequantised) values."""
    m, k, n = MM_SHAPE
    facts = ScaledMmFacts(shape=f"{m}x{k}x{n}", tolerance=MM_TOLERANCE)
    if not hasattr(torch, "_scaled_mm"):
        facts.skipped = f"torch {torch.__version__} has no torch._scaled_mm"
        return facts
    try:
        gen = torch.Generator(device="cpu").manual_seed(0)
        a = torch.randn(m, k, generator=gen).to(device)
        w = torch.randn(n, k, generator=gen).to(device)
        f8 = torch.float8_e4m3fn
        fmax = torch.finfo(f8).max
        sa = (a.abs().max() / fmax).float()
        sw = (w.abs().max() / fmax).float()
        a8 = (a / sa).to(f8)
        # _scaled_mm wants b column-major: the transpose of a row-major (N, K) weight.
        b8 = (w / sw).to(f8).t()
        ref = (a8.to(torch.bfloat16) * sa) @ (b8.to(torch.bfloat16) * sw)
        facts.ran = True
        # Keywords only: the same call binds to the >= 2.4 signature (returns a Tensor) and
        # to 2.1-2.3's (a, b, bias, out_dtype, scale_a, scale_b, ...) that returns (out, amax).
        res = torch._scaled_mm(a8, b8, scale_a=sa, scale_b=sw, out_dtype=torch.bfloat16)
        if isinstance(res, tuple):
            facts.signature, out = "tuple", res[0]
        else:
            facts.signature, out = "tensor", res
        err = (out.float() - ref.float()).abs().max() / ref.float().abs().max()
        facts.max_rel_err = round(float(err), 6)
        facts.ok = bool(facts.max_rel_err <= MM_TOLERANCE) and tuple(out.shape) == (m, n)
    except Exception as exc:  # any failure is the finding; report it, never crash the probe
        facts.error = _one_line(exc)
    return facts


def _transform_facts(torch: Any, device: str, backend: Fp8BackendFacts | None) -> TransformFacts:
    if backend is None or backend.version is None:
        return TransformFacts(skipped=f"{BACKEND} is not installed")
    if backend.import_error:
        return TransformFacts(skipped=f"{BACKEND} does not import")
    return check_transform(torch, device)


def _device_facts(
    torch: Any, index: int, backend: Fp8BackendFacts | None = None
) -> TorchDeviceFacts:
    props = torch.cuda.get_device_properties(index)
    uuid = getattr(props, "uuid", None)
    cc = f"{props.major}.{props.minor}"
    dev = TorchDeviceFacts(index, props.name, cc, f"GPU-{uuid}" if uuid else None)
    device = f"cuda:{index}"
    try:
        x = torch.ones(16, device=device) * 2
        dev.kernel_ok = float(x.sum().item()) == 32.0
        if not dev.kernel_ok:
            dev.kernel_error = "a tiny kernel returned a wrong sum"
    except Exception as exc:  # e.g. "CUDA error: no kernel image is available for execution"
        dev.kernel_error = _one_line(exc)
        return dev
    with contextlib.suppress(Exception):
        free, total = torch.cuda.mem_get_info(index)
        dev.memory_free_mib, dev.memory_total_mib = int(free) // MIB, int(total) // MIB
    if (props.major, props.minor) < FP8_NATIVE_MIN_CC:
        dev.scaled_mm = ScaledMmFacts(skipped=f"cc {cc} < 8.9: no FP8 tensor cores")
    elif not hasattr(torch, "float8_e4m3fn"):
        dev.scaled_mm = ScaledMmFacts(skipped="torch has no float8_e4m3fn")
    else:
        dev.scaled_mm = _scaled_mm_check(torch, device)
    if dev.scaled_mm.ok:  # the backend's transform only where the hardware runs FP8 GEMMs
        dev.fp8_transform = _transform_facts(torch, device, backend)
    else:
        why = dev.scaled_mm.skipped or "torch._scaled_mm did not match bf16"
        dev.fp8_transform = TransformFacts(skipped=why)
    return dev


def collect_fp8_backend() -> Fp8BackendFacts:
    """Import the FP8 backend (after torch) and record its version or why it failed."""
    facts = Fp8BackendFacts()
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        facts.version = importlib.metadata.version(BACKEND)
    if facts.version is None:
        return facts
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchao warns when its C++ ops do not match torch
            importlib.import_module(BACKEND)
    except Exception as exc:  # ImportError, or a torch/torchao mismatch raising at import
        facts.import_error = _one_line(exc)
    return facts


# Package versions a torch-free probe predicts the stack verdict from (metadata, no import).
PACKAGES = ("torch", "torchao", "diffusers", "transformers", "xformers")


def installed_packages() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


def collect_torch() -> TorchFacts:
    start = time.perf_counter()
    facts = TorchFacts()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Any: the probe must treat whatever torch is installed (2.1 to now) alike.
            torch: Any = importlib.import_module("torch")
    except Exception as exc:  # ImportError, or a broken install raising OSError etc.
        facts.import_error = _one_line(exc)
        facts.seconds = round(time.perf_counter() - start, 3)
        return facts
    facts.installed = True
    facts.version = str(torch.__version__)
    facts.cuda_build = torch.version.cuda
    facts.float8_dtypes = sorted(n for n in dir(torch) if n.startswith("float8_"))
    # torch warns (not raises) when a GPU's arch is outside its list, at the first device use;
    # record warnings over the whole device pass and keep that one as evidence.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = bool(torch.cuda.is_available())
        facts.cuda_available = available
        # get_arch_list() is [] without a driver; the build's flags still say what it carries.
        with contextlib.suppress(Exception):
            flags = torch._C._cuda_getArchFlags() if facts.cuda_build else None
            facts.arch_list = flags.split() if flags else list(torch.cuda.get_arch_list())
        facts.fp8_backend = collect_fp8_backend()
        if available:
            for i in range(torch.cuda.device_count()):
                try:
                    facts.devices.append(_device_facts(torch, i, facts.fp8_backend))
                except Exception as exc:
                    facts.devices.append(
                        TorchDeviceFacts(i, "?", "0.0", kernel_error=_one_line(exc))
                    )
    if available:
        for w in caught:
            if "not compatible" in str(w.message):
                facts.cuda_error = str(w.message).strip().splitlines()[0]
    elif facts.cuda_build:
        try:
            torch.cuda.init()  # raises with torch's own words: "Found no NVIDIA driver ..."
        except Exception as exc:
            facts.cuda_error = _one_line(exc)
        else:
            facts.cuda_error = "torch.cuda.is_available() is False"
    else:
        facts.cuda_error = "CPU-only build of torch"
    facts.seconds = round(time.perf_counter() - start, 3)
    return facts


def collect_xformers() -> XformersFacts | None:
    """Read ``xformers/cpp_lib.json`` without importing xformers (which would import torch)."""
    try:
        spec = importlib.util.find_spec("xformers")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None
    facts = XformersFacts()
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        facts.version = importlib.metadata.version("xformers")
    path = Path(next(iter(spec.submodule_search_locations))) / "cpp_lib.json"
    try:
        data = json.loads(path.read_text())
        version = data.get("version", {})
        facts.built_for_torch = version.get("torch")
        cuda = version.get("cuda")
        if isinstance(cuda, int):  # 1201 -> "12.1"
            facts.built_for_cuda = f"{cuda // 100}.{cuda % 100 // 10}"
        env = data.get("env", {})
        facts.arch_list = env.get("TORCH_CUDA_ARCH_LIST") or None
    except (OSError, ValueError, AttributeError) as exc:
        facts.error = f"{path}: {_one_line(exc)}"
    return facts


def collect_facts(*, with_torch: bool = True) -> MachineFacts:
    start = time.perf_counter()
    notes: list[str] = []
    driver, gpus = collect_driver(notes)
    facts = MachineFacts(
        label=", ".join(sorted({g.name for g in gpus})) or "no NVIDIA GPU",
        source="collected by sdenv probe",
        collected_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        python=platform.python_version(),
        platform=f"{sys.platform}-{platform.machine()}",
        driver=driver,
        gpus=gpus,
        torch=collect_torch() if with_torch else None,
        xformers=collect_xformers(),
        notes=notes,
        packages=installed_packages(),
    )
    facts.seconds = round(time.perf_counter() - start, 3)
    return facts


def probe(*, with_torch: bool = True, envs: Sequence[EnvLike] = ()) -> ProbeReport:
    """Collect this box's facts and decide: the one call verify, bench and generate use."""
    return decide(collect_facts(with_torch=with_torch), envs)
