"""Operations, guest attributes and fault injection through the real client and over HTTP."""

from __future__ import annotations

import time

import pytest
import requests
from google.api_core import exceptions
from google.cloud import compute_v1

from provision.fakegce import FakeGCE

from .conftest import PROJECT, ZONE, create, insert, instance, wait

DONE = compute_v1.Operation.Status.DONE


def test_wait_blocks_until_done(gce):
    gce.fake.set_faults(operation_seconds=0.5)
    op = insert(gce, instance())
    started = time.monotonic()
    done = wait(gce, op)
    assert done.status == DONE and done.progress == 100 and done.end_time
    assert 0.3 < time.monotonic() - started < 3


def test_wait_returns_the_running_operation_at_its_deadline():
    with FakeGCE(operation_seconds=5, wait_seconds=0.3) as fake:
        ops = fake.client(compute_v1.ZoneOperationsClient)
        vms = fake.client(compute_v1.InstancesClient)
        op = vms.insert_unary(project=PROJECT, zone=ZONE, instance_resource=instance())
        started = time.monotonic()
        again = ops.wait(project=PROJECT, zone=ZONE, operation=op.name)
        assert again.status != compute_v1.Operation.Status.DONE
        assert 0.2 < time.monotonic() - started < 2


def test_unknown_operation_is_404(gce):
    with pytest.raises(exceptions.NotFound):
        gce.zone_ops.get(project=PROJECT, zone=ZONE, operation="operation-1-2-3-4")
    with pytest.raises(exceptions.NotFound):
        gce.global_ops.wait(project=PROJECT, operation="operation-1-2-3-4")


def test_stockout_fails_the_operation_with_zone_resource_pool_exhausted(gce):
    gce.fake.set_faults(stockouts=[{"zone": ZONE, "machine_family": "t2a"}])
    op = wait(gce, insert(gce, instance()))
    assert op.status == DONE
    assert op.http_error_status_code == 503
    assert op.http_error_message == "SERVICE UNAVAILABLE"
    assert op.error.errors[0].code == "ZONE_RESOURCE_POOL_EXHAUSTED"
    assert "does not have enough resources available" in op.error.errors[0].message
    with pytest.raises(exceptions.NotFound):  # a failed insert leaves no VM behind
        gce.instances.get(project=PROJECT, zone=ZONE, instance="vm1")
    # another family in the same zone, and the same family elsewhere, are fine
    create(gce, instance(name="x86", machine_type="n2-standard-2", family="debian-12"))
    create(gce, instance(zone="us-central1-b"), zone="us-central1-b")


def test_failed_operation_raises_the_real_clients_exception_through_extended_operation(gce):
    """The client's own `op.result()` maps the failed operation to ServiceUnavailable."""
    gce.fake.set_faults(stockouts=[{"zone": ZONE}])
    vms = gce.instances
    # op.result() polls a hard-coded endpoint; point its operations client at the fake.
    vms._transport._extended_operations_services["zone_operations"] = gce.zone_ops
    op = vms.insert(project=PROJECT, zone=ZONE, instance_resource=instance())
    with pytest.raises(exceptions.ServiceUnavailable) as e:
        op.result(timeout=10)
    assert e.value.code == 503
    assert str(e.value).startswith("503 SERVICE UNAVAILABLE ZONE_RESOURCE_POOL_EXHAUSTED: ")


def test_regional_quota_fails_the_operation_with_quota_exceeded(gce):
    gce.fake.set_faults(quota_exceeded=[{"region": "us-central1", "machine_family": "n2"}])
    op = wait(gce, insert(gce, instance(machine_type="n2-standard-2", family="debian-12")))
    assert op.http_error_status_code == 403
    assert op.http_error_message == "FORBIDDEN"
    assert op.error.errors[0].code == "QUOTA_EXCEEDED"
    assert "in region us-central1" in op.error.errors[0].message
    other = "europe-west4-a"
    create(gce, instance(machine_type="n2-standard-2", family="debian-12", zone=other), other)


def test_injected_rate_limit_is_403_forbidden_once(gce):
    create(gce, instance())
    gce.fake.set_faults(http_errors=[{"method": "instances.get", "status": 403,
                                      "reason": "rateLimitExceeded", "count": 1}])
    with pytest.raises(exceptions.Forbidden) as e:  # the client does not retry 403
        gce.instances.get(project=PROJECT, zone=ZONE, instance="vm1")
    assert e.value.errors[0]["reason"] == "rateLimitExceeded"
    assert e.value.errors[0]["domain"] == "usageLimits"
    assert gce.instances.get(project=PROJECT, zone=ZONE, instance="vm1").name == "vm1"


def test_injected_503_on_a_read_is_retried_by_the_client_itself(gce):
    create(gce, instance())
    gce.fake.set_faults(http_errors=[{"method": "instances.get", "status": 503,
                                      "reason": "backendError", "count": 2}])
    assert gce.instances.get(project=PROJECT, zone=ZONE, instance="vm1").name == "vm1"
    statuses = [r["status"] for r in gce.fake.requests() if r["method"] == "instances.get"]
    assert statuses[-3:] == [503, 503, 200]


def test_injected_503_on_insert_is_not_retried_by_the_client(gce):
    gce.fake.set_faults(http_errors=[{"method": "instances.insert", "status": 503,
                                      "reason": "backendError"}])
    with pytest.raises(exceptions.ServiceUnavailable):
        insert(gce, instance())
    with pytest.raises(exceptions.ServiceUnavailable):  # no count: every call fails
        insert(gce, instance())


def test_guest_attributes_need_enable_guest_attributes_and_a_booted_vm(gce):
    gce.fake.set_faults(boot_seconds=0.4)
    create(gce, instance(metadata={"enable-guest-attributes": "TRUE"}))
    create(gce, instance(name="noattrs"))
    request = compute_v1.GetGuestAttributesInstanceRequest(
        project=PROJECT, zone=ZONE, instance="vm1", query_path="hostkeys/")
    with pytest.raises(exceptions.NotFound) as e:  # RUNNING, but the agent has not written yet
        gce.instances.get_guest_attributes(request)
    assert "The resource 'hostkeys/' of type 'Guest Attribute' was not found." in e.value.message
    time.sleep(0.6)
    attrs = gce.instances.get_guest_attributes(request)
    keys = {i.key: i.value for i in attrs.query_value.items if i.namespace == "hostkeys"}
    assert set(keys) == {"ssh-ed25519", "ecdsa-sha2-nistp256"}
    assert keys["ssh-ed25519"].startswith("AAAAC3NzaC1lZDI1NTE5")
    one = gce.instances.get_guest_attributes(compute_v1.GetGuestAttributesInstanceRequest(
        project=PROJECT, zone=ZONE, instance="vm1", variable_key="hostkeys/ssh-ed25519"))
    assert one.variable_value == keys["ssh-ed25519"]
    request.instance = "noattrs"
    with pytest.raises(exceptions.NotFound):  # guest attributes are off without the metadata
        gce.instances.get_guest_attributes(request)


def test_host_keys_differ_per_vm_and_survive_stop_start(gce):
    meta = {"enable-guest-attributes": "TRUE"}
    create(gce, instance(name="a", metadata=meta))
    create(gce, instance(name="b", metadata=meta))

    def key(name):
        return gce.instances.get_guest_attributes(compute_v1.GetGuestAttributesInstanceRequest(
            project=PROJECT, zone=ZONE, instance=name,
            variable_key="hostkeys/ssh-ed25519")).variable_value

    before = key("a")
    assert before != key("b")
    wait(gce, gce.instances.stop_unary(project=PROJECT, zone=ZONE, instance="a"))
    wait(gce, gce.instances.start_unary(project=PROJECT, zone=ZONE, instance="a"))
    time.sleep(0.1)
    assert key("a") == before


def test_control_api_over_http(gce):
    base = gce.fake.endpoint
    create(gce, instance())
    log = requests.get(f"{base}/_fake/requests", timeout=5).json()
    assert {"method": "instances.insert", "status": 200,
            "path": f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances"} in log
    assert any(r["method"] == "zoneOperations.wait" for r in log)
    bad = requests.post(f"{base}/_fake/faults", json={"stockout": []}, timeout=5)
    assert bad.status_code == 400 and "unknown fault keys" in bad.json()["error"]
    set_ = requests.post(f"{base}/_fake/faults", timeout=5, json={
        "stockouts": [{"zone": ZONE, "machine_family": "t2a"}], "operation_seconds": 0.1})
    assert set_.json()["stockouts"] == [{"zone": ZONE, "machine_family": "t2a"}]
    # a later call replaces the earlier one: the stockout is gone again
    requests.post(f"{base}/_fake/faults", json={"operation_seconds": 0.1}, timeout=5)
    create(gce, instance(name="vm2"))
    assert requests.post(f"{base}/_fake/reset", timeout=5).json() == {"reset": True}
    assert requests.get(f"{base}/_fake/requests", timeout=5).json() == []
    assert list(gce.instances.list(project=PROJECT, zone=ZONE)) == []


def test_an_after_fault_applies_the_request_then_loses_the_answer(gce):
    gce.fake.set_faults(http_errors=[{"method": "instances.insert", "status": 503,
                                      "reason": "backendError", "count": 1, "after": True}])
    rid = "6f1c1d8e-3a5b-4c2d-9e7f-0a1b2c3d4e5f"
    with pytest.raises(exceptions.ServiceUnavailable):
        insert(gce, instance(), request_id=rid)
    assert gce.instances.get(project=PROJECT, zone=ZONE, instance="vm1").name == "vm1"
    retried = insert(gce, instance(), request_id=rid)  # the caller's retry, same requestId
    wait(gce, retried)
    assert [vm.name for vm in gce.instances.list(project=PROJECT, zone=ZONE)] == ["vm1"]


def _bulk(gce, count=3, pattern="node-##"):
    body = compute_v1.BulkInsertInstanceResource(
        count=count, min_count=count, name_pattern=pattern,
        instance_properties=compute_v1.InstanceProperties(
            machine_type="t2a-standard-1", disks=instance().disks,
            network_interfaces=instance().network_interfaces))
    return gce.instances.bulk_insert_unary(project=PROJECT, zone=ZONE,
                                           bulk_insert_instance_resource_resource=body)


def test_bulk_insert_operation_carries_its_group_and_per_zone_status_once_done(gce):
    gce.fake.set_faults(operation_seconds=0.3)
    op = _bulk(gce)
    assert op.operation_group_id
    assert not op.instances_bulk_insert_operation_metadata.per_location_status  # not yet
    done = wait(gce, op)
    assert done.operation_group_id == op.operation_group_id
    status = done.instances_bulk_insert_operation_metadata.per_location_status[f"zones/{ZONE}"]
    assert (status.status, status.target_vm_count, status.created_vm_count,
            status.failed_to_create_vm_count, status.deleted_vm_count) == ("DONE", 3, 3, 0, 0)
    raw = requests.get(f"{gce.fake.endpoint}/compute/v1/projects/{PROJECT}/zones/{ZONE}/"
                       f"operations/{op.name}", timeout=5).json()
    assert raw["instancesBulkInsertOperationMetadata"] == {"perLocationStatus": {
        f"zones/{ZONE}": {"status": "DONE", "targetVmCount": 3, "createdVmCount": 3,
                          "failedToCreateVmCount": 0, "deletedVmCount": 0}}}


def test_a_stocked_out_bulk_insert_counts_its_failures(gce):
    gce.fake.set_faults(stockouts=[{"zone": ZONE}], operation_seconds=0)
    done = wait(gce, _bulk(gce, count=2))
    assert done.error.errors[0].code == "ZONE_RESOURCE_POOL_EXHAUSTED"
    status = done.instances_bulk_insert_operation_metadata.per_location_status[f"zones/{ZONE}"]
    assert (status.created_vm_count, status.failed_to_create_vm_count) == (0, 2)
    assert list(gce.instances.list(project=PROJECT, zone=ZONE)) == []


def test_zone_operations_list_finds_a_bulk_inserts_group_and_pages(gce):
    gce.fake.set_faults(operation_seconds=0)
    create(gce, instance(name="solo"))
    op = _bulk(gce)
    everything = list(gce.zone_ops.list(project=PROJECT, zone=ZONE))
    assert len(everything) == 1 + 1 + 3  # solo's insert, the bulkInsert, one insert per VM
    group = list(gce.zone_ops.list(compute_v1.ListZoneOperationsRequest(
        project=PROJECT, zone=ZONE, filter=f"operationGroupId={op.operation_group_id}")))
    assert sorted(o.operation_type for o in group) == ["bulkInsert", "insert", "insert",
                                                       "insert"]
    assert {o.target_link.rsplit("/", 1)[1] for o in group if o.operation_type == "insert"} \
        == {"node-01", "node-02", "node-03"}
    assert all(o.status == DONE for o in group)
    paged = gce.zone_ops.list(compute_v1.ListZoneOperationsRequest(
        project=PROJECT, zone=ZONE, max_results=2))
    assert sorted(o.name for o in paged) == sorted(o.name for o in everything)
    pages = [r for r in gce.fake.requests() if r["method"] == "zoneOperations.list"]
    assert len(pages) == 1 + 1 + 3  # 5 operations, 2 a page
    other = list(gce.zone_ops.list(project=PROJECT, zone="us-central1-b"))
    assert other == []  # operations are per zone
    global_op = gce.firewalls.insert_unary(project=PROJECT, firewall_resource=compute_v1.Firewall(
        name="fw", allowed=[compute_v1.Allowed(I_p_protocol="tcp")]))
    assert global_op.name not in {o.name for o in gce.zone_ops.list(project=PROJECT, zone=ZONE)}
