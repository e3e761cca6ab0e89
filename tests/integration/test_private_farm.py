"""A farm of 12 nodes against a fresh project's quotas (IN_USE_ADDRESSES 8): with private
nodes behind one bastion it provisions, with an external address each it cannot, and says
which quota stopped it. The real client against the fake."""

from __future__ import annotations

import pytest
from google.cloud import compute_v1

from provision.cloud.tasks import destroy as destroy_task
from provision.cloud.tasks import vms as vms_task
from provision.doctor import doctor as doctor_task
from provision.fakegce import MUTATING
from provision.status import status as status_task

from .conftest import PROJECT, run_json, vms_of
from .test_doctor import tools

# 6 x t2a-standard-1 (6 T2A vCPUs) and 6 x e2-small (12 E2 vCPUs): 18 of the 24 CPUS; 10 GB
# boot disks, 120 of the 500 GB of SSD_TOTAL_GB.
TWELVE = """
farm: big
gcp:
  project: test-project
  zones: [us-central1-a]
  api_endpoint: {endpoint}
  ssh_source_ranges: [127.0.0.1/32]
  external_ip: {external}
ssh: {{private_key: {key}}}
nodes:
  - {{name: gate, platform: linux/amd64, machine_type: e2-small, disk_gb: 10, bastion: true,
      external_ip: true}}
  - {{name: x86, platform: linux/amd64, machine_type: e2-small, disk_gb: 10, count: 5}}
  - {{name: arm, platform: linux/arm64, machine_type: t2a-standard-1, disk_gb: 10, count: 6}}
"""

SMALL = """
farm: small
gcp:
  project: test-project
  zones: [us-central1-a]
  api_endpoint: {endpoint}
  ssh_source_ranges: [127.0.0.1/32]
  external_ip: false
ssh: {{private_key: {key}}}
nodes:
  - {{name: gate, platform: linux/amd64, machine_type: e2-small, disk_gb: 10, bastion: true,
      external_ip: true}}
  - {{name: arm, platform: linux/arm64, machine_type: t2a-standard-1, disk_gb: 10}}
"""


def firewall(fake, name: str) -> compute_v1.Firewall:
    return fake.client(compute_v1.FirewallsClient).get(project=PROJECT, firewall=name)


def test_twelve_private_nodes_fit_a_fresh_projects_address_quota(fake_gce, write_inventory,
                                                                   capsys):
    fake_gce.set_faults(operation_seconds=0.02)
    path = write_inventory(TWELVE.replace("{external}", "false"))
    code, result = run_json(lambda json_mode: vms_task(inventory=str(path),
                                                       json_mode=json_mode), capsys=capsys)
    assert code == 0, result
    vms = vms_of(fake_gce)
    assert len(vms) == 12 and all(vm.status == "RUNNING" for vm in vms.values())
    with_address = {name for name, vm in vms.items()
                    if vm.network_interfaces[0].access_configs}
    assert with_address == {"big-gate"}
    assert all(vm.network_interfaces[0].network_i_p for vm in vms.values())
    quotas = {q.metric: q.usage for q in fake_gce.client(compute_v1.RegionsClient).get(
        project=PROJECT, region="us-central1").quotas}
    assert quotas["IN_USE_ADDRESSES"] == 1.0
    assert list(vms["big-gate"].tags.items) == ["archfarm-big", "archfarm-big-public",
                                                "archfarm-big-bastion"]
    assert list(vms["big-arm-1"].tags.items) == ["archfarm-big"]
    outside, inside = firewall(fake_gce, "archfarm-big-ssh"), firewall(fake_gce,
                                                                      "archfarm-big-ssh-bastion")
    assert list(outside.source_ranges) == ["127.0.0.1/32"]
    assert list(outside.target_tags) == ["archfarm-big-public"]
    assert list(inside.source_tags) == ["archfarm-big-bastion"]
    assert list(inside.target_tags) == ["archfarm-big"] and not inside.source_ranges
    # inv status says where each node is reached: the bastion at its address, the rest
    # at their internal address through it
    code, status = run_json(lambda json_mode: status_task(inventory=str(path),
                                                          json_mode=json_mode), capsys=capsys)
    nodes = {n["name"]: n for n in status["nodes"]}
    assert nodes["gate"]["via"] is None and nodes["gate"]["external_ip"]
    assert nodes["arm-1"]["external_ip"] is None and nodes["arm-1"]["via"] == "gate"
    assert nodes["arm-1"]["internal_ip"] == vms["big-arm-1"].network_interfaces[0].network_i_p
    # destroy takes both rules with the VMs
    assert destroy_task(inventory=str(path), yes=True) == 0
    rules = fake_gce.client(compute_v1.FirewallsClient).list(project=PROJECT)
    assert vms_of(fake_gce) == {} and [r.name for r in rules] == []


def test_the_same_farm_with_an_address_each_fails_on_the_address_quota(fake_gce,
                                                                       write_inventory, capsys):
    fake_gce.set_faults(operation_seconds=0.02)
    path = write_inventory(TWELVE.replace("{external}", "true"))
    code, result = run_json(lambda json_mode: vms_task(inventory=str(path),
                                                       json_mode=json_mode), capsys=capsys)
    assert code == 1
    failed = {name: r for name, r in result["nodes"].items() if r["failed"]}
    assert len(vms_of(fake_gce)) == 8 and len(failed) == 4
    for entry in failed.values():
        assert "Quota 'IN_USE_ADDRESSES' exceeded.  Limit: 8.0 in region us-central1." in (
            entry["note"]), entry
    assert "firewall" not in str(failed)


# -- inv doctor ------------------------------------------------------------------------------------

@pytest.fixture
def stand_in_tools(tmp_path, monkeypatch):
    """docker and ssh stand-ins on PATH (test_doctor's): never the machine's real docker."""
    monkeypatch.setenv("PATH", str(tools(tmp_path / "bin")))
    monkeypatch.delenv("ARCHFARM_GCE_ENDPOINT", raising=False)


def checks(report: dict) -> dict[str, dict]:
    return {c["check"]: c for c in report["checks"]}


def test_doctor_says_twelve_addresses_exceed_the_quota_and_suggests_private_nodes(
        fake_gce, write_inventory, stand_in_tools, capsys):
    path = write_inventory(TWELVE.replace("{external}", "true"))
    code, report = run_json(doctor_task, inventory=str(path), capsys=capsys)
    assert code == 1
    line = checks(report)["quota IN_USE_ADDRESSES in us-central1"]
    assert line["status"] == "problem" and line["detail"].startswith("12 address(es) more")
    assert "`gcp.external_ip: false`" in line["fix"] and "`bastion: true`" in line["fix"]
    assert "private nodes" not in str(report["checks"])  # no bastion line for a public farm


def test_doctor_counts_one_address_for_the_private_farm_and_plans_its_bastion(
        fake_gce, write_inventory, stand_in_tools, capsys):
    path = write_inventory(TWELVE.replace("{external}", "false"))
    code, report = run_json(doctor_task, inventory=str(path), capsys=capsys)
    found = checks(report)
    assert found["quota IN_USE_ADDRESSES in us-central1"]["status"] == "ok"
    assert found["quota IN_USE_ADDRESSES in us-central1"]["detail"].startswith(
        "1 address(es) more for gate")
    assert found["bastion gate"]["status"] == "ok"
    assert "`inv vms` creates it" in found["bastion gate"]["detail"]
    assert found["firewall rule archfarm-big-ssh-bastion"]["status"] == "ok"
    assert code == 0, report
    assert not [r for r in fake_gce.requests() if r["method"] in MUTATING]


def test_doctor_names_a_bastion_that_does_not_answer(fake_gce, write_inventory, stand_in_tools,
                                                     capsys):
    """The bare fake's VMs have no host behind them: the running bastion is a problem, and
    the private nodes behind it are not tried."""
    fake_gce.set_faults(operation_seconds=0.02)
    path = write_inventory(SMALL)
    assert vms_task(inventory=str(path)) == 0
    code, report = run_json(doctor_task, inventory=str(path), capsys=capsys)
    assert code == 1
    line = checks(report)["bastion gate"]
    assert line["status"] == "problem" and "does not answer SSH" in line["detail"]
    assert "private node arm" not in checks(report)


def test_a_farm_whose_nodes_all_get_an_address_again_loses_the_bastion_rule(
        fake_gce, write_inventory):
    fake_gce.set_faults(operation_seconds=0.02)
    private = write_inventory(SMALL)
    assert vms_task(inventory=str(private)) == 0
    assert list(firewall(fake_gce, "archfarm-small-ssh").target_tags) == ["archfarm-small-public"]
    public = write_inventory(SMALL.replace("  external_ip: false\n", ""), name="public.yaml")
    assert vms_task(inventory=str(public)) == 0
    names = [r.name for r in fake_gce.client(compute_v1.FirewallsClient).list(project=PROJECT)]
    assert names == ["archfarm-small-ssh"]
    assert list(firewall(fake_gce, "archfarm-small-ssh").target_tags) == ["archfarm-small"]
