#!/usr/bin/env bash
# sdenv bench on an H200 box without index access, SD3.5 Large transformer, random weights.
# Stages by priority, each bounded so the whole call ends inside its 10-minute limit; every
# stage writes the JSON report of `sdenv bench --output` under $OUT.
#   bash benchmarks/device_bench.sh [STAGE...]   (stages: main cudnn tensor tuned
#   noacc full medium eager)
# Needs the wheels the device lacks in .carry/bench (carry that folder with the call):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .carry/bench \
#     diffusers==0.42.1 torchao==0.18.0
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/bench-out}
BUDGET=${BUDGET:-560}
mkdir -p "$OUT"
START=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .carry/bench/*.whl || exit 1
export PYTHONPATH=/tmp/site:src
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.draw \
  --format=csv | tee "$OUT/nvidia-smi.csv"
bench() {  # NAME ARGS...: one sdenv bench run, bounded by what is left of the budget
  local name=$1; shift
  local left=$(( BUDGET - ($(date +%s) - START) ))
  if [ "$left" -lt 90 ]; then echo "== $name: skipped, ${left}s left"; return; fi
  echo "== $name ($left s left): sdenv bench $*"
  timeout "$left" python3 -m sdenv bench --model large --steps 20 --timeout 300 \
    --output "$OUT/$name.json" "$@"
  echo "== $name: exit $? after $(( $(date +%s) - START )) s"
}
for stage in "${@:-main cudnn tensor}"; do
  for s in $stage; do
    case $s in
      main) bench large-compiled --compile --profile --modes bf16,fp8-emulated,fp8-native ;;
      cudnn) bench large-compiled-cudnn --compile --profile --attention cudnn \
               --modes bf16,fp8-native ;;
      tensor) bench large-compiled-pertensor --compile --profile --fp8-granularity tensor \
                --modes fp8-native ;;
      tuned) bench large-compiled-tuned --compile --inductor-tuning --profile \
               --modes bf16,fp8-native ;;
      noacc) bench large-compiled-nofastaccum --compile --no-fast-accum --modes fp8-native ;;
      full) bench large-compiled-full --compile --compile-scope full --modes bf16,fp8-native ;;
      medium) bench medium-compiled --model medium --compile --profile \
                --modes bf16,fp8-emulated,fp8-native ;;
      eager) bench large-eager --modes bf16,fp8-emulated,fp8-native ;;
      *) echo "unknown stage $s" ;;
    esac
  done
done
