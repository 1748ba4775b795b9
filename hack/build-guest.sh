#!/usr/bin/env bash
# Builds Cirrus's tiny test guest from Debian packages only (nothing downloaded from elsewhere),
# idempotently: when the outputs are newer than this script and the kernel version is the same,
# nothing is done.
#
# Outputs, in OUT (first argument, else $CIRRUS_GUEST_DIR, else target/guest/):
#   vmlinuz      the Debian cloud kernel (image disk_format `aki`)
#   initrd.img   a busybox-static initramfs with the kernel's virtio modules (`ari`)
#   root.qcow2   a 64 MiB qcow2 root disk whose first sector reads "CIRRUS-ROOT-DISK v1"
#                (`qcow2`, with image properties kernel_id / ramdisk_id / os_command_line)
#   cmdline      the suggested kernel command line (os_command_line)
#   KERNEL_VERSION
#
# What the guest does (its /init, PID 1), printing to the serial console (ttyS0):
#   CIRRUS-BOOT <marker>         marker from `cirrus.marker=<marker>` on the kernel command line,
#                                default CIRRUS-GUEST-UP
#   BLOCKDEVS vda vdb ...        the virtio/block devices it sees (sorted, loop/ram excluded)
#   BLOCKDEV-ADDED <dev> <serial>   from then on, a background poller compares /sys/block every
#   BLOCKDEV-REMOVED <dev>          0.5 s and reports hot-plugged / unplugged disks (serial from
#                                   /sys/block/<dev>/serial, `-` when none; lines may come at any
#                                   point of the console, between other lines)
#   BLOCKDEV-DATA <dev> <text>      after BLOCKDEV-ADDED, when the disk's first 64 bytes hold a
#                                   text line (e.g. a marker a test or user data wrote there)
#   ROOTDISK <first line>        when vda starts with the recognizable "CIRRUS-ROOT-DISK" sector
#   ADDR <ip>|none               only when a NIC (eth0) exists: udhcpc with a short timeout
#   CONFIGDRIVE <dev> <uuid>     when a config-2 ISO9660 disk is attached
#   META <uuid> <name>|none      after an address: meta_data.json from 169.254.169.254
#   USERDATA script ... USERDATA done <rc>   user data starting with #! is run, output inline;
#   USERDATA <first line>        other user data
#   CIRRUS-READY <marker>        after all hooks ran
# Hooks: every executable /etc/cirrus/hooks.d/NN-*.sh in the initramfs runs in order after the
# network step, with $CIRRUS_ADDR, $CIRRUS_ROUTER (10-metadata.sh: config drive, metadata, user
# data). Tests drive the guest through user data: e.g. `#!/bin/sh` + `ping -c1 10.0.0.5 && echo OK`.
# A user-data script that needs a volume waits for it itself: poll until
# `grep -l <serial> /sys/block/vd*/serial` names it (the guest's name follows probe order and may
# differ from the libvirt target), then use /dev/<that name>. A detach completes only when the
# guest lets go of the disk: this guest's kernel (PCIe native hot-plug) does so within ~0.1 s
# while running (measured, real_libvirt_disk_hotplug), never while paused.
# Power: it never exits (an exiting /init would panic the kernel). It loads the ACPI `button` and
# `evdev` modules and runs busybox `acpid`, so the ACPI power button (virsh shutdown, libvirt's
# ACPI reboot) powers it off cleanly (`poweroff -f`; there is nothing on disk to sync). With
# `cirrus.halt` on the command line it powers off right after CIRRUS-READY (boot-time probes).
#
# Boot it with direct kernel boot: kernel=vmlinuz initrd=initrd.img
#   cmdline="console=ttyS0 quiet panic=-1 cirrus.marker=XYZ", root disk as vda.
#
# usage: hack/build-guest.sh [OUT]     env: KVER=<x.y.z-n-cloud-amd64> to pin the kernel
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SELF="$HERE/$(basename "$0")"
OUT=${1:-${CIRRUS_GUEST_DIR:-$HERE/../target/guest}}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
CACHE="$OUT/.cache"
mkdir -p "$CACHE"

need() { command -v "$1" >/dev/null || { echo "build-guest: '$1' not found (run hack/install-libvirt.sh)" >&2; exit 1; }; }
need dpkg-deb
need qemu-img
BUSYBOX=${BUSYBOX:-/bin/busybox}
# (outputs captured first: `cmd | grep -q` fails under pipefail when grep closes the pipe early)
bb_list=$("$BUSYBOX" --list 2>/dev/null || true)
bb_ldd=$(ldd "$BUSYBOX" 2>&1 || true)
if ! grep -qx acpid <<<"$bb_list" || ! grep -q 'not a dynamic' <<<"$bb_ldd"; then
  echo "build-guest: $BUSYBOX is not busybox-static (apt-get install busybox-static)" >&2; exit 1
fi

# The kernel version the meta-package points at (or $KVER).
if [ -z "${KVER:-}" ]; then
  deps=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null || true)
  KVER=$(awk '/Depends: linux-image-[0-9].*-cloud-amd64/{sub("linux-image-","",$2); print $2; exit}' <<<"$deps")
  [ -n "$KVER" ] || { echo "build-guest: cannot resolve linux-image-cloud-amd64 (apt-get update?)" >&2; exit 1; }
fi

up_to_date() {
  local f
  [ "$(cat "$OUT/KERNEL_VERSION" 2>/dev/null)" = "$KVER" ] || return 1
  for f in vmlinuz initrd.img root.qcow2 cmdline; do
    [ -s "$OUT/$f" ] && [ "$OUT/$f" -nt "$SELF" ] || return 1
  done
}
if up_to_date; then
  echo "guest up to date in $OUT (kernel $KVER)"
  exit 0
fi

echo "building guest in $OUT (kernel $KVER)"
# 1. Kernel package, from the configured Debian mirror.
deb=$(ls "$CACHE"/linux-image-"$KVER"_*.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ]; then
  # apt-get download writes into the current directory (as _apt if it can, else as root).
  (cd "$CACHE" && apt-get download "linux-image-$KVER" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
  deb=$(ls "$CACHE"/linux-image-"$KVER"_*.deb 2>/dev/null | head -1 || true)
  [ -n "$deb" ] || { echo "build-guest: apt-get download linux-image-$KVER failed" >&2; exit 1; }
fi
WORK=$(mktemp -d "$CACHE/work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
dpkg-deb -x "$deb" "$WORK/kpkg"
cp "$WORK/kpkg/boot/vmlinuz-$KVER" "$WORK/vmlinuz"

# 2. Initramfs root.
R="$WORK/root"
mkdir -p "$R"/{bin,sbin,etc/acpi/PWRF,etc/cirrus/hooks.d,proc,sys,dev,tmp,run,lib/modules,usr/share/udhcpc}
cp "$BUSYBOX" "$R/bin/busybox"
for a in $("$BUSYBOX" --list); do [ "$a" = busybox ] || ln -sf busybox "$R/bin/$a"; done
# Modules in load order (dependencies first). Missing ones (built in) are skipped at build time.
MODS="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci failover net_failover virtio_net virtio_blk evdev button cdrom isofs"
: >"$R/lib/modules/order"
for m in $MODS; do
  f=$(find "$WORK/kpkg/lib/modules/$KVER/kernel" -name "$m.ko" -print -quit)
  if [ -n "$f" ]; then cp "$f" "$R/lib/modules/"; echo "$m" >>"$R/lib/modules/order"; fi
done

cat >"$R/usr/share/udhcpc/default.script" <<'S'
#!/bin/sh
# udhcpc event script: configure the lease and record it for /init. Classless static routes
# (option 121, e.g. 169.254.169.254/32 via the DHCP port) win over the router option (RFC 3442).
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
    if [ -n "$staticroutes" ]; then
      set -- $staticroutes
      while [ $# -ge 2 ]; do
        if [ "$2" = 0.0.0.0 ]; then ip route add "$1" dev "$interface"
        else ip route add "$1" via "$2" dev "$interface"; fi
        [ "$1" = 0.0.0.0/0 ] && echo "$2" > /run/cirrus-router
        shift 2
      done
    elif [ -n "$router" ]; then
      ip route add default via "${router%% *}" dev "$interface"
      echo "${router%% *}" > /run/cirrus-router
    fi
    echo "$ip" > /run/cirrus-addr
    [ -n "$dns" ] && for d in $dns; do echo "nameserver $d"; done > /etc/resolv.conf ;;
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
esac
exit 0
S
chmod +x "$R/usr/share/udhcpc/default.script"

# Metadata hook: the config drive (a disk labelled config-2) and the metadata service at
# 169.254.169.254; a user-data script (starting with #!) runs with its output on the console.
cat >"$R/etc/cirrus/hooks.d/10-metadata.sh" <<'S'
#!/bin/sh
field() { grep -o "\"$1\": *\"[^\"]*\"" "$2" | head -n 1 | sed 's/.*: *"//; s/"$//'; }
mkdir -p /mnt/config
for d in /dev/vd? /dev/sr?; do
  [ -b "$d" ] || continue
  if mount -t iso9660 -o ro "$d" /mnt/config 2>/dev/null; then
    if [ -f /mnt/config/openstack/latest/meta_data.json ]; then
      echo "CONFIGDRIVE ${d#/dev/} $(field uuid /mnt/config/openstack/latest/meta_data.json)"
      [ -f /mnt/config/openstack/latest/user_data ] && cp /mnt/config/openstack/latest/user_data /run/user_data
      break
    fi
    umount /mnt/config
  fi
done
if [ -n "$CIRRUS_ADDR" ]; then
  MD=http://169.254.169.254/openstack/latest
  got=
  for i in 1 2 3 4 5 6; do
    timeout 3 wget -q -O /run/meta_data.json "$MD/meta_data.json" 2>/run/wget.err && { got=1; break; }
    sleep 1
  done
  if [ -n "$got" ]; then
    echo "META $(field uuid /run/meta_data.json) $(field name /run/meta_data.json)"
    rm -f /run/user_data.md
    timeout 3 wget -q -O /run/user_data.md "$MD/user_data" 2>/dev/null && mv /run/user_data.md /run/user_data
  else
    echo "META none"
    echo "META-DEBUG routes: $(ip route | tr '\n' ';') wget: $(tr '\n' ' ' </run/wget.err)"
  fi
fi
if [ -s /run/user_data ]; then
  case "$(head -c 2 /run/user_data)" in
    '#!') echo "USERDATA script"; chmod +x /run/user_data; /run/user_data 2>&1; echo "USERDATA done $?" ;;
    *) echo "USERDATA $(head -n 1 /run/user_data)" ;;
  esac
fi
S
chmod +x "$R/etc/cirrus/hooks.d/10-metadata.sh"

# busybox acpid maps the power button (KEY_POWER) to the action PWRF/00000080 under /etc/acpi.
cat >"$R/etc/acpi/PWRF/00000080" <<'S'
#!/bin/sh
echo "CIRRUS-POWERBUTTON" > /dev/console
sync
poweroff -f
S
chmod +x "$R/etc/acpi/PWRF/00000080"
# "KEY ACTION": an event whose text contains KEY runs ACTION (a file or run-parts dir under -c).
echo "PWRF PWRF/00000080" >"$R/etc/acpid.conf"

cat >"$R/init" <<'S'
#!/bin/sh
# Cirrus test guest /init (PID 1). See hack/build-guest.sh for the console protocol.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts /run && mount -t tmpfs run /run

arg() { # arg NAME DEFAULT: value of NAME=... on the kernel command line
  for w in $(cat /proc/cmdline); do case "$w" in "$1="*) echo "${w#*=}"; return;; esac; done
  echo "$2"
}
has_flag() { for w in $(cat /proc/cmdline); do [ "$w" = "$1" ] && return 0; done; return 1; }

MARKER=$(arg cirrus.marker CIRRUS-GUEST-UP)
echo "CIRRUS-BOOT $MARKER"

for m in $(cat /lib/modules/order); do insmod "/lib/modules/$m.ko" 2>/dev/null || echo "INSMOD-FAIL $m"; done
# ACPI power button -> /etc/acpi/PWRF/00000080 (poweroff). busybox acpid opens the event devices
# once at start, so wait (bounded) for the power button's node; run it in the foreground mode
# (-f, backgrounded here); it always opens a log file, hence -l.
for i in 1 2 3 4 5 6 7 8 9 10; do
  for e in /sys/class/input/event*; do
    [ "$(cat "$e/device/name" 2>/dev/null)" = "Power Button" ] && [ -e "/dev/input/${e##*/}" ] && break 2
  done
  sleep 0.1
done
acpid -f -c /etc/acpi -a /etc/acpid.conf -l /dev/null >/dev/null 2>&1 &
ip link set lo up

# Block devices: give virtio a moment to probe, then list them.
for i in 1 2 3 4 5 6 7 8 9 10; do [ -e /sys/block/vda ] && break; sleep 0.1; done
blockdevs() { ls /sys/block | grep -vE '^(loop|ram)' | sort; }
DEVS=$(blockdevs)
echo "BLOCKDEVS $(echo $DEVS)"
# Hot-plug reporter: compares /sys/block every 0.5 s with what was last reported (starting from
# the BLOCKDEVS line, so nothing falls between the two).
(
  prev=$DEVS
  while true; do
    sleep 0.5
    now=$(blockdevs)
    [ "$now" = "$prev" ] && continue
    for d in $now; do
      case " $(echo $prev) " in *" $d "*) continue;; esac
      serial=$(cat "/sys/block/$d/serial" 2>/dev/null)
      echo "BLOCKDEV-ADDED $d ${serial:--}"
      head=$(dd if="/dev/$d" bs=64 count=1 2>/dev/null | tr -d '\000' | head -n 1)
      [ -n "$head" ] && echo "BLOCKDEV-DATA $d $head"
    done
    for d in $prev; do
      case " $(echo $now) " in *" $d "*) ;; *) echo "BLOCKDEV-REMOVED $d";; esac
    done
    prev=$now
  done
) &
if [ -e /dev/vda ]; then
  first=$(dd if=/dev/vda bs=64 count=1 2>/dev/null | tr -d '\000' | head -n 1)
  case "$first" in CIRRUS-ROOT-DISK*) echo "ROOTDISK $first";; esac
fi

# Network hook: only when a NIC exists.
if ip link show eth0 >/dev/null 2>&1; then
  ip link set eth0 up
  udhcpc -i eth0 -n -q -O staticroutes -O mtu -t "$(arg cirrus.dhcp_tries 5)" -T 1 -s /usr/share/udhcpc/default.script >/dev/null 2>&1
  CIRRUS_ADDR=$(cat /run/cirrus-addr 2>/dev/null)
  CIRRUS_ROUTER=$(cat /run/cirrus-router 2>/dev/null)
  echo "ADDR ${CIRRUS_ADDR:-none}"
  export CIRRUS_ADDR CIRRUS_ROUTER
fi

# Later hooks (metadata, ping, ...), in order.
for h in /etc/cirrus/hooks.d/*.sh; do [ -x "$h" ] && "$h"; done

echo "CIRRUS-READY $MARKER"
if has_flag cirrus.halt; then poweroff -f; fi
# PID 1 must never exit. Reap children now and then.
while true; do sleep 3600; done
S
chmod +x "$R/init"
(cd "$R" && find . | "$BUSYBOX" cpio -o -H newc 2>/dev/null | gzip -9) >"$WORK/initrd.img"

# 3. Root disk: a recognizable first sector, 64 MiB, qcow2.
truncate -s 64M "$WORK/root.raw"
printf 'CIRRUS-ROOT-DISK v1\n' | dd of="$WORK/root.raw" conv=notrunc status=none
qemu-img convert -q -f raw -O qcow2 "$WORK/root.raw" "$WORK/root.qcow2"

echo "console=ttyS0 quiet panic=-1" >"$WORK/cmdline"
echo "$KVER" >"$WORK/KERNEL_VERSION"
# Publish atomically-ish: each file renamed into place; KERNEL_VERSION last.
for f in vmlinuz initrd.img root.qcow2 cmdline KERNEL_VERSION; do mv -f "$WORK/$f" "$OUT/$f"; done
ls -la "$OUT"
