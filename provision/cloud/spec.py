"""What a farm is in Compute Engine terms: the network tag, the rule's name, the specs to
create (ownership labels: gce/labels.py)."""

from __future__ import annotations

from .. import names
from ..gce import labels
from ..gce.firewall import FirewallSpec
from ..gce.instances import VmSpec
from ..inventory import Farm, Node


def vm_spec(farm: Farm, node: Node, public_key: str) -> VmSpec:
    return VmSpec(
        name=node.vm_name, machine_type=node.machine_type, zones=tuple(node.zones),
        image=node.image, disk_gb=node.disk_gb, disk_type=node.disk_type,
        network=farm.gcp.network, labels=labels.of(farm.farm, node.name, node.platform),
        tags=(names.farm_tag(farm.farm),),
        metadata={"ssh-keys": f"{farm.ssh.user}:{public_key.strip()} {names.farm_tag(farm.farm)}",
                  "enable-guest-attributes": "TRUE",
                  "block-project-ssh-keys": "TRUE"},
        spot=node.spot, max_run_hours=node.max_run_hours)


def firewall_spec(farm: Farm) -> FirewallSpec:
    return FirewallSpec(name=names.rule(farm.farm), network=farm.gcp.network,
                        description=labels.rule_mark(farm.farm),
                        source_ranges=tuple(farm.gcp.ssh_source_ranges),
                        target_tags=(names.farm_tag(farm.farm),))
