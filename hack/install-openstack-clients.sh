#!/usr/bin/env bash
# Installs the real OpenStack clients the compatibility tests drive — python-openstackclient
# (the `openstack` command) and openstacksdk — plus tempest (whose response JSON schemas are
# the contract tests/openstack/tempest_schemas.py checks) from PyPI into a virtualenv at
# target/osc-venv (or $1), idempotently. Versions are pinned so a new client release
# cannot change what CI tests; bump them deliberately.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-target/osc-venv}"
pins=(python-openstackclient==10.5.0 openstacksdk==4.22.0 keystoneauth1==5.18.1 osc-lib==4.7.0
  tempest==47.0.0 schemathesis==4.32.5)

if [ -x "$venv/bin/openstack" ] && "$venv/bin/python" - "${pins[@]}" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version

def installed(pin):
    name, wanted = pin.split("==")
    try:
        return version(name) == wanted
    except PackageNotFoundError:
        return False

sys.exit(0 if all(installed(p) for p in sys.argv[1:]) else 1)
PY
then
  echo "openstack clients ready in $venv"
  exit 0
fi

if ! python3 -m venv "$venv" 2>/dev/null; then
  echo "python3 venv support missing; installing python3-venv"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3-venv python3-pip >/dev/null
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}"
"$venv/bin/openstack" --version
echo "openstack clients ready in $venv"
