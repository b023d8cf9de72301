#!/bin/bash
# Time `sdenv verify` of one env with two sdenv source trees, alternating (before, after) x RUNS,
# so both see the same load on a shared box; wall and CPU (user+sys of verify and all its
# children, /usr/bin/time) per run, the 1-minute load before each run, and the parts' times.
#
#   bash benchmarks/verify_cpu_ab.sh BEFORE_SRC AFTER_SRC PYTHON OUT.json [RUNS]
#
# BEFORE_SRC/AFTER_SRC: a src/ directory each (e.g. `git archive <base> src | tar -x -C /tmp/b`);
# PYTHON: the env's interpreter (a venv synced from the default lock); sdenv runs in the dev venv
# (DEV_PYTHON, default .venv/bin/python). NO_RECORD=1 removes the venv's record of checked files
# (.sdenv-record-hashes.json) before every run: each drift check then hashes every file, as the
# first verify of a venv that sdenv sync did not make.
set -euo pipefail
BEFORE=$1 AFTER=$2 PY=$3 OUT=$4 RUNS=${5:-3}
DEV=${DEV_PYTHON:-.venv/bin/python}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for i in $(seq 1 "$RUNS"); do
  for v in before after; do
    if [ "$v" = before ]; then SRC=$BEFORE; else SRC=$AFTER; fi
    if [ "${NO_RECORD:-0}" = 1 ]; then rm -f "$(dirname "$PY")/../.sdenv-record-hashes.json"; fi
    cut -d' ' -f1 /proc/loadavg > "$WORK/$v.$i.load"
    /usr/bin/time -f "%e %U %S" -o "$WORK/$v.$i.time" env PYTHONPATH="$SRC" "$DEV" -m sdenv \
      verify --python "$PY" --json > "$WORK/$v.$i.json" 2> "$WORK/$v.$i.err" \
      && echo 0 > "$WORK/$v.$i.rc" || echo $? > "$WORK/$v.$i.rc"
    ps -eo pcpu,etime,args --sort=-pcpu | head -6 | cut -c1-160 > "$WORK/$v.$i.ps"
  done
done
# Paths under this checkout and the dev venv's are written relative (the results name no machine).
ROOTS="$(git rev-parse --show-toplevel)/ $(cd "$(dirname "$DEV")/../.." && pwd)/"
python3 - "$WORK" "$OUT" "$RUNS" "$*" "$ROOTS" <<'PY'
import json, os, sys
from pathlib import Path
work, out, runs, args = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
roots = sys.argv[5].split()
result = {"command": f"bash benchmarks/verify_cpu_ab.sh {args}", "runs": {}}
for v in ("before", "after"):
    rows = []
    for i in range(1, runs + 1):
        wall, user, sys_ = (float(x) for x in (work / f"{v}.{i}.time").read_text().split()[-3:])
        report = json.loads((work / f"{v}.{i}.json").read_text() or "{}")
        rows.append({
            "exit": int((work / f"{v}.{i}.rc").read_text()),
            "wall_s": wall, "cpu_s": round(user + sys_, 2),
            "load1_before": float((work / f"{v}.{i}.load").read_text()),
            "verdict": report.get("verdict"),
            "parts_s": {p["name"]: round(p["seconds"], 2) for p in report.get("parts", [])},
            "busiest_processes_after": (work / f"{v}.{i}.ps").read_text().splitlines()[1:],
        })
    result["runs"][v] = rows
    result[f"{v}_best_wall_s"] = min(r["wall_s"] for r in rows)
    result[f"{v}_best_cpu_s"] = min(r["cpu_s"] for r in rows)
    result[f"{v}_median_wall_s"] = sorted(r["wall_s"] for r in rows)[len(rows) // 2]
result["no_record"] = os.environ.get("NO_RECORD") == "1"
text = json.dumps(result, indent=1) + "\n"
for root in roots:
    text = text.replace(root, "")
Path(out).write_text(text)
print(json.dumps({k: v for k, v in result.items() if k.endswith("_s")}))
PY
