"""What a farm is in Compute Engine terms: the network tag, the rule's name, the specs to
create (ownership labels: gce/labels.py)."""

from __future__ import annotations

from ..gce import labels
from ..gce.firewall import FirewallSpec
from ..gce.instances import VmSpec
from ..inventory import Farm, Node


def network_tag(farm: str) -> str:
    """The tag on every VM of the farm; the firewall rule targets it."""
    return f"archfarm-{farm}"


def rule_name(farm: str) -> str:
    return f"archfarm-{farm}-ssh"




def vm_spec(farm: Farm, node: Node, public_key: str) -> VmSpec:
    return VmSpec(
        name=node.vm_name, machine_type=node.machine_type, zones=tuple(node.zones),
        image=node.image, disk_gb=node.disk_gb, disk_type=node.disk_type,
        network=farm.gcp.network, labels=labels.of(farm.farm, node.name, node.platform),
        tags=(network_tag(farm.farm),),
        metadata={"ssh-keys": f"{farm.ssh.user}:{public_key.strip()} archfarm-{farm.farm}",
                  "enable-guest-attributes": "TRUE",
                  "block-project-ssh-keys": "TRUE"},
        spot=node.spot, max_run_hours=node.max_run_hours)


def firewall_spec(farm: Farm) -> FirewallSpec:
    return FirewallSpec(name=rule_name(farm.farm), network=farm.gcp.network,
                        description=labels.rule_mark(farm.farm),
                        source_ranges=tuple(farm.gcp.ssh_source_ranges),
                        target_tags=(network_tag(farm.farm),))
