"""instances.suspend / resume, and what start does to a VM that is halting or suspended."""

from __future__ import annotations

import time
import uuid

import pytest
from google.api_core import exceptions
from google.cloud import compute_v1

from provision.fakegce import MUTATING

from .conftest import PROJECT, ZONE, create, instance, wait

DONE = compute_v1.Operation.Status.DONE
VM = {"project": PROJECT, "zone": ZONE, "instance": "vm1"}


def status(gce) -> str:
    return gce.instances.get(**VM).status


def seen_until(gce, op, seconds=3) -> list[str]:
    """The distinct statuses the VM shows while `op` runs, and once it is DONE."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen.append(status(gce))
        if gce.zone_ops.get(project=PROJECT, zone=ZONE, operation=op.name).status == DONE:
            seen.append(status(gce))
            break
        time.sleep(0.02)
    return list(dict.fromkeys(seen))


def test_suspend_then_resume_goes_through_gces_states(gce):
    create(gce, instance(metadata={"enable-guest-attributes": "TRUE"}))
    before = gce.instances.get(**VM)
    gce.fake.set_faults(operation_seconds=0.4)
    op = gce.instances.suspend_unary(**VM)
    assert op.operation_type == "suspend"
    assert seen_until(gce, op) == ["SUSPENDING", "SUSPENDED"]
    suspended = gce.instances.get(**VM)
    assert not suspended.network_interfaces[0].access_configs[0].nat_i_p  # only while running
    assert suspended.cpu_platform == "Unknown CPU Platform"
    op = gce.instances.resume_unary(**VM)
    assert op.operation_type == "resume"
    assert seen_until(gce, op) == ["PROVISIONING", "STAGING", "RUNNING"]
    after = gce.instances.get(**VM)
    # the address is reserved for the VM's life; the boot backend powered it on again
    assert after.network_interfaces[0].access_configs[0].nat_i_p == \
        before.network_interfaces[0].access_configs[0].nat_i_p
    assert after.last_start_timestamp > before.last_start_timestamp
    time.sleep(0.1)
    attrs = gce.instances.get_guest_attributes(compute_v1.GetGuestAttributesInstanceRequest(
        variable_key="hostkeys/ssh-ed25519", **VM))
    assert attrs.variable_value.startswith("AAAA")


def test_start_of_a_stopping_or_suspending_vm_is_resource_not_ready(gce):
    create(gce, instance())
    gce.fake.set_faults(operation_seconds=1)
    for halt, state in ((gce.instances.suspend_unary, "SUSPENDING"),
                        (gce.instances.stop_unary, "STOPPING")):
        op = halt(**VM)
        assert status(gce) == state
        with pytest.raises(exceptions.BadRequest) as e:
            gce.instances.start_unary(**VM)
        assert e.value.errors[0]["reason"] == "resourceNotReady"
        assert e.value.errors[0]["message"] == \
            f"The resource 'projects/{PROJECT}/zones/{ZONE}/instances/vm1' is not ready"
        wait(gce, op)
        if state == "SUSPENDING":
            wait(gce, gce.instances.resume_unary(**VM))


def test_a_suspended_vm_is_resumed_not_started(gce):
    create(gce, instance())
    wait(gce, gce.instances.suspend_unary(**VM))
    with pytest.raises(exceptions.BadRequest) as e:
        gce.instances.start_unary(**VM)
    assert e.value.errors[0]["reason"] == "unsupportedOperation"
    assert "Resume" in e.value.errors[0]["message"]
    assert status(gce) == "SUSPENDED"


@pytest.mark.parametrize("first, message", [
    ("suspend", "You cannot suspend an already suspended instance."),
    ("stop", "You cannot suspend an instance that is stopped or terminated."),
])
def test_only_a_running_vm_suspends(gce, first, message):
    create(gce, instance())
    wait(gce, getattr(gce.instances, f"{first}_unary")(**VM))
    with pytest.raises(exceptions.BadRequest) as e:
        gce.instances.suspend_unary(**VM)
    assert e.value.errors[0]["reason"] == "unsupportedOperation"
    assert e.value.errors[0]["message"] == message


def test_only_a_suspended_vm_resumes(gce):
    create(gce, instance())
    with pytest.raises(exceptions.BadRequest) as e:
        gce.instances.resume_unary(**VM)
    assert e.value.errors[0]["reason"] == "unsupportedOperation"


def test_a_suspended_vm_can_be_stopped_then_started(gce):
    create(gce, instance())
    wait(gce, gce.instances.suspend_unary(**VM))
    wait(gce, gce.instances.stop_unary(**VM))
    assert status(gce) == "TERMINATED"
    wait(gce, gce.instances.start_unary(**VM))
    assert status(gce) == "RUNNING"


def test_suspend_and_resume_replay_their_request_id_and_count_as_mutations(gce):
    create(gce, instance())
    rid = str(uuid.uuid4())
    request = compute_v1.SuspendInstanceRequest(request_id=rid, **VM)
    first = gce.instances.suspend_unary(request)
    again = gce.instances.suspend_unary(request)  # not "already suspended": a replay
    assert again.name == first.name and again.client_operation_id == rid
    wait(gce, first)
    assert {"instances.suspend", "instances.resume"} <= MUTATING
    methods = [r["method"] for r in gce.fake.mutating_requests()]
    assert methods.count("instances.suspend") == 2


def test_delete_of_a_suspended_vm(gce):
    create(gce, instance())
    wait(gce, gce.instances.suspend_unary(**VM))
    wait(gce, gce.instances.delete_unary(**VM))
    with pytest.raises(exceptions.NotFound):
        gce.instances.get(**VM)
