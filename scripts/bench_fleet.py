#!/usr/bin/env python3
"""Benchmark `sdenv fleet verify` on a local Ray cluster: one node vs three, against no Ray at all.

Two workloads per cluster size, each the real command in a subprocess:
* ``real``: every node verifies the dev venv (torch on CPU, diffusers: probe, smoke, tiny-model
  run), the same work as `sdenv verify --no-lock` run directly;
* ``tiny``: every node verifies an empty venv (verify fails in seconds: no torch), so what is left
  is the cost of the fan-out itself (joining the cluster, scheduling, the node task's probe and
  subprocesses, results back).

Usage: .venv/bin/python scripts/bench_fleet.py [--out FILE]
Needs the fleet extra (Ray). All nodes run on this machine (each `ray start --num-cpus 1`), so on a
box with fewer cores than nodes the three-node figure includes CPU contention, not only overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "tests"))

from ray_cluster import SRC, Node, local_cluster  # noqa: E402
from sdenv.venv import run_uv  # noqa: E402


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [SRC, env.get("PYTHONPATH")]))
    return env


def timed(cmd: list[str]) -> tuple[float, int, str]:
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), check=False)
    return round(time.monotonic() - t0, 2), proc.returncode, proc.stdout


def fleet(address: str, *args: str) -> dict[str, object]:
    cmd = [sys.executable, "-m", "sdenv", "fleet", "verify", "--ray", address, "--json"]
    wall, code, out = timed([*cmd, "--no-lock", "--timeout", "900", *args])
    result = json.loads(out)
    rows = result["rows"]
    return {
        "wall_s": wall,
        "exit": code,
        "nodes": result["nodes"],
        "node_s": [r["seconds"] for r in rows],
        "verify_s": [r["verify"]["seconds"] if r["verify"] else None for r in rows],
        "verdicts": [r["verdict"] for r in rows],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    figures: dict[str, object] = {
        "machine": f"{platform.node()} {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "ray": __import__("ray").__version__,
    }
    with tempfile.TemporaryDirectory(prefix="sdenv-bench-fleet-") as tmp:
        tiny = Path(tmp) / "tiny"
        run_uv(["venv", "--quiet", "--python", sys.executable, str(tiny)])
        direct = [sys.executable, "-m", "sdenv", "verify", "--no-lock", "--json"]
        figures["direct_real_s"] = timed(direct)[0]
        figures["direct_tiny_s"] = timed([*direct, "--python", str(tiny / "bin" / "python")])[0]
        print(json.dumps(figures), flush=True)
        for size in (1, 3):
            t0 = time.monotonic()
            with local_cluster([Node(n) for n in "abc"[:size]]) as cluster:
                figures[f"boot_{size}_s"] = round(time.monotonic() - t0, 1)
                figures[f"fleet_{size}_tiny"] = fleet(cluster.address, "--venv", str(tiny))
                figures[f"fleet_{size}_real"] = fleet(cluster.address)
            print(json.dumps(figures), flush=True)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
