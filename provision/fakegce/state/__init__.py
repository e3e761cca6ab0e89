"""State of the fake Compute Engine, split per resource as moto splits a backend.

    clock.py       timestamps and the scheduler that advances operations
    core.py        the lock, faults, boot backend, loopback address pools
    operations.py  Operation, the zone/global operation calls, requestId replay
    projects.py    the project and its commonInstanceMetadata
    vm.py          the Instance model, and the table of VMs held per project
    quotas.py      regional quotas: limits, usage from the VMs held, the check on insert
    build.py       insert body -> Instance (validation)
    instances.py   instances backend (lookup, insert, bulkInsert, delete, labels, metadata,
                   guest attributes), with power.py (start, stop, suspend, resume)
    firewalls.py   Firewall and its calls

Imports go one way: a module imports only those above it in this list. The core knows no
resource; each backend keeps its own records per project and is handed the core (and the
others it needs). `ComputeState` composes them; the HTTP layer (responses.py) calls
`state.instances.insert(...)`, `state.operations.wait(...)`, `state.firewalls.patch(...)`.
Models hold plain Python values; wire JSON is made in `serializers.py`. No HTTP here.
"""

from __future__ import annotations

from ..backends import BootBackend
from .core import WAIT_SECONDS, Core
from .firewalls import Firewall, Firewalls
from .instances import Instances
from .operations import BulkStatus, Operation, Operations
from .projects import Projects
from .quotas import Quotas
from .vm import Instance, VmTable

__all__ = ["ComputeState", "Firewall", "Instance", "Operation", "BulkStatus"]


class ComputeState:
    """Everything the fake knows. All public methods are thread-safe."""

    def __init__(self, backend: BootBackend | None = None, operation_seconds: float = 0.2,
                 boot_seconds: float = 0.0, wait_seconds: float = WAIT_SECONDS):
        self.core = Core(backend, operation_seconds, boot_seconds, wait_seconds)
        self.operations = Operations(self.core)
        self.projects = Projects(self.core, self.operations)
        vms = VmTable()
        self.quotas = Quotas(self.core, vms)
        self.instances = Instances(self.core, self.operations, self.quotas, vms)
        self.firewalls = Firewalls(self.core, self.operations)
        # A host that powers off by itself (its guest ran `poweroff`) ends its VM.
        self.core.backend.attach(self.instances.guest_halted)

    @property
    def faults(self):
        return self.core.faults

    @property
    def defaults(self):
        return self.core.defaults

    @property
    def backend(self) -> BootBackend:
        return self.core.backend

    def reset(self) -> None:
        """Forget every resource, operation and fault; the boot backend destroys every VM."""
        core = self.core
        with core.lock:
            vms = self.instances.clear()
            self.firewalls.clear()
            self.projects.clear()
            self.operations.clear()
            core.clear()
        for vm in vms:
            core.backend.destroy(vm.view())

    def close(self) -> None:
        self.reset()
        self.core.close()
