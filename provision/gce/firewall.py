"""The farm's one firewall rule: tcp:22 from the inventory's source ranges to the farm's tag."""

from __future__ import annotations

from google.api_core import exceptions
from google.cloud import compute_v1

from ..inventory import Farm
from .operations import call, new_request_id, wait


def rule_name(farm: Farm) -> str:
    return f"archfarm-{farm.farm}-ssh"


def description(farm: Farm) -> str:
    # Firewall rules carry no labels; the description marks the rule as this farm's.
    return f"managed-by=archfarm archfarm-farm={farm.farm}"


def get(clients, farm: Farm) -> compute_v1.Firewall | None:
    try:
        return call(clients.firewalls.get, project=farm.gcp.project, firewall=rule_name(farm))
    except exceptions.NotFound:
        return None


def owned(rule: compute_v1.Firewall, farm: Farm) -> bool:
    return rule.description == description(farm)


def create(clients, farm: Farm) -> None:
    rule = compute_v1.Firewall(
        name=rule_name(farm), description=description(farm),
        network=f"global/networks/{farm.gcp.network}", direction="INGRESS", priority=1000,
        source_ranges=list(farm.gcp.ssh_source_ranges), target_tags=[f"archfarm-{farm.farm}"],
        allowed=[compute_v1.Allowed(I_p_protocol="tcp", ports=["22"])])
    try:
        op = call(clients.firewalls.insert_unary, request=compute_v1.InsertFirewallRequest(
            project=farm.gcp.project, firewall_resource=rule, request_id=new_request_id()))
    except exceptions.Conflict:
        return  # created meanwhile by a concurrent run
    wait(clients, farm.gcp.project, op)


def delete(clients, farm: Farm) -> None:
    try:
        op = call(clients.firewalls.delete_unary, request=compute_v1.DeleteFirewallRequest(
            project=farm.gcp.project, firewall=rule_name(farm), request_id=new_request_id()))
    except exceptions.NotFound:
        return
    wait(clients, farm.gcp.project, op)
