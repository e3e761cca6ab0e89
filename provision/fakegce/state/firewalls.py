"""Firewall rules: insert, get, list, patch, delete, each mutation a global operation.

See docs/compute-engine.md, "Firewall rules".
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from .. import rules
from ..errors import AlreadyExists, InvalidField, NotFound, ResourceNotReady
from .clock import now_rfc3339
from .core import Core, new_id
from .operations import Operation, Operations, replayable

# Firewall fields a patch may replace (output-only fields such as `id` are ignored).
PATCHABLE = frozenset({
    "description", "priority", "disabled", "sourceRanges", "destinationRanges", "sourceTags",
    "targetTags", "sourceServiceAccounts", "targetServiceAccounts", "allowed", "denied",
    "logConfig"})
IMMUTABLE = ("network", "direction")


@dataclass
class Firewall:
    project: str
    name: str
    id: str
    created: str
    network: str  # network name
    direction: str
    description: str = ""
    priority: int = 1000
    disabled: bool = False
    log_enabled: bool = False
    source_ranges: list[str] = field(default_factory=list)
    destination_ranges: list[str] = field(default_factory=list)
    source_tags: list[str] = field(default_factory=list)
    target_tags: list[str] = field(default_factory=list)
    source_service_accounts: list[str] = field(default_factory=list)
    target_service_accounts: list[str] = field(default_factory=list)
    allowed: list[dict] = field(default_factory=list)  # [{"IPProtocol", "ports"}], as sent
    denied: list[dict] = field(default_factory=list)
    operation_in_flight: Operation | None = None  # until done, a mutation gets resourceNotReady

    @property
    def path(self) -> str:
        return f"projects/{self.project}/global/firewalls/{self.name}"


# body key -> Firewall attribute, for the fields stored as sent
_LISTS = {"sourceRanges": "source_ranges", "destinationRanges": "destination_ranges",
          "sourceTags": "source_tags", "targetTags": "target_tags",
          "sourceServiceAccounts": "source_service_accounts",
          "targetServiceAccounts": "target_service_accounts",
          "allowed": "allowed", "denied": "denied"}


def _apply(fw: Firewall, body: dict) -> None:
    """Set the fields present in `body` (a validated insert or patch body)."""
    for key, attr in _LISTS.items():
        if key in body:
            setattr(fw, attr, copy.deepcopy(body[key] or []))
    if "description" in body:
        fw.description = body["description"] or ""
    if "priority" in body:
        fw.priority = int(body["priority"] if body["priority"] is not None else 1000)
    if "disabled" in body:
        fw.disabled = bool(body["disabled"])
    if "logConfig" in body:
        fw.log_enabled = bool((body["logConfig"] or {}).get("enable"))


def _check_traffic(allowed: list[dict] | None, denied: list[dict] | None) -> None:
    if not allowed and not denied:
        raise InvalidField("resource.allowed", "",
                           "A firewall rule must allow or deny some traffic.")
    if allowed and denied:  # the wording is ours; a rule is either allow or deny
        raise InvalidField("resource.denied", "",
                           "A firewall rule cannot both allow and deny traffic.")


class Firewalls:
    def __init__(self, core: Core, operations: Operations):
        self.core = core
        self.operations = operations
        self._by_project: dict[str, dict[str, Firewall]] = {}  # project -> name -> rule
        self._pending: dict[str, set[str]] = {}  # project -> names being inserted

    def _firewalls(self, project: str) -> dict[str, Firewall]:
        return self._by_project.setdefault(project, {})

    @replayable
    def insert(self, project: str, body: dict, request_id: str | None = None) -> Operation:
        core = self.core
        name = rules.name("resource.name", body.get("name"))
        firewalls, pending = self._firewalls(project), self._pending.setdefault(project, set())
        if name in firewalls or name in pending:
            raise AlreadyExists(f"projects/{project}/global/firewalls/{name}")
        _check_traffic(body.get("allowed"), body.get("denied"))
        fw = Firewall(project, name, new_id(), now_rfc3339(),
                      network=rules.last_segment(body.get("network") or "default"),
                      direction=body.get("direction") or "INGRESS")
        _apply(fw, body)
        if fw.direction == "INGRESS" and not fw.source_ranges and not fw.source_tags:
            fw.source_ranges = ["0.0.0.0/0"]  # GCE's default, not archfarm's
        op = self.operations.new(project, "insert", fw.path, fw.id, None, request_id)
        pending.add(name)

        def done() -> None:
            pending.discard(name)
            firewalls[name] = fw
            op.finish()

        core.steps([(0.1, op.start), (1.0, done)])
        return op

    def get(self, project: str, name: str) -> Firewall:
        with self.core.lock:
            fw = self._firewalls(project).get(name)
            if fw is None:
                raise NotFound(f"projects/{project}/global/firewalls/{name}")
            return fw

    def list(self, project: str) -> list[Firewall]:
        with self.core.lock:
            return list(self._firewalls(project).values())

    def _mutable(self, project: str, name: str) -> Firewall:
        fw = self.get(project, name)
        if fw.operation_in_flight:
            raise ResourceNotReady(fw.path)
        return fw

    @replayable
    def patch(self, project: str, name: str, body: dict,
              request_id: str | None = None) -> Operation:
        """JSON merge patch: the fields present replace the stored ones, null resets one.

        Changing the name, network or direction is refused (the wording is ours).
        """
        fw = self._mutable(project, name)
        if body.get("name") not in (None, name):
            raise InvalidField("resource.name", body["name"],
                               f"The name must match the firewall in the URL, '{name}'.")
        for key in IMMUTABLE:
            current = fw.network if key == "network" else fw.direction
            if body.get(key) is not None and rules.last_segment(body[key]) != current:
                raise InvalidField(f"resource.{key}", body[key],
                                   f"The {key} of a firewall rule cannot be changed.")
        change = {k: v for k, v in body.items() if k in PATCHABLE}
        _check_traffic(change.get("allowed", fw.allowed), change.get("denied", fw.denied))
        op = self.operations.new(project, "patch", fw.path, fw.id, None, request_id)
        fw.operation_in_flight = op

        def done() -> None:
            if fw.operation_in_flight is op:
                _apply(fw, change)
                fw.operation_in_flight = None
            op.finish()

        self.core.steps([(0.1, op.start), (1.0, done)])
        return op

    @replayable
    def delete(self, project: str, name: str, request_id: str | None = None) -> Operation:
        fw = self._mutable(project, name)
        op = self.operations.new(project, "delete", fw.path, fw.id, None, request_id)
        fw.operation_in_flight = op

        def done() -> None:
            self._firewalls(project).pop(name, None)
            op.finish()

        self.core.steps([(0.1, op.start), (1.0, done)])
        return op

    def clear(self) -> None:
        """Forget every firewall rule (under the lock)."""
        self._by_project.clear()
        self._pending.clear()
