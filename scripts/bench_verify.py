#!/usr/bin/env python3
"""Time ``sdenv verify`` to its verdict, and ``sdenv generate`` on the tiny model per FP8 mode.

Runs the real commands as subprocesses (interpreter start included: what an operator waits for)
and writes one JSON file with every run's exit code, wall time, per-part times and the
generate summaries. Standard library only, so it runs on a bare GPU box:

    PYTHONPATH=src python3 scripts/bench_verify.py --out bench-verify.json
    PYTHONPATH=src python3 scripts/bench_verify.py --out o.json --modes native emulated off \\
        --box-lock   # also time a verify whose drift hashes the whole box (see --box-lock)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_S = 30.0


def _sdenv(*args: str, timeout: float = 600.0) -> tuple[int, float, str, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "sdenv", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return proc.returncode, time.perf_counter() - t0, proc.stdout, proc.stderr


def _box_lock(dest: Path) -> Path:
    """A lock-format file pinning exactly what this interpreter has (for timing drift only).

    The hashes are placeholders: drift compares versions and RECORD file hashes, never wheel
    hashes, so the work timed is the real work of a verify on a box installed from a lock.
    """
    from sdenv.drift import take_inventory
    from sdenv.lock.lockfile import Pin, make_lockfile, write_lockfile

    inv = take_inventory(check_files=False)
    pins = [Pin(d.name, d.version, ("sha256:" + "0" * 64,)) for d in inv.dists]
    write_lockfile(dest, make_lockfile([("env", "this-box"), ("note", "timing only")], pins))
    return dest


def bench_verify(runs: int, extra: list[str], label: str) -> list[dict[str, Any]]:
    out = []
    for i in range(runs):
        code, wall, stdout, stderr = _sdenv("verify", "--json", *extra)
        try:
            result = json.loads(stdout)
        except json.JSONDecodeError:
            result = {"error": stderr.strip().splitlines()[-3:]}
        parts = {
            p["name"]: {"status": p["status"], "seconds": round(p["seconds"], 2)}
            for p in result.get("parts", [])
        }
        out.append(
            {
                "label": label,
                "run": i + 1,
                "exit": code,
                "wall_s": round(wall, 2),
                "under_target": wall < TARGET_S,
                "verdict": result.get("verdict"),
                "fp8_mode": result.get("fp8_mode"),
                "model_mode": result.get("model_mode"),
                "parts": parts,
                "failed": result.get("failed"),
                "result": result,
            }
        )
        print(
            f"verify[{label}] run {i + 1}: exit {code}, {wall:.1f} s, "
            f"{result.get('verdict')}, model {result.get('model_mode')}, "
            + ", ".join(f"{k} {v['status']} {v['seconds']}s" for k, v in parts.items()),
            flush=True,
        )
    return out


def bench_generate(model: Path, modes: list[str], steps: int, tmp: Path) -> list[dict[str, Any]]:
    out = []
    for mode in modes:
        png = tmp / f"tiny-{mode}.png"
        args = ["generate", "--model", str(model), "--prompt", "a red fox in the snow"]
        args += ["--steps", str(steps), "--seed", "1", "--fp8", mode.split("+")[0]]
        args += ["--out", str(png), "--json"]
        if mode.endswith("+compile"):
            args.append("--compile")
        code, wall, stdout, stderr = _sdenv(*args)
        try:
            summary = json.loads(stdout)
        except json.JSONDecodeError:
            summary = {"error": stderr.strip().splitlines()[-3:]}
        out.append({"mode": mode, "exit": code, "wall_s": round(wall, 2), "summary": summary})
        t = summary.get("timings", {})
        print(
            f"generate[{mode}]: exit {code}, {wall:.1f} s wall, load {t.get('load_s')} s, "
            f"fp8 {t.get('fp8_s')} s, steps {t.get('steps_s')}, fp8 layers "
            f"{summary.get('fp8', {}).get('fp8_linear_layers')}/"
            f"{summary.get('fp8', {}).get('linear_layers')}, {summary.get('error', '')}",
            flush=True,
        )
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--lock", help="verify against this lock (default: --no-lock)")
    p.add_argument(
        "--box-lock",
        action="store_true",
        help="also time verify against a lock of this box's own set (drift hashes everything)",
    )
    p.add_argument("--modes", nargs="*", default=[], help="generate modes: native emulated off")
    p.add_argument("--steps", type=int, default=8)
    args = p.parse_args()

    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    report: dict[str, Any] = {"python": sys.executable, "target_s": TARGET_S}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp_s:
        tmp = Path(tmp_s)
        extra = ["--lock", args.lock] if args.lock else ["--no-lock"]
        report["verify"] = bench_verify(args.runs, extra, "lock" if args.lock else "no-lock")
        if args.box_lock:
            lock = _box_lock(tmp / "box.lock.txt")
            report["verify"] += bench_verify(1, ["--lock", str(lock)], "box-lock")
        if args.modes:
            from sdenv.runtime.tinymodel import make_tiny_model

            t0 = time.perf_counter()
            model = make_tiny_model(tmp / "tiny-sd3")
            report["make_tiny_s"] = round(time.perf_counter() - t0, 2)
            report["generate"] = bench_generate(model, args.modes, args.steps, tmp)
            for png in tmp.glob("tiny-*.png"):
                (args.out.parent / png.name).write_bytes(png.read_bytes())
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    ok = all(r["exit"] == 0 for r in report["verify"] if r["label"] != "box-lock")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
