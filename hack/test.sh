#!/usr/bin/env bash
# Runs every Cirrus test on a fresh Debian 12 machine: installs the system packages it needs,
# builds the workspace binaries the end-to-end tests execute, then runs all tests with
# cargo-nextest (real etcd, the embedded store, the cirrus binary) after the doc tests.
# The tests start and stop their own daemons (etcd, cirrus up) by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

hack/install-deps.sh
cargo build --workspace --bins --locked
cargo test --workspace --doc --locked --quiet
cargo nextest run --workspace --locked --profile ci "$@"
