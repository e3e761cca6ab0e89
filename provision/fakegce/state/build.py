"""From an insert body (instances.insert, or one VM of instances.bulkInsert) to an `Instance`.

Validation only: nothing is stored here. Field paths in errors follow the request: `resource.*`
for insert, `resource.instanceProperties.*` for bulkInsert. See docs/compute-engine.md,
"Errors and retries".
"""

from __future__ import annotations

import re

from .. import rules
from ..errors import AlreadyExists, InvalidField
from .clock import now_rfc3339
from .core import EMPTY_FINGERPRINT, fingerprint, new_id
from .vm import AccessConfig, BootDisk, Instance, Nic, ProjectVms


def instance(held: ProjectVms, project: str, zone: str, body: dict, prefix: str,
             taken: set[str]) -> Instance:
    """Validate an insert body and make the Instance (not yet stored). `held` is the project's
    VMs, whose names and disks it must not reuse. Call locked."""
    name = rules.name(f"{prefix}.name", body.get("name"))
    if (zone, name) in held.instances or name in taken:
        raise AlreadyExists(f"projects/{project}/zones/{zone}/instances/{name}")
    mt = rules.machine_type(f"{prefix}.machineType", body.get("machineType"), project, zone)
    labels = rules.labels(f"{prefix}.labels", body.get("labels"))
    metadata = rules.metadata_items(f"{prefix}.metadata",
                                    (body.get("metadata") or {}).get("items"))
    disk = rules.boot_disk(prefix, body.get("disks"), project, zone, mt)
    boot = next(d for d in body["disks"] if d.get("boot"))
    disk_name = (boot.get("initializeParams") or {}).get("diskName") or name
    if (zone, disk_name) in held.disks:
        raise AlreadyExists(f"projects/{project}/zones/{zone}/disks/{disk_name}")
    nics = []
    for nic in body.get("networkInterfaces") or [{"network": "global/networks/default"}]:
        nics.append(Nic(
            network=rules.last_segment(nic.get("network") or "default"),
            fingerprint=fingerprint(nic, 1),
            access_configs=[AccessConfig(ac.get("name", "External NAT"),
                                         ac.get("type", "ONE_TO_ONE_NAT"),
                                         ac.get("networkTier", "PREMIUM"))
                            for ac in nic.get("accessConfigs") or []]))
    tags = list((body.get("tags") or {}).get("items") or [])
    return Instance(
        project=project, zone=zone, name=name, id=new_id(), machine=mt,
        disk=BootDisk(disk_name, disk["image"], disk["size_gb"], disk["disk_type"],
                      disk["auto_delete"]),
        nics=nics, created=now_rfc3339(), description=body.get("description", ""),
        tags=tags, tags_fingerprint=fingerprint(tags, 1) if tags else EMPTY_FINGERPRINT,
        can_ip_forward=bool(body.get("canIpForward")),
        deletion_protection=bool(body.get("deletionProtection")),
        service_accounts=[dict(sa) for sa in body.get("serviceAccounts") or []],
        scheduling=rules.scheduling(body.get("scheduling")), fingerprint=fingerprint(name, 1),
        labels=labels, metadata=metadata)


def bulk_names(body: dict, existing: list[str]) -> list[str]:
    """The names a bulkInsert makes: perInstanceProperties' keys, then numbered from
    `namePattern`, continuing after the highest existing match (`vm-0050` -> `vm-0051`)."""
    count = int(body.get("count") or 0)
    per = body.get("perInstanceProperties") or {}
    pattern = body.get("namePattern")
    if count < 1:
        raise InvalidField("resource.count", count, "Count must be at least 1.")
    names = list(per)
    if len(names) < count:
        runs = re.findall(r"#+", pattern or "")
        if pattern is None or len(runs) != 1 or len(runs[0]) > 18:
            raise InvalidField("resource.namePattern", pattern or "",
                               "Name pattern must contain one run of at most 18 '#'.")
        prefix, suffix = pattern.split(runs[0])
        numbered = re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix))
        used = [int(m.group(1)) for name in existing if (m := numbered.fullmatch(name))]
        start = max(used, default=0) + 1
        names += [f"{prefix}{n:0{len(runs[0])}d}{suffix}"
                  for n in range(start, start + count - len(names))]
    return names[:max(count, len(per))]


