"""A node woken for a build, against the fake with the real client: Compute Engine gives a
stopped VM a new ephemeral address when it starts again, and the wake reads it and rewrites
the farm's ssh config, the host keys still pinned under the node's alias. (The engine's answer
over ssh, the rest of a wake, is the lab's: tests/lab/test_build.py.)"""

from __future__ import annotations

import time

from google.cloud import compute_v1

from provision.buildx import register
from provision.buildx.wake import Waker
from provision.gce.clients import lazy_clients
from provision.hosts.directory import Directory
from provision.inventory import load
from provision.runner import Cancel

from .conftest import PROJECT, run_vms, vms_of


def stop(fake, name: str, zone: str) -> None:
    client = fake.client(compute_v1.InstancesClient)
    client.stop(project=PROJECT, zone=zone, instance=name)
    deadline = time.monotonic() + 30
    while client.get(project=PROJECT, zone=zone, instance=name).status != "TERMINATED":
        assert time.monotonic() < deadline
        time.sleep(0.05)


def host_line(farm: str, node: str) -> str:
    block = next(b for b in register.farm_config(farm).read_text().split("\n\n")
                 if b.startswith(f"Host archfarm-{farm}-{node}\n"))
    return next(line.strip() for line in block.splitlines() if "HostName" in line)


def test_a_woken_node_is_reached_at_its_new_address(fake_gce, inventory, tmp_path,
                                                    monkeypatch):
    monkeypatch.setattr(register, "ssh_dir", lambda: tmp_path / "ssh")
    fake_gce.set_faults(operation_seconds=0.02)
    assert run_vms(inventory) == 0
    farm = load(str(inventory))
    directory = Directory(farm, lazy_clients(farm.gcp.api_endpoint))
    for node in ("arm", "x86"):  # as configure and register leave them: cache and config
        directory.refresh(node, Cancel(), time.monotonic() + 30, lambda text: None)
    register.farm_config(farm.farm).parent.mkdir(parents=True)
    register.farm_config(farm.farm).write_text(register.render(farm, directory.hosts))
    vm = vms_of(fake_gce)["t-x86"]
    before = vm.network_interfaces[0].access_configs[0].nat_i_p
    assert host_line("t", "x86") == f"HostName {before}"
    stop(fake_gce, "t-x86", vm.zone.rsplit("/", 1)[-1])
    said: list[str] = []
    Waker(farm, Cancel(), {"x86"}).start("x86", said.append, time.monotonic() + 30)
    after = vms_of(fake_gce)["t-x86"].network_interfaces[0].access_configs[0].nat_i_p
    assert vms_of(fake_gce)["t-x86"].status == "RUNNING" and after != before
    assert host_line("t", "x86") == f"HostName {after}"
    assert host_line("t", "arm") == f"HostName {directory.hosts['arm'].address}"  # untouched
    assert "starting its VM (TERMINATED)" in said
    text = register.farm_config(farm.farm).read_text()
    assert "HostKeyAlias archfarm-t-x86" in text and "StrictHostKeyChecking yes" in text
