#!/usr/bin/env bash
# `make test`: runs each phase as its own make target, in order, and prints how long
# each took, so that a slow CI run says where its minutes went. Stops at the first
# phase that fails (after printing the times so far).
set -uo pipefail

declare -a names=() seconds=()
summary() {
    echo
    echo "phase times:"
    local total=0
    for i in "${!names[@]}"; do
        printf '  %-8s %5d s\n' "${names[$i]}" "${seconds[$i]}"
        total=$((total + seconds[i]))
    done
    printf '  %-8s %5d s\n' total "$total"
}

for phase in "$@"; do
    echo "=== phase $phase"
    begun=$SECONDS
    make --no-print-directory "$phase"
    status=$?
    names+=("$phase")
    seconds+=($((SECONDS - begun)))
    echo "=== phase $phase: $((SECONDS - begun)) s"
    if ((status != 0)); then
        summary
        echo "phase $phase failed" >&2
        exit "$status"
    fi
done
summary
