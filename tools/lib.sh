# Shared by the install scripts (sourced, not run): where the tools go, and the pin
# stamps that make a rerun a no-op until a pin file changes.
# shellcheck shell=bash

# shellcheck disable=SC2034 # read by the scripts that source this file
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools=${SESSION_TOOLS_DIR:-$HOME/.cache/session-provisioner}
mkdir -p "$tools"

# True when stamp-file records the hash of file-with-pins: installed from these pins.
stamp_ok() { # file-with-pins stamp-file
  [ -f "$2" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$(cat "$2")" ]
}

# Records that what file-with-pins names is installed.
stamp() { # file-with-pins stamp-file
  sha256sum "$1" | cut -d' ' -f1 > "$2"
}
