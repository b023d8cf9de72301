"""Time `sdenv probe` (torch-free and full) as a user runs it, and record this box's facts.

Each timing is a fresh process (`python -m sdenv probe ...`), the cost a user pays, imports
included. Also reads the driver through each fact source alone (NVML, nvidia-smi, /proc) so the
fallbacks are exercised on a real box. Targets: torch-free < 2 s, full < 10 s.

    PYTHONPATH=src python3 scripts/bench_probe.py --out DIR [--repeat 3]

Writes DIR/bench_probe.json (timings, summary, per-source reads), DIR/facts.json (raw
``collect_facts`` of the full probe) and DIR/probe-full.json / DIR/probe-notorch.json (reports).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TARGETS_S = {"notorch": 2.0, "full": 10.0}


def _run(args: list[str], env: dict[str, str]) -> tuple[float, int, str, str]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "sdenv", "probe", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    return time.perf_counter() - start, proc.returncode, proc.stdout, proc.stderr


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)

    result: dict[str, Any] = {"python": sys.version.split()[0], "runs": {}}
    for mode, extra in (("notorch", ["--no-torch"]), ("full", [])):
        times = []
        for i in range(args.repeat):
            save = (
                ["--save-facts", str(args.out / "facts.json")] if mode == "full" and i == 0 else []
            )
            secs, rc, stdout, stderr = _run(["--json", *extra, *save], env)
            times.append(round(secs, 3))
            if rc != 0:
                print(f"{mode}: exit {rc}\n{stderr}", file=sys.stderr)
                result["runs"][mode] = {"rc": rc, "stderr": stderr[-2000:]}
                break
            if i == 0:
                (args.out / f"probe-{mode}.json").write_text(stdout)
        else:
            result["runs"][mode] = {
                "seconds": times,
                "median_s": statistics.median(times),
                "target_s": TARGETS_S[mode],
                "within_target": statistics.median(times) < TARGETS_S[mode],
            }
        print(mode, result["runs"][mode], flush=True)

    sys.path.insert(0, src)
    from sdenv.gpu.probe import collect_driver

    sources = {}
    for name in ("nvml", "nvidia-smi", "proc"):
        notes: list[str] = []
        start = time.perf_counter()
        driver, gpus = collect_driver(notes, (name,))
        sources[name] = {
            "seconds": round(time.perf_counter() - start, 3),
            "driver": dataclasses.asdict(driver),
            "gpus": [dataclasses.asdict(g) for g in gpus],
            "notes": notes,
        }
    result["sources"] = sources

    full = args.out / "probe-full.json"
    if full.exists():
        report = json.loads(full.read_text())
        result["summary"] = {
            "fp8_mode": report["fp8_mode"],
            "gpus": [
                {
                    "name": g["name"],
                    "cc": g["cc"],
                    "fp8": g["fp8"]["verdict"],
                    "reason": g["fp8"]["reason"],
                }
                for g in report["gpus"]
            ],
            "checks": [f"{c['name']}: {c['status']}" for c in report["checks"]],
            "recommended_env": report["recommended_env"],
            "memory": report["memory"]["advice"],
        }
    (args.out / "bench_probe.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result.get("summary"), indent=2))
    return 0 if all("median_s" in r for r in result["runs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
