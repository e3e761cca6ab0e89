"""The names archfarm gives a farm's things, each built in this one place.

VM `<farm>-<node>`; builder `<farm>` with one node `<farm>-<node>` per VM; docker context,
ssh `Host` alias and pinned `HostKeyAlias` `archfarm-<farm>-<node>`; the farm's key, network
tag `archfarm-<farm>` and firewall rule `archfarm-<farm>-ssh`; with private nodes, the tags
`archfarm-<farm>-public` (nodes with an external address) and `archfarm-<farm>-bastion`, and
the rule `archfarm-<farm>-ssh-bastion` (SSH from the bastion to the farm).
"""

from __future__ import annotations


def vm(farm: str, node: str) -> str:
    return f"{farm}-{node}"


def alias(farm: str, node: str) -> str:
    """The node's ssh Host alias, its HostKeyAlias in the farm's known_hosts, and its docker
    context: one name, so a new address never needs a new pin or context."""
    return f"archfarm-{vm(farm, node)}"


def farm_tag(farm: str) -> str:
    """The farm's key file and comment (`~/.ssh/archfarm-<farm>`), and the network tag on
    every VM of the farm, which its firewall rule targets."""
    return f"archfarm-{farm}"


def rule(farm: str) -> str:
    return f"{farm_tag(farm)}-ssh"


def public_tag(farm: str) -> str:
    """The network tag of the farm's nodes with an external address (the bastion and any
    public node), which the SSH rule targets once the farm has private nodes."""
    return f"{farm_tag(farm)}-public"


def bastion_tag(farm: str) -> str:
    """The network tag of the farm's bastion: the source of the rule letting it reach the
    private nodes."""
    return f"{farm_tag(farm)}-bastion"


def bastion_rule(farm: str) -> str:
    """The rule allowing SSH from the bastion to every node of the farm."""
    return f"{rule(farm)}-bastion"


def builder(farm: str) -> str:
    return farm


def builder_node(farm: str, node: str) -> str:
    return vm(farm, node)
