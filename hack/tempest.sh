#!/usr/bin/env bash
# Runs the real tempest conformance suite (tempest 47.0.0, from target/osc-venv, installed by
# hack/install-openstack-clients.sh) against a fresh `cirrus up` with DYNAMIC credentials:
# tempest logs in as the cloud admin from the cloud's openrc and makes its own projects and
# users through Keystone for every test class.
#
# What it does:
# - starts `cirrus up` (libvirt node agent, its own integration bridge and node name) with a
#   data dir in a temp dir (mktemp -d /tmp/cirrus-tempest.XXXX), listening on loopback only;
# - as the admin, through the `openstack` CLI: two flavors, the test guest as public images
#   (kernel aki, ramdisk ari, root qcow2 naming them in kernel_id/ramdisk_id, twice for
#   image_ref and image_ref_alt) and a shared network with a subnet (fixed_network_name);
# - `tempest init`s a workspace and writes etc/tempest.conf: what Cirrus implements enabled,
#   what it does not disabled (see docs/openstack.md), Neutron's extensions as the cloud lists
#   them, every URL on loopback;
# - runs `tempest run --concurrency N` once per selected service with the regexes of
#   tests/tempest/include-list.txt for that service and tests/tempest/exclude-list.txt, prints
#   tempest's summary and each service's time, and keeps the logs in the results directory;
# - on exit kills exactly the cirrus process it started (by PID), removes the domains, DHCP
#   namespaces and bridge it made, and its temp dir.
#
# usage: hack/tempest.sh [identity] [image] [network] [volume] [compute]   (default: all five)
#
# Environment:
#   CIRRUS_BIN                 cirrus binary (default target/debug/cirrus)
#   CIRRUS_GUEST_DIR           test guest: vmlinuz, initrd.img, root.qcow2 (default target/guest,
#                              made by hack/build-guest.sh)
#   CIRRUS_TEMPEST_VENV        venv with tempest and openstackclient (default target/osc-venv)
#   CIRRUS_TEMPEST_RESULTS     where logs are kept (default target/tempest-results)
#   CIRRUS_TEMPEST_PORT        API port on 127.0.0.1 (default 18080)
#   CIRRUS_TEMPEST_CONCURRENCY tempest workers (default 2)
#   CIRRUS_TEMPEST_INCLUDE     the include list (default tests/tempest/include-list.txt; CI
#                              uses tests/tempest/ci-include-list.txt, which fits its time)
#   CIRRUS_TEMPEST_REGEX       a regex narrowing every service's selection (optional; e.g.
#                              'compute\.servers\.test_(create_server|server_actions)\.')
#   CIRRUS_TEMPEST_START_DAEMONS=0  don't call hack/start-libvirt.sh/start-ovs.sh start
#   CIRRUS_TEMPEST_KEEP=1      keep the temp dir (cirrus data, tempest workspace)
#   CIRRUS_TEMPEST_FLOORS=FILE  judge by floors instead (CI: tests/tempest/floors.txt): lines
#                              `<service> <passed>`; the run fails when a service passes fewer
#                              tests than its floor (a regression), whatever else fails
#
# Exit status: without floors, 0 when every selected service ran without failures; with
# floors, 0 when every selected service passed at least its floor; 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

all_services=(identity image network volume compute)
services=("$@")
[[ ${#services[@]} -gt 0 ]] || services=("${all_services[@]}")
for s in "${services[@]}"; do
  [[ " ${all_services[*]} " == *" $s "* ]] || { echo "unknown service '$s' (one of: ${all_services[*]})" >&2; exit 2; }
done

abspath() { case $1 in /*) echo "$1" ;; *) echo "$repo/$1" ;; esac; }
cirrus=$(abspath "${CIRRUS_BIN:-target/debug/cirrus}")
guest=$(abspath "${CIRRUS_GUEST_DIR:-target/guest}")
venv=$(abspath "${CIRRUS_TEMPEST_VENV:-target/osc-venv}")
results=$(abspath "${CIRRUS_TEMPEST_RESULTS:-target/tempest-results}")
port=${CIRRUS_TEMPEST_PORT:-18080}
concurrency=${CIRRUS_TEMPEST_CONCURRENCY:-2}
include_list=$(abspath "${CIRRUS_TEMPEST_INCLUDE:-tests/tempest/include-list.txt}")
exclude_list=$repo/tests/tempest/exclude-list.txt

[[ -x $cirrus ]] || { echo "no cirrus binary at $cirrus (set CIRRUS_BIN or cargo build -p cirrus-cli)" >&2; exit 2; }
[[ -x $venv/bin/tempest && -x $venv/bin/openstack ]] || { echo "no tempest/openstack in $venv: run hack/install-openstack-clients.sh" >&2; exit 2; }
for f in vmlinuz initrd.img root.qcow2; do
  [[ -f $guest/$f ]] || { echo "no $guest/$f: run hack/build-guest.sh" >&2; exit 2; }
done

# Nothing of the caller's cloud credentials or cirrus settings may leak into the run.
for v in $(compgen -v); do
  case $v in
    OS_* | CIRRUS_URL | CIRRUS_TOKEN | CIRRUS_PROJECT | CIRRUS_DATA_DIR | CIRRUS_LISTEN | \
      CIRRUS_PUBLIC_URL | CIRRUS_ETCD_ENDPOINTS | CIRRUS_STORE_LISTEN | CIRRUS_NODE_NAME | \
      CIRRUS_STORE_COMPACTION_INTERVAL | http_proxy | https_proxy | HTTP_PROXY | HTTPS_PROXY)
      unset "$v" ;;
  esac
done
export no_proxy=127.0.0.1,localhost NO_PROXY=127.0.0.1,localhost

if [[ ${CIRRUS_TEMPEST_START_DAEMONS:-1} != 0 ]]; then
  hack/start-libvirt.sh start
  hack/start-ovs.sh start
fi

mkdir -p "$results"
rm -f "$results/leftovers.txt"
tmp=$(mktemp -d /tmp/cirrus-tempest.XXXX)
data=$tmp/data
ws=$tmp/workspace
bridge=cbrt$(( $$ % 100000 ))
node=tempest-$(( $$ % 100000 ))
base=http://127.0.0.1:$port
cirrus_pid=
tempest_pid=

cleanup() {
  local rc=$?
  set +e
  if [[ -n ${tempest_pid:-} ]]; then
    kill -- -"$tempest_pid" 2>/dev/null
    wait "$tempest_pid" 2>/dev/null
  fi
  if [[ -n $cirrus_pid ]] && kill -0 "$cirrus_pid" 2>/dev/null; then
    # What tempest did not delete, while the cloud still answers (the setup's own images,
    # flavors and network are expected; servers and volumes are not).
    if [[ -f $data/clouds.yaml ]]; then
      local servers volumes
      servers=$(OS_CLIENT_CONFIG_FILE=$data/clouds.yaml OS_CLOUD=cirrus timeout 60 "$venv/bin/openstack" server list --all-projects -f value -c ID -c Name -c Status 2>/dev/null)
      volumes=$(OS_CLIENT_CONFIG_FILE=$data/clouds.yaml OS_CLOUD=cirrus timeout 60 "$venv/bin/openstack" volume list --all-projects -f value -c ID -c Name -c Status 2>/dev/null)
      if [[ -n $servers$volumes ]]; then
        { echo "left in the cloud after tempest ($(date -u +%FT%TZ)):"; echo "$servers"; echo "$volumes"; } | sed '/^$/d' | tee -a "$results/leftovers.txt"
      fi
    fi
    kill "$cirrus_pid"
    for _ in $(seq 100); do kill -0 "$cirrus_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$cirrus_pid" 2>/dev/null && kill -9 "$cirrus_pid"
    wait "$cirrus_pid" 2>/dev/null
  fi
  # What the node agent made on the host, found through its state dir (as the e2e tests'
  # DomainSweeper/NetworkSweeper do): domains, dnsmasq processes and DHCP namespaces, bridge.
  local left=()
  if [[ -d $data/node/instances ]]; then
    for d in "$data"/node/instances/*; do
      [[ -e $d ]] || continue
      local domain=cirrus-$(basename "$d")
      if virsh -c qemu:///system dominfo "$domain" >/dev/null 2>&1; then
        left+=("$domain")
        virsh -c qemu:///system destroy "$domain" >/dev/null 2>&1
        virsh -c qemu:///system undefine --nvram "$domain" >/dev/null 2>&1
      fi
    done
  fi
  [[ ${#left[@]} -eq 0 ]] || echo "tempest left ${#left[@]} domain(s), removed: ${left[*]}" | tee -a "$results/leftovers.txt"
  if [[ -d $data/node/network/dhcp ]]; then
    for d in "$data"/node/network/dhcp/*; do
      [[ -e $d ]] || continue
      local uid pid
      uid=$(basename "$d")
      pid=$(cat "$d/pid" 2>/dev/null)
      if [[ -n $pid ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "dnsmasq.*$uid"; then
        kill "$pid"
      fi
      ip netns del "qdhcp-$uid" 2>/dev/null
    done
  fi
  ovs-vsctl --if-exists del-br "$bridge" 2>/dev/null
  [[ -f $tmp/cirrus.log ]] && cp "$tmp/cirrus.log" "$results/cirrus.log"
  if [[ ${CIRRUS_TEMPEST_KEEP:-0} == 1 ]]; then
    echo "kept $tmp"
  else
    rm -rf "$tmp"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if curl -s -o /dev/null "$base/readyz"; then
  echo "something already listens on $base: set CIRRUS_TEMPEST_PORT" >&2
  exit 2
fi
"$cirrus" up --data-dir "$data" --listen "127.0.0.1:$port" --node-agent libvirt \
  --node-name "$node" --bridge "$bridge" \
  </dev/null >"$tmp/cirrus.log" 2>&1 &
cirrus_pid=$!
for _ in $(seq 300); do
  curl -fsS -o /dev/null "$base/readyz" 2>/dev/null && [[ -f $data/openrc ]] && grep -q "$base" "$data/openrc" && break
  kill -0 "$cirrus_pid" 2>/dev/null || { cat "$tmp/cirrus.log"; echo "cirrus up exited" >&2; exit 1; }
  sleep 0.1
done
curl -fsS -o /dev/null "$base/readyz" || { tail -50 "$tmp/cirrus.log"; echo "cirrus up not ready" >&2; exit 1; }
echo "cirrus up (pid $cirrus_pid) on $base, data in $data, node $node, bridge $bridge"

# The admin's credentials, as cirrus up wrote them.
# shellcheck source=/dev/null
admin_user=$(source "$data/openrc"; echo "$OS_USERNAME")
admin_password=$(source "$data/openrc"; echo "$OS_PASSWORD")
admin_project=$(source "$data/openrc"; echo "$OS_PROJECT_NAME")
admin_domain=$(source "$data/openrc"; echo "${OS_USER_DOMAIN_NAME:-Default}")
auth_url=$(source "$data/openrc"; echo "$OS_AUTH_URL")
auth_url=${auth_url%/}
case $auth_url in */v3) ;; *) auth_url=$auth_url/v3 ;; esac
case $auth_url in http://127.0.0.1:*) ;; *) echo "openrc's auth URL $auth_url is not loopback" >&2; exit 1 ;; esac

export OS_CLIENT_CONFIG_FILE=$data/clouds.yaml OS_CLOUD=cirrus
osc() { "$venv/bin/openstack" "$@"; }
value() { osc "$@" -f value -c id; }

# The local node registers itself; images and servers need it Ready.
for _ in $(seq 120); do
  osc compute service list -f value -c State 2>/dev/null | grep -q up && break
  sleep 1
done
region=$(curl -fsS -H "X-Auth-Token: $(osc token issue -f value -c id)" "$auth_url/auth/catalog" |
  python3 -c 'import json,sys; print(next(e["region_id"] for s in json.load(sys.stdin)["catalog"] for e in s["endpoints"]))')

# Flavors (ids are free text in Nova) small enough for many TCG guests at once.
osc flavor create --id tempest-1 --vcpus 1 --ram 256 --disk 1 tempest.tiny >/dev/null
osc flavor create --id tempest-2 --vcpus 1 --ram 384 --disk 1 tempest.tiny-alt >/dev/null
# The test guest, public: a kernel, a ramdisk and root disks that boot with them.
kernel=$(value image create --public --disk-format aki --container-format aki --file "$guest/vmlinuz" tempest-kernel)
ramdisk=$(value image create --public --disk-format ari --container-format ari --file "$guest/initrd.img" tempest-ramdisk)
cmdline=$(cat "$guest/cmdline" 2>/dev/null || echo "console=ttyS0 quiet panic=-1")
guest_image() {
  value image create --public --disk-format qcow2 --container-format bare --file "$guest/root.qcow2" \
    --property "kernel_id=$kernel" --property "ramdisk_id=$ramdisk" \
    --property "os_command_line=$cmdline" "$1"
}
image_ref=$(guest_image tempest-guest)
image_ref_alt=$(guest_image tempest-guest-alt)
# The admin's shared network every test project boots on (no isolated networks: no routers).
network=tempest-shared
osc network create --share "$network" >/dev/null
osc subnet create --network "$network" --subnet-range 10.254.0.0/20 tempest-shared-subnet >/dev/null
network_id=$(value network show "$network")
# Neutron's extensions as this cloud serves them.
net_exts=$(curl -fsS -H "X-Auth-Token: $(osc token issue -f value -c id)" "$base/network/v2.0/extensions" |
  python3 -c 'import json,sys; print(",".join(sorted(e["alias"] for e in json.load(sys.stdin)["extensions"])))')
echo "images $image_ref $image_ref_alt, network $network_id, region $region"
echo "neutron extensions: $net_exts"

"$venv/bin/tempest" init --workspace-path "$tmp/workspace.yaml" --name "cirrus-tempest-$$" "$ws" >/dev/null
cat >"$ws/etc/tempest.conf" <<EOF
[DEFAULT]
debug = true
log_file = tempest.log
log_dir = $ws/logs

[auth]
use_dynamic_credentials = true
create_isolated_networks = false
admin_username = $admin_user
admin_password = $admin_password
admin_project_name = $admin_project
admin_domain_name = $admin_domain
default_credentials_domain_name = Default

[identity]
uri_v3 = $auth_url
auth_version = v3
region = $region
v3_endpoint_type = public
admin_role = admin
default_domain_id = default

[identity-feature-enabled]
api_v2 = false
api_v2_admin = false
api_v3 = true
trust = false
access_rules = false
security_compliance = false
domain_specific_drivers = false
immutable_user_source = false
project_tags = false
application_credentials = false
api_extensions =

[service_available]
nova = true
neutron = true
glance = true
cinder = true
swift = false
horizon = false

[compute]
image_ref = $image_ref
image_ref_alt = $image_ref_alt
flavor_ref = tempest-1
flavor_ref_alt = tempest-2
fixed_network_name = $network
build_interval = 1
build_timeout = 300
region = $region
min_microversion = 2.1
max_microversion = 2.1

[compute-feature-enabled]
disk_config = false
change_password = false
console_output = true
resize = false
pause = true
shelve = false
shelve_migrate = false
suspend = true
cold_migration = false
live_migration = false
live_migrate_back_and_forth = false
block_migration_for_live_migration = false
metadata_service = true
vnc_console = false
spice_console = false
serial_console = false
rescue = false
stable_rescue = false
enable_instance_password = true
interface_attach = false
snapshot = false
personality = false
attach_encrypted_volume = false
config_drive = true
swap_volume = false
volume_backed_live_migration = false
volume_multiattach = false
unified_limits = false

[image]
region = $region
image_caching_enabled = false
# No tempest image test may fetch anything from outside: loopback, nothing listens there.
http_image = http://127.0.0.1:9/cirros.tar.gz
http_qcow2_image = http://127.0.0.1:9/cirros.img
hashing_algorithm = sha256
container_formats = bare,ami,ari,aki,ovf,ova
disk_formats = qcow2,raw,ami,ari,aki,vhd,vmdk,vdi,iso,vhdx

[image-feature-enabled]
api_v2 = true
import_image = false
os_glance_reserved = false
manage_locations = false
image_conversion = false
do_secure_hash = true
http_store_enabled = false

[network]
region = $region
public_network_id =
floating_network_name =
project_networks_reachable = false
shared_physical_network = false
build_timeout = 300

[network-feature-enabled]
api_extensions = $net_exts
ipv6 = true
ipv6_subnet_attributes = false
port_admin_state_change = true
port_security = false
floating_ips = false

[volume]
region = $region
# File-backed volumes are ready in seconds; a status that never comes fails within a minute.
build_timeout = 60
volume_size = 1
min_microversion = 3.0
max_microversion = 3.0

[volume-feature-enabled]
multi_backend = false
backup = false
snapshot = true
clone = true
manage_snapshot = false
manage_volume = false
replication = false
extend_attached_volume = false
extend_attached_encrypted_volume = false
extend_volume_with_snapshot = true
enable_volume_image_dep_tests = false

[validation]
run_validation = false

[object-storage-feature-enabled]
discoverability = false
EOF
chmod 600 "$ws/etc/tempest.conf"
# The config as run, without the password.
sed "s/^admin_password = .*/admin_password = <from openrc>/" "$ws/etc/tempest.conf" >"$results/tempest.conf"

# A service's include regexes: the include list's lines for tempest.api.<service>.
service_include() {
  grep -v '^\s*#' "$include_list" | grep -E "tempest\\\\?\.api\\\\?\.$1(\\\\?\.|$)" || true
}

cd "$ws"
export TEMPEST_CONFIG_DIR=$ws/etc TEMPEST_CONFIG=tempest.conf
status=0
summary=()
for s in "${services[@]}"; do
  service_include "$s" >"$ws/include-$s.txt"
  if [[ ! -s $ws/include-$s.txt ]]; then
    echo "== $s: no regex in $include_list, skipped"; continue
  fi
  # The selection (include list, exclude list, then CIRRUS_TEMPEST_REGEX narrowing it: stestr
  # would OR a --regex with an include list), run with --load-list; also read when judging
  # fixture failures (a setUpClass failure hides its class's tests).
  "$venv/bin/tempest" run --list-tests --include-list "$ws/include-$s.txt" \
    --exclude-list "$exclude_list" 2>/dev/null | grep '^tempest\.' >"$ws/tests-$s.txt" || true
  grep -E "${CIRRUS_TEMPEST_REGEX:-.}" "$ws/tests-$s.txt" >"$results/$s-tests.txt" || true
  if [[ ! -s $results/$s-tests.txt ]]; then
    echo "== $s: no test selected, skipped"; continue
  fi
  echo "== $s: tempest run --concurrency $concurrency, $(wc -l <"$results/$s-tests.txt") tests ($(date -u +%H:%M:%S))"
  mkdir -p "$ws/logs" && : >"$ws/logs/tempest.log"
  start=$(date +%s)
  rc=0
  # In a session of its own, so an interrupted run (cleanup) ends tempest and its workers.
  setsid "$venv/bin/tempest" run --concurrency "$concurrency" --load-list "$results/$s-tests.txt" \
    >"$results/$s-run.txt" 2>&1 &
  tempest_pid=$!
  wait "$tempest_pid" || rc=$?
  tempest_pid=
  # What failed, and tempest's totals (the whole output, tracebacks too, is in the results).
  grep -E '\.\.\. FAILED' "$results/$s-run.txt" || true
  sed -n '/^Totals/,/^Sum of execute time/p' "$results/$s-run.txt"
  took=$(( $(date +%s) - start ))
  if [[ -n ${CIRRUS_TEMPEST_FLOORS:-} ]]; then
    floor=$(awk -v s="$s" '$1 == s {print $2}' "$(abspath "$CIRRUS_TEMPEST_FLOORS")")
    passed=$(grep -E '^ - Passed: ' "$results/$s-run.txt" | grep -oE '[0-9]+' | tail -1)
    if [[ -z $floor ]]; then
      echo "== $s: no floor in $CIRRUS_TEMPEST_FLOORS" >&2; status=1
    elif (( ${passed:-0} < floor )); then
      echo "== $s: ${passed:-0} passed, fewer than the floor of $floor: a regression (see $results/$s-failing.txt)" >&2
      status=1
    else
      echo "== $s: ${passed} passed (floor $floor)"
    fi
  else
    [[ $rc -eq 0 ]] || status=1
  fi
  cp "$ws/logs/tempest.log" "$results/$s-tempest.log" 2>/dev/null || true
  "$venv/bin/stestr" last --subunit >"$results/$s.subunit" 2>/dev/null || true
  "$venv/bin/subunit2csv" <"$results/$s.subunit" >"$results/$s.csv" 2>/dev/null || true
  "$venv/bin/stestr" failing --list >"$results/$s-failing.txt" 2>/dev/null || true
  counts=$(grep -E '^ - (Passed|Failed|Skipped|Expected Fail|Unexpected Success): ' "$results/$s-run.txt" | sed 's/^ - //' | paste -sd, - | sed 's/,/, /g')
  summary+=("$s: ${counts:-no summary (tempest exit $rc)} in $(( took / 60 ))m$(( took % 60 ))s")
done

echo "== summary (logs in $results)"
printf '%s\n' "${summary[@]}" | tee "$results/summary.txt"
exit "$status"
