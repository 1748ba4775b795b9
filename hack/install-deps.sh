#!/usr/bin/env bash
# Installs what building and testing Cirrus needs on Debian 12, idempotently.
# - gcc, libc6-dev: rustc links through `cc` (build scripts, `cargo install cargo-nextest`);
#   libc6-dev is only a Recommends of gcc (hack/fresh-check.sh found both missing).
# - protobuf-compiler, libprotobuf-dev: etcd-client's build generates the etcd gRPC code with
#   protoc, which needs the well-known .proto files (google/protobuf/descriptor.proto); with
#   --no-install-recommends only libprotobuf-dev brings them.
# - etcd-server, etcd-client: a real etcd for the store conformance suite and etcdctl.
# - qemu-utils: qemu-img checks uploaded images and makes copy-on-write disks.
# - openvswitch-switch: the integration bridge (userspace datapath where the kernel module is
#   absent); dnsmasq-base: DHCP per network; genisoimage: config drives; iproute2: namespaces.
set -euo pipefail

packages=(gcc libc6-dev protobuf-compiler libprotobuf-dev etcd-server etcd-client curl qemu-utils openvswitch-switch dnsmasq-base genisoimage iproute2 lvm2)

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo-nextest >/dev/null 2>&1 && ! cargo nextest --version >/dev/null 2>&1; then
  echo "cargo-nextest not found; installing it with cargo"
  cargo install --locked cargo-nextest --version 0.9.143
fi
# QEMU + libvirt (from bookworm-backports), busybox-static and pkg-config: the hypervisor
# driver, its conformance suite and the test guest.
"$(dirname "$0")/install-libvirt.sh"
# python-openstackclient and openstacksdk (pinned, in target/osc-venv) for the OpenStack
# compatibility tests.
"$(dirname "$0")/install-openstack-clients.sh"
echo "dependencies ready"
