"""The names archfarm gives a farm's things, each built in this one place.

VM `<farm>-<node>`; builder `<farm>` with one node `<farm>-<node>` per VM; docker context,
ssh `Host` alias and pinned `HostKeyAlias` `archfarm-<farm>-<node>`.
"""

from __future__ import annotations


def vm(farm: str, node: str) -> str:
    return f"{farm}-{node}"


def alias(farm: str, node: str) -> str:
    """The node's ssh Host alias, its HostKeyAlias in the farm's known_hosts, and its docker
    context: one name, so a new address never needs a new pin or context."""
    return f"archfarm-{vm(farm, node)}"


def builder(farm: str) -> str:
    return farm


def builder_node(farm: str, node: str) -> str:
    return vm(farm, node)
