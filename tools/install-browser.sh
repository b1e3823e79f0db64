#!/usr/bin/env bash
# Installs what the web console's browser tests (tests/tests/console.rs) drive and
# check with: Debian's chromium and chromium-driver (tools/browser.lock; needs root or
# sudo for apt), and axe-core (tools/browser/package-lock.json) into
# $SESSION_TOOLS_DIR/browser. Reruns are no-ops until a pin file changes.
set -euo pipefail

# shellcheck source=tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
lock="$root/tools/browser.lock"

if ! stamp_ok "$lock" "$tools/browser-apt.stamp" || ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  mapfile -t pins < <(grep -v -e '^#' -e '^$' "$lock")
  echo "tools: installing Debian's ${pins[*]}"
  "${sudo[@]}" apt-get update -qq
  if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${pins[@]}" >/dev/null; then
    echo "tools: Debian does not offer the versions of tools/browser.lock; it has:" >&2
    apt-cache madison chromium chromium-driver >&2 || true
    exit 1
  fi
  stamp "$lock" "$tools/browser-apt.stamp"
fi

if ! stamp_ok "$root/tools/browser/package-lock.json" "$tools/browser-npm.stamp" || [ ! -f "$tools/browser/node_modules/axe-core/axe.min.js" ]; then
  echo "tools: installing axe-core into $tools/browser"
  rm -rf "$tools/browser"
  mkdir -p "$tools/browser"
  cp "$root/tools/browser/package.json" "$root/tools/browser/package-lock.json" "$tools/browser/"
  (cd "$tools/browser" && npm ci --no-audit --no-fund --loglevel=error)
  stamp "$root/tools/browser/package-lock.json" "$tools/browser-npm.stamp"
fi
