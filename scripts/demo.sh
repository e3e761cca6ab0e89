#!/usr/bin/env bash
# The main job on this machine, no cloud account: the local lab (a fake Compute Engine whose
# VMs are Debian containers, a registry, base images), then the farm of inventory/lab.yaml
# provisioned (VMs, Docker and QEMU over SSH, buildx nodes), a multi-arch build of
# examples/hello with each platform compiled on its own node, the arm64 checks (the image, then
# a Kubernetes workload using it), a summary, and teardown. ARCHFARM_KEEP_LAB=1 keeps the lab,
# the VMs and the image afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH" ARCHFARM_INVENTORY=inventory/lab.yaml
image=127.0.0.1:5000/hello:demo

run() { echo >&2; echo "\$ inv $*" >&2; inv "$@"; }
run lab.up                 # installs the lab's Debian packages on first use (host setup)
run provision --check      # the plan and its cost; nothing changes
run provision
run configure              # converged: changed=0, one SSH round trip per host, no API call
run status
run build --context examples/hello --tag "$image" --strategy merge --push --json > /tmp/archfarm-demo-build.json
run check-arm "$image"
run check-arm --manifests examples/hello/deploy.yaml   # the whole workload, from the registry

echo
echo "== summary ($(( $(date +%s) - started )) s)"
python3 - "$image" <<'PY'
import json, sys
build = json.load(open("/tmp/archfarm-demo-build.json"))
print(f"image {sys.argv[1]} (index {build['digest']}) in the lab registry:")
for p in build["platforms"]:
    print(f"  {p['platform']:12} built on node {p['node']:6} in {p['seconds']} s  {p['digest']}")
PY
for platform in linux/amd64 linux/arm64; do
    echo "  docker run --platform $platform $image -> $(docker run --rm --pull always --platform "$platform" "$image" 2>/dev/null)"
done

if [ -z "${ARCHFARM_KEEP_LAB:-}" ]; then
    run destroy --yes
    run lab.down
else
    echo "kept: the lab, the farm and $image (inv destroy --yes; inv lab.down to remove them)"
fi
