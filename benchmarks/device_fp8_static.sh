#!/usr/bin/env bash
# fp8-static and verify's wall time on an H200 box without index access, on its own torch (2.11,
# cu130) with diffusers and torchao carried beside it. One call, bounded by BUDGET seconds:
#   1. `sdenv bench --model large --compile --modes bf16,fp8-static` (SD3.5 Large transformer,
#      random weights, 1024x1024, CFG batch 2, 10 timed steps; MODES=... to change the modes);
#   2. `sdenv verify --no-lock --json` with what is left of the budget, wall time.
# Wheels the box lacks travel in .carry (carry both folders with the call):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .carry/fp8 diffusers==0.42.1
#   (same flags) -d .carry/fp8-ao torchao==0.18.0
# Results go to $OUT: large-compiled-static.json, verify-1.json, verify-times.txt.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/fp8-static-out}
BUDGET=${BUDGET:-160}
START=$(date +%s)
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .carry/fp8/*.whl .carry/fp8-ao/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src
nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader | tee "$OUT/gpu.csv"
verify() {  # N: one timed `sdenv verify --no-lock --json`
  local t0; t0=$(date +%s.%N)
  python3 -m sdenv verify --no-lock --json >"$OUT/verify-$1.json" 2>"$OUT/verify-$1.err"
  local rc=$?
  echo "verify run $1: exit $rc, $(python3 -c "print(round($(date +%s.%N) - $t0, 2))") s wall" \
    | tee -a "$OUT/verify-times.txt"
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['verdict'], r['fp8_mode']); [print(' ', p['name'], p['status'], p.get('seconds')) for p in r['parts']]" "$OUT/verify-$1.json" || tail -5 "$OUT/verify-$1.err"
}
# The bench first: the worker's "[bench MODE] median" lines reach the call's output even if the
# budget ends the run before the report is written.
timeout $(( BUDGET - 40 )) python3 -m sdenv bench --model large --compile --steps 10 --warmup 2 \
  --modes "${MODES:-bf16,fp8-static}" --timeout 90 --output "$OUT/large-compiled-static.json" \
  2> >(grep -v "^W1\|^I1\|UserWarning\|warnings.warn" >&2) >/dev/null
echo "== bench: exit $? after $(( $(date +%s) - START )) s"
left=$(( BUDGET - ($(date +%s) - START) ))
if [ "$left" -gt 15 ]; then timeout "$left" bash -c "$(declare -f verify); OUT=$OUT verify 1"; fi
