# The two commands of a fresh machine: `make local` (the product on this machine)
# and `make test` (everything CI checks). Tools and build output live outside the
# clone, in $(SESSION_TOOLS_DIR), so that later runs reuse them.

SHELL := /bin/bash
SESSION_TOOLS_DIR ?= $(HOME)/.cache/session-provisioner
CARGO_TARGET_DIR ?= $(CURDIR)/target
export SESSION_TOOLS_DIR CARGO_TARGET_DIR
# The arm64 packages: where Terraform reads them by default (its function_packages_dir),
# and the target directory of their cross build, apart so it never invalidates the other.
PACKAGES_DIR ?= $(CURDIR)/target/lambda
ARM64_TARGET_DIR ?= $(SESSION_TOOLS_DIR)/target-arm64

FUNCTIONS := api authorize launch wait-for-ip record stop task-events reaper
FUNCTION_PACKAGES := $(addprefix -p ,$(FUNCTIONS))

.PHONY: tools build check e2e test bench soak release package local local-up local-down

## Install the pinned tools (moto, cargo-lambda, asl-validator, cargo-nextest).
tools:
	@bash tools/install.sh

## Debug build of every function and test.
build:
	cargo build --workspace --all-targets --locked

## Formatting and lints.
check:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

## Every test: unit, property, state machine and end to end on moto.
e2e: tools build
	cargo nextest run --workspace --locked --no-fail-fast

## Release build of the functions (the binaries Lambda runs) and of the session gateway
## (what its image runs, and what `make bench` measures), in one build so they share
## their dependencies.
release:
	cargo build --release --locked $(FUNCTION_PACKAGES) -p gateway

## Cold start of each function beside a Python/boto3 baseline, and binary sizes.
## Orchestration overhead (task RUNNING -> session running) and state transitions of a
## lifecycle, on the local stack with the release functions. The latency the session
## gateway adds at 200 connections, its throughput and its peak memory, with the release
## gateway (GATEWAY_BENCH_SECONDS, default 10). The 9 a.m. storm: STORM_SESSIONS users
## (default 300) starting at once under AWS's rate limits (scaled by STORM_SCALE,
## default 0.1), then all stopped; fails if a session failed or anything was left.
bench: tools release build
	cargo bench --locked -p coldstart-bench --bench coldstart
	SESSION_FUNCTIONS_DIR=$(CARGO_TARGET_DIR)/release $(CARGO_TARGET_DIR)/debug/overhead-bench
	SESSION_FUNCTIONS_DIR=$(CARGO_TARGET_DIR)/release $(CARGO_TARGET_DIR)/debug/gateway-bench
	SESSION_FUNCTIONS_DIR=$(CARGO_TARGET_DIR)/release $(CARGO_TARGET_DIR)/debug/storm-bench

## Minutes of mixed traffic against the local stack while function processes are
## killed; then every session must have ended, no task run, no slot be held, and every
## dead process have been replaced. Prints the figures (SOAK_SECONDS, default 120).
soak: tools build
	$(CARGO_TARGET_DIR)/debug/soak

## What Lambda runs: each function built for arm64 in release and zipped as
## $(PACKAGES_DIR)/<crate>/bootstrap.zip, then each zip's size against the 8 MiB target.
## Debian's Rust and its aarch64 std (tools/install-arm64.sh) compile, zig links.
package: tools
	@bash tools/install-arm64.sh
	PATH="$(SESSION_TOOLS_DIR)/arm64/bin:$(SESSION_TOOLS_DIR)/venv/bin:$$PATH" CARGO_TARGET_DIR="$(ARM64_TARGET_DIR)" \
	  cargo lambda build --release --arm64 --output-format zip --locked --lambda-dir "$(PACKAGES_DIR)" $(FUNCTION_PACKAGES)
	python3 tools/package-sizes.py "$(PACKAGES_DIR)" $(FUNCTIONS)

## The product on this machine: a session requested, running with its URLs, stopped.
local: tools
	cargo build --workspace --bins --locked
	$(CARGO_TARGET_DIR)/debug/local-demo

## The same stack left running in the background: HTTP API on 127.0.0.1:9000,
## AWS endpoint on 127.0.0.1:4566.
local-up: tools
	cargo build --workspace --bins --locked
	@bash tools/local-stack.sh up

## Stops the stack `local-up` started, and every process it started.
local-down:
	@bash tools/local-stack.sh down

## What CI runs: checks, all tests, the benchmark figures, then the soak run, each
## phase timed (tools/phases.sh).
test:
	@bash tools/phases.sh tools check build e2e release bench soak
