"""Desired (the inventory) against observed (VMs by label, the rule): the actions to converge.

Pure: no API calls. `--check` shows this plan; apply executes the same list.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum

from ..errors import UserError
from ..gce import labels
from ..gce.firewall import FirewallSpec, FoundRule, differences
from ..gce.instances import FoundVm
from ..inventory import Farm, Node
from . import spec


class Verb(StrEnum):
    CREATE = "create"
    START = "start"      # stopped (or stopping: wait for TERMINATED first)
    RESUME = "resume"    # suspended (or suspending: wait for SUSPENDED first)
    UPDATE = "update"    # the firewall rule differs from the inventory
    DELETE = "delete"
    WAIT = "wait"        # on its way to RUNNING
    KEEP = "keep"
    ORPHAN = "orphan"    # labelled, but not in the inventory (or a second VM for a node)
    SPARE = "spare"      # looks like the farm's but lacks its labels or mark: left alone
    BLOCKED = "blocked"  # a state archfarm does not act on

    @property
    def changes(self) -> bool:
        return self in CHANGING


CHANGING = {Verb.CREATE, Verb.START, Verb.RESUME, Verb.UPDATE, Verb.DELETE}


@dataclass(frozen=True)
class Action:
    verb: Verb
    key: str            # the recap's row: a node, or a VM or rule without a node
    target: str         # the VM or rule acted on
    detail: str
    node: Node | None = None
    vm: FoundVm | None = None
    rule: FirewallSpec | None = None

    @property
    def changes(self) -> bool:
        return self.verb.changes


@dataclass
class Observed:
    vms: list[FoundVm]
    rule: FoundRule | None
    strangers: list[FoundVm] = field(default_factory=list)  # named like ours, not labelled
    bastion_rule: FoundRule | None = None  # SSH from the bastion to the farm (private nodes)


def vm_key(vm: FoundVm, seen: list[FoundVm]) -> str:
    """A VM's row in the recap: its name, with its zone when another zone has the same name."""
    twins = sum(1 for other in seen if other.name == vm.name)
    return vm.name if twins == 1 else f"{vm.name} ({vm.zone})"


GOING_UP = {"PROVISIONING", "STAGING", "REPAIRING"}
STOPPED = {"TERMINATED", "STOPPED"}
SUSPENDED = {"SUSPENDED", "SUSPENDING"}


def vms(farm: Farm, seen: Observed, limit: set[str] | None = None,
        prune: bool = False) -> list[Action]:
    nodes = farm.expanded()
    wanted = {n.name for n in nodes}
    by_node: dict[str, FoundVm] = {}
    actions = []
    # With two VMs for one node, the node keeps the running one; the other is the orphan.
    for vm in sorted(seen.vms, key=lambda v: v.status != "RUNNING"):
        name = labels.node_of(vm)
        if name is not None and name in wanted and name not in by_node:
            by_node[name] = vm
        elif limit is None:  # --limit narrows the run to nodes; orphans stay untouched
            why = ("not in the inventory" if name not in wanted
                   else f"a second VM for node {name}")
            actions.append(Action(Verb.DELETE if prune else Verb.ORPHAN,
                                  vm_key(vm, seen.vms), vm.name, f"{why} (zone {vm.zone})",
                                  vm=vm))
    for node in nodes:
        if limit is None or node.name in limit:
            actions.append(_node_action(node, by_node.get(node.name)))
    actions.append(firewall(farm, seen.rule))  # even under --limit: SSH must reach the node
    bastion = bastion_firewall(farm, seen.bastion_rule)
    if bastion is not None:
        actions.append(bastion)
    return actions


def _node_action(node: Node, vm: FoundVm | None) -> Action:
    if vm is None:
        return Action(Verb.CREATE, node.name, node.vm_name,
                      f"{node.machine_type} in {', '.join(node.zones)}", node=node)
    where = f"{vm.status.lower()} in {vm.zone}"
    if vm.status == "RUNNING":
        verb, detail = Verb.KEEP, f"running in {vm.zone}"
    elif vm.status in GOING_UP:
        verb, detail = Verb.WAIT, where
    elif vm.status in STOPPED or vm.status == "STOPPING":
        verb, detail = Verb.START, where
    elif vm.status in SUSPENDED:
        verb, detail = Verb.RESUME, where
    else:
        verb, detail = Verb.BLOCKED, f"{where}; archfarm does not act on {vm.status}"
    return Action(verb, node.name, vm.name, detail, node=node, vm=vm)


def _reach(ranges: tuple[str, ...]) -> str:
    wide = [r for r in ranges if ipaddress.ip_network(r, strict=False).prefixlen == 0]
    return ", ".join(ranges) + (" (the whole internet)" if wide else "")


def firewall(farm: Farm, found: FoundRule | None) -> Action:
    want = spec.firewall_spec(farm)
    if found is None:
        if not want.source_ranges:
            raise UserError(
                f"The firewall rule {want.name} does not exist and gcp.ssh_source_ranges is"
                " empty, so archfarm cannot open SSH to the farm. Fix: set"
                " gcp.ssh_source_ranges in the inventory to the CIDR ranges SSH comes from"
                " (e.g. [203.0.113.7/32]).")
        return Action(Verb.CREATE, want.name, want.name,
                      f"tcp:22 from {_reach(want.source_ranges)}", rule=want)
    _check_ours(farm, want, found)
    if not want.source_ranges:  # nothing to compare against: leave the rule as it is
        return Action(Verb.KEEP, want.name, want.name,
                      f"tcp:22 from {', '.join(found.source_ranges)}", rule=want)
    changes = differences(found, want)
    if changes:
        return Action(Verb.UPDATE, want.name, want.name, "; ".join(changes), rule=want)
    return Action(Verb.KEEP, want.name, want.name, f"tcp:22 from {_reach(want.source_ranges)}",
                  rule=want)


def _check_ours(farm: Farm, want: FirewallSpec, found: FoundRule) -> None:
    """A same-named rule archfarm did not make for this farm, or on another network, is
    bad input: archfarm never takes it over."""
    if found.description != want.description:
        raise UserError(
            f"A firewall rule named {want.name} exists in project {farm.gcp.project} but was"
            " not made by archfarm for this farm (its description lacks"
            f" '{want.description}'), so archfarm will not take it over. Fix: delete or"
            " rename that rule, or give this farm another name (farm: in the inventory).")
    if found.network != want.network:  # a rule's network cannot be changed in place
        raise UserError(
            f"The firewall rule {want.name} is on network {found.network}, but the inventory"
            f" says gcp.network: {want.network}. Fix: set gcp.network back to"
            f" {found.network}, or run `inv destroy` (or delete the rule) and then `inv vms`.")


def bastion_firewall(farm: Farm, found: FoundRule | None) -> Action | None:
    """The rule letting the bastion reach the farm's nodes: wanted while the farm has private
    nodes, deleted when it has none left (only if archfarm made it for this farm)."""
    want = spec.bastion_rule_spec(farm)
    detail = f"tcp:22 from the bastion (tag {want.source_tags[0]}) to the farm's nodes"
    if not spec.has_private_nodes(farm):
        if found is None or found.description != want.description:
            return None
        return Action(Verb.DELETE, want.name, want.name,
                      "firewall rule: the farm has no private node left", rule=want)
    if found is None:
        return Action(Verb.CREATE, want.name, want.name, detail, rule=want)
    _check_ours(farm, want, found)
    changes = differences(found, want)
    if changes:
        return Action(Verb.UPDATE, want.name, want.name, "; ".join(changes), rule=want)
    return Action(Verb.KEEP, want.name, want.name, detail, rule=want)


def destroy(farm: Farm, seen: Observed) -> list[Action]:
    """Every labelled VM (one row each), then the rule; strangers are listed and spared."""
    everyone = seen.vms + seen.strangers
    actions = [Action(Verb.DELETE, vm_key(vm, everyone), vm.name,
                      f"node {labels.node_of(vm) or '?'}, {vm.status.lower()} in {vm.zone}",
                      vm=vm) for vm in seen.vms]
    actions += [Action(Verb.SPARE, vm_key(vm, everyone), vm.name,
                       f"in {vm.zone}, lacks this farm's labels", vm=vm)
                for vm in seen.strangers]
    for found, want in ((seen.rule, spec.firewall_spec(farm)),
                        (seen.bastion_rule, spec.bastion_rule_spec(farm))):
        if found is None:
            continue
        if found.description == labels.rule_mark(farm.farm):
            actions.append(Action(Verb.DELETE, want.name, want.name, "firewall rule", rule=want))
        else:
            actions.append(Action(Verb.SPARE, want.name, want.name,
                                  "firewall rule not made by archfarm for this farm"))
    return actions
