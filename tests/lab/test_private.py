"""A private farm in the lab (issue 17): an amd64 bastion with an external address and an
arm64 node with none, provisioned and built through the bastion with `inv provision` and
`inv build`, checked in the API, the firewall, the ssh config, the pushed index and the
private VM's own sshd log (only the bastion ever connected to it)."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from pathlib import Path

import pytest
from google.cloud import compute_v1

from provision.buildx import register
from provision.lab.containers import LAB_SUBNET

from .conftest import KW, REPO, inv

pytestmark = pytest.mark.lab

PROJECT = "archfarm-private"
FARM = "pv"
REGISTRY = "127.0.0.1:5000"


@pytest.fixture(scope="module")
def private_farm(lab, tmp_path_factory):
    """The farm provisioned once for the module, destroyed after it."""
    tmp = tmp_path_factory.mktemp("private")
    path = tmp / "private.yaml"
    path.write_text(f"""
farm: {FARM}
gcp:
  project: {PROJECT}
  zones: [us-central1-a]
  api_endpoint: {lab}
  ssh_source_ranges: [127.0.0.1/32]
  external_ip: false
ssh: {{user: builder, private_key: {tmp}/farm-key}}
docker: {{package: docker.io}}
nodes:
  - {{name: gate, platform: linux/amd64, machine_type: e2-small, bastion: true,
      external_ip: true}}
  - {{name: arm64, platform: linux/arm64, machine_type: t2a-standard-2}}
""")
    try:
        code, out, err = inv("provision", "-i", str(path))
        assert code == 0, err
        yield path, out
    finally:
        inv("destroy", "-i", str(path), "--yes")


def instance(name: str) -> compute_v1.Instance:
    return compute_v1.InstancesClient(**KW).get(project=PROJECT, zone="us-central1-a",
                                                instance=name)


def container(name: str) -> str:
    attrs = compute_v1.InstancesClient(**KW).get_guest_attributes(
        compute_v1.GetGuestAttributesInstanceRequest(project=PROJECT, zone="us-central1-a",
                                                     instance=name,
                                                     query_path="archfarm-lab/"))
    return {i.key: i.value for i in attrs.query_value.items}["container"]


def test_the_private_node_has_only_an_internal_address_and_the_bastion_both(private_farm):
    _, out = private_farm
    assert all(r["failed"] == 0 and not r["unreachable"] for r in out["nodes"].values()), out
    private, bastion = instance(f"{FARM}-arm64"), instance(f"{FARM}-gate")
    assert not private.network_interfaces[0].access_configs  # no natIP, not even a slot
    assert ipaddress.ip_address(private.network_interfaces[0].network_i_p) in LAB_SUBNET
    assert ipaddress.ip_address(bastion.network_interfaces[0].access_configs[0].nat_i_p
                                ).is_loopback
    assert ipaddress.ip_address(bastion.network_interfaces[0].network_i_p) in LAB_SUBNET


def test_the_firewall_lets_ssh_in_to_the_bastion_and_from_it_to_the_farm(private_farm):
    rules = {r.name: r for r in compute_v1.FirewallsClient(**KW).list(project=PROJECT)}
    outside, inside = rules[f"archfarm-{FARM}-ssh"], rules[f"archfarm-{FARM}-ssh-bastion"]
    assert list(outside.source_ranges) == ["127.0.0.1/32"]
    assert list(outside.target_tags) == [f"archfarm-{FARM}-public"]
    assert list(inside.source_tags) == [f"archfarm-{FARM}-bastion"]
    assert list(inside.target_tags) == [f"archfarm-{FARM}"]
    assert list(instance(f"{FARM}-gate").tags.items) == [
        f"archfarm-{FARM}", f"archfarm-{FARM}-public", f"archfarm-{FARM}-bastion"]


def test_ssh_reaches_the_private_node_through_the_bastion_only(private_farm):
    config = register.farm_config(FARM)
    blocks = config.read_text().split("\n\n")
    private = next(b for b in blocks if b.startswith(f"Host archfarm-{FARM}-arm64\n"))
    assert f"  ProxyJump archfarm-{FARM}-gate" in private.splitlines()
    done = subprocess.run(["ssh", "-F", str(config), f"archfarm-{FARM}-arm64", "hostname"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{FARM}-arm64"  # the VM's own name: it is that VM
    # The private VM's sshd saw every login (configure's Fabric, docker's ssh, this one) come
    # from the bastion's internal address: nothing on this machine connected to it directly.
    gate_ip = instance(f"{FARM}-gate").network_interfaces[0].network_i_p
    log = subprocess.run(["docker", "exec", container(f"{FARM}-arm64"), "journalctl",
                          "--no-pager", "-o", "cat"], capture_output=True, text=True,
                         timeout=60).stdout
    accepted = [line for line in log.splitlines() if "Accepted publickey" in line]
    assert accepted, log[-2000:]
    assert all(f" from {gate_ip} " in line for line in accepted), accepted


def test_a_build_runs_each_platform_on_its_node_through_the_bastion(private_farm):
    path, _ = private_farm
    tag = f"{REGISTRY}/{FARM}/hello:test"
    code, out, err = inv("build", "-i", str(path), "--context", str(REPO / "examples/hello"),
                         "--tag", tag, "--push")
    assert code == 0, err
    assert {p["platform"]: p["node"] for p in out["platforms"]} == {
        "linux/arm64": "arm64", "linux/amd64": "gate"}
    raw = json.loads(subprocess.run(["docker", "buildx", "imagetools", "inspect", "--raw", tag],
                                    capture_output=True, text=True, timeout=120).stdout)
    listed = {f"{m['platform']['os']}/{m['platform']['architecture']}"
              for m in raw["manifests"] if m["platform"]["os"] != "unknown"}
    assert listed == {"linux/amd64", "linux/arm64"}


def test_a_stopped_private_node_is_woken_and_built_on_through_the_bastion(private_farm):
    path, _ = private_farm
    client = compute_v1.InstancesClient(**KW)
    # Never `.result()`: it polls through a client that ignores api_endpoint (the real cloud).
    client.stop(project=PROJECT, zone="us-central1-a", instance=f"{FARM}-arm64")
    deadline = time.monotonic() + 120
    while instance(f"{FARM}-arm64").status != "TERMINATED":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    code, out, err = inv("build", "-i", str(path), "--context", str(REPO / "examples/hello"),
                         "--tag", f"{REGISTRY}/{FARM}/hello:woken", "--push",
                         "--platform", "linux/arm64")
    assert code == 0, err
    [row] = out["platforms"]
    assert row["node"] == "arm64" and row["wake"] > 0, row
    assert "ProxyJump" in register.farm_config(FARM).read_text()  # still through the bastion
    assert instance(f"{FARM}-arm64").status == "RUNNING"


def test_doctor_reaches_the_bastion_and_the_private_node_through_it(private_farm):
    path, _ = private_farm
    code, out, err = inv("doctor", "-i", str(path))
    found = {c["check"]: c for c in out["checks"]}
    assert found["bastion gate"]["status"] == "ok", found["bastion gate"]
    line = found["private node arm64"]
    assert line["status"] == "ok", line
    assert line["detail"].startswith("reached at 10.128.") and "through bastion gate" in (
        line["detail"])


def test_destroy_removes_both_rules(private_farm):
    path, _ = private_farm
    code, out, err = inv("destroy", "-i", str(path), "--yes")
    assert code == 0, err
    assert {f"archfarm-{FARM}-ssh", f"archfarm-{FARM}-ssh-bastion"} <= set(out["nodes"])
    names = {r.name for r in compute_v1.FirewallsClient(**KW).list(project=PROJECT)}
    assert not names & {f"archfarm-{FARM}-ssh", f"archfarm-{FARM}-ssh-bastion"}
    assert not Path(register.farm_config(FARM)).exists()
