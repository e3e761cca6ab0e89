"""`inv vms` against the fake: create, converge, fail over, fail per node, prune."""

from __future__ import annotations

import stat

from google.cloud import compute_v1

from provision.cloud.tasks import vms as vms_task

from .conftest import PROJECT, mutations, run_json, run_vms, vms_of


def test_creates_every_node_with_labels_metadata_key_and_firewall(fake_gce, inventory, tmp_path,
                                                                  capsys):
    assert run_vms(inventory) == 0
    vms = vms_of(fake_gce)
    assert set(vms) == {"t-arm", "t-x86"}
    arm = vms["t-arm"]
    assert arm.status == "RUNNING"
    assert dict(arm.labels) == {"managed-by": "archfarm", "archfarm-farm": "t",
                                "archfarm-node": "arm", "archfarm-platform": "linux-arm64"}
    meta = {i.key: i.value for i in arm.metadata.items}
    assert meta["enable-guest-attributes"] == "TRUE"
    assert meta["block-project-ssh-keys"] == "TRUE"
    key_file = tmp_path / "ssh" / "farm-key"
    pub = (tmp_path / "ssh" / "farm-key.pub").read_text().split()
    assert meta["ssh-keys"] == f"builder:{pub[0]} {pub[1]} archfarm-t"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert list(arm.tags.items) == ["archfarm-t"]
    assert arm.disks[0].disk_size_gb == 50 and arm.disks[0].architecture == "ARM64"
    rule = fake_gce.client(compute_v1.FirewallsClient).get(project=PROJECT,
                                                           firewall="archfarm-t-ssh")
    assert list(rule.source_ranges) == ["127.0.0.1/32"]
    assert list(rule.target_tags) == ["archfarm-t"]
    out = capsys.readouterr().out
    assert "created in us-central1-a" in out


def test_rerun_makes_no_mutating_call_and_at_most_two_calls(fake_gce, inventory, capsys):
    assert run_vms(inventory) == 0
    fake_gce.server.log.clear()
    code, result = run_json(lambda json_mode: vms_task(inventory=str(inventory),
                                                       json_mode=json_mode), capsys=capsys)
    assert code == 0
    counts = {n: {k: r[k] for k in ("ok", "changed", "failed", "unreachable")}
              for n, r in result["nodes"].items()}
    assert counts == {n: {"ok": 1, "changed": 0, "failed": 0, "unreachable": False}
                      for n in ("arm", "x86", "archfarm-t-ssh")}
    assert mutations(fake_gce) == []
    assert len(fake_gce.requests()) <= 2


def test_at_most_three_api_calls_per_created_vm(fake_gce, inventory):
    assert run_vms(inventory) == 0
    vm_calls = [r for r in fake_gce.requests() if r["method"].startswith(
        ("instances.insert", "zoneOperations"))]
    assert len(vm_calls) <= 3 * 2


def test_check_makes_no_mutating_call(fake_gce, inventory, capsys):
    assert run_vms(inventory, check=True) == 0
    assert mutations(fake_gce) == []
    assert vms_of(fake_gce) == {}
    out = capsys.readouterr().out
    assert "create" in out and "check mode: nothing was changed" in out


def test_stockout_in_the_first_zone_lands_the_node_in_the_next(fake_gce, inventory, capsys):
    fake_gce.set_faults(operation_seconds=0.05,
                        stockouts=[{"zone": "us-central1-a", "machine_family": "t2a"}])
    assert run_vms(inventory) == 0
    vms = vms_of(fake_gce)
    assert vms["t-arm"].zone.endswith("/us-central1-b")
    assert vms["t-x86"].zone.endswith("/us-central1-a")  # n2 was not short
    out = capsys.readouterr().out
    assert "us-central1-a: ZONE_RESOURCE_POOL_EXHAUSTED" in out
    assert "created in us-central1-b" in out


def test_regional_quota_skips_the_rest_of_the_region(fake_gce, write_inventory, capsys):
    path = write_inventory("""
        farm: t
        gcp:
          project: test-project
          zones: [us-central1-a, us-central1-b, europe-west4-a]
          api_endpoint: {endpoint}
          ssh_source_ranges: [127.0.0.1/32]
        ssh: {{private_key: {key}}}
        nodes:
          - {{name: x86, platform: linux/amd64, machine_type: n2-standard-2}}
        """)
    fake_gce.set_faults(operation_seconds=0.05,
                        quota_exceeded=[{"region": "us-central1", "machine_family": "n2"}])
    assert run_vms(path) == 0
    assert vms_of(fake_gce)["t-x86"].zone.endswith("/europe-west4-a")
    inserts = [r["path"] for r in fake_gce.requests() if r["method"] == "instances.insert"]
    assert [p.split("/zones/")[1].split("/")[0] for p in inserts] == ["us-central1-a",
                                                                      "europe-west4-a"]
    assert "skipped us-central1-b: quota exhausted in us-central1" in capsys.readouterr().out


def test_rate_limit_and_503_are_retried_without_a_duplicate_vm(fake_gce, inventory):
    fake_gce.set_faults(operation_seconds=0.05, http_errors=[
        {"method": "instances.aggregatedList", "status": 403, "reason": "rateLimitExceeded",
         "count": 1},
        # the insert takes effect but its answer is lost: only the requestId prevents a twin
        {"method": "instances.insert", "status": 503, "reason": "backendError", "count": 1,
         "after": True},
        {"method": "zoneOperations.wait", "status": 403, "reason": "rateLimitExceeded",
         "count": 1},
    ])
    assert run_vms(inventory) == 0
    assert set(vms_of(fake_gce)) == {"t-arm", "t-x86"}
    inserts = [r for r in fake_gce.requests() if r["method"] == "instances.insert"]
    assert [r["status"] for r in inserts].count(503) == 1 and len(inserts) == 3


def test_one_node_failing_leaves_the_others_and_a_rerun_converges(fake_gce, inventory, capsys):
    every_zone = ["us-central1-a", "us-central1-b", "us-central1-f"]
    fake_gce.set_faults(operation_seconds=0.05, stockouts=[
        {"zone": z, "machine_family": "n2"} for z in every_zone])
    assert run_vms(inventory) == 1
    assert set(vms_of(fake_gce)) == {"t-arm"}  # no half-made x86 VM is left behind
    out = capsys.readouterr().out
    assert "x86" in out and "no zone could take it" in out
    fake_gce.set_faults(operation_seconds=0.05)
    assert run_vms(inventory) == 0
    assert set(vms_of(fake_gce)) == {"t-arm", "t-x86"}


def test_a_terminated_vm_is_started(fake_gce, inventory):
    assert run_vms(inventory) == 0
    client = fake_gce.client(compute_v1.InstancesClient)
    ops = fake_gce.client(compute_v1.ZoneOperationsClient)
    op = client.stop_unary(project=PROJECT, zone="us-central1-a", instance="t-x86")
    ops.wait(project=PROJECT, zone="us-central1-a", operation=op.name)
    assert run_vms(inventory) == 0
    assert vms_of(fake_gce)["t-x86"].status == "RUNNING"
    assert [r["method"] for r in mutations(fake_gce)][-1] == "instances.start"


def test_orphans_are_reported_and_deleted_only_with_prune(fake_gce, inventory,
                                                         write_inventory, capsys):
    assert run_vms(inventory) == 0
    smaller = write_inventory(inventory.read_text().split("  - name: x86")[0], "small.yaml")
    capsys.readouterr()
    assert run_vms(smaller) == 0
    assert "t-x86" in vms_of(fake_gce)
    assert "orphan" in capsys.readouterr().out
    assert run_vms(smaller, prune=True) == 0
    assert set(vms_of(fake_gce)) == {"t-arm"}


def test_limit_touches_only_the_named_nodes(fake_gce, inventory):
    assert run_vms(inventory, limit="x86") == 0
    assert set(vms_of(fake_gce)) == {"t-x86"}


# A farm in one zone, its nodes below (write_inventory fills endpoint and key).
ONE_ZONE = """
        farm: t
        gcp:
          project: test-project
          zones: [us-central1-a]
          api_endpoint: {endpoint}
          ssh_source_ranges: [127.0.0.1/32]
        ssh: {{private_key: {key}}}
        nodes:"""


def test_spot_and_max_run_hours_reach_the_scheduling(fake_gce, write_inventory):
    path = write_inventory(ONE_ZONE + """
          - {{name: arm, platform: linux/arm64, machine_type: t2a-standard-1, spot: true,
              max_run_hours: 8, count: 2}}
        """)
    assert run_vms(path) == 0
    vms = vms_of(fake_gce)
    assert set(vms) == {"t-arm-1", "t-arm-2"}
    sched = vms["t-arm-1"].scheduling
    assert sched.provisioning_model == "SPOT"
    assert sched.instance_termination_action == "DELETE"
    assert sched.max_run_duration.seconds == 8 * 3600


def test_a_spot_node_without_a_run_limit_is_stopped_when_preempted_not_deleted(
        fake_gce, write_inventory):
    path = write_inventory(ONE_ZONE + """
          - {{name: arm, platform: linux/arm64, machine_type: t2a-standard-1, spot: true}}
        """)
    assert run_vms(path) == 0
    sched = vms_of(fake_gce)["t-arm"].scheduling
    assert (sched.provisioning_model, sched.instance_termination_action) == ("SPOT", "STOP")
