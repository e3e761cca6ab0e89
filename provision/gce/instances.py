"""The farm's VMs on Compute Engine: find them by label, create with zone failover, delete.

Ownership is by labels, never by a local state file: a VM belongs to farm F only if it carries
`managed-by=archfarm` and `archfarm-farm=F`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from google.api_core import exceptions
from google.cloud import compute_v1

from ..inventory import ARM64_ZONES, Farm, Node, platform_of
from .operations import OperationError, call, new_request_id, wait

MANAGED_BY = "managed-by"
FARM_LABEL = "archfarm-farm"
NODE_LABEL = "archfarm-node"
PLATFORM_LABEL = "archfarm-platform"

# Operation errors after which the next zone may still work.
ZONE_EXHAUSTED = {"ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS",
                  "UNSUPPORTED_OPERATION"}


def region_of(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


def labels_for(farm: Farm, node: Node) -> dict[str, str]:
    return {MANAGED_BY: "archfarm", FARM_LABEL: farm.farm, NODE_LABEL: node.name,
            PLATFORM_LABEL: node.platform.replace("/", "-")}


@dataclass
class FoundVm:
    name: str
    zone: str
    status: str
    machine_type: str
    labels: dict[str, str]
    external_ip: str | None
    internal_ip: str | None

    @property
    def node(self) -> str | None:
        return self.labels.get(NODE_LABEL)

    def owned_by(self, farm: str) -> bool:
        return self.labels.get(MANAGED_BY) == "archfarm" and self.labels.get(FARM_LABEL) == farm

    @property
    def platform(self) -> str:
        label = self.labels.get(PLATFORM_LABEL)
        return label.replace("-", "/", 1) if label else platform_of(self.machine_type)


def _found(vm) -> FoundVm:
    nic = vm.network_interfaces[0] if vm.network_interfaces else None
    external = None
    if nic and nic.access_configs:
        external = nic.access_configs[0].nat_i_p or None
    return FoundVm(name=vm.name, zone=vm.zone.rsplit("/", 1)[-1], status=vm.status,
                   machine_type=vm.machine_type.rsplit("/", 1)[-1], labels=dict(vm.labels),
                   external_ip=external, internal_ip=nic.network_i_p if nic else None)


def find(clients, project: str, filter_: str) -> list[FoundVm]:
    """One aggregated list across all zones (pages followed by the client's pager)."""
    request = compute_v1.AggregatedListInstancesRequest(project=project, filter=filter_)
    pages = call(clients.instances.aggregated_list, request=request)
    return sorted((_found(vm) for _, scope in pages for vm in scope.instances),
                  key=lambda v: v.name)


def find_farm(clients, farm: Farm) -> list[FoundVm]:
    return find(clients, farm.gcp.project,
                f'(labels.{MANAGED_BY} = "archfarm") AND (labels.{FARM_LABEL} = "{farm.farm}")')


def find_named_like_farm(clients, farm: Farm) -> list[FoundVm]:
    """VMs whose names look like this farm's, owned or not (to report collisions)."""
    return find(clients, farm.gcp.project, f"name eq '{farm.farm}-.*'")


def instance_body(farm: Farm, node: Node, zone: str, public_key: str) -> compute_v1.Instance:
    scheduling = compute_v1.Scheduling()
    if node.spot:
        scheduling = compute_v1.Scheduling(provisioning_model="SPOT",
                                           instance_termination_action="DELETE",
                                           automatic_restart=False,
                                           on_host_maintenance="TERMINATE")
    if node.max_run_hours:
        scheduling.max_run_duration = compute_v1.Duration(seconds=node.max_run_hours * 3600)
        scheduling.instance_termination_action = "DELETE"
    metadata = {
        "ssh-keys": f"{farm.ssh.user}:{public_key.strip()} archfarm-{farm.farm}",
        "enable-guest-attributes": "TRUE",
        "block-project-ssh-keys": "TRUE",
    }
    return compute_v1.Instance(
        name=node.vm_name,
        machine_type=f"zones/{zone}/machineTypes/{node.machine_type}",
        labels=labels_for(farm, node),
        tags=compute_v1.Tags(items=[f"archfarm-{farm.farm}"]),
        metadata=compute_v1.Metadata(items=[compute_v1.Items(key=k, value=v)
                                            for k, v in metadata.items()]),
        disks=[compute_v1.AttachedDisk(
            boot=True, auto_delete=True, type_="PERSISTENT",
            initialize_params=compute_v1.AttachedDiskInitializeParams(
                source_image=node.image, disk_size_gb=node.disk_gb,
                disk_type=f"zones/{zone}/diskTypes/{node.disk_type}"))],
        network_interfaces=[compute_v1.NetworkInterface(
            network=f"global/networks/{farm.gcp.network}",
            access_configs=[compute_v1.AccessConfig(name="External NAT",
                                                    type_="ONE_TO_ONE_NAT")])],
        scheduling=scheduling,
    )


@dataclass
class Placement:
    """Where a node landed, and why the zones before it were passed over."""

    zone: str | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None


def _insert(clients, project: str, zone: str, body: compute_v1.Instance) -> None:
    # One requestId for every retry of this insert: a retry after a lost response returns
    # the first operation instead of creating a second VM.
    request = compute_v1.InsertInstanceRequest(project=project, zone=zone,
                                               instance_resource=body,
                                               request_id=new_request_id())
    op = call(clients.instances.insert_unary, request=request)
    wait(clients, project, op)


def create(clients, farm: Farm, node: Node, public_key: str,
           progress: Callable[[str], None]) -> Placement:
    """Create the node's VM in the first zone that can take it."""
    placement = Placement()
    project = farm.gcp.project
    family = node.machine_type.split("-", 1)[0]
    dead_regions: set[str] = set()
    for zone in node.zones:
        if region_of(zone) in dead_regions:
            placement.skipped.append((zone, f"quota exhausted in {region_of(zone)}"))
            continue
        if family in ARM64_ZONES and zone not in ARM64_ZONES[family]:
            placement.skipped.append((zone, f"{family.upper()} is not offered there"))
            continue
        progress(f"creating in {zone}")
        try:
            _insert(clients, project, zone, instance_body(farm, node, zone, public_key))
            placement.zone = zone
            return placement
        except OperationError as e:
            delete(clients, project, zone, node.vm_name)  # a failed insert leaves nothing
            if e.code in ZONE_EXHAUSTED:
                reason = f"{e.code} (no capacity)"
            elif e.code == "QUOTA_EXCEEDED":
                dead_regions.add(region_of(zone))
                reason = f"QUOTA_EXCEEDED in {region_of(zone)}: {e.message}"
            else:
                placement.error = f"{zone}: {e.code}: {e.message}"
                return placement
        except exceptions.BadRequest as e:
            text = e.message or str(e)
            reasons = {d.get("reason") for d in (e.errors or []) if isinstance(d, dict)}
            if "resourceNotReady" in reasons:
                reason = "resourceNotReady"
            elif "does not exist in zone" in text:
                reason = f"{node.machine_type} is not offered there"
            else:
                placement.error = f"{zone}: {_api_message(e)}"
                return placement
        except exceptions.Conflict:
            placement.error = (f"a VM named {node.vm_name} already exists in {zone} without"
                               f" this farm's labels; rename the node or remove that VM")
            return placement
        except exceptions.GoogleAPICallError as e:
            placement.error = f"{zone}: {_api_message(e)}"
            return placement
        placement.skipped.append((zone, reason))
        progress(f"{zone}: {reason}; trying the next zone")
    placement.error = "no zone could take it: " + "; ".join(f"{z}: {r}"
                                                            for z, r in placement.skipped)
    return placement


def _api_message(e: exceptions.GoogleAPICallError) -> str:
    """The server's message without the request line the client prepends."""
    text = e.message or str(e)
    return text.split(": ", 1)[1] if text.startswith(("GET ", "POST ", "DELETE ")) else text


def start(clients, project: str, zone: str, name: str) -> None:
    request = compute_v1.StartInstanceRequest(project=project, zone=zone, instance=name,
                                              request_id=new_request_id())
    wait(clients, project, call(clients.instances.start_unary, request=request))


def delete(clients, project: str, zone: str, name: str) -> None:
    """Delete a VM and wait; a VM already gone is fine (destroy is idempotent)."""
    request = compute_v1.DeleteInstanceRequest(project=project, zone=zone, instance=name,
                                               request_id=new_request_id())
    try:
        op = call(clients.instances.delete_unary, request=request)
    except exceptions.NotFound:
        return
    wait(clients, project, op)


def get(clients, project: str, zone: str, name: str) -> FoundVm:
    return _found(call(clients.instances.get, project=project, zone=zone, instance=name))
