"""The instances backend: lookup by name or numeric id, insert, delete, labels, metadata and
guest attributes.

Power changes (start, stop, suspend, resume) are in `power.py`; turning an insert body into an
`Instance` is in `build.py`; the model is in `vm.py`.
"""

from __future__ import annotations

import builtins
import copy

from .. import catalog, rules
from ..errors import (
    ConditionNotMet,
    GceError,
    NotFound,
    OperationFailure,
    ResourceNotReady,
    quota_exceeded,
    stockout,
)
from . import build
from .core import Core
from .operations import BulkStatus, Operation, Operations, new_group_id, replayable
from .power import PowerTransitions
from .quotas import Quotas
from .vm import Instance, VmTable


class Instances(PowerTransitions):
    def __init__(self, core: Core, operations: Operations, quotas: Quotas, vms: VmTable):
        self.core = core
        self.operations = operations
        self.quotas = quotas
        self.vms = vms  # shared with quotas, which count them

    # -- lookup -------------------------------------------------------------------------------

    def find(self, project: str, zone: str, ref: str) -> Instance:
        """The VM named `ref`, or whose numeric id is `ref` (GCE takes either). Call locked."""
        held = self.vms.project(project)
        if ref.isdigit():
            vm = held.instances_by_id.get(ref)
            vm = vm if vm is not None and vm.zone == zone else None
        else:
            vm = held.instances.get((zone, ref))
        if vm is None:
            raise NotFound(f"projects/{project}/zones/{zone}/instances/{ref}")
        return vm

    def get(self, project: str, zone: str, ref: str) -> Instance:
        with self.core.lock:
            rules.zone(zone)
            return self.find(project, zone, ref)

    def list(self, project: str, zone: str | None = None) -> list[Instance]:
        with self.core.lock:
            vms = self.vms.project(project).instances.values()
            return [vm for vm in vms if zone is None or vm.zone == zone]

    def all_vms(self) -> builtins.list[Instance]:
        """Every VM of every project. Call locked."""
        return self.vms.all()

    def mutable(self, project: str, zone: str, ref: str, allow_in_flight: bool = False) -> Instance:
        """The VM a mutation acts on; 400 resourceNotReady while another operation runs."""
        rules.zone(zone)
        vm = self.find(project, zone, ref)
        if vm.operation_in_flight and not allow_in_flight:
            raise ResourceNotReady(vm.path)
        return vm

    def vm_operation(self, vm: Instance, op_type: str, request_id: str | None,
                     group_id: str | None = None) -> Operation:
        return self.operations.new(vm.project, op_type, vm.path, vm.id, vm.zone, request_id,
                                   group_id)

    # -- insert and delete --------------------------------------------------------------------

    @replayable
    def insert(self, project: str, zone: str, body: dict,
               request_id: str | None = None) -> Operation:
        rules.zone(zone)
        vm = build.instance(self.vms.project(project), project, zone, body, "resource", set())
        op = self.vm_operation(vm, "insert", request_id)
        self._create([vm], [op], self._outcome(project, zone, [vm]))
        return op

    @replayable
    def bulk_insert(self, project: str, zone: str, body: dict,
                    request_id: str | None = None) -> Operation:
        """One bulkInsert operation, plus one insert operation per VM in the same group."""
        rules.zone(zone)
        names = build.bulk_names(body, [vm.name for vm in self.list(project, zone)])
        props = body.get("instanceProperties") or {}
        per = body.get("perInstanceProperties") or {}
        taken: set[str] = set()
        vms = []
        for name in names:
            spec = {**copy.deepcopy(props), "name": name, **per.get(name, {})}
            spec["disks"] = spec.get("disks") or []
            vms.append(build.instance(self.vms.project(project), project, zone, spec,
                                      "resource.instanceProperties", taken))
            taken.add(name)
        group = new_group_id()
        bulk = self.operations.new(project, "bulkInsert", vms[0].path, vms[0].id, zone,
                                   request_id, group)
        ops = [self.vm_operation(vm, "insert", None, group) for vm in vms]
        self._create(vms, ops, self._outcome(project, zone, vms), bulk)
        return bulk

    def _outcome(self, project: str, zone: str,
                 vms: builtins.list[Instance]) -> OperationFailure | None:
        """Whether this insert ends in a quota failure or stockout (decided at insert time,
        before the new VMs are stored)."""
        machine = vms[0].machine
        region = catalog.region_of(zone)
        if self.core.faults.quota(region, machine.family.name):
            return quota_exceeded(region, "CPUS", 0.0, machine.family.name)
        over = self.quotas.check_insert(project, zone, vms)
        if over:
            return over
        if self.core.faults.stockout(zone, machine.family.name):
            return stockout(project, zone, machine.name)
        return None

    def _create(self, vms: builtins.list[Instance], ops: builtins.list[Operation],
                failure: OperationFailure | None,
                bulk: Operation | None = None) -> None:
        core = self.core
        held = self.vms.project(vms[0].project)
        for vm, op in zip(vms, ops, strict=True):
            held.instances[(vm.zone, vm.name)] = vm
            held.instances_by_id[vm.id] = vm
            held.disks.add((vm.zone, vm.disk.name))
            vm.network_ip = core.internal_ips.take()
            vm.operation_in_flight = op

        def start() -> None:
            for op in ops:
                op.start()
            if bulk:
                bulk.start()

        def staging() -> None:
            for vm, op in zip(vms, ops, strict=True):
                if vm.operation_in_flight is op:
                    vm.status = "STAGING"

        def done() -> None:
            live = [vm for vm, op in zip(vms, ops, strict=True) if vm.operation_in_flight is op]
            for vm in live:
                if failure:  # a failed insert leaves nothing behind, as on GCE
                    self.forget(vm)
                    self._destroy(vm)
                else:
                    vm.operation_in_flight = None
                    self.power_on(vm)
            for op in ops:
                op.finish(failure)
            if bulk:
                bulk.bulk = BulkStatus(target=len(vms), created=0 if failure else len(live),
                                       failed=len(vms) if failure else 0)
                bulk.finish(failure)

        core.steps([(0.1, start), (0.5, staging), (1.0, done)])

    def _destroy(self, vm: Instance, then=None) -> None:
        """The boot backend removes the VM's host, off the lock; then `then`, locked."""
        view, backend = vm.view(), self.core.backend
        self.core.off_lock(lambda: backend.destroy(view), then)

    def forget(self, vm: Instance) -> None:
        """Drop a VM from state, releasing its addresses and (if autoDelete) its disk."""
        held = self.vms.project(vm.project)
        held.instances.pop((vm.zone, vm.name), None)
        held.instances_by_id.pop(vm.id, None)
        if vm.disk.auto_delete:
            held.disks.discard((vm.zone, vm.disk.name))
        self.release(vm)

    def release(self, vm: Instance) -> None:
        vm.epoch += 1
        vm.operation_in_flight = None
        self.core.nat_ips.release(vm.nat_ip)
        self.core.internal_ips.release(vm.network_ip)

    def clear(self) -> builtins.list[Instance]:
        """Forget every VM, releasing its addresses; return them for the boot backend to
        destroy, off the lock. Call locked."""
        vms = self.vms.all()
        for vm in vms:
            self.release(vm)
        self.vms.clear()
        return vms

    @replayable
    def delete(self, project: str, zone: str, ref: str,
               request_id: str | None = None) -> Operation:
        core = self.core
        vm = self.mutable(project, zone, ref, allow_in_flight=True)
        op = self.vm_operation(vm, "delete", request_id)
        if vm.operation_in_flight and vm.operation_in_flight.status != "DONE":
            vm.operation_in_flight.finish()  # an operation overtaken by delete ends without error
        vm.operation_in_flight = op
        vm.status = "STOPPING"

        def done() -> None:
            if vm.operation_in_flight is not op:
                return op.finish()

            def gone() -> None:  # the address is free only once the host is gone
                self.forget(vm)
                op.finish()

            self._destroy(vm, gone)

        core.steps([(0.1, op.start), (1.0, done)])
        return op

    # -- labels, metadata, guest attributes ---------------------------------------------------

    @replayable
    def set_labels(self, project: str, zone: str, ref: str, body: dict,
                   request_id: str | None = None) -> Operation:
        vm = self.mutable(project, zone, ref)
        labels = rules.labels("labels", body.get("labels"))
        if body.get("labelFingerprint") != vm.label_fingerprint:
            raise ConditionNotMet(
                "Labels fingerprint either invalid or resource labels have changed")
        op = self.vm_operation(vm, "setLabels", request_id)
        vm.replace_labels(labels)
        op.finish()
        self.core.changed.notify_all()
        return op

    @replayable
    def set_metadata(self, project: str, zone: str, ref: str, body: dict,
                     request_id: str | None = None) -> Operation:
        core = self.core
        vm = self.mutable(project, zone, ref)
        items = rules.metadata_items("metadata", body.get("items"))
        if body.get("fingerprint") != vm.metadata_fingerprint:
            raise ConditionNotMet(
                "Supplied fingerprint does not match current metadata fingerprint.")
        op = self.vm_operation(vm, "setMetadata", request_id)
        vm.replace_metadata(items)
        op.finish()
        if vm.status == "RUNNING":
            view = vm.view()
            core.off_lock(lambda: core.backend.metadata_changed(view))
        core.changed.notify_all()
        return op

    def guest_attribute(self, project: str, zone: str, ref: str,
                        variable_key: str) -> tuple[Instance, str]:
        """One guest attribute, `namespace/key`. See docs/compute-engine.md, "Guest attributes
        and host keys"."""
        with self.core.lock:
            vm = self.get(project, zone, ref)
            namespace, _, key = variable_key.partition("/")
            value = self._attributes(vm).get(namespace, {}).get(key)
            if value is None:
                raise NotFound(variable_key)
            return vm, value

    def guest_attributes(
            self, project: str, zone: str, ref: str, query_path: str,
    ) -> tuple[Instance, builtins.list[tuple[str, str, str]]]:
        """(namespace, key, value) under `query_path` (a namespace, `hostkeys/`, or all)."""
        with self.core.lock:
            vm = self.get(project, zone, ref)
            namespace = query_path.rstrip("/").split("/", 1)[0]
            items = [(ns, k, v) for ns, values in sorted(self._attributes(vm).items())
                     if not namespace or ns == namespace for k, v in sorted(values.items())]
            if not items:
                raise GceError(
                    f"The resource '{query_path}' of type 'Guest Attribute' was not found.",
                    status=404, reason="notFound")
            return vm, items

    @staticmethod
    def _attributes(vm: Instance) -> dict[str, dict[str, str]]:
        enabled = (vm.metadata_value("enable-guest-attributes") or "").lower() == "true"
        return vm.guest_attributes if enabled else {}
