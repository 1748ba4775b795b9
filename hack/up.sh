#!/usr/bin/env bash
# Quickstart on a fresh Debian 12 machine: installs dependencies (QEMU/libvirt, Open vSwitch,
# dnsmasq included), starts libvirtd and Open vSwitch, builds cirrus and the test guest, runs the all-in-one cloud in the
# background (data in ./.cirrus), applies examples/, uploads the guest images, waits until
# the example server is ACTIVE and shows its console.
# Use it with: source .cirrus/openrc (the admin's credentials and CIRRUS_URL)
# Stop it with: kill "$(cat .cirrus/cirrus.pid)"  (and the daemons: hack/start-libvirt.sh stop,
# hack/start-ovs.sh stop)
set -euo pipefail
cd "$(dirname "$0")/.."

hack/install-deps.sh
hack/start-libvirt.sh start
hack/start-ovs.sh start
hack/build-guest.sh
cargo build --release -p cirrus-cli --locked
cirrus=target/release/cirrus
data=${CIRRUS_DATA_DIR:-$PWD/.cirrus}
listen=${CIRRUS_LISTEN:-127.0.0.1:8080}
mkdir -p "$data"

if [[ -f "$data/cirrus.pid" ]] && kill -0 "$(cat "$data/cirrus.pid")" 2>/dev/null; then
  echo "cirrus up is already running (pid $(cat "$data/cirrus.pid"))"
else
  "$cirrus" up --data-dir "$data" --listen "$listen" >"$data/cirrus.log" 2>&1 &
  echo $! >"$data/cirrus.pid"
  for _ in $(seq 100); do
    curl -fsS "http://$listen/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS "http://$listen/readyz" >/dev/null || { cat "$data/cirrus.log"; exit 1; }
  echo "cirrus up running (pid $(cat "$data/cirrus.pid")), API on http://$listen, log in $data/cirrus.log"
fi

# Every API call needs a token: act as the cloud admin whose credentials (and CIRRUS_URL)
# cirrus up wrote to $data/openrc (mode 0600; the password is in no log).
# shellcheck source=/dev/null
source "$data/openrc"
echo "credentials: source $data/openrc (or OS_CLOUD=cirrus with $data/clouds.yaml)"
"$cirrus" apply -f examples/ --recursive
for image in guest-kernel:vmlinuz guest-initrd:initrd.img guest:root.qcow2; do
  name=${image%%:*} file=target/guest/${image#*:}
  if ! "$cirrus" get image "$name" -p demo -o json | grep -Eq '"phase": ?"active"'; then
    "$cirrus" upload-image "$name" "$file" -p demo
  fi
done
"$cirrus" get flavors
"$cirrus" wait server/web-0 --for=condition=Ready -p demo --timeout 180s
"$cirrus" get servers -p demo -o wide
for _ in $(seq 60); do
  "$cirrus" console-log server web-0 -p demo 2>/dev/null | grep -q "CIRRUS-READY web-0" && break
  sleep 1
done
"$cirrus" console-log server web-0 -p demo
# The same cloud through the OpenStack API, with the real python-openstackclient.
OS_CLIENT_CONFIG_FILE="$data/clouds.yaml" OS_CLOUD=cirrus \
  target/osc-venv/bin/openstack server list --all-projects
