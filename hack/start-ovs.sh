#!/usr/bin/env bash
# Starts Open vSwitch (ovsdb-server + ovs-vswitchd) by hand (this machine has no systemd),
# idempotently.
#
# - Does nothing when `ovs-vsctl show` already answers (OVS run by the host's init, or by an
#   earlier call).
# - Otherwise creates the database when missing (or converts it to the installed schema), then
#   starts both daemons detached, with their PID files in the default run directory
#   (/var/run/openvswitch, so ovs-appctl finds them) and their PIDs recorded in
#   /run/cirrus-ovs.pids, and waits (bounded) until ovs-vsctl answers.
# - Works without the openvswitch kernel module: ovs-vswitchd then only serves bridges with
#   `datapath_type=netdev` (the userspace datapath); Cirrus detects that itself.
# - `hack/start-ovs.sh stop` stops exactly the daemons this script started (by PID).
#
# usage: hack/start-ovs.sh [start|stop|status]
set -euo pipefail

RUN_DIR=/var/run/openvswitch
LOG_DIR=/var/log/openvswitch
DB=${CIRRUS_OVS_DB:-/etc/openvswitch/conf.db}
SCHEMA=/usr/share/openvswitch/vswitch.ovsschema
PIDS=/run/cirrus-ovs.pids
TIMEOUT_S=${CIRRUS_OVS_START_TIMEOUT:-30}

answers() { timeout 5 ovs-vsctl --timeout=3 show >/dev/null 2>&1; }

start() {
  if answers; then echo "Open vSwitch already answers"; return 0; fi
  command -v ovsdb-server >/dev/null || { echo "ovsdb-server not found: run hack/install-deps.sh" >&2; exit 1; }
  mkdir -p "$RUN_DIR" "$LOG_DIR" "$(dirname "$DB")"
  if [ ! -s "$DB" ]; then
    ovsdb-tool create "$DB" "$SCHEMA"
  elif [ "$(ovsdb-tool needs-conversion "$DB" "$SCHEMA")" = yes ]; then
    ovsdb-tool convert "$DB" "$SCHEMA"
  fi
  : >"$PIDS"
  if ! pgrep -x ovsdb-server >/dev/null; then
    ovsdb-server "$DB" --remote=punix:"$RUN_DIR/db.sock" \
      --remote=db:Open_vSwitch,Open_vSwitch,manager_options \
      --pidfile="$RUN_DIR/ovsdb-server.pid" --detach --log-file="$LOG_DIR/ovsdb-server.log"
    cat "$RUN_DIR/ovsdb-server.pid" >>"$PIDS"
    echo "started ovsdb-server (pid $(cat "$RUN_DIR/ovsdb-server.pid"))"
  fi
  ovs-vsctl --no-wait init
  if [ -z "$(ovs-vsctl --no-wait get Open_vSwitch . external_ids:system-id 2>/dev/null | tr -d '"')" ]; then
    ovs-vsctl --no-wait set Open_vSwitch . external_ids:system-id="$(cat /proc/sys/kernel/random/uuid)"
  fi
  if ! pgrep -x ovs-vswitchd >/dev/null; then
    ovs-vswitchd unix:"$RUN_DIR/db.sock" --pidfile="$RUN_DIR/ovs-vswitchd.pid" --detach \
      --log-file="$LOG_DIR/ovs-vswitchd.log"
    cat "$RUN_DIR/ovs-vswitchd.pid" >>"$PIDS"
    echo "started ovs-vswitchd (pid $(cat "$RUN_DIR/ovs-vswitchd.pid"))"
  fi
  local deadline=$((SECONDS + TIMEOUT_S))
  until answers; do
    if ((SECONDS >= deadline)); then
      echo "Open vSwitch did not answer within ${TIMEOUT_S}s; logs in $LOG_DIR" >&2
      tail -20 "$LOG_DIR/ovs-vswitchd.log" >&2 || true
      exit 1
    fi
    sleep 0.2
  done
  status
  echo "stop with: $0 stop"
}

stop() {
  [ -f "$PIDS" ] || { echo "no Open vSwitch daemons started by this script"; return 0; }
  local pid
  # vswitchd first (it holds the database connection), then ovsdb-server.
  for pid in $(tac "$PIDS"); do
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then echo "pid $pid still running" >&2; else echo "stopped $pid"; fi
    fi
  done
  rm -f "$PIDS"
}

status() {
  if [ -f "$PIDS" ]; then echo "started by this script: $(tr '\n' ' ' <"$PIDS")"; fi
  if answers; then
    echo "ovs-vsctl answers: $(ovs-vsctl --version | head -1)"
    lsmod 2>/dev/null | grep -q '^openvswitch' && echo "kernel datapath: available" \
      || echo "kernel datapath: absent (bridges need datapath_type=netdev)"
  else
    echo "Open vSwitch: not answering"
  fi
}

"${1:-start}"
