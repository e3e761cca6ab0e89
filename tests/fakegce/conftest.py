"""Real compute_v1 clients against the fake, and small builders for request bodies."""

from __future__ import annotations

import types
import uuid

import pytest
from google.cloud import compute_v1

PROJECT = "proj"
ZONE = "us-central1-a"


@pytest.fixture
def gce(fake_gce):
    """The fake plus one real client per service it speaks."""
    return clients_of(fake_gce)


def clients_of(fake) -> types.SimpleNamespace:
    """A fake (the fixture's, or one a test starts with a backend of its own) plus one real
    client per service it speaks."""
    c = fake.client
    return types.SimpleNamespace(
        fake=fake,
        instances=c(compute_v1.InstancesClient),
        zone_ops=c(compute_v1.ZoneOperationsClient),
        global_ops=c(compute_v1.GlobalOperationsClient),
        images=c(compute_v1.ImagesClient),
        machine_types=c(compute_v1.MachineTypesClient),
        zones=c(compute_v1.ZonesClient),
        firewalls=c(compute_v1.FirewallsClient),
    )


def instance(name="vm1", machine_type="t2a-standard-1", zone=ZONE,
             family="debian-13-arm64", disk_gb=10, disk_type="pd-balanced", labels=None,
             metadata=None, external_ip=True, image_project="debian-cloud") -> compute_v1.Instance:
    items = [compute_v1.Items(key=k, value=v) for k, v in (metadata or {}).items()]
    nic = compute_v1.NetworkInterface(network="global/networks/default")
    if external_ip:
        nic.access_configs = [compute_v1.AccessConfig(name="External NAT",
                                                      type_="ONE_TO_ONE_NAT")]
    return compute_v1.Instance(
        name=name,
        machine_type=f"zones/{zone}/machineTypes/{machine_type}",
        disks=[compute_v1.AttachedDisk(
            boot=True, auto_delete=True,
            initialize_params=compute_v1.AttachedDiskInitializeParams(
                source_image=f"projects/{image_project}/global/images/family/{family}",
                disk_size_gb=disk_gb, disk_type=f"zones/{zone}/diskTypes/{disk_type}"))],
        network_interfaces=[nic],
        metadata=compute_v1.Metadata(items=items),
        labels=labels or {},
    )


def insert(gce, vm: compute_v1.Instance, zone=ZONE, request_id=None) -> compute_v1.Operation:
    return gce.instances.insert_unary(compute_v1.InsertInstanceRequest(
        project=PROJECT, zone=zone, instance_resource=vm,
        request_id=request_id or str(uuid.uuid4())))


def wait(gce, op: compute_v1.Operation, zone=ZONE) -> compute_v1.Operation:
    if op.zone:
        return gce.zone_ops.wait(project=PROJECT, zone=zone, operation=op.name)
    return gce.global_ops.wait(project=PROJECT, operation=op.name)


def create(gce, vm: compute_v1.Instance, zone=ZONE) -> compute_v1.Instance:
    op = wait(gce, insert(gce, vm, zone), zone)
    assert op.status == compute_v1.Operation.Status.DONE and not op.error.errors, op
    return gce.instances.get(project=PROJECT, zone=zone, instance=vm.name)
