"""Desired (the inventory) against actual (VMs found by label): the actions to converge.

Pure: no API calls. `--check` prints this plan; apply executes the same list.
"""

from __future__ import annotations

from dataclasses import dataclass

from .gce.instances import FoundVm
from .inventory import Farm, Node

RUNNING_SOON = {"PROVISIONING", "STAGING", "REPAIRING"}
STOPPED = {"TERMINATED", "STOPPED", "STOPPING"}


@dataclass(frozen=True)
class Action:
    kind: str  # create | keep | wait | start | orphan | delete | blocked
    node: str
    vm_name: str
    spec: Node | None = None
    vm: FoundVm | None = None
    detail: str = ""

    @property
    def changes(self) -> bool:
        return self.kind in ("create", "start", "delete")

    @property
    def recap_name(self) -> str:
        """A node's name, or the VM's for an orphan (which has no node in the inventory)."""
        return self.node if self.spec else self.vm_name


def vms(farm: Farm, found: list[FoundVm], limit: set[str] | None = None,
        prune: bool = False) -> list[Action]:
    nodes = farm.expanded()
    wanted = {n.name for n in nodes}
    by_node: dict[str, FoundVm] = {}
    actions = []
    for vm in found:
        if vm.node in wanted and vm.node not in by_node:
            by_node[vm.node] = vm
        elif limit is None:  # --limit narrows the run to nodes; orphans stay untouched
            kind = "delete" if prune else "orphan"
            why = ("not in the inventory" if vm.node not in wanted
                   else f"a second VM for node {vm.node}")
            actions.append(Action(kind, vm.node or "?", vm.name, vm=vm,
                                  detail=f"{why} (zone {vm.zone})"))
    for node in nodes:
        if limit is not None and node.name not in limit:
            continue
        vm = by_node.get(node.name)
        if vm is None:
            actions.append(Action("create", node.name, node.vm_name, spec=node,
                                  detail=f"{node.machine_type} in {', '.join(node.zones)}"))
        elif vm.status == "RUNNING":
            actions.append(Action("keep", node.name, vm.name, spec=node, vm=vm,
                                  detail=f"running in {vm.zone}"))
        elif vm.status in RUNNING_SOON:
            actions.append(Action("wait", node.name, vm.name, spec=node, vm=vm,
                                  detail=f"{vm.status.lower()} in {vm.zone}"))
        elif vm.status in STOPPED:
            actions.append(Action("start", node.name, vm.name, spec=node, vm=vm,
                                  detail=f"{vm.status.lower()} in {vm.zone}"))
        else:
            actions.append(Action("blocked", node.name, vm.name, spec=node, vm=vm,
                                  detail=f"{vm.status.lower()} in {vm.zone}; resume or delete"
                                         " it by hand"))
    return sorted(actions, key=lambda a: (a.kind in ("orphan", "delete"), a.node))
