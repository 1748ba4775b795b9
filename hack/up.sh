#!/usr/bin/env bash
# Quickstart on a fresh Debian 12 machine: installs dependencies, builds cirrus, runs the
# all-in-one cloud in the background (data in ./.cirrus), applies examples/ and shows them.
# Stop it with: kill "$(cat .cirrus/cirrus.pid)"
set -euo pipefail
cd "$(dirname "$0")/.."

hack/install-deps.sh
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

export CIRRUS_URL="http://$listen"
"$cirrus" apply -f examples/ --recursive
"$cirrus" get flavors
