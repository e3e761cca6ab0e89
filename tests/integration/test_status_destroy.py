"""`inv status` and `inv destroy` against the fake."""

from __future__ import annotations

import re
import time

from google.cloud import compute_v1

from provision.cloud.tasks import destroy as destroy_task
from provision.status import status as status_task

from .conftest import LAB_LIKE, PROJECT, inv, mutations, run_json, run_vms, vms_of


def test_status_json_lists_every_node(fake_gce, inventory, capsys):
    assert run_vms(inventory) == 0
    code, status = run_json(lambda json_mode: status_task(inventory=str(inventory),
                                                          json_mode=json_mode), capsys=capsys)
    assert code == 0
    assert status["farm"] == "t"
    by_name = {n["name"]: n for n in status["nodes"]}
    assert by_name["arm"]["platform"] == "linux/arm64"
    assert by_name["arm"]["machine_type"] == "t2a-standard-2"
    assert by_name["x86"]["zone"] == "us-central1-a"
    assert by_name["x86"]["status"] == "RUNNING"
    assert by_name["x86"]["external_ip"].startswith("127.")
    assert by_name["x86"]["docker"] is None and by_name["x86"]["builds"] is None  # no SSH here
    assert set(by_name["x86"]) == {"name", "vm", "zone", "platform", "machine_type", "status",
                                   "since", "external_ip", "internal_ip", "via",
                                   "idle_stop_minutes", "docker",
                                   "emulated", "builder", "builds"}
    assert by_name["x86"]["since"] is None and by_name["x86"]["idle_stop_minutes"] is None


def test_status_shows_a_node_whose_guest_powered_off_as_stopped_since(
        fake_gce, write_inventory, capsys):
    inventory = write_inventory(LAB_LIKE.replace("nodes:", "idle_stop_minutes: 0.5\nnodes:"))
    assert run_vms(inventory) == 0
    client = fake_gce.client(compute_v1.InstancesClient)
    zone = vms_of(fake_gce)["t-x86"].zone.rsplit("/", 1)[-1]
    fake_gce.state.instances.guest_poweroff(PROJECT, zone, "t-x86")  # as POST /_fake/...
    deadline = time.monotonic() + 5
    while client.get(project=PROJECT, zone=zone, instance="t-x86").status != "TERMINATED":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    stopped = client.get(project=PROJECT, zone=zone, instance="t-x86").last_stop_timestamp
    code, status = run_json(lambda json_mode: status_task(inventory=str(inventory),
                                                          json_mode=json_mode), capsys=capsys)
    assert code == 0
    by_name = {n["name"]: n for n in status["nodes"]}
    assert by_name["x86"]["status"] == "TERMINATED" and by_name["x86"]["since"] == stopped
    assert by_name["x86"]["idle_stop_minutes"] == 0.5
    assert by_name["arm"]["status"] == "RUNNING" and by_name["arm"]["since"] is None
    assert status_task(inventory=str(inventory)) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.lstrip().startswith("x86"))
    assert re.search(r"stopped \d+ s ago", row), table  # seconds: the run's own pace
    assert "0.5 min" in row


def test_destroy_spares_an_unlabelled_vm_with_a_colliding_name(fake_gce, inventory, capsys):
    assert run_vms(inventory) == 0
    client = fake_gce.client(compute_v1.InstancesClient)
    ops = fake_gce.client(compute_v1.ZoneOperationsClient)
    stranger = compute_v1.Instance(
        name="t-x86", machine_type="zones/us-central1-b/machineTypes/e2-small",
        disks=[compute_v1.AttachedDisk(boot=True, auto_delete=True, initialize_params=(
            compute_v1.AttachedDiskInitializeParams(
                source_image="projects/debian-cloud/global/images/family/debian-12")))])
    op = client.insert_unary(project=PROJECT, zone="us-central1-b", instance_resource=stranger)
    ops.wait(project=PROJECT, zone="us-central1-b", operation=op.name)
    capsys.readouterr()
    assert destroy_task(inventory=str(inventory), yes=True) == 0
    left = vms_of(fake_gce)
    assert list(left) == ["t-x86"] and left["t-x86"].zone.endswith("/us-central1-b")
    out = capsys.readouterr().out
    assert "spare" in out and "lacks this farm's labels" in out
    fw = fake_gce.client(compute_v1.FirewallsClient)
    assert [f.name for f in fw.list(project=PROJECT)] == []
    # idempotent: nothing of ours is left, so a second destroy changes nothing and exits 0
    fake_gce.server.log.clear()
    assert destroy_task(inventory=str(inventory), yes=True) == 0
    assert mutations(fake_gce) == []


def test_destroy_without_yes_and_no_terminal_refuses(fake_gce, inventory, capsys):
    assert run_vms(inventory) == 0
    assert destroy_task(inventory=str(inventory)) == 2
    assert "pass --yes" in capsys.readouterr().err
    assert set(vms_of(fake_gce)) == {"t-arm", "t-x86"}


def test_the_command_line_round_trip(fake_gce, inventory, tmp_path):
    """The real `inv` program: exit codes and one JSON object on stdout."""
    created = inv("vms", "-i", str(inventory), "--json", home=tmp_path)
    assert created.returncode == 0, created.stderr
    assert created.stdout.count("\n") == 1 and '"changed": 1' in created.stdout
    gone = inv("destroy", "-i", str(inventory), "--yes", home=tmp_path)
    assert gone.returncode == 0, gone.stderr
    assert vms_of(fake_gce) == {}
