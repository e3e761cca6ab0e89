"""What a farm is in Compute Engine terms: names, labels, the network tag, the specs to create.

Ownership is by labels, never by a local state file: a VM belongs to farm F only if it carries
`managed-by=archfarm` and `archfarm-farm=F`. Firewall rules have no labels; the farm's rule
carries the same words in its description.
"""

from __future__ import annotations

from ..gce import catalog
from ..gce.firewall import FirewallSpec
from ..gce.instances import FoundVm, VmSpec
from ..inventory import Farm, Node

MANAGED_BY = "managed-by"
FARM_LABEL = "archfarm-farm"
NODE_LABEL = "archfarm-node"
PLATFORM_LABEL = "archfarm-platform"


def network_tag(farm: str) -> str:
    """The tag on every VM of the farm; the firewall rule targets it."""
    return f"archfarm-{farm}"


def rule_name(farm: str) -> str:
    return f"archfarm-{farm}-ssh"


def rule_mark(farm: str) -> str:
    return f"{MANAGED_BY}=archfarm {FARM_LABEL}={farm}"


def labels(farm: str, node: Node) -> dict[str, str]:
    return {MANAGED_BY: "archfarm", FARM_LABEL: farm, NODE_LABEL: node.name,
            PLATFORM_LABEL: node.platform.replace("/", "-")}


def farm_filter(farm: str) -> str:
    return f'(labels.{MANAGED_BY} = "archfarm") AND (labels.{FARM_LABEL} = "{farm}")'


def named_like_filter(farm: str) -> str:
    """VMs whose names look like the farm's, owned or not (to report collisions)."""
    return f"name eq '{farm}-.*'"


def owned(vm: FoundVm, farm: str) -> bool:
    return vm.labels.get(MANAGED_BY) == "archfarm" and vm.labels.get(FARM_LABEL) == farm


def node_of(vm: FoundVm) -> str | None:
    return vm.labels.get(NODE_LABEL)


def platform_of(vm: FoundVm) -> str:
    label = vm.labels.get(PLATFORM_LABEL)
    return label.replace("-", "/", 1) if label else catalog.platform_of(vm.machine_type)


def vm_spec(farm: Farm, node: Node, public_key: str) -> VmSpec:
    return VmSpec(
        name=node.vm_name, machine_type=node.machine_type, zones=tuple(node.zones),
        image=node.image, disk_gb=node.disk_gb, disk_type=node.disk_type,
        network=farm.gcp.network, labels=labels(farm.farm, node),
        tags=(network_tag(farm.farm),),
        metadata={"ssh-keys": f"{farm.ssh.user}:{public_key.strip()} archfarm-{farm.farm}",
                  "enable-guest-attributes": "TRUE",
                  "block-project-ssh-keys": "TRUE"},
        spot=node.spot, max_run_hours=node.max_run_hours)


def firewall_spec(farm: Farm) -> FirewallSpec:
    return FirewallSpec(name=rule_name(farm.farm), network=farm.gcp.network,
                        description=rule_mark(farm.farm),
                        source_ranges=tuple(farm.gcp.ssh_source_ranges),
                        target_tags=(network_tag(farm.farm),))
