"""Operations: every mutation returns one; it runs PENDING -> RUNNING -> DONE over time.

`Operations` keeps them per project, and by requestId for `replayable`.

See docs/compute-engine.md, "Operations".
"""

from __future__ import annotations

import functools
import random
import time
import uuid
from dataclasses import dataclass, field

from .. import rules
from ..errors import NotFound, OperationFailure
from .clock import now_rfc3339
from .core import Core, new_id


@dataclass
class BulkStatus:
    """instances.bulkInsert's per-zone tally, shown on its operation once DONE."""

    target: int
    created: int = 0
    failed: int = 0
    deleted: int = 0


@dataclass
class Operation:
    project: str
    name: str
    operation_type: str
    target: str  # resource path, e.g. projects/P/zones/Z/instances/N
    target_id: str
    zone: str | None = None  # None: a global operation
    client_operation_id: str | None = None
    group_id: str | None = None  # bulkInsert: shared by the bulk and its per-VM operations
    status: str = "PENDING"
    progress: int = 0
    id: str = field(default_factory=new_id)
    insert_time: str = field(default_factory=now_rfc3339)
    start_time: str | None = None
    end_time: str | None = None
    failure: OperationFailure | None = None
    bulk: BulkStatus | None = None
    status_message: str | None = None  # e.g. "Instance was preempted."

    @property
    def path(self) -> str:
        scope = f"zones/{self.zone}" if self.zone else "global"
        return f"projects/{self.project}/{scope}/operations/{self.name}"

    def start(self) -> None:
        if self.status == "PENDING":
            self.status, self.start_time = "RUNNING", now_rfc3339()

    def finish(self, failure: OperationFailure | None = None) -> None:
        if self.status == "DONE":
            return
        self.start()
        self.status, self.progress, self.end_time = "DONE", 100, now_rfc3339()
        self.failure = failure


def new_group_id() -> str:
    return str(uuid.uuid4())


class Operations:
    def __init__(self, core: Core):
        self.core = core
        self._by_project: dict[str, dict[str, Operation]] = {}  # project -> name -> operation
        self._by_request_id: dict[tuple[str, str], Operation] = {}  # (project, requestId)

    def new(self, project: str, op_type: str, target: str, target_id: str, zone: str | None,
            request_id: str | None, group_id: str | None = None) -> Operation:
        """A PENDING operation, recorded (and under its requestId, if any). Call locked."""
        ms = int(time.time() * 1000)
        name = (f"operation-{ms}-{random.getrandbits(52):013x}-{random.getrandbits(32):08x}-"
                f"{random.getrandbits(32):08x}")
        op = Operation(project, name, op_type, target, target_id, zone, request_id, group_id)
        self._by_project.setdefault(project, {})[name] = op
        if request_id:
            self._by_request_id[(project, request_id)] = op
        return op

    def replay(self, project: str, request_id: str) -> Operation | None:
        """The operation a request with this requestId made, if any. Call locked."""
        return self._by_request_id.get((project, request_id))

    def get(self, project: str, zone: str | None, name: str) -> Operation:
        with self.core.lock:
            op = self._by_project.get(project, {}).get(name)
            if op is None or op.zone != zone:
                scope = f"zones/{zone}" if zone else "global"
                raise NotFound(f"projects/{project}/{scope}/operations/{name}")
            return op

    def wait(self, project: str, zone: str | None, name: str,
             timeout: float | None = None) -> Operation:
        """Block until DONE or the deadline (about two minutes on GCE), then return it."""
        core = self.core
        deadline = time.monotonic() + (core.wait_seconds if timeout is None else timeout)
        with core.lock:
            op = self.get(project, zone, name)
            while op.status != "DONE" and (left := deadline - time.monotonic()) > 0:
                core.changed.wait(left)
            return op

    def list(self, project: str, zone: str | None) -> list[Operation]:
        with self.core.lock:
            return [op for op in self._by_project.get(project, {}).values() if op.zone == zone]

    def clear(self) -> None:
        """Forget every operation (under the lock)."""
        self._by_project.clear()
        self._by_request_id.clear()


def replayable(method):
    """requestId de-duplication for a mutation of a resource backend, under the state lock.

    A request repeated with the same requestId gets the first one's operation back instead of
    acting twice. A request rejected before it made an operation left nothing under its id, so
    a corrected retry with the same id acts: mutations validate before making the operation.
    The backend has `core` and `operations`.
    """
    @functools.wraps(method)
    def wrapper(self, project: str, *args, request_id: str | None = None):
        operations: Operations = self.operations
        with self.core.lock:
            request_id = rules.request_id(request_id)
            replay = operations.replay(project, request_id) if request_id else None
            return replay or method(self, project, *args, request_id=request_id)
    return wrapper
