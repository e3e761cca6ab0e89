"""`inv vms` against the fake in server mode, each figure beside its floor from the same run.

    python bench/vms.py [--nodes 10] [--operation-seconds 2] [--repeat 3] [--quick]

Floor: a fresh interpreter importing google.cloud.compute_v1 (any cloud task pays it), exiting
without the final garbage collection as archfarm does.
Targets (issue 3): create 10 nodes within floor + 1.5 x one operation; a no-op re-run within
floor + 0.5 s and at most 2 API calls; at most 3 API calls per created VM; `inv --list` and
`inv vms --help` under 0.5 s without importing a cloud library.

--quick: 2 nodes, operations of 0.5 s, each figure once.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import add_quick, figures, sizes

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    return time.perf_counter() - start, proc


def median_time(cmd: list[str], repeat: int, env: dict | None = None) -> float:
    return statistics.median(timed(cmd, env)[0] for _ in range(repeat))


def control(endpoint: str, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(endpoint + path, data=data, method="POST" if data else "GET",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


# More nodes than a fresh project's regional quotas allow (8 addresses, 24 vCPUs) is the point.
LIFTED_QUOTAS = [{"region": "us-central1", "metric": metric, "limit": 10_000}
                 for metric in ("CPUS", "N2_CPUS", "T2A_CPUS", "IN_USE_ADDRESSES",
                                "SSD_TOTAL_GB", "INSTANCES")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, help="default 10; 2 with --quick")
    parser.add_argument("--operation-seconds", type=float, help="default 2; 0.5 with --quick")
    parser.add_argument("--repeat", type=int, help="default 3; 1 with --quick")
    add_quick(parser)
    args = parser.parse_args()
    sizes(args, nodes=(10, 2), operation_seconds=(2.0, 0.5), repeat=(3, 1))

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    fake = subprocess.Popen([PY, "-m", "provision.fakegce", "--port", str(port),
                             "--operation-seconds", str(args.operation_seconds)],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
    endpoint = f"http://127.0.0.1:{port}"
    home_dir = tempfile.TemporaryDirectory(prefix="archfarm-bench-")
    try:
        fake.stdout.readline()
        home = home_dir.name
        half = args.nodes // 2
        inventory = Path(home) / "bench.yaml"
        inventory.write_text(f"""
farm: bench
gcp:
  project: bench-project
  zones: [us-central1-a, us-central1-b]
  api_endpoint: {endpoint}
  ssh_source_ranges: [127.0.0.1/32]
ssh: {{private_key: {home}/key}}
nodes:
  - {{name: arm, platform: linux/arm64, machine_type: t2a-standard-2, count: {half}}}
  - {{name: x86, platform: linux/amd64, machine_type: n2-standard-2,
      count: {args.nodes - half}}}
""")
        inv = [PY, "-m", "invoke"]
        env = {"HOME": home, "XDG_CACHE_HOME": f"{home}/.cache"}  # nothing in the user's own

        with figures(f"vms.py, inv vms on {args.nodes} nodes against the fake", args.quick):
            plain = median_time([PY, "-c", "import google.cloud.compute_v1"], args.repeat)
            # archfarm skips the interpreter's last garbage collection (tasks.py); so does
            # the floor.
            floor = median_time([PY, "-c", "import atexit, gc, google.cloud.compute_v1;"
                                 " atexit.register(gc.freeze)"], args.repeat)
            print(f"floor: import google.cloud.compute_v1 in a fresh interpreter: {floor:.2f} s"
                  f" ({plain:.2f} s with the interpreter's last garbage collection at exit)")

            results = []
            for _ in range(args.repeat):
                control(endpoint, "/_fake/reset", {})
                control(endpoint, "/_fake/faults", {"operation_seconds": args.operation_seconds,
                                                    "quotas": LIFTED_QUOTAS})
                took, proc = timed([*inv, "vms", "-i", str(inventory)], env)
                assert proc.returncode == 0, proc.stdout + proc.stderr
                log = control(endpoint, "/_fake/requests")
                zonal = sum("/zones/" in r["path"] for r in log)  # calls about one VM
                results.append((took, len(log), zonal))
            create = statistics.median(t for t, _, _ in results)
            calls = max(n for _, n, _ in results)
            per_vm = max(z for _, _, z in results) / args.nodes
            target = floor + 1.5 * args.operation_seconds
            print(f"inv vms, create {args.nodes} nodes (operation {args.operation_seconds:g} s):"
                  f" {create:.2f} s; target floor + 1.5 x operation = {target:.2f} s"
                  f" -> {'met' if create <= target else 'MISSED'}")
            print(f"API calls for the create run: {calls} in all, {per_vm:.1f} per VM (the rest are"
                  f" the farm's list and firewall); target <= 3 per VM ->"
                  f" {'met' if per_vm <= 3 else 'MISSED'}")

            noop_runs = []
            for _ in range(args.repeat):
                before = len(control(endpoint, "/_fake/requests"))
                took, proc = timed([*inv, "vms", "-i", str(inventory)], env)
                assert proc.returncode == 0, proc.stdout + proc.stderr
                noop_runs.append((took, len(control(endpoint, "/_fake/requests")) - before))
            noop = statistics.median(t for t, _ in noop_runs)
            noop_calls = max(n for _, n in noop_runs)
            print(f"inv vms, no-op re-run: {noop:.2f} s with {noop_calls} API calls; target"
                  f" floor + 0.5 = {floor + 0.5:.2f} s and <= 2 calls ->"
                  f" {'met' if noop <= floor + 0.5 and noop_calls <= 2 else 'MISSED'}")

            probe = ("import sys, atexit; atexit.register(lambda: print('cloud imported' if any("
                     "m.startswith('google.cloud') for m in sys.modules) else 'no cloud import',"
                     " file=sys.stderr)); from invoke.main import program; program.run({argv})")
            for argv in (["inv", "--list"], ["inv", "vms", "--help"]):
                runs = [timed([PY, "-c", probe.format(argv=argv)]) for _ in range(args.repeat)]
                took = statistics.median(t for t, _ in runs)
                imported = runs[-1][1].stderr.strip().splitlines()[-1]
                print(f"{' '.join(argv)}: {took:.2f} s, {imported};"
                      f" target < 0.5 s -> {'met' if took < 0.5 else 'MISSED'}")
        timed([*inv, "destroy", "-i", str(inventory), "--yes"], env)
    finally:
        fake.terminate()
        fake.wait(timeout=10)
        home_dir.cleanup()


if __name__ == "__main__":
    main()
