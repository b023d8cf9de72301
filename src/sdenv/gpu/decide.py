"""From recorded machine facts to verdicts: FP8 per GPU, fit checks, env choice, memory advice.

Pure and standard-library only (plus ``sdenv.gpu.compat``): ``decide`` reads a ``MachineFacts``
(collected by ``sdenv.gpu.probe`` or loaded from ``sdenv/data/machines/*.json``) and never
touches a GPU, so every rule is tested on fact sets recorded from real and documented machines.

FP8 verdicts (per GPU, ``sdenv.gpu.verdict``), two of them, and what this env runs: ``hardware``
(FP8 tensor cores, float8 dtypes, a real ``torch._scaled_mm``), ``stack`` (this interpreter's
torchao and the deployed transform) and ``fp8``, the lower of the two: what the model step will
run. Where the hardware is native and the env is not, ``native_env`` names the env spec that runs
native here.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sdenv.gpu.compat import TORCH_ARCH_LISTS, XFORMERS_ARCH_LISTS, arch_coverage, driver_fit
from sdenv.gpu.facts import GpuFacts, MachineFacts
from sdenv.gpu.memory import MemoryReport, memory_report
from sdenv.gpu.verdict import (
    Fp8Verdict,
    effective_verdict,
    fp8_verdict,
    kernel_reason,
    stack_verdict,
    torch_device_for,
)
from sdenv.status import Status


@dataclass
class Check:
    name: str  # driver | torch-cuda | torch-kernel | torch-arch | xformers-arch | env-* ...
    status: Status
    reason: str
    gpu: int | None = None
    env: str | None = None


@dataclass
class GpuReport:
    index: int
    name: str
    cc: str | None
    memory_total_mib: int | None
    memory_free_mib: int | None
    mig_mode: str | None
    fp8: Fp8Verdict  # what this env runs on this GPU: the lower of hardware and stack
    checks: list[Check] = field(default_factory=list)
    hardware: Fp8Verdict | None = None  # FP8 tensor cores, float8 dtypes, a real _scaled_mm
    stack: Fp8Verdict | None = None  # this interpreter's FP8 backend and the deployed transform


@dataclass
class EnvFit:
    env: str
    cuda: str
    status: Status  # never skip here
    reason: str
    checks: list[Check] = field(default_factory=list)


@dataclass
class ProbeReport:
    facts: MachineFacts
    gpus: list[GpuReport]
    fp8_mode: str  # native | emulated | off: the loading mode the model step will use
    fp8_mode_reason: str
    checks: list[Check]
    envs: list[EnvFit]
    recommended_env: str | None
    recommended_env_reason: str
    memory: MemoryReport
    # The shipped env that runs FP8 native on this box (None: the hardware is not native, or no
    # env promising native fits); named whenever this env runs less than the hardware could.
    native_env: str | None = None
    fp8_advisory: str | None = None  # one line, set when the hardware is native but fp8_mode not
    fp8_hardware_mode: str = "off"  # what the model GPU's hardware alone could run


class EnvLike(Protocol):
    """The parts of ``sdenv.lock.spec.EnvSpec`` the decision reads (not imported: stdlib only)."""

    @property
    def name(self) -> str: ...
    @property
    def cuda(self) -> str: ...
    @property
    def cuda_version(self) -> tuple[int, int]: ...
    @property
    def compute_capabilities(self) -> tuple[str, ...]: ...
    @property
    def fp8(self) -> str: ...
    @property
    def requirements(self) -> Mapping[str, str]: ...


# --------------------------------------------------------------------------------------------
# Fit checks
# --------------------------------------------------------------------------------------------


def _cuda_tuple(version: str | None) -> tuple[int, int] | None:
    if not version:
        return None
    m = re.match(r"^(\d+)\.(\d+)", version)
    return (int(m.group(1)), int(m.group(2))) if m else None


_FIT_STATUS: dict[str, Status] = {"full": "pass", "minor-compat": "warn", "too-old": "fail"}


def _driver_check(facts: MachineFacts, cuda: tuple[int, int], name: str, env: str | None) -> Check:
    if not facts.driver.version:
        return Check(name, "skip", "no NVIDIA driver on this box", env=env)
    fit = driver_fit(facts.driver.version, cuda)
    return Check(name, _FIT_STATUS[fit.status], fit.reason, env=env)


def _arch_check(
    name: str, arch_list: Sequence[str] | str, gpu: GpuFacts, label: str, env: str | None = None
) -> Check:
    if not gpu.cc:
        # /proc alone cannot tell the arch: a fit that was not checked is not a pass.
        return Check(
            name, "warn", "compute capability unknown: arch fit not checked", gpu.index, env
        )
    cov = arch_coverage(arch_list, gpu.cc)
    status: Status = "pass" if cov.covered else "fail"
    if cov.covered and "PTX" in cov.how:
        status = "warn"  # runs, but JIT-compiled on first use (minutes, cached afterwards)
    return Check(name, status, f"{label}: {cov.how}", gpu=gpu.index, env=env)


def box_checks(facts: MachineFacts, gpus: Sequence[GpuFacts]) -> list[Check]:
    """The box's own checks: driver, GPUs, MIG, the installed torch and xformers."""
    checks: list[Check] = []
    if facts.driver.version:
        cuda = f", supports CUDA <= {facts.driver.cuda}" if facts.driver.cuda else ""
        checks.append(
            Check("driver", "pass", f"driver {facts.driver.version}{cuda} ({facts.driver.source})")
        )
    else:
        checks.append(Check("driver", "skip", "no NVIDIA driver: " + "; ".join(facts.notes)))
    if not gpus:
        checks.append(Check("gpus", "skip", "no NVIDIA GPU on this box"))
    for gpu in gpus:
        if gpu.mig_mode == "enabled":
            checks.append(
                Check(
                    "mig",
                    "warn",
                    "MIG enabled: torch sees only MIG instances, memory is per instance",
                    gpu=gpu.index,
                )
            )
    return checks + _torch_checks(facts, gpus) + _xformers_checks(facts, gpus)


def _torch_checks(facts: MachineFacts, gpus: Sequence[GpuFacts]) -> list[Check]:
    torch = facts.torch
    if torch is None:
        return [Check("torch", "skip", "not checked (--no-torch)")]
    if not torch.installed:
        return [Check("torch", "skip", f"torch not importable: {torch.import_error}")]
    checks = [
        Check(
            "torch",
            "pass",
            f"torch {torch.version}, CUDA build {torch.cuda_build or 'none (CPU)'}, "
            f"float8: {', '.join(torch.float8_dtypes) or 'none'}",
        )
    ]
    build = _cuda_tuple(torch.cuda_build)
    if build:
        checks.append(_driver_check(facts, build, "torch-driver", None))
    for gpu in gpus:
        if torch.arch_list:
            checks.append(_arch_check("torch-arch", torch.arch_list, gpu, f"torch {torch.version}"))
        dev = torch_device_for(gpu, torch) if torch.cuda_available else None
        if dev is not None and dev.kernel_ok:
            checks.append(Check("torch-kernel", "pass", "a tiny kernel ran", gpu.index))
        elif dev is not None:
            checks.append(Check("torch-kernel", "fail", kernel_reason(dev, torch), gpu.index))
    return checks


def _xformers_checks(facts: MachineFacts, gpus: Sequence[GpuFacts]) -> list[Check]:
    xf, torch = facts.xformers, facts.torch
    if xf is None:
        return []
    checks = []
    if xf.error:
        checks.append(Check("xformers-build", "warn", f"build record unreadable: {xf.error}"))
    if xf.arch_list:
        for gpu in gpus:
            checks.append(_arch_check("xformers-arch", xf.arch_list, gpu, f"xformers {xf.version}"))
    if xf.built_for_torch and torch is not None and torch.version:
        same = xf.built_for_torch.split("+")[0] == torch.version.split("+")[0]
        checks.append(
            Check(
                "xformers-torch",
                "pass" if same else "warn",
                f"xformers {xf.version} built for torch {xf.built_for_torch}, "
                f"installed torch {torch.version}"
                + ("" if same else ": its C++ ops may not load (xformers only warns)"),
            )
        )
    return checks


def env_fit(env: EnvLike, facts: MachineFacts, gpus: Sequence[GpuFacts], fp8: str) -> EnvFit:
    checks = [_driver_check(facts, env.cuda_version, "env-driver", env.name)]
    torch_archs = TORCH_ARCH_LISTS.get(env.cuda)
    xf_archs = XFORMERS_ARCH_LISTS.get(env.cuda) if "xformers" in env.requirements else None
    for gpu in gpus:
        if torch_archs:
            checks.append(
                _arch_check("env-torch-arch", torch_archs, gpu, f"torch {env.cuda}", env.name)
            )
        if xf_archs:
            checks.append(
                _arch_check("env-xformers-arch", xf_archs, gpu, f"xformers {env.cuda}", env.name)
            )
        if gpu.cc and gpu.cc not in env.compute_capabilities:
            checks.append(
                Check(
                    "env-cc",
                    "warn",
                    f"cc {gpu.cc} not in the env's compute_capabilities "
                    f"({', '.join(env.compute_capabilities)}): untested there",
                    gpu.index,
                    env.name,
                )
            )
    if env.fp8 in ("native", "emulated") and gpus:
        checks.append(_env_fp8_check(env, fp8))
    if not gpus:
        return EnvFit(env.name, env.cuda, "fail", "no NVIDIA GPU on this box", checks)
    worst = _worst(c.status for c in checks)
    bad = [c.reason for c in checks if c.status == worst and worst in ("fail", "warn")]
    reason = "; ".join(bad) if bad else f"driver and kernels fit every GPU ({env.cuda})"
    return EnvFit(env.name, env.cuda, worst, reason, checks)


def _env_fp8_check(env: EnvLike, hardware: str) -> Check:
    """The env's FP8 promise against what this box's hardware can do (not this interpreter's)."""
    if env.fp8 == "native":
        if hardware == "native":
            return Check("env-fp8", "pass", "runs FP8 native here (torchao)", env=env.name)
        return Check(
            "env-fp8",
            "pass",
            f"FP8 {hardware} here: the hardware has no native FP8, as for every env",
            env=env.name,
        )
    if hardware == "native":  # an emulated env on FP8 tensor cores leaves speed on the table
        return Check(
            "env-fp8",
            "warn",
            "runs FP8 emulated although this GPU has FP8 tensor cores (an env with fp8 = "
            "'native' runs native here)",
            env=env.name,
        )
    return Check("env-fp8", "pass", f"FP8 {hardware} here, as the env promises", env=env.name)


def _worst(statuses: typing.Iterable[Status]) -> Status:
    rank = {"fail": 3, "warn": 2, "pass": 1, "skip": 0}
    worst: Status = max(statuses, key=lambda s: rank[s], default="pass")
    return "pass" if worst == "skip" else worst


def _fit_rank(f: EnvFit, cuda: tuple[int, int]) -> tuple[bool, int, bool, tuple[int, int]]:
    # Clean fits first, then the fewest warnings, then a full (not minor-compat) driver fit,
    # then the newest CUDA among them (newer torch, better FP8 kernels).
    warns = sum(c.status == "warn" for c in f.checks)
    driver_full = any(c.name == "env-driver" and c.status == "pass" for c in f.checks)
    return (f.status == "pass", -warns, driver_full, cuda)


def native_env(fits: Sequence[EnvFit], envs: Sequence[EnvLike], hardware: str) -> str | None:
    """The best-fitting env that promises native FP8, when this box's hardware runs native."""
    if hardware != "native":
        return None
    promised = {e.name: e for e in envs if e.fp8 == "native"}
    usable = [f for f in fits if f.env in promised and f.status != "fail"]
    if not usable:
        return None
    return max(usable, key=lambda f: _fit_rank(f, promised[f.env].cuda_version)).env


def recommend_env(fits: Sequence[EnvFit], envs: Sequence[EnvLike]) -> tuple[str | None, str]:
    if not fits:
        return None, "no env specs given"
    cuda = {e.name: e.cuda_version for e in envs}
    usable = [f for f in fits if f.status != "fail"]
    if not usable:
        return None, "no env fits this box: " + "; ".join(f"{f.env}: {f.reason}" for f in fits)

    def rank(f: EnvFit) -> tuple[bool, int, bool, tuple[int, int]]:
        return _fit_rank(f, cuda[f.env])

    best = max(usable, key=rank)
    return best.env, f"{best.env} ({best.status}): {best.reason}"


# --------------------------------------------------------------------------------------------
# decide
# --------------------------------------------------------------------------------------------


def effective_gpus(facts: MachineFacts) -> list[GpuFacts]:
    """NVML/nvidia-smi GPUs; where neither answered but torch saw devices, torch's view."""
    if facts.gpus:
        return list(facts.gpus)
    if facts.torch and facts.torch.devices:
        return [
            GpuFacts(
                d.index, d.name, d.cc, d.memory_total_mib, d.memory_free_mib, None, d.uuid, "torch"
            )
            for d in facts.torch.devices
        ]
    return []


def _model_gpu(facts: MachineFacts, gpus: Sequence[GpuFacts]) -> GpuFacts | None:
    """The GPU the model step loads onto: torch's cuda:0, else the first GPU seen."""
    torch = facts.torch
    if torch and torch.cuda_available and torch.devices:
        dev0 = min(torch.devices, key=lambda d: d.index)
        for gpu in gpus:
            if torch_device_for(gpu, torch) is dev0:
                return gpu
    return gpus[0] if gpus else None


_MODE = {"native": "native", "emulated": "emulated", "unsupported": "off"}


def decide(facts: MachineFacts, envs: Sequence[EnvLike] = ()) -> ProbeReport:
    gpus = effective_gpus(facts)
    checks = box_checks(facts, gpus)
    reports = []
    for gpu in gpus:
        hardware = fp8_verdict(gpu, facts)
        stack = stack_verdict(gpu, facts)
        own = [c for c in checks if c.gpu == gpu.index]
        reports.append(
            GpuReport(
                gpu.index,
                gpu.name,
                gpu.cc,
                gpu.memory_total_mib,
                gpu.memory_free_mib,
                gpu.mig_mode,
                effective_verdict(hardware, stack),
                own,
                hardware,
                stack,
            )
        )
    model_gpu = _model_gpu(facts, gpus)
    hardware_mode = "off"
    if model_gpu is None:
        fp8_mode, mode_reason = "off", "no usable NVIDIA GPU: the model step runs without FP8"
        free_mib = None
    else:
        rep = next(r for r in reports if r.index == model_gpu.index)
        fp8_mode = _MODE[rep.fp8.verdict]
        hardware_mode = _MODE[rep.hardware.verdict] if rep.hardware else fp8_mode
        mode_reason = f"GPU {rep.index} ({rep.name}) is {rep.fp8.verdict}: {rep.fp8.reason}"
        free_mib = model_gpu.memory_free_mib
        if facts.torch and facts.torch.cuda_available:
            dev = torch_device_for(model_gpu, facts.torch)
            if dev is not None and dev.memory_free_mib is not None:
                free_mib = dev.memory_free_mib
    fits = [env_fit(env, facts, gpus, hardware_mode) for env in envs]
    recommended, why = recommend_env(fits, envs)
    native = native_env(fits, envs, hardware_mode)
    advisory = None
    if hardware_mode == "native" and fp8_mode != "native":
        where = (
            f"env {native} runs native on this box"
            if native
            else "no env spec given promises native FP8 and fits this box"
        )
        advisory = f"FP8 {fp8_mode} here although the GPU runs FP8 native: {where}"
        mode_reason += f"; {where}"
    memory = memory_report(model_gpu, free_mib, fp8_mode)
    return ProbeReport(
        facts,
        reports,
        fp8_mode,
        mode_reason,
        checks,
        fits,
        recommended,
        why,
        memory,
        native,
        advisory,
        hardware_mode,
    )
