"""Assemble one GPU proof file from the runs made in a venv built from a committed lock.

    python3 scripts/gpu_proof.py --lock lockfiles/STEM.txt --verify V.json --generate G.json \
        --bench B.json [--not-run "what: why" ...] --out benchmarks/results/gpu-proof-STEM.json

Runs on the GPU box itself (standard library only, any Python >= 3.10): the GPU's name, compute
capability and driver come from ``nvidia-smi``; the lock's sha256 is of the file as it was used,
so a proof whose ``lock_sha256`` differs from the committed lock is visibly stale.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from compat_matrix import pins_sha256  # scripts/ is this script's sys.path[0]

SCHEMA = 1


def _load(path: Path | None, label: str, not_run: list[str]) -> Any:
    if path is None:
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))  # one --json object per command
    except (OSError, ValueError) as exc:
        not_run.append(f"{label}: no JSON result ({type(exc).__name__}: {exc})")
        return None


def relative(value: Any, root: str) -> Any:
    """Paths under the checkout written repo-relative: a proof names files of this repository."""
    if isinstance(value, str):
        return value.replace(root.rstrip("/") + "/", "")
    if isinstance(value, list):
        return [relative(v, root) for v in value]
    if isinstance(value, dict):
        return {k: relative(v, root) for k, v in value.items()}
    return value


def gpu_facts() -> dict[str, Any]:
    try:
        line = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError) as exc:
        return {"error": f"nvidia-smi: {exc}"}
    name, cc, driver = (c.strip() for c in line.split(","))
    return {"name": name, "cc": cc, "driver": driver}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lock", type=Path, required=True)
    p.add_argument("--verify", type=Path)
    p.add_argument("--generate", type=Path)
    p.add_argument("--bench", type=Path)
    p.add_argument("--not-run", action="append", default=[], metavar="WHAT: WHY")
    p.add_argument("--note", action="append", default=[], metavar="TEXT")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    not_run = list(args.not_run)
    proof = {
        "schema": SCHEMA,
        "lock": args.lock.as_posix(),
        "lock_sha256": hashlib.sha256(args.lock.read_bytes()).hexdigest(),
        "pins_sha256": pins_sha256(args.lock.read_text(encoding="utf-8")),
        "gpu": gpu_facts(),
        "verify": _load(args.verify, "verify", not_run),
        "generate": _load(args.generate, "generate", not_run),
        "bench": _load(args.bench, "bench", not_run),
        "not_run": not_run,
        "notes": args.note,
    }
    proof = relative(proof, str(Path.cwd()))
    args.out.write_text(json.dumps(proof, indent=2) + "\n", encoding="utf-8")
    verdict = (proof["verify"] or {}).get("verdict")
    print(f"{args.out}: verify {verdict}, not run: {len(not_run)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
