# The two commands of a fresh machine: `make local` (the product on this machine)
# and `make test` (everything CI checks). Tools and build output live outside the
# clone, in $(SESSION_TOOLS_DIR), so that later runs reuse them.

SHELL := /bin/bash
SESSION_TOOLS_DIR ?= $(HOME)/.cache/session-provisioner
CARGO_TARGET_DIR ?= $(CURDIR)/target
export SESSION_TOOLS_DIR CARGO_TARGET_DIR

FUNCTIONS := api authorize launch wait-for-ip record stop task-events reaper
FUNCTION_PACKAGES := $(addprefix -p ,$(FUNCTIONS))

.PHONY: tools build check e2e test bench release local local-up

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

## Release build of the functions (the binaries Lambda runs).
release:
	cargo build --release --locked $(FUNCTION_PACKAGES)

## Cold start of each function beside a Python/boto3 baseline, and binary sizes.
bench: tools release
	cargo bench --locked -p coldstart-bench --bench coldstart

## The product on this machine: a session requested, running with its URLs, stopped.
local: tools
	cargo build --workspace --bins --locked
	$(CARGO_TARGET_DIR)/debug/local-demo

## The same stack, left running (AWS endpoint 127.0.0.1:4566) until Ctrl-C.
local-up: tools
	cargo build --workspace --bins --locked
	$(CARGO_TARGET_DIR)/debug/local-demo --keep-running

## What CI runs: checks, all tests, then the benchmark figures.
test: tools check e2e bench
