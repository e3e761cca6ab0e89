"""Idle stop and preemption on real lab VMs: a node with no build powers itself off (its
container stops, Compute Engine shows it TERMINATED, `inv status` says since when), a running
container keeps it up, and the next build wakes it; a preempted Spot VM goes TERMINATED and
its container stops. The host's QEMU handlers survive both (a lab VM shares this machine's
kernel).

Each farm is its own project, so nothing here meets another test's VMs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from google.cloud import compute_v1

from .conftest import ENDPOINT, KW, REPO, inv, write_inventory

pytestmark = pytest.mark.lab

ZONE = "us-central1-a"
AMD64 = "  - {name: amd64, platform: linux/amd64, machine_type: n2-standard-2}\n"
BUSY_IMAGE = "127.0.0.1:5000/lab/debian-run:bookworm"
QEMU = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")


@pytest.fixture
def farm(lab, tmp_path):
    """A one-node farm in its own project; destroyed afterwards whatever the test did."""
    made: list[Path] = []

    def make(project: str, name: str, nodes: str, extra: str = "") -> Path:
        path = write_inventory(tmp_path / f"{project}.yaml", lab, project, name, nodes,
                               extra=extra)
        made.append(path)
        return path

    yield make
    for path in made:
        inv("destroy", "-i", str(path), "--yes")


def vm_status(project: str, vm: str) -> str:
    return compute_v1.InstancesClient(**KW).get(project=project, zone=ZONE, instance=vm).status


def container(project: str, vm: str) -> dict:
    """The VM's container as docker inspects it ({} if there is none)."""
    ids = subprocess.run(["docker", "ps", "-aq", "--filter",
                          f"label=archfarm.lab.vm={project}/{ZONE}/{vm}"],
                         capture_output=True, text=True, check=True).stdout.split()
    if not ids:
        return {}
    out = subprocess.run(["docker", "inspect", ids[0]], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)[0]


def wait_until(what, seconds: float, step: float = 1.0):
    deadline = time.monotonic() + seconds
    while True:
        value = what()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def test_an_idle_node_powers_itself_off_and_the_next_build_wakes_it(farm):
    project, vm = "archfarm-idle", "idle-amd64"
    path = farm(project, "idle", AMD64, extra="idle_stop_minutes: 0.25\n")
    code, out, err = inv("vms", "-i", str(path))
    assert code == 0, err
    code, out, err = inv("configure", "-i", str(path))
    assert code == 0, err
    assert "idle stop" in out["nodes"]["amd64"]["changes"], out
    # A container running on the node's engine (what a build's RUN step is) keeps it up
    # past its 15 s of idle time.
    name = container(project, vm)["Name"].lstrip("/")
    started = time.monotonic()
    busy = subprocess.run(["docker", "exec", name, "docker", "run", "-d", "--rm", BUSY_IMAGE,
                           "sleep", "35"], capture_output=True, text=True, timeout=120)
    assert busy.returncode == 0, busy.stderr
    # The settings read back: a re-run changes nothing, the timer is verified active.
    code, out, err = inv("configure", "-i", str(path), "--check")
    assert code == 0, err
    assert out["nodes"]["amd64"]["changes"] == [], out
    assert inv("register", "-i", str(path))[0] == 0  # a build node, for the wake below
    time.sleep(max(0.0, 30 - (time.monotonic() - started)))
    assert vm_status(project, vm) == "RUNNING"
    # Once the container is gone, 15 s with nothing: the guest powers off, the fake sees
    # its container stop and Compute Engine shows the VM TERMINATED with no API call.
    assert wait_until(lambda: vm_status(project, vm) == "TERMINATED", 120), vm_status(project, vm)
    assert container(project, vm)["State"]["Running"] is False
    assert QEMU.exists(), "the VM's shutdown left this machine without its QEMU handler"
    code, out, err = inv("status", "-i", str(path))
    assert code == 0, err
    [node] = out["nodes"]
    assert node["status"] == "TERMINATED" and node["since"], node
    assert node["idle_stop_minutes"] == 0.25
    table = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(REPO),
                            "status", "-i", str(path)], capture_output=True, text=True,
                           timeout=120, env=dict(os.environ))
    assert " stopped " in table.stdout and " s ago" in table.stdout, table.stdout
    # The next build wakes it: started, its engine answering over the pinned ssh, built.
    code, out, err = inv("build", "-i", str(path), "--context", str(REPO / "examples/hello"),
                         "--tag", "127.0.0.1:5000/idle/hello:woken", "--push")
    assert code == 0, err
    [row] = out["platforms"]
    assert row["node"] == "amd64" and row["wake"] > 0, row
    assert vm_status(project, vm) == "RUNNING"


@pytest.fixture
def spot_vm(lab):
    """A Spot lab VM that stops when preempted (instanceTerminationAction STOP, as archfarm's
    own Spot nodes without max_run_hours), made with the client; deleted afterwards."""
    project, vm = "archfarm-preempt", "preempt-spot"
    client = compute_v1.InstancesClient(**KW)
    ops = compute_v1.ZoneOperationsClient(**KW)
    nic = compute_v1.NetworkInterface(network="global/networks/default", access_configs=[
        compute_v1.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")])
    op = client.insert_unary(project=project, zone=ZONE, instance_resource=compute_v1.Instance(
        name=vm, machine_type=f"zones/{ZONE}/machineTypes/n2-standard-2",
        disks=[compute_v1.AttachedDisk(
            boot=True, auto_delete=True, initialize_params=compute_v1.AttachedDiskInitializeParams(
                source_image="projects/debian-cloud/global/images/family/debian-13"))],
        network_interfaces=[nic],
        scheduling=compute_v1.Scheduling(provisioning_model="SPOT",
                                         instance_termination_action="STOP")))
    ops.wait(project=project, zone=ZONE, operation=op.name)
    yield project, vm
    op = client.delete_unary(project=project, zone=ZONE, instance=vm)
    ops.wait(project=project, zone=ZONE, operation=op.name)


def test_a_preempted_spot_vm_is_terminated_and_its_container_stops(spot_vm):
    project, vm = spot_vm
    assert wait_until(lambda: container(project, vm).get("State", {}).get("Running"), 60)
    request = urllib.request.Request(
        f"{ENDPOINT}/_fake/preempt", method="POST",
        data=json.dumps({"project": project, "zone": ZONE, "instance": vm}).encode())
    with urllib.request.urlopen(request, timeout=30) as answer:
        op = json.loads(answer.read())
    assert op["operationType"] == "compute.instances.preempted", op
    done = compute_v1.ZoneOperationsClient(**KW).wait(project=project, zone=ZONE,
                                                      operation=op["name"])
    assert done.status == compute_v1.Operation.Status.DONE
    assert done.status_message == "Instance was preempted."
    instance = compute_v1.InstancesClient(**KW).get(project=project, zone=ZONE, instance=vm)
    assert instance.status == "TERMINATED" and instance.last_stop_timestamp
    assert container(project, vm)["State"]["Running"] is False
    assert QEMU.exists(), "the preemption left this machine without its QEMU handler"
