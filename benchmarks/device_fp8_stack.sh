#!/usr/bin/env bash
# The FP8 stack verdict on an H200 box without index access, on that box's own torch (2.11, cu130):
#   1. without torchao: `sdenv probe` (facts saved) and `sdenv verify --no-lock`: expected FP8
#      emulated, with the advisory naming the env that runs native there;
#   2. with torchao: the same two, expected native (the deployed transform checked on the GPU).
# Wheels the box lacks travel in .carry (carry both folders with the call):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .carry/fp8 diffusers==0.42.1
#   (same flags) -d .carry/fp8-ao torchao==0.18.0
# Results (JSON) go to $OUT: facts-*.json (recorded machine facts), probe-*.json, verify-*.json.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/fp8-stack-out}
mkdir -p "$OUT"
install() { python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$1" "${@:2}"; }
install /tmp/site .carry/fp8/*.whl || exit 1
install /tmp/site-ao .carry/fp8-ao/*.whl || exit 1
nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv
for case in no-torchao torchao; do
  if [ "$case" = torchao ]; then export PYTHONPATH=/tmp/site-ao:/tmp/site:$PWD/src
  else export PYTHONPATH=/tmp/site:$PWD/src; fi
  t0=$(date +%s)
  python3 -m sdenv probe --json --save-facts "$OUT/facts-$case.json" >"$OUT/probe-$case.json"
  echo "== probe $case: exit $? after $(( $(date +%s) - t0 )) s"
  python3 - "$OUT/probe-$case.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
g = r["gpus"][0]
print("hardware:", g["hardware"]["verdict"], "|", g["hardware"]["reason"])
print("stack:   ", g["stack"]["verdict"], "|", g["stack"]["reason"])
print("fp8_mode:", r["fp8_mode"], "| native_env:", r["native_env"], "| recommended:", r["recommended_env"])
print("advisory:", r["fp8_advisory"])
PY
  t0=$(date +%s)
  python3 -m sdenv verify --no-lock --json >"$OUT/verify-$case.json"
  echo "== verify $case: exit $? after $(( $(date +%s) - t0 )) s"
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['verdict'], r['fp8_mode'], r['model_mode'], r['advisory'], r['failed']); [print(' ', p['name'], p['status'], p['reasons'][:2]) for p in r['parts']]" "$OUT/verify-$case.json"
done
