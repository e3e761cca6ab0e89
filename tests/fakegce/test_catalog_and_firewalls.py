"""images, machineTypes, zones and firewalls through the real client; server mode as a process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest
from google.api_core import exceptions
from google.cloud import compute_v1

from provision.fakegce import MUTATING

from .conftest import PROJECT, ZONE, wait


def test_get_from_family_returns_the_newest_live_image_with_its_architecture(gce):
    arm = gce.images.get_from_family(project="debian-cloud", family="debian-12-arm64")
    assert arm.name == "debian-12-bookworm-arm64-v20251111"
    assert arm.architecture == "ARM64" and arm.disk_size_gb == 10
    x86 = gce.images.get_from_family(project="ubuntu-os-cloud", family="ubuntu-2404-lts-amd64")
    assert x86.architecture == "X86_64"
    old = gce.images.get(project="debian-cloud", image="debian-12-bookworm-v20251014")
    assert old.deprecated.state == "DEPRECATED"
    with pytest.raises(exceptions.NotFound):
        gce.images.get_from_family(project="debian-cloud", family="windows-2022")
    with pytest.raises(exceptions.NotFound):
        gce.images.get(project="debian-cloud", image="debian-11-bullseye-v20251111")


@pytest.mark.parametrize(("family", "name", "architecture"), [
    ("debian-13", "debian-13-trixie-v20251111", "X86_64"),
    ("debian-13-arm64", "debian-13-trixie-arm64-v20251111", "ARM64"),
    ("debian-12", "debian-12-bookworm-v20251111", "X86_64"),
    ("debian-12-arm64", "debian-12-bookworm-arm64-v20251111", "ARM64"),
])
def test_debian_13_and_12_families_resolve_with_their_architecture(gce, family, name,
                                                                   architecture):
    """Debian 13 is archfarm's default; an inventory pinning Debian 12 still resolves."""
    image = gce.images.get_from_family(project="debian-cloud", family=family)
    assert (image.name, image.family, image.architecture) == (name, family, architecture)
    release = "13 (trixie)" if family.startswith("debian-13") else "12 (bookworm)"
    assert release in image.description
    old = gce.images.get(project="debian-cloud", image=name.replace("20251111", "20251014"))
    assert old.deprecated.state == "DEPRECATED" and old.architecture == architecture


def test_archfarms_default_images_resolve_with_their_platforms_architecture(gce):
    from provision.fakegce.catalog import ARCHITECTURE
    from provision.gce.catalog import DEFAULT_IMAGES

    for platform, ref in DEFAULT_IMAGES.items():
        project, family = ref.split("/")[1], ref.rsplit("/", 1)[1]
        assert family.startswith("debian-13")
        image = gce.images.get_from_family(project=project, family=family)
        assert image.architecture == ARCHITECTURE[platform]


def test_machine_types_carry_architecture_cpus_and_memory(gce):
    t2a = gce.machine_types.get(project=PROJECT, zone=ZONE, machine_type="t2a-standard-4")
    assert (t2a.architecture, t2a.guest_cpus, t2a.memory_mb) == ("ARM64", 4, 16384)
    n2 = gce.machine_types.get(project=PROJECT, zone=ZONE, machine_type="n2-standard-2")
    assert (n2.architecture, n2.guest_cpus, n2.memory_mb) == ("X86_64", 2, 8192)
    with pytest.raises(exceptions.NotFound) as e:
        gce.machine_types.get(project=PROJECT, zone="us-central1-c",
                              machine_type="t2a-standard-4")
    assert "zones/us-central1-c/machineTypes/t2a-standard-4' was not found" in e.value.message
    in_c = {mt.name for mt in gce.machine_types.list(project=PROJECT, zone="us-central1-c")}
    assert "n2-standard-2" in in_c and "c4a-standard-4" in in_c
    assert not any(name.startswith("t2a-") for name in in_c)
    t2a_only = gce.machine_types.list(compute_v1.ListMachineTypesRequest(
        project=PROJECT, zone=ZONE, filter='architecture = "ARM64"'))
    assert {mt.name.split("-")[0] for mt in t2a_only} == {"t2a", "c4a"}


def test_t2a_exists_only_in_its_zones(gce):
    t2a_zones = {z.name for z in gce.zones.list(project=PROJECT)
                 if "Ampere Altra" in z.available_cpu_platforms}
    assert t2a_zones == {"us-central1-a", "us-central1-b", "us-central1-f", "europe-west4-a",
                         "europe-west4-b", "europe-west4-c", "asia-southeast1-b",
                         "asia-southeast1-c"}


def test_zones_get_and_list(gce):
    zone = gce.zones.get(project=PROJECT, zone="europe-west4-b")
    assert zone.status == "UP" and zone.region.endswith("/regions/europe-west4")
    with pytest.raises(exceptions.NotFound):
        gce.zones.get(project=PROJECT, zone="mars-north1-a")
    paged = gce.zones.list(compute_v1.ListZonesRequest(project=PROJECT, max_results=5))
    assert len(list(paged)) == 22


def firewall(name="archfarm-demo-ssh"):
    return compute_v1.Firewall(
        name=name, network="global/networks/default", direction="INGRESS", priority=1000,
        source_ranges=["127.0.0.1/32"], target_tags=["archfarm-demo"],
        allowed=[compute_v1.Allowed(I_p_protocol="tcp", ports=["22"])])


def test_firewall_insert_get_list_delete_with_global_operations(gce):
    op = gce.firewalls.insert_unary(project=PROJECT, firewall_resource=firewall())
    assert not op.zone and op.operation_type == "insert"
    assert wait(gce, op).status == compute_v1.Operation.Status.DONE
    again = gce.global_ops.get(project=PROJECT, operation=op.name)
    assert again.status == compute_v1.Operation.Status.DONE and again.target_link.endswith(
        "/global/firewalls/archfarm-demo-ssh")
    fw = gce.firewalls.get(project=PROJECT, firewall="archfarm-demo-ssh")
    assert list(fw.source_ranges) == ["127.0.0.1/32"]
    assert fw.allowed[0].I_p_protocol == "tcp" and list(fw.allowed[0].ports) == ["22"]
    assert fw.self_link.startswith("https://www.googleapis.com/compute/v1/projects/proj/global/")
    assert [f.name for f in gce.firewalls.list(project=PROJECT)] == ["archfarm-demo-ssh"]
    with pytest.raises(exceptions.Conflict) as e:
        gce.firewalls.insert_unary(project=PROJECT, firewall_resource=firewall())
    assert "global/firewalls/archfarm-demo-ssh' already exists" in e.value.message
    wait(gce, gce.firewalls.delete_unary(project=PROJECT, firewall="archfarm-demo-ssh"))
    with pytest.raises(exceptions.NotFound) as e:
        gce.firewalls.get(project=PROJECT, firewall="archfarm-demo-ssh")
    assert "projects/proj/global/firewalls/archfarm-demo-ssh' was not found" in e.value.message
    with pytest.raises(exceptions.BadRequest):
        gce.firewalls.insert_unary(project=PROJECT, firewall_resource=firewall("Bad_Name"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_mode_announces_itself_and_stops_on_sigterm():
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "provision.fakegce", "--port", str(port),
                             "--operation-seconds", "0"],
                            stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert proc.stdout.readline().strip() == f"listening on http://127.0.0.1:{port}"
        client = compute_v1.ZonesClient(
            credentials=__import__("google.auth.credentials").auth.credentials
            .AnonymousCredentials(),
            client_options={"api_endpoint": f"http://127.0.0.1:{port}"}, transport="rest")
        assert client.get(project=PROJECT, zone=ZONE).name == ZONE
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_server_mode_refuses_a_non_loopback_host():
    result = subprocess.run([sys.executable, "-m", "provision.fakegce", "--host", "0.0.0.0"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "loopback" in result.stderr


def _fw_get(gce, name="archfarm-demo-ssh"):
    return gce.firewalls.get(project=PROJECT, firewall=name)


def test_firewall_patch_replaces_the_fields_sent_and_keeps_the_rest(gce):
    rule = firewall()
    rule.description = "archfarm farm demo: ssh from the operator"
    wait(gce, gce.firewalls.insert_unary(project=PROJECT, firewall_resource=rule))
    before = _fw_get(gce)
    assert before.description == "archfarm farm demo: ssh from the operator"
    gce.fake.set_faults(operation_seconds=0.3)
    patch = compute_v1.Firewall(source_ranges=["127.0.0.2/32", "127.0.0.3/32"],
                                allowed=[compute_v1.Allowed(I_p_protocol="tcp",
                                                            ports=["22", "2222"])])
    op = gce.firewalls.patch_unary(project=PROJECT, firewall="archfarm-demo-ssh",
                                   firewall_resource=patch)
    assert not op.zone and op.operation_type == "patch"
    assert op.target_link == before.self_link
    assert list(_fw_get(gce).source_ranges) == ["127.0.0.1/32"]  # applies when DONE
    assert wait(gce, op).status == compute_v1.Operation.Status.DONE
    after = _fw_get(gce)
    assert list(after.source_ranges) == ["127.0.0.2/32", "127.0.0.3/32"]
    assert list(after.allowed[0].ports) == ["22", "2222"]
    assert list(after.target_tags) == ["archfarm-demo"]  # not sent: kept
    assert after.description == before.description and after.id == before.id
    wait(gce, gce.firewalls.patch_unary(
        project=PROJECT, firewall="archfarm-demo-ssh",
        firewall_resource=compute_v1.Firewall(name="archfarm-demo-ssh", description="new",
                                              target_tags=["a", "b"])))
    again = _fw_get(gce)
    assert again.description == "new" and list(again.target_tags) == ["a", "b"]
    assert list(again.source_ranges) == ["127.0.0.2/32", "127.0.0.3/32"]


def test_firewall_patch_refuses_another_name_and_missing_rules(gce):
    wait(gce, gce.firewalls.insert_unary(project=PROJECT, firewall_resource=firewall()))
    with pytest.raises(exceptions.BadRequest) as e:
        gce.firewalls.patch_unary(project=PROJECT, firewall="archfarm-demo-ssh",
                                  firewall_resource=compute_v1.Firewall(name="other"))
    assert e.value.errors[0]["reason"] == "invalid"
    assert "Invalid value for field 'resource.name': 'other'" in e.value.message
    with pytest.raises(exceptions.BadRequest):
        gce.firewalls.patch_unary(project=PROJECT, firewall="archfarm-demo-ssh",
                                  firewall_resource=compute_v1.Firewall(direction="EGRESS"))
    with pytest.raises(exceptions.NotFound) as e:
        gce.firewalls.patch_unary(project=PROJECT, firewall="missing",
                                  firewall_resource=compute_v1.Firewall(description="x"))
    assert "projects/proj/global/firewalls/missing' was not found" in e.value.message
    patches = [r for r in gce.fake.requests() if r["method"] == "firewalls.patch"]
    assert [r["status"] for r in patches] == [400, 400, 404]


def test_firewall_patch_replays_its_request_id_and_is_a_mutation(gce):
    wait(gce, gce.firewalls.insert_unary(project=PROJECT, firewall_resource=firewall()))
    gce.fake.set_faults(operation_seconds=0.5)
    request = compute_v1.PatchFirewallRequest(
        project=PROJECT, firewall="archfarm-demo-ssh",
        request_id="0b6b1a52-7a0b-4c3e-9d0f-6a1f2b3c4d5e",
        firewall_resource=compute_v1.Firewall(source_ranges=["127.0.0.9/32"]))
    first = gce.firewalls.patch_unary(request)
    second = gce.firewalls.patch_unary(request)  # a retry while the first runs: the same op
    assert second.name == first.name
    assert second.client_operation_id == request.request_id
    with pytest.raises(exceptions.BadRequest) as e:  # another change meanwhile: not ready
        gce.firewalls.patch_unary(project=PROJECT, firewall="archfarm-demo-ssh",
                                  firewall_resource=compute_v1.Firewall(description="x"))
    assert e.value.errors[0]["reason"] == "resourceNotReady"
    wait(gce, first)
    assert list(_fw_get(gce).source_ranges) == ["127.0.0.9/32"]
    assert "firewalls.patch" in MUTATING
    assert [r["method"] for r in gce.fake.mutating_requests()].count("firewalls.patch") == 3


def test_fake_catalog_follows_archfarms_machine_families():
    """One source of truth: provision/gce/catalog.py's families, platforms and Arm zones."""
    from provision.fakegce import catalog as fake
    from provision.gce import catalog as archfarm

    assert {f.name for f in fake.FAMILIES} == set(archfarm.FAMILIES)
    for family in fake.FAMILIES:
        known = archfarm.FAMILIES[family.name]
        assert family.architecture == {archfarm.ARM64: "ARM64",
                                       archfarm.AMD64: "X86_64"}[known.platform]
        assert set(family.zones) == {z for z in fake.ALL_ZONES if known.offered_in(z)}
    assert set(fake.FAMILY_BY_NAME["t2a"].zones) == archfarm.T2A_ZONES
    assert set(fake.FAMILY_BY_NAME["c4a"].zones) == archfarm.C4A_ZONES
