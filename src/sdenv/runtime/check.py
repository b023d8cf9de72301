"""The model check ``sdenv verify`` runs inside the env under test.

``python -m sdenv.runtime.check --mode MODE [--model DIR] [--steps N]`` loads the tiny SD3.5
model (or ``DIR``) in ``MODE``, runs a few steps and prints one result line
(``sdenv.target.protocol``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sdenv.errors import SdenvError
from sdenv.runtime.generate import MODES, load_pipeline, run_pipeline
from sdenv.target.protocol import emit

CHECK_PROMPT = "a photograph of an astronaut riding a horse"


def model_check(
    mode: str, model_dir: Path | None = None, *, steps: int = 2, workdir: Path | None = None
) -> dict[str, Any]:
    """The verify model check: load (the tiny model by default) in ``mode``, run ``steps`` steps."""
    from sdenv._cleanup import throwaway_dir
    from sdenv.runtime.tinymodel import make_tiny_model

    # Owner-marked: when verify kills this check (timeout, SIGTERM), the next sdenv run removes it.
    with throwaway_dir("sdenv-tiny-", workdir) as tmp:
        t = time.perf_counter()
        made_s = 0.0
        if model_dir is None:
            model_dir = make_tiny_model(tmp / "tiny-sd3")
            made_s = time.perf_counter() - t
        # The model's own size: a smaller one can exceed what its position embedding covers.
        loaded = load_pipeline(model_dir, mode, probe_fn=lambda: mode)
        result, _ = run_pipeline(loaded, CHECK_PROMPT, steps=steps, seed=0)
        result.timings["make_tiny_s"] = round(made_s, 4)
        return {"ok": result.finite and result.fp8_ok(), "fp8_ok": result.fp8_ok()} | asdict(result)


def _check_main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m sdenv.runtime.check")
    p.add_argument("--mode", choices=MODES, required=True)
    p.add_argument("--model", type=Path)
    p.add_argument("--steps", type=int, default=2)
    args = p.parse_args(argv)
    try:
        report = model_check(args.mode, args.model, steps=args.steps)
    except SdenvError as exc:
        report = {"ok": False, "error": str(exc), "error_type": type(exc).__name__}
    except Exception as exc:  # the check reports any crash as data for verify
        report = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "error_type": "crash"}
    # The one result protocol (sdenv.target.protocol): library chatter cannot break the parse.
    emit(report)
    return 0 if report.get("ok") else 1


if __name__ == "__main__":
    sys.exit(_check_main(sys.argv[1:]))
