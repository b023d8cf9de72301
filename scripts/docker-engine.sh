#!/usr/bin/env bash
# A private Docker engine for `make image` and the `docker` tests, on machines with no registry
# and no permission to create bridge networks (private address ranges are off limits there).
#
#   scripts/docker-engine.sh start   # installs docker.io/debootstrap if missing, starts dockerd,
#                                    # waits for it, prints `DOCKER_HOST=unix://...` on stdout
#   scripts/docker-engine.sh stop    # stops the dockerd this script started (by its pidfile)
#   scripts/docker-engine.sh status  # exit 0 when the engine answers
#   scripts/docker-engine.sh env     # prints the DOCKER_HOST line only
#
# Everything lives under SDENV_DOCKER_* paths so it never touches a system engine.
set -euo pipefail

SOCK="${SDENV_DOCKER_SOCK:-/tmp/sdenv-docker.sock}"
DATA_ROOT="${SDENV_DOCKER_DATA_ROOT:-/var/lib/sdenv-docker}"
EXEC_ROOT="${SDENV_DOCKER_EXEC_ROOT:-/tmp/sdenv-docker-exec}"
PIDFILE="${SDENV_DOCKER_PIDFILE:-/tmp/sdenv-dockerd.pid}"
LOG="${SDENV_DOCKER_LOG:-/tmp/sdenv-dockerd.log}"
WAIT_S="${SDENV_DOCKER_WAIT_S:-60}"
HOST="unix://${SOCK}"

say() { echo "docker-engine: $*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}

install_missing() {
    local pkgs=()
    command -v dockerd >/dev/null 2>&1 || pkgs+=(docker.io)
    command -v debootstrap >/dev/null 2>&1 || pkgs+=(debootstrap)
    [ ${#pkgs[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        say "missing ${pkgs[*]} and no apt-get here; install them by hand"
        exit 1
    fi
    say "installing ${pkgs[*]} from Debian"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${pkgs[@]}" >&2
}

engine_up() {
    DOCKER_HOST="$HOST" docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

our_pid() {
    [ -f "$PIDFILE" ] || return 1
    local pid
    pid="$(cat "$PIDFILE")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

start() {
    install_missing
    if engine_up; then
        say "already running at $HOST"
        echo "DOCKER_HOST=$HOST"
        return 0
    fi
    as_root mkdir -p "$DATA_ROOT" "$EXEC_ROOT"
    # No bridge, no iptables, no masquerading: builds and containers use the host network only.
    as_root sh -c "nohup dockerd --host '$HOST' --data-root '$DATA_ROOT' --exec-root '$EXEC_ROOT' \
        --pidfile '$PIDFILE' --bridge=none --iptables=false --ip-masq=false \
        >'$LOG' 2>&1 </dev/null &"
    local waited=0
    until engine_up; do
        if [ "$waited" -ge "$WAIT_S" ]; then
            say "dockerd did not answer at $HOST within ${WAIT_S}s; last log lines:"
            tail -n 20 "$LOG" >&2 || true
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    say "dockerd $(DOCKER_HOST="$HOST" docker version --format '{{.Server.Version}}') up at $HOST \
(pid $(cat "$PIDFILE"), ${waited}s, log $LOG)"
    echo "DOCKER_HOST=$HOST"
}

stop() {
    local pid
    if ! pid="$(our_pid)"; then
        say "no dockerd from $PIDFILE is running"
        return 0
    fi
    as_root kill -TERM "$pid"
    for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || { say "stopped dockerd (pid $pid)"; return 0; }
        sleep 1
    done
    say "dockerd (pid $pid) still running after 30s; sending KILL"
    as_root kill -KILL "$pid" || true
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    status) engine_up && echo "DOCKER_HOST=$HOST" ;;
    env) echo "DOCKER_HOST=$HOST" ;;
    *) say "usage: $0 {start|stop|status|env}"; exit 2 ;;
esac
