"""What a farm is in Compute Engine terms: the network tags, the rules, the specs to create
(ownership labels: gce/labels.py).

A farm with private nodes (docs/private-nodes.md) has two rules: SSH from
`gcp.ssh_source_ranges` to the nodes with an external address only (their `public` tag), and
SSH from the bastion (its tag) to every node of the farm. Without private nodes, the first
rule targets the whole farm, as it always did, and the second does not exist.
"""

from __future__ import annotations

from .. import names
from ..gce import labels
from ..gce.firewall import FirewallSpec
from ..gce.instances import VmSpec
from ..inventory import Farm, Node


def has_private_nodes(farm: Farm) -> bool:
    return any(n.private for n in farm.expanded())


def tags(farm: Farm, node: Node) -> tuple[str, ...]:
    """The farm tag on every node; in a farm with private nodes, the public tag on the nodes
    with an external address and the bastion tag on the bastion, which its two rules tell
    apart (a farm without private nodes keeps its one tag, as before)."""
    private = has_private_nodes(farm)
    return (names.farm_tag(farm.farm),
            *((names.public_tag(farm.farm),) if private and node.external_ip else ()),
            *((names.bastion_tag(farm.farm),) if node.bastion else ()))


def vm_spec(farm: Farm, node: Node, public_key: str) -> VmSpec:
    return VmSpec(
        name=node.vm_name, machine_type=node.machine_type, zones=tuple(node.zones),
        image=node.image, disk_gb=node.disk_gb, disk_type=node.disk_type,
        network=farm.gcp.network, labels=labels.of(farm.farm, node.name, node.platform),
        tags=tags(farm, node),
        metadata={"ssh-keys": f"{farm.ssh.user}:{public_key.strip()} {names.farm_tag(farm.farm)}",
                  "enable-guest-attributes": "TRUE",
                  "block-project-ssh-keys": "TRUE"},
        spot=node.spot, max_run_hours=node.max_run_hours, external_ip=node.external_ip)


def firewall_spec(farm: Farm) -> FirewallSpec:
    """SSH from the inventory's source ranges: to the whole farm, or, once the farm has private
    nodes, to its nodes with an external address only."""
    target = names.public_tag if has_private_nodes(farm) else names.farm_tag
    return FirewallSpec(name=names.rule(farm.farm), network=farm.gcp.network,
                        description=labels.rule_mark(farm.farm),
                        source_ranges=tuple(farm.gcp.ssh_source_ranges),
                        target_tags=(target(farm.farm),))


def bastion_rule_spec(farm: Farm) -> FirewallSpec:
    """SSH from the bastion to every node of the farm (the private ones have no other way in).
    Wanted only when the farm has private nodes."""
    return FirewallSpec(name=names.bastion_rule(farm.farm), network=farm.gcp.network,
                        description=labels.rule_mark(farm.farm), source_ranges=(),
                        source_tags=(names.bastion_tag(farm.farm),),
                        target_tags=(names.farm_tag(farm.farm),))
