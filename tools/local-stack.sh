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

# The stack answers a real request through its HTTP API and the `api` function.
api_answers() {
    python3 - <<'PY'
import sys, urllib.request
request = urllib.request.Request(
    "http://127.0.0.1:9000/sessions?limit=1",
    headers={"Authorization": "Bearer dev:demo-user"},
)
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(request, timeout=5) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception:
    sys.exit(1)
PY
}

up() {
    if pid="$(running_pid)"; then
        echo "the local stack already runs (pid $pid); \`make local-down\` stops it"
        return 0
    fi
    rm -f "$pid_file"
    # A fresh log before the process starts: the readiness line below must be this
    # run's, never the last one's.
    : >"$log_file"
    # Its own session and process group, so that `down` can end every process of it
    # even if the stack itself cannot clean up.
    setsid nohup "$target_dir/debug/local-demo" --keep-running --pid-file "$pid_file" \
        >>"$log_file" 2>&1 </dev/null &
    local pid=$! deadline=$((SECONDS + 180))
    echo "$pid" >"$pid_file"
    until grep -q "the stack is up" "$log_file" 2>/dev/null && api_answers; do
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$log_file" >&2
            echo "the local stack did not start (log: $log_file)" >&2
            return 1
        fi
        if ((SECONDS > deadline)); then
            kill -TERM -- "-$pid" 2>/dev/null || true
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
    # The stack stops its own processes on SIGTERM; whatever is left of its process
    # group after the grace period is killed.
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 15))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS <= deadline)); do
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "the local stack (pid $pid) did not stop within 15 s; killing its processes" >&2
    fi
    kill -KILL -- "-$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while pgrep -g "$pid" >/dev/null 2>&1 && ((SECONDS <= deadline)); do
        sleep 0.2
    done
    rm -f "$pid_file"
    local left
    left="$(pgrep -g "$pid" || true)"
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
