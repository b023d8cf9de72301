"""Time a full CPU ``sdenv smoke`` of an env (budget: under 60 s on the 2-core dev box).

Usage: .venv/bin/python scripts/bench_smoke.py [--python PATH ...] [--repeat N] [--workers N]
       [--budget S] [--json FILE]
Default env: this interpreter (the .venv). Prints wall time per run and the per-check times of
the median run; exits 1 when the median run exceeds the budget.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
from pathlib import Path

from sdenv._fs import write_atomic
from sdenv.smoke import SmokeReport, run_smoke


def bench(python: str, repeat: int, workers: int | None) -> dict[str, object]:
    runs: list[SmokeReport] = []
    cpu: list[float] = []
    for i in range(repeat):
        # CPU seconds of the check processes: a figure the shared box's load does not inflate.
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        report = run_smoke(python, gpu=False, workers=workers)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        runs.append(report)
        print(
            f"  run {i + 1}: {report.seconds:.1f} s wall, {cpu[-1]:.1f} s CPU, ok={report.ok}",
            file=sys.stderr,
        )
    median = sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]
    return {
        "python": median.python,
        "versions": {k: v for k, v in median.facts.get("versions", {}).items() if v},
        "ok": median.ok,
        "runs_s": [round(r.seconds, 2) for r in runs],
        "median_s": round(statistics.median(r.seconds for r in runs), 2),
        "cpu_s": [round(c, 1) for c in cpu],
        "load_avg_1m": round(os.getloadavg()[0], 1),
        "checks_s": {c.name: round(c.seconds, 2) for c in median.checks},
        "statuses": {c.name: c.status for c in median.checks},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", action="append", default=[], help="env interpreter(s)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None, help="parallel check processes")
    ap.add_argument("--budget", type=float, default=60.0, help="seconds a full run may take")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    results = []
    for python in args.python or [sys.executable]:
        print(f"{python}:", file=sys.stderr)
        results.append(bench(python, args.repeat, args.workers))
    figures = {"cpus": os.cpu_count(), "budget_s": args.budget, "envs": results}
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        write_atomic(args.json, text + "\n")
    over = [r["python"] for r in results if float(str(r["median_s"])) > args.budget]
    if over:
        print(f"over the {args.budget:g} s budget: {', '.join(map(str, over))}", file=sys.stderr)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
