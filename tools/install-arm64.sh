#!/usr/bin/env bash
# Installs the Rust toolchain of `make package` from tools/arm64.lock: Debian's
# rustc-web and cargo-web, and the aarch64-unknown-linux-gnu standard library of the
# same release (libstd-rust-web-dev is Multi-Arch: same, so dpkg installs its arm64
# build beside the amd64 one). rustup's own arm64 target would do as well, but its
# download server is out of reach of this project's machines; Debian's archive is not.
# It then points $SESSION_TOOLS_DIR/arm64/bin's cargo, rustc and rustdoc at that
# toolchain, for `make package` to put first on PATH: the rustup toolchain, which
# every other target uses, stays the default. Needs root (or sudo) for apt; reruns
# are no-ops until tools/arm64.lock changes.
#
# Debian's security archive keeps only the newest revision of a package, so the pins
# name the Rust release (1.96.0) and leave the Debian revision (~deb12uN, security
# rebuilds of that release) to the archive. Once bookworm-security moves to another
# Rust release, the install stops here with the versions Debian still offers: move
# the four lines of tools/arm64.lock together (they must be one version: rustc-web
# depends on its exact std, and dpkg keeps a Multi-Arch: same package at one version
# across architectures). bookworm's own 1.85 is no fallback: the AWS SDK crates need
# Rust 1.94.1 or later.
set -euo pipefail

# shellcheck source=tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

lock="$root/tools/arm64.lock"
bin="$tools/arm64/bin"

has_arm64_std() {
  [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] &&
    compgen -G "$(/usr/bin/rustc --print target-libdir --target aarch64-unknown-linux-gnu 2>/dev/null)/libstd-*.rlib" >/dev/null
}

if stamp_ok "$lock" "$tools/arm64.stamp" && has_arm64_std && [ -x "$bin/rustc" ]; then
  exit 0
fi

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
mapfile -t pins < <(grep -v -e '^#' -e '^$' "$lock")

echo "tools: installing Debian's Rust toolchain and its aarch64 std (${pins[*]})"
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  "${sudo[@]}" dpkg --add-architecture arm64
fi
"${sudo[@]}" apt-get update -qq
if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${pins[@]}"; then
  echo "tools: Debian does not offer the versions of tools/arm64.lock; it has:" >&2
  apt-cache madison rustc-web libstd-rust-web-dev >&2 || true
  echo "tools: move the four pins of tools/arm64.lock to one of these releases (1.94.1 or later)" >&2
  exit 1
fi
has_arm64_std || { echo "tools: /usr/bin/rustc has no aarch64-unknown-linux-gnu std after the install" >&2; exit 1; }

mkdir -p "$bin"
for tool in cargo rustc rustdoc; do
  ln -sfn "/usr/bin/$tool" "$bin/$tool"
done
stamp "$lock" "$tools/arm64.stamp"
echo "tools: $("$bin/rustc" --version) with the aarch64 std, in $bin"
