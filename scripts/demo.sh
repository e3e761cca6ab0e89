#!/usr/bin/env bash
# The main job, end to end on this machine: the fake Compute Engine on loopback, then
# `inv vms` (create), again (converged: nothing changes), `inv status`, `inv destroy`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"

state=$(mktemp -d)
export ARCHFARM_INVENTORY=inventory/lab.yaml
python -m provision.fakegce --port 8089 --operation-seconds 2 > "$state/fake.log" 2>&1 &
fake=$!
trap 'kill $fake 2>/dev/null; wait $fake 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q listening "$state/fake.log" && break; sleep 0.1; done
cat "$state/fake.log"

run() { echo; echo "\$ inv $*"; inv "$@"; }
run vms
run vms
run status
run destroy --yes
