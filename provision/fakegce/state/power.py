"""Power changes of an instance: start, stop, suspend, resume (a mixin of `Instances`).

    RUNNING -> STOPPING -> TERMINATED -> (start) PROVISIONING -> STAGING -> RUNNING
    RUNNING -> SUSPENDING -> SUSPENDED -> (resume) PROVISIONING -> STAGING -> RUNNING

A VM with an operation in flight (STOPPING, SUSPENDING, ...) answers 400 resourceNotReady;
a SUSPENDED VM is resumed, not started. See docs/compute-engine.md, "Instance states".

Without an API call a VM also goes RUNNING -> STOPPING -> TERMINATED when its guest powers
itself off (`guest_halted`, called by the boot backend) or when it is preempted (`preempt`,
a fault: `POST /_fake/preempt`). Each leaves a zone operation, as Compute Engine records
these system events: `compute.instances.guestTerminate` and `compute.instances.preempted`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import GceError, ResourceNotReady, UnsupportedOperation
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

        def find(self, project: str, zone: str, ref: str) -> Instance: ...

        def all_vms(self) -> list[Instance]: ...

        def forget(self, vm: Instance) -> None: ...

        def _destroy(self, vm: Instance, then=None) -> None: ...

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
                    self._halted(vm, final)
                op.finish()

            if power_off:
                view = vm.view()
                core.off_lock(lambda: core.backend.power_off(view), halted)
            else:
                halted()

        core.steps([(0.1, op.start), (1.0, done)])
        return op

    def _halted(self, vm: Instance, final: str) -> None:
        """The VM is down: TERMINATED (guest attributes go, as on a stop) or SUSPENDED."""
        vm.operation_in_flight, vm.status = None, final
        if final == "TERMINATED":
            vm.guest_attributes.clear()
            vm.last_stop = now_rfc3339()
            if not self.core.backend.keeps_nat_ip:
                # An ephemeral external address is released on stop; the next start gets
                # another one (docs/compute-engine.md, "Instance states").
                self.core.nat_ips.release(vm.nat_ip)
                vm.nat_ip = None
        else:
            vm.last_suspended = now_rfc3339()

    # -- without an API call: the guest powers off, or the VM is preempted ----------------

    def guest_halted(self, vm_id: str) -> None:
        """The boot backend saw the VM's host power off by itself: RUNNING -> STOPPING ->
        TERMINATED. Ignored unless the VM is RUNNING with nothing in flight: a host the fake
        itself stops, suspends, preempts or deletes is already on its way."""
        with self.core.lock:
            vm = next((vm for vm in self.all_vms() if vm.id == vm_id), None)
            if vm is None or vm.status != "RUNNING" or vm.operation_in_flight:
                return
            op = self.vm_operation(vm, "compute.instances.guestTerminate", None)
            vm.operation_in_flight, vm.status = op, "STOPPING"

            def done() -> None:
                if vm.operation_in_flight is op:
                    self._halted(vm, "TERMINATED")
                op.finish()

            self.core.steps([(0.1, op.start), (1.0, done)])

    def guest_poweroff(self, project: str, zone: str, ref: str) -> None:
        """`POST /_fake/guest-poweroff`: the guest powers itself off (the boot backend makes
        it: at once with no host behind the VM, by `poweroff` in the lab's container)."""
        core = self.core
        with core.lock:
            vm = self.find(project, zone, ref)
            if vm.status != "RUNNING" or vm.operation_in_flight:
                raise GceError(f"The instance '{vm.path}' is {vm.status}, not RUNNING: only a"
                               " running guest can power itself off.", reason="invalid")
            view = vm.view()
        core.off_lock(lambda: core.backend.guest_poweroff(view))

    def preempt(self, project: str, zone: str, ref: str) -> Operation:
        """`POST /_fake/preempt`: Compute Engine takes a RUNNING Spot (or preemptible) VM back.
        Its host loses power at once; it ends TERMINATED (instanceTerminationAction STOP) or
        deleted (DELETE), through a zone operation `compute.instances.preempted`."""
        core = self.core
        with core.lock:
            vm = self.find(project, zone, ref)
            sched = vm.scheduling
            if sched.get("provisioningModel") != "SPOT" and not sched.get("preemptible"):
                raise GceError(f"The instance '{vm.path}' is not a Spot or preemptible VM:"
                               " only those are preempted.", reason="invalid")
            if vm.status != "RUNNING" or vm.operation_in_flight:
                busy = " with an operation in flight" if vm.status == "RUNNING" else ""
                raise GceError(f"The instance '{vm.path}' is {vm.status}{busy}: only a RUNNING"
                               " VM is preempted.", reason="invalid")
            op = self.vm_operation(vm, "compute.instances.preempted", None)
            op.status_message = "Instance was preempted."
            vm.operation_in_flight, vm.status = op, "STOPPING"
            op.start()
            delete = sched.get("instanceTerminationAction") == "DELETE"
            view = vm.view()

            def off() -> None:
                if vm.operation_in_flight is not op:
                    return op.finish()
                self._halted(vm, "TERMINATED")
                if delete:
                    self.forget(vm)
                    self._destroy(vm)
                op.finish()

            core.off_lock(lambda: core.backend.lose_power(view), off)
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
