#!/usr/bin/env bash
# Runs every Cirrus test on a fresh Debian 12 machine: installs the system packages it needs,
# builds the workspace binaries the end-to-end tests execute, then runs all tests with
# cargo-nextest (real etcd, the embedded store, the cirrus binary) after the doc tests.
# The tests start and stop their own daemons (etcd, cirrus up, guests) by PID; libvirtd
# and Open vSwitch are started here for them (and stopped afterwards) because no init system
# does it.
set -euo pipefail
cd "$(dirname "$0")/.."

hack/install-deps.sh

# libvirtd and Open vSwitch for the real-daemon tests: each started here when it isn't
# running, and then stopped again (by PID, through its script) when the tests end.
cleanup=()
on_exit() { local c; for c in "${cleanup[@]}"; do $c || true; done; }
trap on_exit EXIT
if ! timeout 10 virsh -c qemu:///system version >/dev/null 2>&1; then
  hack/start-libvirt.sh start
  cleanup+=("hack/start-libvirt.sh stop")
fi
if ! timeout 5 ovs-vsctl --timeout=3 show >/dev/null 2>&1; then
  hack/start-ovs.sh start
  cleanup+=("hack/start-ovs.sh stop")
fi
hack/build-guest.sh

# The habits, enforced: formatting and every clippy warning fail the run.
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --bins --locked
cargo test --workspace --doc --locked --quiet
cargo nextest run --workspace --locked --profile ci "$@"
