#!/usr/bin/env python3
"""Benchmark `sdenv lock` on the default env (warm uv cache), as the issue asks:

* `sdenv lock --no-verify` of one target vs a raw `uv pip compile` of the same target and inputs
  (target: within 1.5x);
* the pip-tools backend for the same target (pip-compile downloads whole wheels: slow);
* the full `sdenv lock` with the import proof for every target (target: < 2 min warm).

Usage: .venv/bin/python scripts/bench_lock.py [--repeat 3] [--skip-pip-tools] [--out FILE]
Each timing runs the real command in a subprocess into a fresh temporary lock dir.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from sdenv.lock import base_inputs, checks  # noqa: E402
from sdenv.lock.resolve import uv_version  # noqa: E402
from sdenv.lock.spec import DEFAULT_ENV, load_spec  # noqa: E402
from sdenv.venv import uv_bin, uv_env  # noqa: E402

SDENV = str(Path(sys.executable).parent / "sdenv")


def timed(cmd: list[str], **kw: object) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, **kw)  # type: ignore[call-overload]
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--python", default="3.11", help="the one-target comparison's Python")
    ap.add_argument("--skip-pip-tools", action="store_true")
    ap.add_argument("--skip-proof", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    spec = load_spec(DEFAULT_ENV, REPO / "envs")
    target = next(t for t in spec.targets if t.python == args.python)
    inputs = base_inputs(spec, target, list(checks.default_rules()))
    results: dict[str, object] = {
        "env": spec.name,
        "target": target.slug,
        "uv": uv_version(),
        "repeat": args.repeat,
    }
    with tempfile.TemporaryDirectory(prefix="bench-lock-") as tmp:
        work = Path(tmp)
        (work / "req.in").write_text("\n".join(inputs.requirements) + "\n")
        (work / "cons.txt").write_text("\n".join(inputs.constraint_lines()) + "\n")
        raw_cmd = [
            uv_bin(),
            "pip",
            "compile",
            str(work / "req.in"),
            "-c",
            str(work / "cons.txt"),
            "--python-version",
            target.python,
            "--python-platform",
            target.uv_platform,
            "--generate-hashes",
            "--only-binary",
            ":all:",
            "--index-url",
            spec.indexes[0].url,
            "--quiet",
            "-o",
            str(work / "raw.txt"),
        ]
        out = work / "raw.txt"

        def raw_compile(keep_output: bool) -> float:
            # uv reads an existing output file as preferences: a re-lock, not a fresh lock.
            if not keep_output:
                out.unlink(missing_ok=True)
            return timed(raw_cmd, env=uv_env())

        raw_compile(False)  # warm the cache once, not measured
        raw = [raw_compile(False) for _ in range(args.repeat)]
        raw_re = [raw_compile(True) for _ in range(args.repeat)]

        def sdenv_lock(*extra: str, lock_dir: Path | None = None) -> float:
            lock_dir = lock_dir or Path(tempfile.mkdtemp(dir=work))
            return timed([SDENV, "lock", DEFAULT_ENV, "--lock-dir", str(lock_dir), *extra])

        one = ("--no-verify", "--python", target.python)
        nov = [sdenv_lock(*one) for _ in range(args.repeat)]
        kept = Path(tempfile.mkdtemp(dir=work))
        sdenv_lock(*one, lock_dir=kept)
        nov_re = [sdenv_lock(*one, lock_dir=kept) for _ in range(args.repeat)]
        med = statistics.median
        results["fresh_raw_uv_compile_s"] = round(med(raw), 2)
        results["fresh_sdenv_lock_no_verify_s"] = round(med(nov), 2)
        results["fresh_ratio"] = round(med(nov) / med(raw), 2)
        results["relock_raw_uv_compile_s"] = round(med(raw_re), 2)
        results["relock_sdenv_lock_no_verify_s"] = round(med(nov_re), 2)
        results["relock_ratio"] = round(med(nov_re) / med(raw_re), 2)
        print(json.dumps(results), flush=True)
        if not args.skip_pip_tools:
            results["sdenv_lock_pip_tools_no_verify_s"] = round(
                sdenv_lock("--no-verify", "--resolver", "pip-tools", "--python", target.python), 1
            )
            print(json.dumps(results), flush=True)
        if not args.skip_proof:
            results["sdenv_lock_with_proof_all_targets_s"] = round(sdenv_lock(), 1)
            results["targets"] = [t.slug for t in spec.targets]
    print(json.dumps(results, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
