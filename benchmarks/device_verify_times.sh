#!/usr/bin/env bash
# verify's wall time on an H200 box without index access, in the venvs `sdenv sync` makes from the
# default lock and the cu130 lock (Python 3.12), with this checkout's sdenv:
#   1. sync from the carried wheelhouse (offline, hash- and drift-checked; it compiles bytecode
#      and records the files it checked, so the next drift check hashes only what changed);
#   2. `sdenv verify --lock` N times (default 3), then once with --rehash (every file hashed),
#      then TWO_CPU times (default 0) under `taskset -c 0,1`, as on a box of 2 CPUs (verify then
#      collects the probe's facts in the model check's process).
# LOCKS="121 130" (default) names the locks by their CUDA line: 121 the default, 130 the cu130.
# Started detached, so that it runs while later calls bring the second lock's pieces:
#   setsid nohup bash benchmarks/device_verify_times.sh >/root/vt.log 2>&1 </dev/null &
# Pieces (see benchmarks/join_pieces.sh) arrive in /root/wh121/ and /root/wh130/; the call that
# brings a lock's last piece touches COMPLETE there. uv, tomli-w and packaging wheels for sync's
# own tools are in /root/tools/.
# Everything lands in /root/results/ (each call empties its output folder); DONE marks the end.
set -u
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
O=/root/results
N=${N:-3}
mkdir -p "$O"
rm -rf /root/repo && cp -a "$PWD" /root/repo && cd /root/repo || exit 1
wait_for() { until [ -e "$1" ]; do sleep 2; done; }
now() { date +%s.%N; }
since() { python3 -c "print(round($(now) - $1, 2))"; }
nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader >"$O/gpu.txt" 2>&1
nproc >>"$O/gpu.txt"

tools() {  # sdenv's sync needs uv, tomli-w, packaging; rich and filelock come from the wheelhouse
  [ -x /tmp/sdenv-tools/bin/python ] && return 0
  python3 -m venv --system-site-packages /tmp/sdenv-tools || return 1
  /tmp/sdenv-tools/bin/python -m pip install -q --no-index --no-compile --ignore-installed \
    --find-links /root/tools --find-links "$1" uv tomli-w "packaging>=25" rich filelock
}

one_lock() {  # LOCK PIECES_DIR
  local lock=$1 pieces=$2 stem wh venv t0 i rc
  stem=$(basename "$lock" .txt)
  wh=/root/wheelhouse-$stem
  venv=/root/envs/$stem
  wait_for "$pieces/COMPLETE"
  bash benchmarks/join_pieces.sh "$pieces" "$wh" >>"$O/times.txt" 2>&1 || { echo "$stem: join failed" >>"$O/times.txt"; return 1; }
  echo "joined into $wh" >>"$O/times.txt"
  rm -rf "$pieces"
  tools "$wh" || { echo "tools failed" >>"$O/times.txt"; return 1; }
  t0=$(now)
  PYTHONPATH=/root/repo/src /tmp/sdenv-tools/bin/python -m sdenv sync --wheelhouse "$wh" \
    --venv "$venv" --json >"$O/sync-$stem.json" 2>"$O/sync-$stem.err"
  echo "$stem sync: exit $?, $(since "$t0") s" >>"$O/times.txt"
  for i in $(seq 1 "$N") rehash $(seq -f "cpu2-%g" 1 "${TWO_CPU:-0}"); do
    local extra=() pin=()
    [ "$i" = rehash ] && extra=(--rehash)
    case "$i" in cpu2-*) pin=(taskset -c 0,1);; esac
    t0=$(now)
    (cd /tmp && PYTHONPATH=/root/repo/src timeout 200 "${pin[@]}" "$venv/bin/python" -m sdenv verify \
      --python "$venv/bin/python" --lock "/root/repo/$lock" --envs-dir /root/repo/envs --json \
      "${extra[@]}" >"$O/verify-$stem-$i.json" 2>"$O/verify-$stem-$i.err")
    rc=$?
    echo "$stem verify $i: exit $rc, $(since "$t0") s wall" >>"$O/times.txt"
  done
}

for cuda in ${LOCKS:-121 130}; do
  one_lock "lockfiles/sd35-fp8-cu$cuda-py3.12-linux_x86_64.txt" "/root/wh$cuda"
done
touch "$O/DONE"
