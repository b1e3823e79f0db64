#!/usr/bin/env bash
# `make local-up` / `make local-down`: the local stack (tests/src/bin/local-demo.rs
# with --keep-running) as a background process, its pid and log under
# $SESSION_TOOLS_DIR/local. Stopping it stops every process it started.
set -euo pipefail

tools_dir="${SESSION_TOOLS_DIR:-$HOME/.cache/session-provisioner}"
target_dir="${CARGO_TARGET_DIR:-$(cd "$(dirname "$0")/.." && pwd)/target}"
state_dir="$tools_dir/local"
pid_file="$state_dir/stack.pid"
log_file="$state_dir/stack.log"
mkdir -p "$state_dir"

running_pid() {
    [[ -f "$pid_file" ]] || return 1
    local pid
    pid="$(cat "$pid_file")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

up() {
    if pid="$(running_pid)"; then
        echo "the local stack already runs (pid $pid); \`make local-down\` stops it"
        return 0
    fi
    rm -f "$pid_file"
    nohup "$target_dir/debug/local-demo" --keep-running --pid-file "$pid_file" \
        >"$log_file" 2>&1 </dev/null &
    local pid=$! deadline=$((SECONDS + 180))
    until grep -q "the stack is up" "$log_file" 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$log_file" >&2
            echo "the local stack did not start (log: $log_file)" >&2
            return 1
        fi
        if ((SECONDS > deadline)); then
            kill -TERM "$pid" 2>/dev/null || true
            echo "the local stack did not start within 180 s (log: $log_file)" >&2
            return 1
        fi
        sleep 0.5
    done
    cat "$log_file"
    echo "log: $log_file"
}

down() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$pid_file"
        echo "no local stack is running"
        return 0
    fi
    kill -TERM "$pid"
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS > deadline)); then
            echo "the local stack (pid $pid) did not stop within 30 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
    rm -f "$pid_file"
    local left
    left="$(pgrep -f "moto_server.py --host 127.0.0.1 --port 4566|lambda watch --only-lambda-apis" || true)"
    if [[ -n "$left" ]]; then
        echo "processes of the local stack are left: $left" >&2
        return 1
    fi
    echo "the local stack is stopped; no process of it is left"
}

case "${1:-}" in
up) up ;;
down) down ;;
*)
    echo "usage: $0 up|down" >&2
    exit 2
    ;;
esac
