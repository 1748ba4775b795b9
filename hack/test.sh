#!/usr/bin/env bash
# Runs every Cirrus test on a fresh Debian 12 machine: installs the system packages it needs,
# builds the workspace binaries the end-to-end tests execute, then runs all tests with
# cargo-nextest (real etcd, the embedded store, the cirrus binary) after the doc tests, and
# tempest (hack/tempest.sh) against a fresh `cirrus up`.
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

# Tempest, the community's conformance suite, with its own dynamic credentials against a
# fresh `cirrus up` (hack/tempest.sh): the services that fit CI's time (volume and compute
# wait minutes on attachments and boots under TCG: CIRRUS_TEMPEST_SERVICES adds them), judged
# by the floors in tests/tempest/floors.txt (fewer passes than the floor is a regression);
# tempest's counts are in the log. CIRRUS_SKIP_TEMPEST=1 leaves it out (e.g. with a filter).
if [[ ${CIRRUS_SKIP_TEMPEST:-0} != 1 ]]; then
  # shellcheck disable=SC2086 # a list of services
  CIRRUS_TEMPEST_FLOORS=tests/tempest/floors.txt CIRRUS_TEMPEST_START_DAEMONS=0 \
    CIRRUS_TEMPEST_INCLUDE=tests/tempest/ci-include-list.txt \
    hack/tempest.sh ${CIRRUS_TEMPEST_SERVICES:-identity image network}
fi
