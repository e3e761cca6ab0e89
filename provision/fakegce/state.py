"""State models of the fake Compute Engine: projects, instances, operations, firewalls.

No HTTP here (moto's split): methods take plain values and request bodies as dicts, return model
objects, and raise `errors.GceError`. Time is real: operations and instance states advance on a
scheduler thread, so clients see PENDING -> RUNNING -> DONE and PROVISIONING -> STAGING -> RUNNING
exactly as they would poll them on GCE.
"""

from __future__ import annotations

import base64
import copy
import functools
import hashlib
import heapq
import ipaddress
import itertools
import json
import random
import re
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from . import catalog, rules
from .backends import BootBackend, MemoryBackend, VmView
from .errors import (
    AlreadyExists,
    ConditionNotMet,
    GceError,
    InvalidField,
    NotFound,
    OperationFailure,
    ResourceNotReady,
    quota_exceeded,
    stockout,
)
from .faults import Faults

BASE = "https://www.googleapis.com/compute/v1/"
PACIFIC = timezone(timedelta(hours=-8))
EMPTY_FINGERPRINT = "42WmSpB8rSM="  # what GCE returns for an empty label set
WAIT_SECONDS = 120.0  # zoneOperations.wait returns after about two minutes, done or not


def now_rfc3339() -> str:
    return datetime.now(PACIFIC).isoformat(timespec="milliseconds")


def new_id() -> str:
    return str(random.randrange(10**18, 2**63))


def fingerprint(value: object, version: int) -> str:
    if not value and version == 0:
        return EMPTY_FINGERPRINT
    data = json.dumps([value, version], sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()[:8]).decode()


def zone_url(project: str, zone: str) -> str:
    return f"{BASE}projects/{project}/zones/{zone}"


def replayable(method):
    """requestId de-duplication for a mutation, under the state lock.

    A request repeated with the same requestId gets the first one's operation back instead of
    acting twice. A request rejected before it made an operation left nothing under its id, so
    a corrected retry with the same id acts: mutations validate before making the operation.
    """
    @functools.wraps(method)
    def wrapper(self, project: str, *args, request_id: str | None = None):
        with self.lock:
            request_id = rules.request_id(request_id)
            replay = self.project(project).request_ids.get(request_id) if request_id else None
            return replay or method(self, project, *args, request_id=request_id)
    return wrapper


class Scheduler:
    """One thread running callbacks at due times; `clear` drops everything pending.

    Callbacks run without the state lock: each takes it itself (see ComputeState._steps).
    """

    def __init__(self) -> None:
        self._heap: list = []
        self._seq = itertools.count()
        self._wake = threading.Condition(threading.Lock())
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="fakegce-scheduler", daemon=True)
        self._thread.start()

    def later(self, delay: float, fn: Callable[[], None]) -> None:
        with self._wake:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), fn))
            self._wake.notify()

    def clear(self) -> None:
        with self._wake:
            self._heap.clear()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopped and (
                        not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._wake.wait(timeout)
                if self._stopped:
                    return
                _, _, fn = heapq.heappop(self._heap)
            fn()


@dataclass
class Operation:
    project: str
    name: str
    operation_type: str
    target_link: str
    target_id: str
    zone: str | None = None  # None: a global operation
    client_operation_id: str | None = None
    status: str = "PENDING"
    progress: int = 0
    id: str = field(default_factory=new_id)
    insert_time: str = field(default_factory=now_rfc3339)
    start_time: str | None = None
    end_time: str | None = None
    failure: OperationFailure | None = None

    @property
    def self_link(self) -> str:
        scope = f"zones/{self.zone}" if self.zone else "global"
        return f"{BASE}projects/{self.project}/{scope}/operations/{self.name}"

    def start(self) -> None:
        if self.status == "PENDING":
            self.status, self.start_time = "RUNNING", now_rfc3339()

    def finish(self, failure: OperationFailure | None = None) -> None:
        self.start()
        self.status, self.progress, self.end_time = "DONE", 100, now_rfc3339()
        self.failure = failure

    def to_json(self) -> dict:
        out = {
            "kind": "compute#operation", "id": self.id, "name": self.name,
            "operationType": self.operation_type, "targetLink": self.target_link,
            "targetId": self.target_id, "status": self.status, "user": "archfarm@fake",
            "progress": self.progress, "insertTime": self.insert_time, "selfLink": self.self_link,
        }
        if self.zone:
            out["zone"] = zone_url(self.project, self.zone)
        for key, value in (("startTime", self.start_time), ("endTime", self.end_time),
                           ("clientOperationId", self.client_operation_id)):
            if value:
                out[key] = value
        if self.failure:
            out.update(self.failure.fields())
        return out


@dataclass
class Instance:
    project: str
    zone: str
    name: str
    resource: dict  # the JSON GCE returns, less what `to_json` derives
    machine: catalog.MachineType
    disk: dict
    labels: dict[str, str] = field(default_factory=dict)
    metadata: list[dict] = field(default_factory=list)
    status: str = "PROVISIONING"
    nat_ip: str | None = None  # reserved for the VM's life; shown only while it runs
    network_ip: str | None = None
    guest_attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    busy: Operation | None = None
    label_version: int = 0
    metadata_version: int = 0
    epoch: int = 0  # bumps on delete so pending transitions of a dead VM do nothing

    @property
    def path(self) -> str:
        return f"projects/{self.project}/zones/{self.zone}/instances/{self.name}"

    @property
    def self_link(self) -> str:
        return BASE + self.path

    @property
    def label_fingerprint(self) -> str:
        return fingerprint(self.labels, self.label_version)

    @property
    def metadata_fingerprint(self) -> str:
        return fingerprint(self.metadata, self.metadata_version)

    def metadata_value(self, key: str) -> str | None:
        return next((i["value"] for i in self.metadata if i["key"] == key), None)

    def view(self) -> VmView:
        return VmView(self.project, self.zone, self.name, self.resource["id"], self.nat_ip,
                      self.machine.architecture, {i["key"]: i["value"] for i in self.metadata})

    def to_json(self) -> dict:
        # Shallow on purpose (a deep copy was half of a GET's cost): nested parts of
        # `resource` are never changed after creation, except the NICs, copied here.
        out = dict(self.resource)
        out["networkInterfaces"] = [
            {**nic, **({"accessConfigs": [dict(ac) for ac in nic["accessConfigs"]]}
                       if "accessConfigs" in nic else {})}
            for nic in self.resource["networkInterfaces"]]
        out["status"] = self.status
        out["labels"] = dict(self.labels)
        out["labelFingerprint"] = self.label_fingerprint
        meta = {"kind": "compute#metadata", "fingerprint": self.metadata_fingerprint}
        if self.metadata:
            meta["items"] = [dict(item) for item in self.metadata]
        out["metadata"] = meta
        out["cpuPlatform"] = (self.machine.family.cpu_platform if self.status == "RUNNING"
                              else "Unknown CPU Platform")
        for nic in out["networkInterfaces"]:
            nic["networkIP"] = self.network_ip
            for ac in nic.get("accessConfigs", []):
                if self.status == "RUNNING" and self.nat_ip:
                    ac["natIP"] = self.nat_ip
        if not out["labels"]:
            del out["labels"]
        return out


@dataclass
class Firewall:
    project: str
    resource: dict

    @property
    def name(self) -> str:
        return self.resource["name"]

    def to_json(self) -> dict:
        return copy.deepcopy(self.resource)


@dataclass
class Project:
    name: str
    instances: dict[tuple[str, str], Instance] = field(default_factory=dict)
    disks: set[tuple[str, str]] = field(default_factory=set)
    firewalls: dict[str, Firewall] = field(default_factory=dict)
    pending_firewalls: set[str] = field(default_factory=set)
    operations: dict[str, Operation] = field(default_factory=dict)
    request_ids: dict[str, Operation] = field(default_factory=dict)


class AddressPool:
    """Loopback addresses only: nothing a client is told may route off this machine."""

    def __init__(self, first: str, last: str):
        self._first = int(ipaddress.IPv4Address(first))
        self._last = int(ipaddress.IPv4Address(last))
        self._used: set[int] = set()

    def take(self) -> str:
        for n in range(self._first, self._last + 1):
            if n not in self._used and (n & 0xFF) not in (0, 255):
                self._used.add(n)
                return str(ipaddress.IPv4Address(n))
        raise GceError("No addresses left in the fake's loopback pool.", status=503,
                       reason="backendError")

    def release(self, address: str | None) -> None:
        if address:
            self._used.discard(int(ipaddress.IPv4Address(address)))


class ComputeState:
    """Everything the fake knows. All public methods are thread-safe."""

    def __init__(self, backend: BootBackend | None = None, operation_seconds: float = 0.2,
                 boot_seconds: float = 0.0, wait_seconds: float = WAIT_SECONDS):
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.defaults = Faults(operation_seconds=operation_seconds, boot_seconds=boot_seconds)
        self.faults = Faults(operation_seconds=operation_seconds, boot_seconds=boot_seconds)
        self.backend = backend or MemoryBackend(lambda: self.faults.boot_seconds)
        self.wait_seconds = wait_seconds
        self.scheduler = Scheduler()
        # Backend calls (docker start/stop/rm) can take a second: never under the lock.
        self._effects = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fakegce-backend")
        self._projects: dict[str, Project] = {}
        self._nat_ips = AddressPool("127.0.0.2", "127.0.63.254")
        self._internal_ips = AddressPool("127.128.0.2", "127.128.255.254")

    # -- housekeeping -------------------------------------------------------------------------

    def reset(self) -> None:
        with self.lock:
            self.scheduler.clear()
            vms = [vm for p in self._projects.values() for vm in p.instances.values()]
            for vm in vms:
                self._release(vm)
            self._projects.clear()
            self.faults.configure({}, self.defaults)
            self.changed.notify_all()
        for vm in vms:
            self.backend.destroy(vm.view())

    def close(self) -> None:
        self.reset()
        self.scheduler.stop()
        self._effects.shutdown(wait=True)
        self.backend.close()

    def project(self, name: str) -> Project:
        if name not in self._projects:
            self._projects[name] = Project(name)
        return self._projects[name]

    def _steps(self, steps: list[tuple[float, Callable[[], None]]]) -> None:
        """Run each step at its fraction of the operation time; all at once when it is 0."""
        seconds = self.faults.operation_seconds
        for fraction, fn in steps:
            if seconds <= 0:
                fn()
            else:
                self.scheduler.later(seconds * fraction, self._locked(fn))
        self.changed.notify_all()

    def _locked(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            with self.lock:
                fn()
                self.changed.notify_all()
        return run

    def _backend(self, method: Callable[[VmView], None], vm: Instance,
                 then: Callable[[], None] | None = None) -> None:
        """Call the backend off the lock with a snapshot of the VM, then `then` under it."""
        view = vm.view()

        def work() -> None:
            try:
                method(view)
            except Exception as e:  # noqa: BLE001 (a broken VM must not break the fake)
                print(f"fakegce: backend {self.backend.name}: {e}", file=sys.stderr, flush=True)
            if then:
                self._locked(then)()
        self._effects.submit(work)

    def _operation(self, project: str, op_type: str, target_link: str, target_id: str,
                   zone: str | None, request_id: str | None) -> Operation:
        ms = int(time.time() * 1000)
        name = (f"operation-{ms}-{random.getrandbits(52):013x}-{random.getrandbits(32):08x}-"
                f"{random.getrandbits(32):08x}")
        op = Operation(project, name, op_type, target_link, target_id, zone, request_id)
        proj = self.project(project)
        proj.operations[name] = op
        if request_id:
            proj.request_ids[request_id] = op
        return op

    @staticmethod
    def _zone(zone: str) -> str:
        if zone not in catalog.ALL_ZONES:
            raise InvalidField("zone", zone, "Unknown zone.")
        return zone

    # -- instances ----------------------------------------------------------------------------

    def _find(self, project: str, zone: str, name: str) -> Instance:
        vm = self.project(project).instances.get((zone, name))
        if vm is None:
            raise NotFound(f"projects/{project}/zones/{zone}/instances/{name}")
        return vm

    def get_instance(self, project: str, zone: str, name: str) -> Instance:
        with self.lock:
            self._zone(zone)
            return self._find(project, zone, name)

    def list_instances(self, project: str, zone: str | None = None) -> list[Instance]:
        with self.lock:
            vms = self.project(project).instances.values()
            return [vm for vm in vms if zone is None or vm.zone == zone]

    def _build_instance(self, project: str, zone: str, body: dict, field_prefix: str,
                        taken: set[str]) -> Instance:
        """Validate an insert body and make the Instance (not yet stored)."""
        name = rules.name(f"{field_prefix}.name", body.get("name"))
        proj = self.project(project)
        if (zone, name) in proj.instances or name in taken:
            raise AlreadyExists(f"projects/{project}/zones/{zone}/instances/{name}")
        mt = rules.machine_type(f"{field_prefix}.machineType", body.get("machineType"),
                                project, zone)
        labels = rules.labels(f"{field_prefix}.labels", body.get("labels"))
        metadata = rules.metadata_items(f"{field_prefix}.metadata",
                                        (body.get("metadata") or {}).get("items"))
        disk = rules.boot_disk(body.get("disks"), project, zone, mt)
        disk_name = ((next(d for d in body["disks"] if d.get("boot")).get("initializeParams")
                      or {}).get("diskName") or name)
        if (zone, disk_name) in proj.disks:
            raise AlreadyExists(f"projects/{project}/zones/{zone}/disks/{disk_name}")
        disk["name"] = disk_name
        scheduling = rules.scheduling(body.get("scheduling"))
        nics = body.get("networkInterfaces") or [{"network": "global/networks/default"}]
        region = catalog.region_of(zone)
        interfaces = []
        for i, nic in enumerate(nics):
            network = rules.last_segment(nic.get("network") or "default")
            iface = {
                "kind": "compute#networkInterface",
                "network": f"{BASE}projects/{project}/global/networks/{network}",
                "subnetwork": f"{BASE}projects/{project}/regions/{region}/subnetworks/{network}",
                "name": f"nic{i}", "fingerprint": fingerprint(nic, 1), "stackType": "IPV4_ONLY",
            }
            if nic.get("accessConfigs"):
                iface["accessConfigs"] = [
                    {"kind": "compute#accessConfig", "type": ac.get("type", "ONE_TO_ONE_NAT"),
                     "name": ac.get("name", "External NAT"),
                     "networkTier": ac.get("networkTier", "PREMIUM")}
                    for ac in nic["accessConfigs"]]
            interfaces.append(iface)
        img = disk["image"]
        resource = {
            "kind": "compute#instance", "id": new_id(), "creationTimestamp": now_rfc3339(),
            "name": name, "description": body.get("description", ""),
            "tags": {"items": list((body.get("tags") or {}).get("items", [])),
                     "fingerprint": fingerprint((body.get("tags") or {}).get("items", []), 1)},
            "machineType": f"{zone_url(project, zone)}/machineTypes/{mt.name}",
            "zone": zone_url(project, zone), "canIpForward": bool(body.get("canIpForward")),
            "networkInterfaces": interfaces,
            "disks": [{
                "kind": "compute#attachedDisk", "type": "PERSISTENT", "mode": "READ_WRITE",
                "source": f"{zone_url(project, zone)}/disks/{disk_name}",
                "deviceName": "persistent-disk-0", "index": 0, "boot": True,
                "autoDelete": disk["auto_delete"], "interface": "SCSI",
                "licenses": [f"{BASE}projects/{img.project}/global/licenses/{img.family}"],
                "guestOsFeatures": [{"type": "UEFI_COMPATIBLE"}, {"type": "GVNIC"}],
                "diskSizeGb": str(disk["size_gb"]), "architecture": img.architecture,
            }],
            "serviceAccounts": body.get("serviceAccounts", []),
            "selfLink": f"{BASE}projects/{project}/zones/{zone}/instances/{name}",
            "scheduling": scheduling, "startRestricted": False,
            "deletionProtection": bool(body.get("deletionProtection")),
            "fingerprint": fingerprint(name, 1),
        }
        return Instance(project, zone, name, resource, mt, disk, labels, metadata)

    def _outcome(self, project: str, zone: str, vm: Instance) -> OperationFailure | None:
        """Whether this insert ends in a stockout or quota failure (decided at insert time)."""
        family = vm.machine.family.name
        region = catalog.region_of(zone)
        if self.faults.quota(region, family):
            return quota_exceeded(region, family)
        if self.faults.stockout(zone, family):
            return stockout(project, zone, vm.machine.name)
        return None

    @replayable
    def insert_instance(self, project: str, zone: str, body: dict,
                        request_id: str | None = None) -> Operation:
        self._zone(zone)
        vm = self._build_instance(project, zone, body, "resource", set())
        op = self._vm_operation(vm, "insert", request_id)
        self._create([vm], op, self._outcome(project, zone, vm))
        return op

    def _create(self, vms: list[Instance], op: Operation,
                failure: OperationFailure | None) -> None:
        proj = self.project(op.project)
        for vm in vms:
            proj.instances[(vm.zone, vm.name)] = vm
            proj.disks.add((vm.zone, vm.disk["name"]))
            vm.network_ip = self._internal_ips.take()
            vm.busy = op

        def staging() -> None:
            for vm in vms:
                if vm.busy is op:
                    vm.status = "STAGING"

        def done() -> None:
            live = [vm for vm in vms if vm.busy is op]
            if failure:
                for vm in live:  # a failed insert leaves nothing behind, as on GCE
                    self._forget(vm)
                    self._backend(self.backend.destroy, vm)
            else:
                for vm in live:
                    vm.busy = None
                    self._power_on(vm)
            op.finish(failure)

        self._steps([(0.1, op.start), (0.5, staging), (1.0, done)])

    def _power_on(self, vm: Instance) -> None:
        vm.status = "RUNNING"
        vm.resource["lastStartTimestamp"] = now_rfc3339()
        if vm.nat_ip is None and any(n.get("accessConfigs")
                                     for n in vm.resource["networkInterfaces"]):
            vm.nat_ip = self._nat_ips.take()
        epoch = vm.epoch

        def publish(namespace: str, values: dict[str, str]) -> None:
            with self.lock:
                if vm.epoch == epoch and vm.status == "RUNNING":
                    vm.guest_attributes.setdefault(namespace, {}).update(values)
                    self.changed.notify_all()

        self.backend.power_on(vm.view(), publish)

    def _forget(self, vm: Instance) -> None:
        """Drop a VM from state, releasing its addresses and (if autoDelete) its disk."""
        proj = self.project(vm.project)
        proj.instances.pop((vm.zone, vm.name), None)
        if vm.disk["auto_delete"]:
            proj.disks.discard((vm.zone, vm.disk["name"]))
        self._release(vm)

    def _release(self, vm: Instance) -> None:
        vm.epoch += 1
        vm.busy = None
        self._nat_ips.release(vm.nat_ip)
        self._internal_ips.release(vm.network_ip)

    def _mutable(self, project: str, zone: str, name: str, allow_busy: bool = False) -> Instance:
        """The VM a mutation acts on; 400 resourceNotReady while another operation runs."""
        self._zone(zone)
        vm = self._find(project, zone, name)
        if vm.busy and not allow_busy:
            raise ResourceNotReady(vm.path)
        return vm

    def _vm_operation(self, vm: Instance, op_type: str, request_id: str | None) -> Operation:
        return self._operation(vm.project, op_type, vm.self_link, vm.resource["id"], vm.zone,
                               request_id)

    @replayable
    def delete_instance(self, project: str, zone: str, name: str,
                        request_id: str | None = None) -> Operation:
        vm = self._mutable(project, zone, name, allow_busy=True)
        op = self._vm_operation(vm, "delete", request_id)
        if vm.busy and vm.busy.status != "DONE":
            vm.busy.finish()  # an insert overtaken by delete ends without error
        vm.busy = op
        vm.status = "STOPPING"

        def done() -> None:
            if vm.busy is not op:
                return op.finish()

            def gone() -> None:  # the address is free only once the host is gone
                self._forget(vm)
                op.finish()

            self._backend(self.backend.destroy, vm, gone)

        self._steps([(0.1, op.start), (1.0, done)])
        return op

    @replayable
    def stop_instance(self, project: str, zone: str, name: str,
                      request_id: str | None = None) -> Operation:
        vm = self._mutable(project, zone, name)
        op = self._vm_operation(vm, "stop", request_id)
        if vm.status == "TERMINATED":
            op.finish()
            return op
        vm.busy, vm.status = op, "STOPPING"

        def done() -> None:
            if vm.busy is not op:
                return op.finish()

            def stopped() -> None:
                if vm.busy is op:
                    vm.busy, vm.status = None, "TERMINATED"
                    vm.guest_attributes.clear()
                op.finish()

            self._backend(self.backend.power_off, vm, stopped)

        self._steps([(0.1, op.start), (1.0, done)])
        return op

    @replayable
    def start_instance(self, project: str, zone: str, name: str,
                       request_id: str | None = None) -> Operation:
        vm = self._mutable(project, zone, name)
        op = self._vm_operation(vm, "start", request_id)
        if vm.status == "RUNNING":
            op.finish()
            return op
        vm.busy, vm.status = op, "PROVISIONING"

        def staging() -> None:
            if vm.busy is op:
                vm.status = "STAGING"

        def done() -> None:
            if vm.busy is op:
                vm.busy = None
                self._power_on(vm)
            op.finish()

        self._steps([(0.1, op.start), (0.5, staging), (1.0, done)])
        return op

    @replayable
    def set_labels(self, project: str, zone: str, name: str, body: dict,
                   request_id: str | None = None) -> Operation:
        vm = self._mutable(project, zone, name)
        labels = rules.labels("labels", body.get("labels"))
        if body.get("labelFingerprint") != vm.label_fingerprint:
            raise ConditionNotMet(
                "Labels fingerprint either invalid or resource labels have changed")
        op = self._vm_operation(vm, "setLabels", request_id)
        vm.labels, vm.label_version = labels, vm.label_version + 1
        op.finish()
        self.changed.notify_all()
        return op

    @replayable
    def set_metadata(self, project: str, zone: str, name: str, body: dict,
                     request_id: str | None = None) -> Operation:
        vm = self._mutable(project, zone, name)
        items = rules.metadata_items("metadata", body.get("items"))
        if body.get("fingerprint") != vm.metadata_fingerprint:
            raise ConditionNotMet(
                "Supplied fingerprint does not match current metadata fingerprint.")
        op = self._vm_operation(vm, "setMetadata", request_id)
        vm.metadata, vm.metadata_version = items, vm.metadata_version + 1
        op.finish()
        if vm.status == "RUNNING":
            self._backend(self.backend.metadata_changed, vm)
        self.changed.notify_all()
        return op

    @replayable
    def bulk_insert(self, project: str, zone: str, body: dict,
                    request_id: str | None = None) -> Operation:
        self._zone(zone)
        names = self._bulk_names(project, zone, body)
        props = body.get("instanceProperties") or {}
        taken: set[str] = set()
        vms = []
        for name in names:
            spec = {**copy.deepcopy(props), "name": name,
                    **(body.get("perInstanceProperties") or {}).get(name, {})}
            spec["disks"] = spec.get("disks") or []
            vms.append(self._build_instance(project, zone, spec,
                                            "resource.instanceProperties", taken))
            taken.add(name)
        op = self._operation(project, "bulkInsert",
                             f"{zone_url(project, zone)}/instances/{names[0]}",
                             vms[0].resource["id"], zone, request_id)
        self._create(vms, op, self._outcome(project, zone, vms[0]))
        return op

    def _bulk_names(self, project: str, zone: str, body: dict) -> list[str]:
        count = int(body.get("count") or 0)
        per = body.get("perInstanceProperties") or {}
        pattern = body.get("namePattern")
        if count < 1:
            raise InvalidField("resource.count", count, "Count must be at least 1.")
        names = list(per)
        if len(names) < count:
            runs = re.findall(r"#+", pattern or "")
            if len(runs) != 1 or len(runs[0]) > 18:
                raise InvalidField("resource.namePattern", pattern or "",
                                   "Name pattern must contain one run of at most 18 '#'.")
            prefix, suffix = pattern.split(runs[0])
            numbered = re.compile(re.escape(prefix) + r"(\d+)" + re.escape(suffix))
            used = [int(m.group(1)) for vm in self.list_instances(project, zone)
                    if (m := numbered.fullmatch(vm.name))]
            start = max(used, default=0) + 1
            names += [f"{prefix}{n:0{len(runs[0])}d}{suffix}"
                      for n in range(start, start + count - len(names))]
        return names[:max(count, len(per))]

    def guest_attributes(self, project: str, zone: str, name: str, query_path: str | None,
                         variable_key: str | None) -> dict:
        with self.lock:
            vm = self.get_instance(project, zone, name)
            enabled = (vm.metadata_value("enable-guest-attributes") or "").lower() == "true"
            attrs = vm.guest_attributes if enabled else {}
            link = f"{vm.self_link}/guestAttributes/"
            if variable_key:
                namespace, _, key = variable_key.partition("/")
                value = attrs.get(namespace, {}).get(key)
                if value is None:
                    raise NotFound(variable_key)
                return {"kind": "compute#guestAttributes", "variableKey": variable_key,
                        "variableValue": value, "selfLink": link + variable_key}
            path = query_path or ""
            namespace = path.rstrip("/").split("/", 1)[0]
            items = [{"namespace": ns, "key": k, "value": v}
                     for ns, values in sorted(attrs.items()) if not namespace or ns == namespace
                     for k, v in sorted(values.items())]
            if not items:
                raise GceError(f"The resource '{path}' of type 'Guest Attribute' was not found.",
                               status=404, reason="notFound")
            return {"kind": "compute#guestAttributes", "queryPath": path,
                    "queryValue": {"items": items}, "selfLink": link + path}

    # -- operations ---------------------------------------------------------------------------

    def get_operation(self, project: str, zone: str | None, name: str) -> Operation:
        with self.lock:
            op = self.project(project).operations.get(name)
            if op is None or op.zone != zone:
                scope = f"zones/{zone}" if zone else "global"
                raise NotFound(f"projects/{project}/{scope}/operations/{name}")
            return op

    def wait_operation(self, project: str, zone: str | None, name: str,
                       timeout: float | None = None) -> Operation:
        """Block until DONE or the deadline (about two minutes on GCE), then return it."""
        deadline = time.monotonic() + (self.wait_seconds if timeout is None else timeout)
        with self.lock:
            op = self.get_operation(project, zone, name)
            while op.status != "DONE" and (left := deadline - time.monotonic()) > 0:
                self.changed.wait(left)
            return op

    # -- firewalls ----------------------------------------------------------------------------

    @replayable
    def insert_firewall(self, project: str, body: dict,
                        request_id: str | None = None) -> Operation:
        name = rules.name("resource.name", body.get("name"))
        proj = self.project(project)
        if name in proj.firewalls or name in proj.pending_firewalls:
            raise AlreadyExists(f"projects/{project}/global/firewalls/{name}")
        if not body.get("allowed") and not body.get("denied"):
            raise InvalidField("resource.allowed", "",
                               "A firewall rule must allow or deny some traffic.")
        direction = body.get("direction", "INGRESS")
        network = rules.last_segment(body.get("network") or "default")
        resource = {
            "kind": "compute#firewall", "id": new_id(), "creationTimestamp": now_rfc3339(),
            "name": name, "description": body.get("description", ""),
            "network": f"{BASE}projects/{project}/global/networks/{network}",
            "priority": int(body.get("priority", 1000)), "direction": direction,
            "logConfig": {"enable": False}, "disabled": bool(body.get("disabled")),
            "selfLink": f"{BASE}projects/{project}/global/firewalls/{name}",
        }
        if direction == "INGRESS":
            resource["sourceRanges"] = list(body.get("sourceRanges") or [])
            if not resource["sourceRanges"] and not body.get("sourceTags"):
                resource["sourceRanges"] = ["0.0.0.0/0"]  # GCE's default, not archfarm's
        for key in ("allowed", "denied", "sourceTags", "targetTags", "destinationRanges"):
            if body.get(key):
                resource[key] = copy.deepcopy(body[key])
        op = self._operation(project, "insert", resource["selfLink"], resource["id"], None,
                             request_id)
        proj.pending_firewalls.add(name)

        def done() -> None:
            proj.pending_firewalls.discard(name)
            proj.firewalls[name] = Firewall(project, resource)
            op.finish()

        self._steps([(0.1, op.start), (1.0, done)])
        return op

    def get_firewall(self, project: str, name: str) -> Firewall:
        with self.lock:
            fw = self.project(project).firewalls.get(name)
            if fw is None:
                raise NotFound(f"projects/{project}/global/firewalls/{name}")
            return fw

    def list_firewalls(self, project: str) -> list[Firewall]:
        with self.lock:
            return list(self.project(project).firewalls.values())

    @replayable
    def delete_firewall(self, project: str, name: str,
                        request_id: str | None = None) -> Operation:
        fw = self.get_firewall(project, name)
        op = self._operation(project, "delete", fw.resource["selfLink"], fw.resource["id"],
                             None, request_id)

        def done() -> None:
            self.project(project).firewalls.pop(name, None)
            op.finish()

        self._steps([(0.1, op.start), (1.0, done)])
        return op
