#!/usr/bin/env bash
# Prove one committed lock on an H200 box without index access: a venv made from the lock,
# offline and hash-checked, sdenv installed --no-deps, then verify, generate and bench in it.
#   bash benchmarks/device_gpu_proof.sh lockfiles/STEM.txt [BENCH_ARGS...]
# The box has no index: the lock's wheelhouse (`sdenv wheelhouse STEM --out DIR`, every wheel
# checked against the lock's sha256, plus tools/ with the sdenv wheel) travels before this runs,
# as one tar split into pieces that earlier calls copied to /root/wh/ (piece.NN + SHA256):
#   tar -C WHEELHOUSE -cf all.tar . ; sha256sum all.tar > SHA256 ; split -b 60000000 -d all.tar piece.
# Writes under $OUT: gpu-proof-STEM.json (scripts/gpu_proof.py) and the raw command outputs.
# BENCH_ARGS default to --compile (every mode the probe allows); PROOF_NOT_RUN / PROOF_NOTES add a
# line to the proof's not_run / notes (e.g. a mode left out on purpose, with the evidence why).
set -u
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
LOCK=$1; shift
STEM=$(basename "$LOCK" .txt)
OUT=${OUT:-/tmp/proof-out}
BUDGET=${BUDGET:-560}
START=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
stamp() { echo "== $* ($(( $(date +%s) - START )) s)"; }
mkdir -p "$OUT"
NOT_RUN=()

WH=/root/wheelhouse-$STEM
cat /root/wh/piece.* > /root/all.tar || exit 1
want=$(cut -d' ' -f1 /root/wh/SHA256)
have=$(sha256sum /root/all.tar | cut -d' ' -f1)
[ "$want" = "$have" ] || { echo "wheelhouse tar sha256 $have != $want: a piece is missing"; exit 1; }
mkdir -p "$WH" && tar -C "$WH" -xf /root/all.tar && rm -f /root/all.tar
stamp "joined $(ls "$WH"/*.whl | wc -l) wheels, tar sha256 ok"

VENV=/root/envs/$STEM
python3 -m venv "$VENV" || exit 1
V=$VENV/bin
t0=$(date +%s)
# --require-hashes: every wheel is checked against the lock's sha256 again on install.
"$V/python" -m pip install -q --no-index --find-links "$WH" --require-hashes --no-deps \
  --no-compile -r "$LOCK" || { echo "install from the lock failed"; exit 1; }
"$V/python" -m pip install -q --no-index --no-deps --no-compile "$WH"/tools/sdenv-*.whl || exit 1
stamp "venv from $LOCK in $(( $(date +%s) - t0 )) s"

cd /tmp  # run from outside the checkout: the venv's own sdenv, not the source tree
REPO=$OLDPWD
"$V/sdenv" verify --lock "$REPO/$LOCK" --envs-dir "$REPO/envs" --json >"$OUT/verify.json"
stamp "verify exit $?"
"$V/python" -m sdenv.tinymodel /root/tiny >/dev/null
"$V/sdenv" generate --model /root/tiny --fp8 auto --prompt "a lighthouse at dusk" --json \
  --out /root/tiny.png >"$OUT/generate.json"
stamp "generate exit $?"
if [ "$#" -eq 0 ]; then set -- --compile; fi
if [ "$(left)" -gt 120 ]; then
  timeout "$(( $(left) - 30 ))" "$V/sdenv" bench --model large --steps 10 --timeout 300 \
    --output "$OUT/bench.json" "$@" >"$OUT/bench.log" 2>&1
  stamp "bench $* exit $?"
else
  NOT_RUN+=(--not-run "bench: $(left) s of the call left")
fi
cd "$REPO"
python3 scripts/gpu_proof.py --lock "$LOCK" --verify "$OUT/verify.json" \
  --generate "$OUT/generate.json" --bench "$OUT/bench.json" "${NOT_RUN[@]}" \
  ${PROOF_NOTES:+--note "$PROOF_NOTES"} ${PROOF_NOT_RUN:+--not-run "$PROOF_NOT_RUN"} --out "$OUT/gpu-proof-$STEM.json"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['verdict'], r['fp8_mode'], r['model_mode'], r['advisory'], r['failed'])" "$OUT/verify.json"
tail -5 "$OUT/bench.log" 2>/dev/null
