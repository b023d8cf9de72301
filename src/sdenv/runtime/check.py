"""The model check ``sdenv verify`` runs inside the env under test.

``python -m sdenv.runtime.check --mode MODE [--model DIR] [--steps N]`` loads the tiny SD3.5
model (or ``DIR``) in ``MODE``, runs a few steps and prints one result line
(``sdenv.target.protocol``).

``--mode -`` reads the mode from stdin, one line, once the tiny model is made: verify starts the
check at once, so making the model (importing torch, diffusers and transformers, training the
tokenizers) overlaps with verify's deciding instead of following it. An empty line or end of
input means no run is wanted: the check exits 0 without a result.

``--probe`` first writes the probe's facts of this very process (``{"probe_facts": ...}``), before
any model is made: verify decides the mode from them, so the probe's torch import is the one the
model check needs anyway instead of one more process. When collecting them raises, the line is
``{"probe_error": ...}`` and verify runs the probe alone, which reports the failure as it always
did.

``--smoke`` then lends this process to the smoke's ``imports`` group (``sdenv._smoke_run``): when
the first line on stdin is ``smoke on|off NAME...``, it runs those checks of ``sdenv.target.smoke``
here, each writing its result line as in a smoke process of their own, before it makes its model
(they import what the model needs anyway). Any other first line is the mode.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sdenv.errors import SdenvError
from sdenv.runtime.generate import MODES, load_pipeline, run_pipeline
from sdenv.target.protocol import emit

CHECK_PROMPT = "a photograph of an astronaut riding a horse"


def model_check(
    mode: str | Callable[[], str | None],
    model_dir: Path | None = None,
    *,
    steps: int = 2,
    workdir: Path | None = None,
) -> dict[str, Any] | None:
    """The verify model check: load (the tiny model by default) in ``mode``, run ``steps`` steps.

    ``mode`` may be a function, asked once the model is made (``--mode -``); when it answers
    None no run is wanted and the result is None.
    """
    from sdenv._cleanup import throwaway_dir
    from sdenv.runtime.tinymodel import make_tiny_model

    # Owner-marked: when verify kills this check (timeout, SIGTERM), the next sdenv run removes it.
    with throwaway_dir("sdenv-tiny-", workdir) as tmp:
        t = time.perf_counter()
        made_s = 0.0
        if model_dir is None:
            model_dir = make_tiny_model(tmp / "tiny-sd3")
            made_s = time.perf_counter() - t
        t = time.perf_counter()
        if callable(mode):
            _warm_device()
        chosen = mode() if callable(mode) else mode
        waited_s = time.perf_counter() - t
        if chosen is None:
            return None
        # The model's own size: a smaller one can exceed what its position embedding covers.
        loaded = load_pipeline(model_dir, chosen, probe_fn=lambda: chosen)
        result, _ = run_pipeline(loaded, CHECK_PROMPT, steps=steps, seed=0)
        result.timings["make_tiny_s"] = round(made_s, 4)
        result.timings["mode_wait_s"] = round(waited_s, 4)  # warming the device included
        return {"ok": result.finite and result.fp8_ok(), "fp8_ok": result.fp8_ok()} | asdict(result)


def _warm_device() -> None:
    """While the probe has not answered yet: make the CUDA context and the cuBLAS handle, which
    the first denoising step would pay otherwise (seconds on a fresh process). Any mode needs
    them; a box without CUDA has nothing to warm."""
    import torch

    if torch.cuda.is_available():
        a = torch.ones(64, 64, device="cuda", dtype=torch.bfloat16)
        (a @ a).sum().item()


def _import_torch() -> None:
    """Import torch (its absence is the smoke's and the model check's finding, not ours)."""
    import contextlib

    with contextlib.suppress(Exception):
        import torch  # noqa: F401


def emit_probe_facts() -> None:
    """The probe's facts (``sdenv.gpu.probe.collect_facts``) as one result line."""
    import dataclasses

    from sdenv.gpu.probe import collect_facts

    try:
        emit({"probe_facts": dataclasses.asdict(collect_facts(with_torch=True))})
    except Exception as exc:  # verify re-runs the probe alone: its report names the failure
        emit({"probe_error": f"{type(exc).__name__}: {exc}"})


def run_smoke_line(line: str) -> list[str] | None:
    """Run the smoke checks ``smoke on|off NAME...`` names: the names run; None when the line is
    no such line."""
    words = line.split()
    if len(words) < 2 or words[0] != "smoke" or words[1] not in ("on", "off"):
        return None
    from sdenv.target import smoke

    ran = []
    for name in words[2:]:
        if name in smoke.CHECKS:  # a name it does not know gets no result: it runs alone
            emit(smoke.run(name, words[1]))
            ran.append(name)
    return ran


def _mode_from_line(raw: str) -> str | None:
    """One line from verify: the mode the probe chose; empty (or end of input) for no run."""
    line = raw.strip()
    if line and line not in MODES:
        raise SdenvError(f"--mode -: got {line!r} on stdin; expected one of {', '.join(MODES)}")
    return line or None


def _check_main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m sdenv.runtime.check")
    p.add_argument("--mode", choices=(*MODES, "-"), required=True, help="- : read it from stdin")
    p.add_argument("--model", type=Path)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--probe", action="store_true", help="first write the probe's facts")
    p.add_argument("--smoke", action="store_true", help="then run smoke checks named on stdin")
    args = p.parse_args(argv)
    if args.probe:
        emit_probe_facts()
    ahead: list[str] = []  # a first line that was not the smoke's: the mode, read early
    smoke_ran: list[str] = []
    if args.smoke:
        if not args.probe:
            _import_torch()  # what the probe would have done while the smoke's line comes
        first = sys.stdin.readline()
        ran = run_smoke_line(first)
        if ran is None:
            ahead.append(first)
        smoke_ran = ran or []

    def mode_line() -> str | None:
        return _mode_from_line(ahead.pop() if ahead else sys.stdin.readline())

    mode: str | Callable[[], str | None] = mode_line if args.mode == "-" else args.mode
    try:
        report = model_check(mode, args.model, steps=args.steps)
        if report is None:
            return 0  # no run was wanted (verify found no mode to run)
    except SdenvError as exc:
        report = {"ok": False, "error": str(exc), "error_type": type(exc).__name__}
    except Exception as exc:  # the check reports any crash as data for verify
        report = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "error_type": "crash"}
    report["smoke_checks_run_here"] = smoke_ran  # what verify's smoke took from this process
    # The one result protocol (sdenv.target.protocol): library chatter cannot break the parse.
    emit(report)
    return 0 if report.get("ok") else 1


if __name__ == "__main__":
    sys.exit(_check_main(sys.argv[1:]))
