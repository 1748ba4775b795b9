#!/usr/bin/env bash
# Installs QEMU + libvirt (and what the test guest is built from) on Debian 12, idempotently.
#
# Why backports: the machine image ships qemu-utils 10 from bookworm-backports, which Breaks
# bookworm's QEMU 7.2 (qemu-system-common < 8.0). So the whole QEMU + libvirt stack is taken from
# bookworm-backports (QEMU 10.0, libvirt 11.3), by name (`pkg/bookworm-backports`), everything
# else from bookworm. The backports suite uses the same mirror as the `bookworm` entry in
# /etc/apt/sources.list.d/debian.sources (or /etc/apt/sources.list); nothing else is added.
#
# Also installs busybox-static (the test guest's userland) and refreshes the apt lists so that
# hack/build-guest.sh can `apt-get download` the Debian cloud kernel.
#
# usage: hack/install-libvirt.sh          (safe to run again: does nothing when all is present)
set -euo pipefail

BP=bookworm-backports
# The QEMU/libvirt packages that must come from backports (dependencies pinned there too, so apt
# does not mix bookworm's libvirt0 with backports' daemon).
backports_pkgs=(
  qemu-system-x86 qemu-system-common qemu-system-data qemu-utils qemu-block-extra seabios
  libvirt-daemon-system libvirt-clients libvirt-dev libvirt0 libvirt-common
  libvirt-daemon libvirt-daemon-common libvirt-daemon-driver-qemu libvirt-daemon-log
  libvirt-daemon-lock libvirt-daemon-plugin-lockd libvirt-daemon-system-systemd
  libvirt-daemon-config-network libvirt-daemon-config-nwfilter libvirt-daemon-driver-network
  libvirt-daemon-driver-nwfilter libvirt-daemon-driver-nodedev libvirt-daemon-driver-secret
  libvirt-daemon-driver-storage libvirt-daemon-driver-interface libvirt-l10n
)
# The ones we check for to decide whether anything needs doing.
wanted=(qemu-system-x86 libvirt-daemon-system libvirt-clients libvirt-dev qemu-utils pkg-config busybox-static)

installed() { [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]; }

missing=()
for p in "${wanted[@]}"; do installed "$p" || missing+=("$p"); done
if ((${#missing[@]} == 0)) && [ -e /etc/apt/sources.list.d/cirrus-backports.list ] \
   && ls /var/lib/apt/lists/*_dists_bookworm_main_binary-amd64_Packages* >/dev/null 2>&1; then
  echo "libvirt/QEMU already installed: $(virsh --version 2>/dev/null || echo '?') / $(qemu-system-x86_64 --version | head -1)"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
APT=(apt-get -o DPkg::Lock::Timeout=600 -q)

# 1. The backports suite, same mirror as bookworm.
uri=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
  uri=$(awk '/^URIs:/{u=$2} /^Suites:/{ for (i=2;i<=NF;i++) if ($i=="bookworm") {print u; exit} }' \
        /etc/apt/sources.list.d/debian.sources)
fi
if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
  uri=$(awk '$1=="deb" && $3=="bookworm" {print $2; exit}' /etc/apt/sources.list)
fi
: "${uri:=http://deb.debian.org/debian}"
if ! grep -rqs "^deb .* $BP " /etc/apt/sources.list /etc/apt/sources.list.d/ \
   && ! grep -rqs "Suites:.*$BP" /etc/apt/sources.list.d/; then
  echo "adding $BP from $uri"
  echo "deb $uri $BP main" > /etc/apt/sources.list.d/cirrus-backports.list
else
  # Already present (maybe under another name): keep our marker so the fast path above works.
  [ -e /etc/apt/sources.list.d/cirrus-backports.list ] || : > /etc/apt/sources.list.d/cirrus-backports.list
fi
"${APT[@]}" update

# 2. Pin each backports package by name, if backports has it (some, e.g. seabios, may be absent
#    from backports on a given snapshot).
sel=()
for p in "${backports_pkgs[@]}"; do
  # (capture first: `madison | grep -q` would SIGPIPE madison and fail under pipefail)
  m=$(apt-cache madison "$p" 2>/dev/null || true)
  if [[ "$m" == *"$BP"* ]]; then sel+=("$p/$BP"); fi
done
"${APT[@]}" install -y --no-install-recommends "${sel[@]}" pkg-config busybox-static
echo "installed: $(virsh --version) / $(qemu-system-x86_64 --version | head -1)"
