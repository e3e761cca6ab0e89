"""Lab: time from instances.insert to an SSH login that verifies the published host key.

    inv lab.up && python bench/lab_ssh_ready.py

For one VM, then four inserted at once. Each VM is polled as archfarm polls one: its
getGuestAttributes until host keys appear, then `ssh -o StrictHostKeyChecking=yes` until it
answers. Also times `inv lab.up` warm (everything running) against its 10 s target.
"""

from __future__ import annotations

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

ENDPOINT = "http://127.0.0.1:8089"
PROJECT, ZONE = "bench-lab", "us-central1-a"
KW = {"credentials": AnonymousCredentials(), "transport": "rest",
      "client_options": {"api_endpoint": ENDPOINT}}


def vm_body(name: str, pub: str) -> compute_v1.Instance:
    return compute_v1.Instance(
        name=name, machine_type=f"zones/{ZONE}/machineTypes/t2a-standard-2",
        disks=[compute_v1.AttachedDisk(boot=True, auto_delete=True, initialize_params=(
            compute_v1.AttachedDiskInitializeParams(
                source_image="projects/debian-cloud/global/images/family/debian-12-arm64")))],
        network_interfaces=[compute_v1.NetworkInterface(access_configs=[
            compute_v1.AccessConfig(name="External NAT")])],
        metadata=compute_v1.Metadata(items=[
            compute_v1.Items(key="ssh-keys", value=f"bench:{pub}"),
            compute_v1.Items(key="enable-guest-attributes", value="TRUE")]))


def ssh_ready_seconds(name: str, key: Path, workdir: Path, out: list) -> None:
    client = compute_v1.InstancesClient(**KW)
    started = time.monotonic()
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
            time.sleep(0.1)
    vm = client.get(project=PROJECT, zone=ZONE, instance=name)
    ip = vm.network_interfaces[0].access_configs[0].nat_i_p
    known.write_text("".join(f"{ip} {i.key} {i.value}\n" for i in attrs.query_value.items))
    while subprocess.run(["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=yes",
                          "-o", f"UserKnownHostsFile={known}", "-o", "BatchMode=yes",
                          "-o", "ConnectTimeout=2", f"bench@{ip}", "true"],
                         capture_output=True).returncode != 0:
        time.sleep(0.1)
    out.append(time.monotonic() - started)


def run(count: int, key: Path, workdir: Path) -> list[float]:
    times: list[float] = []
    names = [f"bench-{count}-{i}-{uuid.uuid4().hex[:4]}" for i in range(count)]
    threads = [threading.Thread(target=ssh_ready_seconds, args=(n, key, workdir, times))
               for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    client = compute_v1.InstancesClient(**KW)
    ops = compute_v1.ZoneOperationsClient(**KW)
    for name in names:
        op = client.delete_unary(project=PROJECT, zone=ZONE, instance=name)
        ops.wait(project=PROJECT, zone=ZONE, operation=op.name)
    return times


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="archfarm-bench-"))
    key = workdir / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "invoke", "lab.up"], check=True, capture_output=True)
    print(f"inv lab.up, warm (lab already up): {time.monotonic() - started:.2f} s;"
          " target < 10 s")
    one = run(1, key, workdir)
    print(f"insert -> SSH-ready, one VM: {one[0]:.2f} s; target < 10 s")
    four = run(4, key, workdir)
    print(f"insert -> SSH-ready, four VMs at once: median {statistics.median(four):.2f} s,"
          f" slowest {max(four):.2f} s; target < 10 s")


if __name__ == "__main__":
    main()
