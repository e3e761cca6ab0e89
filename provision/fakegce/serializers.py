"""Wire JSON: state models and errors as Compute Engine's REST API shows them.

The only place that knows JSON field names, `kind`s and full resource URLs. Responses are
built fresh per request (the state keeps plain values), so a handler may change what it gets.
int64 fields are strings, as on the wire. See docs/compute-engine.md.
"""

from __future__ import annotations

import zlib
from typing import Any

from . import catalog
from .errors import HTTP_MESSAGES, GceError, OperationFailure
from .faults import Faults
from .state import Firewall, Instance, Operation
from .state.projects import Project, metadata_fingerprint

BASE = "https://www.googleapis.com/compute/v1/"

Json = dict[str, Any]  # a JSON object as it goes on the wire


def link(path: str) -> str:
    """A full resource URL from its path (`projects/P/zones/Z/instances/N`)."""
    return BASE + path


def zone_url(project: str, zone: str) -> str:
    return f"{BASE}projects/{project}/zones/{zone}"


# -- errors -----------------------------------------------------------------------------------

def error_body(e: GceError) -> Json:
    item: Json = {"message": e.message, "domain": e.domain, "reason": e.reason, **e.extra}
    return {"error": {"code": e.status, "message": e.message, "errors": [item]}}


def failure_fields(f: OperationFailure) -> Json:
    err: Json = {"code": f.code, "message": f.message}
    if f.details:
        err["errorDetails"] = f.details
    return {"error": {"errors": [err]}, "httpErrorStatusCode": f.http_status,
            "httpErrorMessage": HTTP_MESSAGES.get(f.http_status, "ERROR")}


def faults_json(faults: Faults) -> Json:
    return faults.spec()


# -- operations -------------------------------------------------------------------------------

def operation_json(op: Operation) -> Json:
    out: Json = {
        "kind": "compute#operation", "id": op.id, "name": op.name,
        "operationType": op.operation_type, "targetLink": link(op.target),
        "targetId": op.target_id, "status": op.status, "user": "archfarm@fake",
        "progress": op.progress, "insertTime": op.insert_time, "selfLink": link(op.path),
    }
    if op.zone:
        out["zone"] = zone_url(op.project, op.zone)
    for key, value in (("startTime", op.start_time), ("endTime", op.end_time),
                       ("clientOperationId", op.client_operation_id),
                       ("operationGroupId", op.group_id),
                       ("statusMessage", op.status_message)):
        if value:
            out[key] = value
    if op.bulk and op.status == "DONE":
        out["instancesBulkInsertOperationMetadata"] = {"perLocationStatus": {
            f"zones/{op.zone}": {
                "status": "DONE", "targetVmCount": op.bulk.target,
                "createdVmCount": op.bulk.created, "failedToCreateVmCount": op.bulk.failed,
                "deletedVmCount": op.bulk.deleted}}}
    if op.failure:
        out.update(failure_fields(op.failure))
    return out


# -- instances --------------------------------------------------------------------------------

def instance_json(vm: Instance) -> Json:
    project, zone = vm.project, vm.zone
    zurl = zone_url(project, zone)
    running = vm.status == "RUNNING"
    region = catalog.region_of(zone)
    nics: list[Json] = []
    for i, nic in enumerate(vm.nics):
        nic_out: Json = {
            "kind": "compute#networkInterface",
            "network": f"{BASE}projects/{project}/global/networks/{nic.network}",
            "subnetwork": f"{BASE}projects/{project}/regions/{region}/subnetworks/{nic.network}",
            "networkIP": vm.network_ip, "name": f"nic{i}", "fingerprint": nic.fingerprint,
            "stackType": "IPV4_ONLY",
        }
        if nic.access_configs:
            nic_out["accessConfigs"] = [
                {"kind": "compute#accessConfig", "type": ac.type, "name": ac.name,
                 "networkTier": ac.network_tier,
                 **({"natIP": vm.nat_ip} if running and vm.nat_ip else {})}
                for ac in nic.access_configs]
        nics.append(nic_out)
    disk, img = vm.disk, vm.disk.image
    tags: Json = {"fingerprint": vm.tags_fingerprint}
    if vm.tags:
        tags = {"items": list(vm.tags), **tags}
    metadata: Json = {"kind": "compute#metadata", "fingerprint": vm.metadata_fingerprint}
    if vm.metadata:
        metadata["items"] = [dict(item) for item in vm.metadata]
    out: Json = {
        "kind": "compute#instance", "id": vm.id, "creationTimestamp": vm.created,
        "name": vm.name, "description": vm.description, "tags": tags,
        "machineType": f"{zurl}/machineTypes/{vm.machine.name}", "status": vm.status,
        "zone": zurl, "canIpForward": vm.can_ip_forward, "networkInterfaces": nics,
        "disks": [{
            "kind": "compute#attachedDisk", "type": "PERSISTENT", "mode": "READ_WRITE",
            "source": f"{zurl}/disks/{disk.name}", "deviceName": "persistent-disk-0",
            "index": 0, "boot": True, "autoDelete": disk.auto_delete, "interface": "SCSI",
            "licenses": [f"{BASE}projects/{img.project}/global/licenses/{img.family}"],
            "guestOsFeatures": [{"type": "UEFI_COMPATIBLE"}, {"type": "GVNIC"}],
            "diskSizeGb": str(disk.size_gb), "architecture": img.architecture,
        }],
        "metadata": metadata,
        "serviceAccounts": [dict(sa) for sa in vm.service_accounts],
        "selfLink": link(vm.path), "scheduling": dict(vm.scheduling),
        "cpuPlatform": vm.machine.family.cpu_platform if running else "Unknown CPU Platform",
        "labelFingerprint": vm.label_fingerprint, "startRestricted": False,
        "deletionProtection": vm.deletion_protection, "fingerprint": vm.fingerprint,
    }
    if vm.labels:
        out["labels"] = dict(vm.labels)
    for key, value in (("lastStartTimestamp", vm.last_start),
                       ("lastStopTimestamp", vm.last_stop),
                       ("lastSuspendedTimestamp", vm.last_suspended)):
        if value:
            out[key] = value
    return out


def guest_attribute_json(vm: Instance, variable_key: str, value: str) -> Json:
    return {"kind": "compute#guestAttributes", "variableKey": variable_key,
            "variableValue": value,
            "selfLink": f"{link(vm.path)}/guestAttributes/{variable_key}"}


def guest_attributes_json(vm: Instance, query_path: str,
                          items: list[tuple[str, str, str]]) -> Json:
    return {"kind": "compute#guestAttributes", "queryPath": query_path,
            "queryValue": {"items": [{"namespace": ns, "key": k, "value": v}
                                     for ns, k, v in items]},
            "selfLink": f"{link(vm.path)}/guestAttributes/{query_path}"}


# -- firewalls --------------------------------------------------------------------------------

def firewall_json(fw: Firewall) -> Json:
    out: Json = {
        "kind": "compute#firewall", "id": fw.id, "creationTimestamp": fw.created,
        "name": fw.name, "description": fw.description,
        "network": f"{BASE}projects/{fw.project}/global/networks/{fw.network}",
        "priority": fw.priority, "direction": fw.direction,
        "logConfig": {"enable": fw.log_enabled}, "disabled": fw.disabled,
        "selfLink": link(fw.path),
    }
    if fw.direction == "INGRESS":
        out["sourceRanges"] = list(fw.source_ranges)
    for key, value in (("allowed", fw.allowed), ("denied", fw.denied),
                       ("sourceTags", fw.source_tags), ("targetTags", fw.target_tags),
                       ("sourceServiceAccounts", fw.source_service_accounts),
                       ("targetServiceAccounts", fw.target_service_accounts),
                       ("destinationRanges", fw.destination_ranges)):
        if value:
            out[key] = [dict(v) if isinstance(v, dict) else v for v in value]
    return out


# -- catalog: images, machine types, zones ----------------------------------------------------

def _stable_id(name: str) -> str:
    return str(10**18 + zlib.crc32(name.encode()))


def image_json(img: catalog.Image) -> Json:
    out: Json = {
        "kind": "compute#image", "id": _stable_id(img.name),
        "creationTimestamp": "2025-11-11T00:00:00.000-08:00", "name": img.name,
        "description": img.description, "family": img.family,
        "architecture": img.architecture, "status": "READY", "sourceType": "RAW",
        "diskSizeGb": str(img.disk_size_gb), "archiveSizeBytes": "1234567890",
        "licenses": [f"{BASE}projects/{img.project}/global/licenses/{img.family}"],
        "guestOsFeatures": [{"type": "UEFI_COMPATIBLE"}, {"type": "GVNIC"}],
        "storageLocations": ["us", "eu", "asia"], "labelFingerprint": "42WmSpB8rSM=",
        "selfLink": f"{BASE}projects/{img.project}/global/images/{img.name}",
    }
    if img.deprecated:
        current = catalog.image_from_family(img.project, img.family)
        if current is None:  # the catalog gives every family a current image
            raise RuntimeError(f"image family {img.project}/{img.family} has no current image")
        out["deprecated"] = {"state": "DEPRECATED", "replacement": out["selfLink"].replace(
            img.name, current.name)}
    return out


def machine_type_json(project: str, zone: str, mt: catalog.MachineType) -> Json:
    gb = mt.memory_mb / 1024
    return {
        "kind": "compute#machineType", "id": _stable_id(mt.name),
        "creationTimestamp": "2015-01-16T09:25:43.314-08:00", "name": mt.name,
        "description": f"{mt.cpus} vCPU{'s' if mt.cpus > 1 else ''}, {gb:g} GB RAM",
        "guestCpus": mt.cpus, "memoryMb": mt.memory_mb, "imageSpaceGb": 0,
        "maximumPersistentDisks": 128, "maximumPersistentDisksSizeGb": "263168",
        "zone": zone, "isSharedCpu": mt.name in ("e2-micro", "e2-small", "e2-medium"),
        "architecture": mt.architecture,
        "selfLink": f"{zone_url(project, zone)}/machineTypes/{mt.name}",
    }


def zone_json(project: str, zone: str) -> Json:
    platforms = sorted({f.cpu_platform for f in catalog.FAMILIES if zone in f.zones})
    return {
        "kind": "compute#zone", "id": str(2000 + catalog.ALL_ZONES.index(zone)),
        "creationTimestamp": "1969-12-31T16:00:00.000-08:00", "name": zone,
        "description": zone, "status": "UP",
        "region": f"{BASE}projects/{project}/regions/{catalog.region_of(zone)}",
        "selfLink": zone_url(project, zone), "availableCpuPlatforms": platforms,
        "supportsPzs": False,
    }


def region_json(project: str, region: str, quotas: list[tuple[str, float, float]]) -> Json:
    return {
        "kind": "compute#region", "id": str(1000 + list(catalog.ZONES).index(region)),
        "creationTimestamp": "1969-12-31T16:00:00.000-08:00", "name": region,
        "description": region, "status": "UP",
        "zones": [zone_url(project, z) for z in catalog.ZONES[region]],
        "quotas": [{"metric": metric, "limit": limit, "usage": usage}
                   for metric, limit, usage in quotas],
        "selfLink": f"{BASE}projects/{project}/regions/{region}", "supportsPzs": False,
    }


# -- projects ---------------------------------------------------------------------------------

def project_json(proj: Project) -> Json:
    metadata: Json = {"kind": "compute#metadata", "fingerprint": metadata_fingerprint(proj)}
    if proj.metadata:
        metadata["items"] = [dict(item) for item in proj.metadata]
    return {
        "kind": "compute#project", "id": proj.id, "name": proj.name,
        "creationTimestamp": "2025-01-06T09:00:00.000-08:00",
        "commonInstanceMetadata": metadata,
        # The number in a real address is the project number, not its id [inferred].
        "defaultServiceAccount": f"{proj.id[:12]}-compute@developer.gserviceaccount.com",
        "defaultNetworkTier": "PREMIUM", "xpnProjectStatus": "UNSPECIFIED_XPN_PROJECT_STATUS",
        "selfLink": f"{BASE}projects/{proj.name}",
    }
