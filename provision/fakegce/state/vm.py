"""The instance model: plain values, no wire JSON (that is `serializers.py`); and `VmTable`,
the VMs the fake holds, which the instances backend writes and quotas count.

See docs/compute-engine.md, "Instance states".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .. import catalog
from ..backends import VmView
from .core import fingerprint

if TYPE_CHECKING:
    from .operations import Operation


@dataclass
class AccessConfig:
    name: str
    type: str
    network_tier: str


@dataclass
class Nic:
    network: str  # network name
    fingerprint: str
    access_configs: list[AccessConfig] = field(default_factory=list)


@dataclass
class BootDisk:
    name: str
    image: catalog.Image
    size_gb: int
    disk_type: str
    auto_delete: bool


@dataclass
class Instance:
    project: str
    zone: str
    name: str
    id: str
    machine: catalog.MachineType
    disk: BootDisk
    nics: list[Nic]
    created: str
    description: str = ""
    tags: list[str] = field(default_factory=list)
    tags_fingerprint: str = ""
    can_ip_forward: bool = False
    deletion_protection: bool = False
    service_accounts: list[dict] = field(default_factory=list)  # as sent
    scheduling: dict = field(default_factory=dict)  # normalised by rules.scheduling
    fingerprint: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    metadata: list[dict] = field(default_factory=list)  # [{"key", "value"}], in order
    status: str = "PROVISIONING"
    nat_ip: str | None = None  # reserved for the VM's life; shown only while it runs
    network_ip: str | None = None
    last_start: str | None = None
    last_stop: str | None = None       # lastStopTimestamp: the last time it went TERMINATED
    last_suspended: str | None = None  # lastSuspendedTimestamp
    guest_attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    operation_in_flight: Operation | None = None  # until done, a mutation gets resourceNotReady
    label_version: int = 0
    metadata_version: int = 0
    epoch: int = 0  # bumps on delete so pending transitions of a dead VM do nothing
    # Kept current by the setters below: a hash per GET was a third of its cost.
    label_fingerprint: str = field(init=False)
    metadata_fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        self.label_fingerprint = fingerprint(self.labels, self.label_version)
        self.metadata_fingerprint = fingerprint(self.metadata, self.metadata_version)

    def replace_labels(self, labels: dict[str, str]) -> None:
        self.labels, self.label_version = labels, self.label_version + 1
        self.label_fingerprint = fingerprint(labels, self.label_version)

    def replace_metadata(self, items: list[dict]) -> None:
        self.metadata, self.metadata_version = items, self.metadata_version + 1
        self.metadata_fingerprint = fingerprint(items, self.metadata_version)

    @property
    def path(self) -> str:
        return f"projects/{self.project}/zones/{self.zone}/instances/{self.name}"

    def metadata_value(self, key: str) -> str | None:
        return next((i["value"] for i in self.metadata if i["key"] == key), None)

    def view(self) -> VmView:
        img = self.disk.image
        return VmView(self.project, self.zone, self.name, self.id, self.nat_ip,
                      self.machine.architecture, {i["key"]: i["value"] for i in self.metadata},
                      image_project=img.project, image_family=img.family,
                      image_name=img.name, network_ip=self.network_ip)


@dataclass
class ProjectVms:
    """One project's VMs, by (zone, name) and by id, and the boot disks they hold."""

    instances: dict[tuple[str, str], Instance] = field(default_factory=dict)  # (zone, name)
    instances_by_id: dict[str, Instance] = field(default_factory=dict)
    disks: set[tuple[str, str]] = field(default_factory=set)  # (zone, disk name)


class VmTable:
    """Every VM the fake holds, per project. Call locked."""

    def __init__(self) -> None:
        self._projects: dict[str, ProjectVms] = {}

    def project(self, name: str) -> ProjectVms:
        held = self._projects.get(name)
        if held is None:
            held = self._projects[name] = ProjectVms()
        return held

    def all(self) -> list[Instance]:
        return [vm for held in self._projects.values() for vm in held.instances.values()]

    def clear(self) -> None:
        self._projects.clear()
