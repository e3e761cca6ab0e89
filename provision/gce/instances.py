"""VMs on Compute Engine: find them, create one with zone failover, wait, start, resume, delete.

Takes its own small spec (`VmSpec`); what a VM means to a farm (labels, names) is the cloud
stage's business. Error codes and states: docs/compute-engine.md, "Errors and retries" and
"Instance states".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.api_core import exceptions
from google.cloud import compute_v1

from . import catalog
from .operations import (
    Cancel,
    NoCancel,
    OperationError,
    api_message,
    call,
    new_request_id,
    reasons,
    wait,
)

# Operation errors after which the next zone may still work.
ZONE_EXHAUSTED = {"ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
                  "UNSUPPORTED_OPERATION"}
RUNNING_DEADLINE = 600.0
POLL_SECONDS = 2.0


def region_of(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


@dataclass(frozen=True)
class VmSpec:
    """Everything needed to create one VM; `zones` in order of preference."""

    name: str
    machine_type: str
    zones: tuple[str, ...]
    image: str
    disk_gb: int
    disk_type: str
    network: str
    labels: dict[str, str]
    tags: tuple[str, ...]
    metadata: dict[str, str]
    spot: bool = False
    max_run_hours: int | None = None
    # False: no access config, so no external address (reached from inside the network).
    external_ip: bool = True


@dataclass
class FoundVm:
    name: str
    zone: str
    status: str
    machine_type: str
    labels: dict[str, str]
    external_ip: str | None
    internal_ip: str | None
    id: str = ""
    last_stop: str | None = None        # lastStopTimestamp (RFC 3339)
    last_suspended: str | None = None   # lastSuspendedTimestamp


def _found(vm: Any) -> FoundVm:
    nic = vm.network_interfaces[0] if vm.network_interfaces else None
    external = None
    if nic and nic.access_configs:
        external = nic.access_configs[0].nat_i_p or None
    return FoundVm(name=vm.name, zone=vm.zone.rsplit("/", 1)[-1], status=vm.status,
                   machine_type=vm.machine_type.rsplit("/", 1)[-1], labels=dict(vm.labels),
                   external_ip=external, internal_ip=nic.network_i_p if nic else None,
                   id=str(vm.id) if vm.id else "",
                   last_stop=vm.last_stop_timestamp or None,
                   last_suspended=vm.last_suspended_timestamp or None)


def find(clients: Any, project: str, filter_: str, cancel: Cancel | None = None
         ) -> list[FoundVm]:
    """One aggregated list across all zones (pages followed by the client's pager)."""
    request = compute_v1.AggregatedListInstancesRequest(project=project, filter=filter_)
    pages = call(clients.instances.aggregated_list, request=request, cancel=cancel)
    return sorted((_found(vm) for _, scope in pages for vm in scope.instances),
                  key=lambda v: (v.name, v.zone))


def get(clients: Any, project: str, zone: str, name: str, cancel: Cancel | None = None
        ) -> FoundVm:
    return _found(call(clients.instances.get, project=project, zone=zone, instance=name,
                       cancel=cancel))


def guest_attributes(clients: Any, project: str, zone: str, name: str, query_path: str,
                     cancel: Cancel | None = None) -> dict[str, str]:
    """Guest attributes under one namespace (`hostkeys/`) as key -> value; {} until the guest
    has published any (the API answers 404 until then)."""
    try:
        request = compute_v1.GetGuestAttributesInstanceRequest(
            project=project, zone=zone, instance=name, query_path=query_path)
        found = call(clients.instances.get_guest_attributes, request=request, cancel=cancel)
    except exceptions.NotFound:
        return {}
    return {item.key: item.value.split()[0] for item in found.query_value.items
            if item.value.strip()}


def body(spec: VmSpec, zone: str) -> compute_v1.Instance:
    scheduling = compute_v1.Scheduling()
    if spec.spot:
        # STOP: a preempted node stays, TERMINATED, with its disk and build cache; the next
        # build that needs it starts it again (docs/scheduling.md, "Failover").
        scheduling = compute_v1.Scheduling(provisioning_model="SPOT",
                                           instance_termination_action="STOP",
                                           automatic_restart=False,
                                           on_host_maintenance="TERMINATE")
    if spec.max_run_hours:
        scheduling.max_run_duration = compute_v1.Duration(seconds=spec.max_run_hours * 3600)
        # A forgotten farm deletes itself: at the limit, and so on preemption too (one action).
        scheduling.instance_termination_action = "DELETE"
    return compute_v1.Instance(
        name=spec.name,
        machine_type=f"zones/{zone}/machineTypes/{spec.machine_type}",
        labels=dict(spec.labels),
        tags=compute_v1.Tags(items=list(spec.tags)),
        metadata=compute_v1.Metadata(items=[compute_v1.Items(key=k, value=v)
                                            for k, v in spec.metadata.items()]),
        disks=[compute_v1.AttachedDisk(
            boot=True, auto_delete=True, type_="PERSISTENT",
            initialize_params=compute_v1.AttachedDiskInitializeParams(
                source_image=spec.image, disk_size_gb=spec.disk_gb,
                disk_type=f"zones/{zone}/diskTypes/{spec.disk_type}"))],
        network_interfaces=[compute_v1.NetworkInterface(
            network=f"global/networks/{spec.network}",
            access_configs=[compute_v1.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")]
            if spec.external_ip else [])],
        scheduling=scheduling,
    )


@dataclass
class Placement:
    """Where a VM landed, and why the zones before it were passed over."""

    zone: str | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None
    adopted: bool = False  # made meanwhile by a concurrent run of the same spec

    @property
    def summary(self) -> str:
        verb = "made by a concurrent run" if self.adopted else "created"
        parts = [f"{verb} in {self.zone}"] if self.zone else []
        parts += [f"skipped {z}: {why}" for z, why in self.skipped]
        return "; ".join(parts)


class MachineTypes:
    """Which zones offer a machine type, asked only when needed (an insert says it is not
    offered, or `inv doctor` checks), each (type, zone) once per run.

    Shared by all the nodes of a run, so an unknown type costs one look-up per zone, once.
    """

    def __init__(self, clients: Any, project: str):
        self._clients, self._project = clients, project
        self._found: dict[tuple[str, str], Any] = {}

    def get(self, machine_type: str, zone: str) -> Any:
        """The MachineType as the zone offers it (guestCpus, architecture), or None."""
        key = (machine_type, zone)
        if key not in self._found:
            try:
                self._found[key] = call(self._clients.machine_types.get, project=self._project,
                                        zone=zone, machine_type=machine_type)
            except (exceptions.NotFound, exceptions.BadRequest):
                self._found[key] = None
        return self._found[key]

    def offered(self, machine_type: str, zone: str) -> bool:
        return self.get(machine_type, zone) is not None


def _zone_failure(e: OperationError | exceptions.BadRequest, zone: str) -> tuple[str, str]:
    """Why an insert in `zone` failed: ("next", reason) to try the next zone; "quota" (skip
    the region too); "not offered" (drop the zones without the machine type); or "fatal"
    with the error."""
    if isinstance(e, OperationError):
        if e.code in ZONE_EXHAUSTED:
            return "next", f"{e.code} (no capacity)"
        if e.code == "QUOTA_EXCEEDED":
            return "quota", f"QUOTA_EXCEEDED in {region_of(zone)}: {e.message}"
        return "fatal", f"{zone}: {e.code}: {e.message}"
    if "resourceNotReady" in reasons(e):
        return "next", "resourceNotReady"
    if "does not exist in zone" in api_message(e):
        return "not offered", ""
    return "fatal", f"{zone}: {api_message(e)}"


def _adopt(clients: Any, project: str, zone: str, spec: VmSpec, placement: Placement,
           progress: Callable[[str], None], cancel: Cancel) -> Placement:
    """The name is taken in `zone`: by this farm's VM (a concurrent run made it: wait for it,
    it is ours), or by a stranger (an error)."""
    if _made_from(get(clients, project, zone, spec.name, cancel), spec):
        progress(f"{spec.name} was made meanwhile by another run; waiting for it")
        wait_running(clients, project, zone, spec.name, cancel)
        placement.zone, placement.adopted = zone, True
        return placement
    placement.error = (f"a VM named {spec.name} already exists in {zone} without"
                       " this farm's labels; rename the node or remove that VM")
    return placement


def create(clients: Any, project: str, spec: VmSpec, progress: Callable[[str], None],
           cancel: Cancel | None = None, machine_types: MachineTypes | None = None,
           ) -> Placement:
    """Create the VM in the first zone that can take it, and wait until it is RUNNING."""
    cancel = cancel or NoCancel()
    machine_types = machine_types or MachineTypes(clients, project)
    placement = Placement()
    offering = catalog.zones_offering(spec.machine_type)
    family = catalog.family_of(spec.machine_type).upper()
    dead_regions: set[str] = set()
    zones = list(spec.zones)
    while zones:
        zone = zones.pop(0)
        if region_of(zone) in dead_regions:
            placement.skipped.append((zone, f"quota exhausted in {region_of(zone)}"))
            continue
        if offering is not None and zone not in offering:
            placement.skipped.append((zone, f"{family} is not offered there"))
            continue
        cancel.check()
        progress(f"creating {spec.name} in {zone}")
        try:
            _insert(clients, project, zone, body(spec, zone), cancel)
            placement.zone = zone
            wait_running(clients, project, zone, spec.name, cancel)
            return placement
        except (OperationError, exceptions.BadRequest) as e:
            if isinstance(e, OperationError):
                _remove_leftover(clients, project, zone, spec, cancel)
            kind, reason = _zone_failure(e, zone)
            if kind == "fatal":
                placement.error = reason
                return placement
            if kind == "quota":
                dead_regions.add(region_of(zone))
            if kind == "not offered":
                reason = f"{spec.machine_type} is not offered there"
                zones = [z for z in zones if machine_types.offered(spec.machine_type, z)]
                if not zones and not placement.skipped:
                    placement.error = (f"machine type {spec.machine_type} is offered in none of"
                                       f" {', '.join(spec.zones)}; check its name (gcloud"
                                       " compute machine-types list) or the zones")
                    return placement
        except exceptions.Conflict:
            return _adopt(clients, project, zone, spec, placement, progress, cancel)
        placement.skipped.append((zone, reason))
        progress(f"{zone}: {reason}; trying the next zone")
    placement.error = "no zone could take it: " + "; ".join(f"{z}: {r}"
                                                            for z, r in placement.skipped)
    return placement


def _made_from(vm: FoundVm, spec: VmSpec) -> bool:
    """The VM carries every label the spec gives: made from this spec, by this or another run."""
    return all(vm.labels.get(k) == v for k, v in spec.labels.items())


def _remove_leftover(clients: Any, project: str, zone: str, spec: VmSpec,
                     cancel: Cancel) -> None:
    """A failed insert normally leaves nothing; if it left a VM made from this spec, delete it
    (never a same-named VM of someone else's). The insert's own error is what the recap says,
    so a failure here is not reported over it."""
    try:
        if _made_from(get(clients, project, zone, spec.name, cancel), spec):
            delete(clients, project, zone, spec.name, cancel)
    except exceptions.GoogleAPICallError:
        pass


def _insert(clients: Any, project: str, zone: str, vm: compute_v1.Instance,
            cancel: Cancel) -> None:
    # One requestId for every retry of this insert: a retry after a lost response returns
    # the first operation instead of creating a second VM.
    request = compute_v1.InsertInstanceRequest(project=project, zone=zone, instance_resource=vm,
                                               request_id=new_request_id())
    wait(clients, project, call(clients.instances.insert_unary, request=request, cancel=cancel),
         cancel)


def wait_status(clients: Any, project: str, zone: str, name: str, wanted: set[str],
                cancel: Cancel | None = None, deadline: float = RUNNING_DEADLINE) -> FoundVm:
    """Poll the VM until its status is one of `wanted`. NotFound propagates: it vanished."""
    cancel = cancel or NoCancel()
    stop = time.monotonic() + deadline
    vm = get(clients, project, zone, name, cancel)
    while vm.status not in wanted:
        if time.monotonic() > stop:
            raise TimeoutError(f"{name} still {vm.status} after {deadline:.0f} s")
        cancel.sleep(POLL_SECONDS)
        vm = get(clients, project, zone, name, cancel)
    return vm


def wait_running(clients: Any, project: str, zone: str, name: str,
                 cancel: Cancel | None = None) -> FoundVm:
    return wait_status(clients, project, zone, name, {"RUNNING"}, cancel)


def _vm_call(method: Callable[..., Any], request: Any, clients: Any, project: str,
             cancel: Cancel | None) -> None:
    cancel = cancel or NoCancel()
    cancel.check()
    wait(clients, project, call(method, request=request, cancel=cancel), cancel)


def start(clients: Any, project: str, zone: str, name: str,
          cancel: Cancel | None = None) -> None:
    request = compute_v1.StartInstanceRequest(project=project, zone=zone, instance=name,
                                              request_id=new_request_id())
    _vm_call(clients.instances.start_unary, request, clients, project, cancel)


def resume(clients: Any, project: str, zone: str, name: str,
           cancel: Cancel | None = None) -> None:
    request = compute_v1.ResumeInstanceRequest(project=project, zone=zone, instance=name,
                                               request_id=new_request_id())
    _vm_call(clients.instances.resume_unary, request, clients, project, cancel)


def delete(clients: Any, project: str, zone: str, name: str,
           cancel: Cancel | None = None) -> None:
    """Delete a VM and wait; a VM already gone is fine (destroy is idempotent)."""
    request = compute_v1.DeleteInstanceRequest(project=project, zone=zone, instance=name,
                                               request_id=new_request_id())
    try:
        _vm_call(clients.instances.delete_unary, request, clients, project, cancel)
    except exceptions.NotFound:
        return
