#!/usr/bin/env bash
# Both GPU proofs (the default lock and the cu130 lock, Python 3.12) and verify's and fp8-static's
# figures in one held session of an H200 box without index access. Started detached, so that it
# runs while later calls bring the second lock's pieces:
#   setsid nohup bash benchmarks/device_two_proofs.sh >/root/session.log 2>&1 </dev/null &
# Each lock's pieces arrive as for benchmarks/device_gpu_proof.sh, in /root/wh121/ and
# /root/wh130/; the call that brings a lock's last piece touches COMPLETE there.
#   1. the default lock's proof (bench: bf16 compiled; fp8-emulated compiled left out, see not_run),
#      then `sdenv verify --lock` twice more in its venv (the proof's verify is the first run);
#   2. the cu130 lock's proof (bench: bf16, fp8-native, fp8-static compiled, profiled), then
#      verify three times more;
#   3. fp8-static with tensor-wise weight scales against bf16, profiled.
# Everything lands in /root/results/ (not the call's output folder: each call empties that one);
# /root/results/DONE marks the end, and a later call copies the folder out.
set -u
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
O=/root/results
mkdir -p "$O"
rm -rf /root/repo && cp -a "$PWD" /root/repo && cd /root/repo || exit 1
wait_for() { until [ -e "$1" ]; do sleep 2; done; }
L121=lockfiles/sd35-fp8-cu121-py3.12-linux_x86_64.txt
L130=lockfiles/sd35-fp8-cu130-py3.12-linux_x86_64.txt

verify_runs() {  # LOCK N: N timed `sdenv verify --lock` runs in the venv proven from LOCK
  local stem i t0 rc
  stem=$(basename "$1" .txt)
  for i in $(seq 1 "$2"); do
    t0=$(date +%s.%N)
    (cd /tmp && timeout 200 "/root/envs/$stem/bin/sdenv" verify --lock "/root/repo/$1" \
      --envs-dir /root/repo/envs --json >"$O/verify-$stem-$i.json" 2>"$O/verify-$stem-$i.err")
    rc=$?
    echo "$stem verify $i: exit $rc, $(python3 -c "print(round($(date +%s.%N) - $t0, 2))") s wall" \
      >>"$O/verify-times.txt"
  done
}

wait_for /root/wh121/COMPLETE
PIECES=/root/wh121 OUT=$O/p121 BUDGET=500 PROOF_NOT_RUN="bench fp8-emulated --compile: left out; \
on this lock's torch 2.4.1 dynamo recompiles once per layer through diffusers' casting hooks and \
hits cache_size_limit (did not finish in 5 min on an H200 box, docs/evidence.md#E-default-lock-h200); \
fp8-native: this env promises emulated (torch 2.4 has no native FP8 backend)" \
  bash benchmarks/device_gpu_proof.sh "$L121" --compile --modes bf16 >"$O/p121.log" 2>&1
echo "proof 1 exit $?" >>"$O/progress"
verify_runs "$L121" 2

wait_for /root/wh130/COMPLETE
PIECES=/root/wh130 OUT=$O/p130 BUDGET=700 \
  bash benchmarks/device_gpu_proof.sh "$L130" --compile --modes bf16,fp8-native,fp8-static \
  --profile >"$O/p130.log" 2>&1
echo "proof 2 exit $?" >>"$O/progress"
verify_runs "$L130" 3
echo "verify runs done" >>"$O/progress"

V=/root/envs/$(basename "$L130" .txt)/bin
(cd /tmp && timeout 400 "$V/sdenv" bench --model large --compile --steps 10 --timeout 300 \
  --modes bf16,fp8-static --fp8-granularity tensor --profile --output "$O/static-tensor.json" \
  >"$O/static-tensor.log" 2>&1)
echo "tensor bench exit $?" >>"$O/progress"
touch "$O/DONE"
