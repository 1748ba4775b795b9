#!/usr/bin/env bash
# Starts virtlogd and libvirtd by hand (this machine has no systemd), idempotently.
#
# - Does nothing when `virsh -c qemu:///system version` already answers.
# - Otherwise starts each daemon that is not running (by its PID file under /run, or by its
#   socket), daemonized by this script, with its PID in /run/cirrus-<daemon>.pid and its log in
#   /run/cirrus-<daemon>.log, then waits (bounded) until virsh answers. The first start takes
#   ~10 s (libvirt probes QEMU's capabilities once and caches them).
# - Restores /dev/kvm to group kvm, mode 0660 (see fix_kvm_node) when something changed it.
# - `hack/start-libvirt.sh stop` stops exactly the daemons this script started (by PID).
#
# usage: hack/start-libvirt.sh [start|stop|status]
set -euo pipefail

RUN=${CIRRUS_LIBVIRT_RUN:-/run}
URI=qemu:///system
TIMEOUT_S=${CIRRUS_LIBVIRT_START_TIMEOUT:-60}

pidfile() { echo "$RUN/cirrus-$1.pid"; }
alive() { local f; f=$(pidfile "$1"); [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }
answers() { timeout 10 virsh -c "$URI" version >/dev/null 2>&1; }

start_daemon() { # name binary socket
  local name=$1 bin=$2 sock=$3
  if alive "$name"; then return 0; fi
  # A daemon started by someone else (systemd, setup-infra.sh) already owns the socket: leave it.
  if [ -S "$sock" ] && pgrep -x "$name" >/dev/null 2>&1; then
    echo "$name already running (not started by this script)"; return 0
  fi
  command -v "$bin" >/dev/null || { echo "$bin not found: run hack/install-libvirt.sh first" >&2; exit 1; }
  mkdir -p "$RUN"
  "$bin" >"$RUN/cirrus-$name.log" 2>&1 </dev/null &
  echo $! >"$(pidfile "$name")"
  disown || true
  echo "started $name (pid $!, log $RUN/cirrus-$name.log)"
}

# /dev/kvm as Debian's udev rule and qemu-system-common leave it: group kvm, mode 0660. Without
# udev nothing restores it when something else changed it (a chroot's package script run through a
# bind-mounted /dev once set the chroot's kvm gid). Then libvirt's QEMU probe (which may open it)
# and its access check as the qemu user disagree about KVM, and libvirtd throws its capability
# cache away and re-probes QEMU (~4 s) on every define, start and capabilities call.
fix_kvm_node() {
  [ -c /dev/kvm ] && getent group kvm >/dev/null || return 0
  local want; want=$(getent group kvm | cut -d: -f3)
  if [ "$(stat -c %g /dev/kvm)" != "$want" ] || [ "$(stat -c %a /dev/kvm)" != 660 ]; then
    echo "/dev/kvm was $(stat -c '%G(%g) %a' /dev/kvm); restoring group kvm, mode 0660"
    chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
  fi
}

start() {
  fix_kvm_node
  if answers; then echo "libvirtd already answers on $URI"; status; return 0; fi
  start_daemon virtlogd virtlogd /run/libvirt/virtlogd-sock
  # virtlogd must be listening before libvirtd starts guests with file-backed logs.
  for _ in $(seq 1 50); do [ -S /run/libvirt/virtlogd-sock ] && break; sleep 0.1; done
  start_daemon libvirtd libvirtd /run/libvirt/libvirt-sock
  local deadline=$((SECONDS + TIMEOUT_S))
  until answers; do
    if ((SECONDS >= deadline)); then
      echo "libvirtd did not answer on $URI within ${TIMEOUT_S}s; log: $RUN/cirrus-libvirtd.log" >&2
      tail -20 "$RUN/cirrus-libvirtd.log" >&2 || true
      exit 1
    fi
    if ! alive libvirtd && ! pgrep -x libvirtd >/dev/null; then
      echo "libvirtd exited; log: $RUN/cirrus-libvirtd.log" >&2; tail -20 "$RUN/cirrus-libvirtd.log" >&2 || true; exit 1
    fi
    sleep 0.2
  done
  status
  echo "stop with: $0 stop"
}

stop() {
  local name f pid
  for name in libvirtd virtlogd; do
    f=$(pidfile "$name")
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && echo "$name ($pid) still running" >&2
    fi
    kill -0 "$pid" 2>/dev/null || { rm -f "$f"; echo "stopped $name ($pid)"; }
  done
}

status() {
  local name
  for name in virtlogd libvirtd; do
    if alive "$name"; then echo "$name: pid $(cat "$(pidfile "$name")")"; else echo "$name: not started by this script"; fi
  done
  timeout 10 virsh -c "$URI" version 2>&1 | grep -i 'running hypervisor' || echo "$URI: not answering"
}

"${1:-start}"
