"""How archfarm marks what it owns in Compute Engine, and finds it again.

Ownership is by labels, never by a local state file: a VM belongs to farm F only if it carries
`managed-by=archfarm` and `archfarm-farm=F`. Firewall rules have no labels; the farm's rule
carries the same words in its description.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import catalog

if TYPE_CHECKING:
    from .instances import FoundVm

MANAGED_BY = "managed-by"
FARM_LABEL = "archfarm-farm"
NODE_LABEL = "archfarm-node"
PLATFORM_LABEL = "archfarm-platform"


def of(farm: str, node: str, platform: str) -> dict[str, str]:
    """The labels of a node's VM."""
    return {MANAGED_BY: "archfarm", FARM_LABEL: farm, NODE_LABEL: node,
            PLATFORM_LABEL: platform.replace("/", "-")}


def rule_mark(farm: str) -> str:
    return f"{MANAGED_BY}=archfarm {FARM_LABEL}={farm}"


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
