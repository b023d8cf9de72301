#!/usr/bin/env bash
# fp8-static and verify's wall time on an H200 box without index access, on its own torch (2.11,
# cu130) with diffusers and torchao carried beside it. One call, bounded by BUDGET seconds:
#   1. `sdenv verify --no-lock --json` on a cold box, wall time;
#   2. `sdenv bench --model large --compile --modes bf16,fp8-native,fp8-static --profile`
#      (SD3.5 Large transformer, random weights, 1024x1024, CFG batch 2, 20 timed steps);
#   3. verify again (warm caches) if time is left.
# Wheels the box lacks travel in .carry (carry both folders with the call):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .carry/fp8 diffusers==0.42.1
#   (same flags) -d .carry/fp8-ao torchao==0.18.0
# Results go to $OUT: verify-{1,2}.json, verify-times.txt, large-compiled-static.json.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/fp8-static-out}
BUDGET=${BUDGET:-200}
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
verify 1
left=$(( BUDGET - ($(date +%s) - START) ))
echo "== bench ($left s left)"
timeout "$left" python3 -m sdenv bench --model large --compile --profile --steps 20 \
  --modes bf16,fp8-native,fp8-static --timeout 150 --output "$OUT/large-compiled-static.json" \
  2> >(grep -v "^W1\|^I1" >&2)
echo "== bench: exit $? after $(( $(date +%s) - START )) s"
# The second verify (warm caches) only if the budget allows it.
if [ $(( BUDGET + 30 - ($(date +%s) - START) )) -gt 25 ]; then verify 2; fi
