#!/usr/bin/env bash
# serve-cluster.sh — the scale-out deployment on this machine, all on loopback
# (docs/scale-out.md): Redis (its own temporary directory, append-only file on, a free
# port), N `kvzip serve` replicas sharing it as their context store, and nginx in front
# (round robin, deploy/nginx.conf.in). Prints the URLs, then waits; Ctrl-C, SIGTERM or
# `scripts/serve-cluster.sh stop` from another shell stops everything and removes the
# temporary directory (--keep leaves it, with the logs and Redis's files).
#
# Usage: scripts/serve-cluster.sh [-m MODEL] [--replicas N] [--port PORT] [-t THREADS]
#                                 [--keep] [-- EXTRA kvzip serve ARGS]
#        scripts/serve-cluster.sh stop
#   -m MODEL      the model (default: kvzip serve's default model)
#   --replicas N  replicas (default 2)
#   --port PORT   nginx's port (default 8080; 0: a free one)
#   -t THREADS    compute threads per replica (default: cores / replicas, at least 1)
# Needs build/kvzip (scripts/build.sh), redis-server and nginx (scripts/setup.sh).
set -euo pipefail

PROG="serve-cluster.sh"
here="$(cd "$(dirname "$0")/.." && pwd)"
state_dir="${XDG_RUNTIME_DIR:-/tmp}/kvzip-cluster-$(id -u)"
state="$state_dir/pid"

log() { printf '%s: %s\n' "$PROG" "$*"; }
die() { printf '%s: error: %s\n' "$PROG" "$*" >&2; exit 1; }

if [[ "${1:-}" == stop ]]; then
    [[ -f "$state" ]] || die "no cluster is running (no $state)"
    pid="$(cat "$state")"
    kill -0 "$pid" 2>/dev/null || { rm -f "$state"; die "the cluster's process $pid is gone"; }
    kill -TERM "$pid"
    for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || { log "stopped"; exit 0; }; sleep 0.1; done
    die "process $pid did not stop within 60 s"
fi

model=() replicas=2 port=8080 threads="" keep=0 extra=()
while (($#)); do
    case "$1" in
        -m|--model) model=(-m "$2"); shift 2 ;;
        --replicas) replicas="$2"; shift 2 ;;
        --port) port="$2"; shift 2 ;;
        -t|--threads) threads="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,16{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown option: $1 (see --help)" ;;
    esac
done
[[ "$replicas" =~ ^[1-9][0-9]*$ ]] || die "--replicas '$replicas': expected a positive integer"
if [[ -z "$threads" ]]; then
    threads=$(( $(nproc 2>/dev/null || echo 2) / replicas ))
    ((threads >= 1)) || threads=1
fi
[[ "$threads" =~ ^[1-9][0-9]*$ ]] || die "-t '$threads': expected a positive integer"

find_bin() { command -v "$1" 2>/dev/null || { [[ -x "/usr/sbin/$1" ]] && echo "/usr/sbin/$1"; } || true; }
kvzip="$here/build/kvzip"
[[ -x "$kvzip" ]] || die "$kvzip not found: run scripts/build.sh first"
redis_bin="$(find_bin redis-server)"; nginx_bin="$(find_bin nginx)"
[[ -n "$redis_bin" ]] || die "redis-server is not installed: run scripts/setup.sh"
[[ -n "$nginx_bin" ]] || die "nginx is not installed: run scripts/setup.sh"
if [[ -f "$state" ]] && kill -0 "$(cat "$state")" 2>/dev/null; then
    die "a cluster is already running (process $(cat "$state")); stop it with: $0 stop"
fi

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# Waits until http://127.0.0.1:$1$2 answers 200 or process $3 ends.
wait_http() {
    python3 - "$1" "$2" "$3" <<'EOF'
import os, sys, time, urllib.request
port, path, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
deadline = time.time() + 300
while time.time() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(1)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(1)
EOF
}

# Each part in its own process group: Ctrl-C reaches this script only, which then stops the
# parts one by one (a second signal would make a replica cancel its requests in flight).
set -m
tmp="$(mktemp -d "${TMPDIR:-/tmp}/kvzip-cluster.XXXXXX")"
pids=()  # started here, stopped in reverse order
names=()
cleanup() {
    trap - INT TERM EXIT
    local i
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        local p="${pids[i]}"
        kill -0 "$p" 2>/dev/null || continue
        # nginx: SIGQUIT finishes the requests in flight; the others stop gracefully on SIGTERM.
        if [[ "${names[i]}" == nginx ]]; then kill -QUIT "$p" 2>/dev/null || true; else kill -TERM "$p" 2>/dev/null || true; fi
        for _ in $(seq 1 600); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$p" 2>/dev/null && { log "${names[i]} ($p) did not stop; killing it"; kill -KILL "$p" 2>/dev/null || true; }
        wait "$p" 2>/dev/null || true
        log "stopped ${names[i]}"
    done
    rm -f "$state"
    if ((keep)); then log "kept $tmp"; else rm -rf "$tmp"; fi
}
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap 'cleanup' EXIT
mkdir -p "$state_dir"
echo $$ >"$state"

# Redis: its own directory, the append-only file on, loopback only.
redis_port="$(free_port)"
mkdir -p "$tmp/redis"
"$redis_bin" --port "$redis_port" --bind 127.0.0.1 --dir "$tmp/redis" --appendonly yes --save "" \
    --daemonize no --logfile "$tmp/redis/redis.log" </dev/null &
pids+=($!); names+=(redis-server)
for _ in $(seq 1 300); do
    python3 -c 'import socket, sys; s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1); s.sendall(b"PING\r\n"); sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)' "$redis_port" 2>/dev/null && break
    kill -0 "${pids[-1]}" 2>/dev/null || die "redis-server exited (log: $tmp/redis/redis.log)"
    sleep 0.1
done
store="redis://127.0.0.1:$redis_port/0"
log "redis-server on 127.0.0.1:$redis_port (append-only file in $tmp/redis)"

# The replicas: every one on its own free port, all on the same store.
servers=""
for ((i = 0; i < replicas; i++)); do
    rport="$(free_port)"
    "$kvzip" serve "${model[@]}" --port "$rport" --store "$store" -t "$threads" "${extra[@]}" \
        </dev/null >"$tmp/replica-$i.log" 2>&1 &
    pids+=($!); names+=("replica $i")
    wait_http "$rport" /health "${pids[-1]}" || die "replica $i did not start (log: $tmp/replica-$i.log)"
    log "replica $i on http://127.0.0.1:$rport (log: $tmp/replica-$i.log)"
    servers+="server 127.0.0.1:$rport max_fails=1 fail_timeout=5s;"$'\n        '
done

# nginx in front, from the template, in its own prefix.
[[ "$port" == 0 ]] && port="$(free_port)"
user=""
[[ "$(id -u)" == 0 ]] && user="user $(id -un) $(id -gn);"
mkdir -p "$tmp/nginx"
python3 - "$here/deploy/nginx.conf.in" "$tmp/nginx/nginx.conf" "$tmp/nginx" "$user" "127.0.0.1:$port" "$servers" <<'EOF'
import sys
src, dst, prefix, user, listen, servers = sys.argv[1:]
conf = open(src).read()
for k, v in (("@PREFIX@", prefix), ("@USER@", user), ("@LISTEN@", listen), ("@SERVERS@", servers.rstrip())):
    conf = conf.replace(k, v)
open(dst, "w").write(conf)
EOF
"$nginx_bin" -p "$tmp/nginx" -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" </dev/null \
    >"$tmp/nginx/stderr.log" 2>&1 &
pids+=($!); names+=(nginx)
wait_http "$port" /health "${pids[-1]}" || die "nginx did not start (log: $tmp/nginx/error.log)"

log "ready: $replicas replica(s) sharing $store"
echo
echo "  OpenAI base URL:  http://127.0.0.1:$port/v1      (nginx, round robin)"
echo "  upload:           curl -s http://127.0.0.1:$port/v1/contexts -d '{\"text\": \"...\", \"ratio\": 0.3}'"
echo "  Redis:            $store"
echo "  logs:             $tmp"
echo
log "Ctrl-C or '$0 stop' stops everything"

# Wait; if any part dies, say which and stop the rest.
while true; do
    for i in "${!pids[@]}"; do
        if ! kill -0 "${pids[i]}" 2>/dev/null; then
            log "${names[i]} exited; stopping the rest (logs: $tmp)"
            keep=1
            exit 1
        fi
    done
    sleep 1
done
