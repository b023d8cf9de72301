#!/usr/bin/env bash
# Prove one committed lock on an H200 box without index access: a venv made from the lock,
# offline and hash-checked, sdenv installed --no-deps, then verify, generate and bench in it.
#   bash benchmarks/device_gpu_proof.sh lockfiles/STEM.txt [BENCH_ARGS...]
# The box has no index: the lock's wheelhouse (`sdenv wheelhouse --lock LOCK --out DIR`, every
# wheel checked against the lock's sha256; plus DIR/tools/ with the sdenv wheel and the uv,
# tomli-w and packaging wheels its sync needs) travels before this runs, as one tar split into
# pieces (tar, sha256 of the tar, split -b 58000000) that earlier calls copied to /root/wh/
# (piece.NN and SHA256), one piece per call; PIECES=DIR names another folder than /root/wh/ (two
# locks' pieces side by side).
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
PIECES=${PIECES:-/root/wh}
if ls "$PIECES"/piece.* >/dev/null 2>&1; then
  bash benchmarks/join_pieces.sh "$PIECES" "$WH" || exit 1
  stamp "joined $(ls "$WH"/*.whl | wc -l) wheels, tar sha256 ok"
else  # a second run: joined (and its sha256 checked) by the first; sync checks every wheel
  stamp "no pieces: using the wheelhouse joined before ($(ls "$WH"/*.whl | wc -l) wheels)"
fi

VENV=/root/envs/$STEM
# sdenv's own sync, run from this checkout with the few packages it needs (uv, tomli-w and a newer
# packaging travel in tools/; rich and filelock come from the lock's own wheels).
# A venv of its own for them (--ignore-installed: the box has a uv module without its binary).
python3 -m venv --system-site-packages /tmp/sdenv-tools || exit 1
/tmp/sdenv-tools/bin/python -m pip install -q --no-index --no-compile --ignore-installed --find-links "$WH/tools" \
  --find-links "$WH" uv tomli-w "packaging>=25" rich filelock || exit 1
export PYTHONPATH=$PWD/src
/tmp/sdenv-tools/bin/python -m sdenv sync --wheelhouse "$WH" --venv "$VENV" --json >"$OUT/sync.json" \
  || { echo "sync failed"; cat "$OUT/sync.json"; exit 1; }
stamp "sdenv sync --wheelhouse (offline, hash-checked, drift-checked)"
/tmp/sdenv-tools/bin/python -m uv pip install -q --python "$VENV/bin/python" --no-deps --offline \
  "$WH"/tools/sdenv-*.whl || exit 1
unset PYTHONPATH
V=$VENV/bin
stamp "sdenv installed --no-deps into the venv"

cd /tmp  # run from outside the checkout: the venv's own sdenv, not the source tree
REPO=$OLDPWD
"$V/sdenv" verify --lock "$REPO/$LOCK" --envs-dir "$REPO/envs" --json >"$OUT/verify.json"
stamp "verify exit $?"
"$V/python" -m sdenv.runtime.tinymodel /root/tiny >/dev/null
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
