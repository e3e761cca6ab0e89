#!/usr/bin/env bash
# The main job on this machine, no cloud account: the local lab (fake Compute Engine whose VMs
# are Debian containers), then the farm from inventory/lab.yaml provisioned (VMs, then Docker
# and QEMU over SSH), a converged re-run, status, and teardown. Set ARCHFARM_KEEP_LAB=1 to keep
# the lab and the VMs afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH" ARCHFARM_INVENTORY=inventory/lab.yaml

run() { echo; echo "\$ inv $*"; inv "$@"; }
run lab.up
run provision --check   # the plan and its cost; nothing changes
run provision
run configure           # converged: changed=0, one SSH round trip per host, no API call
run status
if [ -z "${ARCHFARM_KEEP_LAB:-}" ]; then
    run destroy --yes
    run lab.down
fi
