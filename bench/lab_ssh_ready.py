"""Lab: time from instances.insert to an SSH login that verifies the published host key.

    inv lab.up && python bench/lab_ssh_ready.py [--at-once 4] [--quick]

For one VM, then `--at-once` (4) inserted at once. Each VM is polled as archfarm polls one:
its getGuestAttributes until host keys appear, then `ssh -o StrictHostKeyChecking=yes` until
it answers. Also times `inv lab.up` warm (everything running) against its 10 s target. Every
VM it inserts (project `bench-lab`) is deleted before it exits, even after a failure.

--quick: two VMs at once, not four.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from _common import add_quick, figures, sizes

REPO = Path(__file__).resolve().parents[1]
ENDPOINT = "http://127.0.0.1:8089"
PROJECT, ZONE = "bench-lab", "us-central1-a"
KW = {"credentials": AnonymousCredentials(), "transport": "rest",
      "client_options": {"api_endpoint": ENDPOINT}}
READY_WITHIN = 300  # seconds: a VM not SSH-ready by then fails the bench instead of hanging it


def vm_body(name: str, pub: str) -> compute_v1.Instance:
    return compute_v1.Instance(
        name=name, machine_type=f"zones/{ZONE}/machineTypes/t2a-standard-2",
        disks=[compute_v1.AttachedDisk(boot=True, auto_delete=True, initialize_params=(
            compute_v1.AttachedDiskInitializeParams(
                source_image="projects/debian-cloud/global/images/family/debian-13-arm64")))],
        network_interfaces=[compute_v1.NetworkInterface(access_configs=[
            compute_v1.AccessConfig(name="External NAT")])],
        metadata=compute_v1.Metadata(items=[
            compute_v1.Items(key="ssh-keys", value=f"bench:{pub}"),
            compute_v1.Items(key="enable-guest-attributes", value="TRUE")]))


def ssh_ready_seconds(name: str, key: Path, workdir: Path, out: list) -> None:
    client = compute_v1.InstancesClient(**KW)
    started = time.monotonic()
    deadline = started + READY_WITHIN
    client.insert_unary(compute_v1.InsertInstanceRequest(
        project=PROJECT, zone=ZONE, instance_resource=vm_body(name, key.with_suffix(".pub")
                                                              .read_text().strip()),
        request_id=str(uuid.uuid4())))
    known = workdir / f"known-{name}"
    while True:
        try:
            attrs = client.get_guest_attributes(compute_v1.GetGuestAttributesInstanceRequest(
                project=PROJECT, zone=ZONE, instance=name, query_path="hostkeys/"))
            break
        except exceptions.NotFound:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: no host keys after {READY_WITHIN} s") from None
            time.sleep(0.1)
    vm = client.get(project=PROJECT, zone=ZONE, instance=name)
    ip = vm.network_interfaces[0].access_configs[0].nat_i_p
    known.write_text("".join(f"{ip} {i.key} {i.value}\n" for i in attrs.query_value.items))
    while subprocess.run(["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=yes",
                          "-o", f"UserKnownHostsFile={known}", "-o", "BatchMode=yes",
                          "-o", "ConnectTimeout=2", f"bench@{ip}", "true"],
                         capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} ({ip}): no SSH login after {READY_WITHIN} s")
        time.sleep(0.1)
    out.append(time.monotonic() - started)


def run(count: int, key: Path, workdir: Path) -> list[float]:
    """`count` VMs inserted at once, each timed to SSH-ready; then deleted, whatever happened."""
    times: list[float] = []
    errors: list[Exception] = []
    names = [f"bench-{count}-{i}-{uuid.uuid4().hex[:4]}" for i in range(count)]

    def one(name: str) -> None:
        try:
            ssh_ready_seconds(name, key, workdir, times)
        except Exception as e:  # reported by run(), after the VMs are gone
            errors.append(e)

    # Daemon threads: Ctrl-C in the main thread still reaches the deletes below.
    threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in names]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        delete(names)
    if errors:
        sys.exit(f"{len(errors)} of {count} VMs not SSH-ready: {errors}")
    return times


def delete(names: list[str]) -> None:
    """Delete the bench's VMs; one never inserted (or already gone) is skipped."""
    client = compute_v1.InstancesClient(**KW)
    ops = compute_v1.ZoneOperationsClient(**KW)
    for name in names:
        try:
            op = client.delete_unary(project=PROJECT, zone=ZONE, instance=name)
        except exceptions.NotFound:
            continue
        ops.wait(project=PROJECT, zone=ZONE, operation=op.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--at-once", type=int, help="VMs inserted together (default 4; 2 with"
                        " --quick)")
    add_quick(parser)
    args = parser.parse_args()
    sizes(args, at_once=(4, 2))
    workdir = Path(tempfile.mkdtemp(prefix="archfarm-bench-"))
    try:
        key = workdir / "key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True)
        with figures("lab_ssh_ready.py, insert to SSH-ready in the lab", args.quick):
            started = time.monotonic()
            subprocess.run([sys.executable, "-m", "invoke", "lab.up"], cwd=REPO, check=True,
                           capture_output=True)
            print(f"inv lab.up, warm (lab already up): {time.monotonic() - started:.2f} s;"
                  " target < 10 s")
            one = run(1, key, workdir)
            print(f"insert -> SSH-ready, one VM: {one[0]:.2f} s; target < 10 s")
            many = run(args.at_once, key, workdir)
            print(f"insert -> SSH-ready, {args.at_once} VMs at once: median"
                  f" {statistics.median(many):.2f} s, slowest {max(many):.2f} s; target < 10 s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
