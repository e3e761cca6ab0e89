"""Power changes of an instance: start, stop, suspend, resume (a mixin of `Instances`).

    RUNNING -> STOPPING -> TERMINATED -> (start) PROVISIONING -> STAGING -> RUNNING
    RUNNING -> SUSPENDING -> SUSPENDED -> (resume) PROVISIONING -> STAGING -> RUNNING

A VM with an operation in flight (STOPPING, SUSPENDING, ...) answers 400 resourceNotReady;
a SUSPENDED VM is resumed, not started. See docs/compute-engine.md, "Instance states".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ResourceNotReady, UnsupportedOperation
from .clock import now_rfc3339
from .core import Core
from .operations import Operation, Operations, replayable
from .vm import Instance


class PowerTransitions:
    core: Core
    operations: Operations  # for `replayable`

    if TYPE_CHECKING:
        def mutable(self, project: str, zone: str, ref: str,
                    allow_in_flight: bool = False) -> Instance: ...

        def vm_operation(self, vm: Instance, op_type: str, request_id: str | None,
                         group_id: str | None = None) -> Operation: ...

    def power_on(self, vm: Instance) -> None:
        """The VM reaches RUNNING: its external address shows, the boot backend starts it."""
        core = self.core
        vm.status = "RUNNING"
        vm.last_start = now_rfc3339()
        if vm.nat_ip is None and any(nic.access_configs for nic in vm.nics):
            vm.nat_ip = core.nat_ips.take()
        epoch = vm.epoch

        def publish(namespace: str, values: dict[str, str]) -> None:
            with core.lock:
                if vm.epoch == epoch and vm.status == "RUNNING":
                    vm.guest_attributes.setdefault(namespace, {}).update(values)
                    core.changed.notify_all()

        core.backend.power_on(vm.view(), publish)

    def _boot(self, vm: Instance, op: Operation) -> Operation:
        """PROVISIONING -> STAGING -> RUNNING over the operation's time (start and resume)."""
        vm.operation_in_flight, vm.status = op, "PROVISIONING"

        def staging() -> None:
            if vm.operation_in_flight is op:
                vm.status = "STAGING"

        def done() -> None:
            if vm.operation_in_flight is op:
                vm.operation_in_flight = None
                self.power_on(vm)
            op.finish()

        self.core.steps([(0.1, op.start), (0.5, staging), (1.0, done)])
        return op

    def _halt(self, vm: Instance, op: Operation, going: str, final: str,
              power_off: bool = True) -> Operation:
        """RUNNING -> `going` -> `final`; the boot backend powers the host off on the way."""
        core = self.core
        vm.operation_in_flight, vm.status = op, going

        def done() -> None:
            if vm.operation_in_flight is not op:
                return op.finish()

            def halted() -> None:
                if vm.operation_in_flight is op:
                    vm.operation_in_flight, vm.status = None, final
                    if final == "TERMINATED":
                        vm.guest_attributes.clear()
                op.finish()

            if power_off:
                view = vm.view()
                core.off_lock(lambda: core.backend.power_off(view), halted)
            else:
                halted()

        core.steps([(0.1, op.start), (1.0, done)])
        return op

    @staticmethod
    def _not_in_flight(vm: Instance) -> None:
        if vm.status in ("STOPPING", "SUSPENDING", "PROVISIONING", "STAGING"):
            raise ResourceNotReady(vm.path)

    @replayable
    def start(self, project: str, zone: str, ref: str,
              request_id: str | None = None) -> Operation:
        vm = self.mutable(project, zone, ref)
        self._not_in_flight(vm)
        if vm.status == "SUSPENDED":
            # The wording is ours; GCE's refusal to start a suspended VM is certain.
            raise UnsupportedOperation(
                "You cannot start an instance that is suspended. Resume the instance instead.")
        op = self.vm_operation(vm, "start", request_id)
        if vm.status == "RUNNING":
            op.finish()
            return op
        return self._boot(vm, op)

    @replayable
    def stop(self, project: str, zone: str, ref: str,
             request_id: str | None = None) -> Operation:
        vm = self.mutable(project, zone, ref)
        op = self.vm_operation(vm, "stop", request_id)
        if vm.status == "TERMINATED":
            op.finish()
            return op
        # A suspended VM can be stopped (its saved memory is discarded); its host is down.
        return self._halt(vm, op, "STOPPING", "TERMINATED",
                          power_off=vm.status != "SUSPENDED")

    @replayable
    def suspend(self, project: str, zone: str, ref: str,
                request_id: str | None = None) -> Operation:
        """Only a RUNNING VM suspends; messages from GCE's suspend/resume troubleshooting page
        (https://cloud.google.com/compute/docs/troubleshooting/troubleshooting-suspend-resume)."""
        vm = self.mutable(project, zone, ref)
        self._not_in_flight(vm)
        if vm.status == "SUSPENDED":
            raise UnsupportedOperation("You cannot suspend an already suspended instance.")
        if vm.status != "RUNNING":
            raise UnsupportedOperation(
                "You cannot suspend an instance that is stopped or terminated.")
        op = self.vm_operation(vm, "suspend", request_id)
        return self._halt(vm, op, "SUSPENDING", "SUSPENDED")

    @replayable
    def resume(self, project: str, zone: str, ref: str,
               request_id: str | None = None) -> Operation:
        vm = self.mutable(project, zone, ref)
        self._not_in_flight(vm)
        if vm.status != "SUSPENDED":
            raise UnsupportedOperation(  # the wording is ours
                "You cannot resume an instance that is not suspended.")
        op = self.vm_operation(vm, "resume", request_id)
        return self._boot(vm, op)
