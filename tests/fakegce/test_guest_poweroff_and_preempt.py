"""A VM that goes down without an API call: its guest powers itself off, or Compute Engine
preempts it (a Spot VM). Seen through the real client: TERMINATED, lastStopTimestamp, and the
system event's zone operation."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from google.api_core import exceptions
from google.cloud import compute_v1

from .conftest import PROJECT, ZONE, create, instance, wait

VM = {"project": PROJECT, "zone": ZONE, "instance": "vm1"}
DONE = compute_v1.Operation.Status.DONE


def control(gce, path: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(f"{gce.fake.endpoint}/_fake/{path}", method="POST",
                                     data=json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def spot(name="vm1", action="STOP") -> compute_v1.Instance:
    vm = instance(name, metadata={"enable-guest-attributes": "TRUE"})
    vm.scheduling = compute_v1.Scheduling(provisioning_model="SPOT",
                                          instance_termination_action=action)
    return vm


def until_status(gce, wanted: str, seconds: float = 5) -> list[str]:
    """The distinct statuses seen until `wanted` (or the deadline)."""
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen.append(gce.instances.get(**VM).status)
        if seen[-1] == wanted:
            break
        time.sleep(0.02)
    return list(dict.fromkeys(seen))


def operations(gce) -> list[compute_v1.Operation]:
    return list(gce.zone_ops.list(project=PROJECT, zone=ZONE))


def host_keys(gce) -> list[str]:
    attrs = gce.instances.get_guest_attributes(compute_v1.GetGuestAttributesInstanceRequest(
        query_path="hostkeys/", **VM))
    return [item.key for item in attrs.query_value.items]


def published_host_keys(gce, seconds: float = 3) -> list[str]:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return host_keys(gce)
        except exceptions.NotFound:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_a_guest_that_powers_off_leaves_its_vm_terminated_with_no_api_call(gce):
    create(gce, instance(metadata={"enable-guest-attributes": "TRUE"}))
    assert published_host_keys(gce)
    gce.fake.set_faults(operation_seconds=0.4)
    before = len(gce.fake.mutating_requests())
    assert control(gce, "guest-poweroff", VM) == (200, {"poweroff": True})
    # The guest powers off on its own time (the backend is told off the fake's lock, as a
    # host would be): RUNNING may still be seen first, then it goes through STOPPING.
    assert until_status(gce, "TERMINATED") in (["STOPPING", "TERMINATED"],
                                               ["RUNNING", "STOPPING", "TERMINATED"])
    vm = gce.instances.get(**VM)
    assert vm.last_stop_timestamp >= vm.last_start_timestamp
    assert vm.cpu_platform == "Unknown CPU Platform"
    assert len(gce.fake.mutating_requests()) == before  # no API call did it
    event = [op for op in operations(gce) if op.target_id == vm.id][-1]
    assert event.operation_type == "compute.instances.guestTerminate"
    assert event.status == DONE
    # guest attributes go as on a stop; a start brings the VM (and its host keys) back
    with pytest.raises(exceptions.NotFound):
        host_keys(gce)
    wait(gce, gce.instances.start_unary(**VM))
    assert gce.instances.get(**VM).status == "RUNNING"
    assert published_host_keys(gce)


def test_a_stopped_guest_cannot_power_off_again(gce):
    create(gce, instance())
    wait(gce, gce.instances.stop_unary(**VM))
    code, body = control(gce, "guest-poweroff", VM)
    assert code == 400 and "TERMINATED, not RUNNING" in body["error"]["message"]


def test_preempting_a_spot_vm_terminates_it_through_a_preempted_operation(gce):
    created = create(gce, spot())
    before = len(gce.fake.mutating_requests())
    code, op = control(gce, "preempt", VM)
    assert code == 200, op
    assert op["operationType"] == "compute.instances.preempted"
    assert op["statusMessage"] == "Instance was preempted."
    assert op["targetId"] == str(created.id)
    done = gce.zone_ops.wait(project=PROJECT, zone=ZONE, operation=op["name"])
    assert done.status == DONE and not done.error.errors
    vm = gce.instances.get(**VM)
    assert vm.status == "TERMINATED"
    assert vm.last_stop_timestamp
    listed = [o for o in operations(gce) if o.name == op["name"]]
    assert [o.operation_type for o in listed] == ["compute.instances.preempted"]
    assert listed[0].status_message == "Instance was preempted."
    assert len(gce.fake.mutating_requests()) == before
    # a preempted Spot VM starts again like any stopped one
    wait(gce, gce.instances.start_unary(**VM))
    assert gce.instances.get(**VM).status == "RUNNING"


def test_a_spot_vm_whose_termination_action_is_delete_is_gone_once_preempted(gce):
    create(gce, spot(action="DELETE"))
    code, op = control(gce, "preempt", VM)
    assert code == 200, op
    gce.zone_ops.wait(project=PROJECT, zone=ZONE, operation=op["name"])
    assert [vm.name for vm in gce.instances.list(project=PROJECT, zone=ZONE)] == []


def test_only_a_running_spot_vm_is_preempted(gce):
    create(gce, instance())
    code, body = control(gce, "preempt", VM)
    assert code == 400 and "not a Spot or preemptible VM" in body["error"]["message"]
    create(gce, spot("vm2"))
    wait(gce, gce.instances.stop_unary(project=PROJECT, zone=ZONE, instance="vm2"))
    code, body = control(gce, "preempt", {**VM, "instance": "vm2"})
    assert code == 400 and "TERMINATED: only a RUNNING VM" in body["error"]["message"]
    assert control(gce, "preempt", {**VM, "instance": "nope"})[0] == 404
    code, body = control(gce, "preempt", {"project": PROJECT})
    assert code == 400 and "'project', 'zone' and 'instance'" in body["error"]


def test_stop_and_suspend_record_when(gce):
    create(gce, instance())
    wait(gce, gce.instances.suspend_unary(**VM))
    assert gce.instances.get(**VM).last_suspended_timestamp
    wait(gce, gce.instances.stop_unary(**VM))
    assert gce.instances.get(**VM).last_stop_timestamp


@pytest.mark.parametrize("path", ["preempt", "guest-poweroff", "faults"])
def test_a_control_call_whose_body_is_not_json_is_a_400_that_says_so(gce, path):
    request = urllib.request.Request(f"{gce.fake.endpoint}/_fake/{path}", method="POST",
                                     data=b"{not json")
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=10)
    assert answer.value.code == 400
    assert "not JSON" in json.loads(answer.value.read())["error"]


def test_a_fault_set_that_is_not_an_object_is_a_400(gce):
    code, body = control(gce, "faults", [])  # type: ignore[arg-type]
    assert code == 400 and "JSON object" in body["error"]
