"""Firewall rules: read one, create, patch to match a spec, delete.

Rules carry no labels, so ownership is marked in the description (docs/compute-engine.md,
"Firewall rules"); deciding what the mark is belongs to the caller.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from google.api_core import exceptions
from google.cloud import compute_v1

from .operations import OPERATION_DEADLINE, Cancel, NoCancel, call, new_request_id, reasons, wait

NOT_READY_SECONDS = 1.0  # between tries while another operation holds the rule


class RuleConflict(Exception):
    """A same-named rule without the caller's description appeared while creating ours."""


@dataclass(frozen=True)
class FirewallSpec:
    """An ingress rule allowing tcp `ports` from `source_ranges` (or from VMs with
    `source_tags`) to VMs with `target_tags`."""

    name: str
    network: str
    description: str
    source_ranges: tuple[str, ...]
    target_tags: tuple[str, ...]
    ports: tuple[str, ...] = ("22",)
    source_tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class FoundRule:
    name: str
    description: str
    source_ranges: tuple[str, ...]
    target_tags: tuple[str, ...]
    ports: tuple[str, ...]
    other_protocols: tuple[str, ...]  # anything allowed besides tcp (never by archfarm)
    network: str = "default"
    disabled: bool = False
    source_tags: tuple[str, ...] = ()


def get(clients: Any, project: str, name: str, cancel: Cancel | None = None
        ) -> FoundRule | None:
    try:
        rule = call(clients.firewalls.get, project=project, firewall=name, cancel=cancel)
    except exceptions.NotFound:
        return None
    tcp = [a for a in rule.allowed if a.I_p_protocol == "tcp"]
    return FoundRule(name=rule.name, description=rule.description,
                     source_ranges=tuple(rule.source_ranges),
                     target_tags=tuple(rule.target_tags),
                     ports=tuple(p for a in tcp for p in a.ports),
                     other_protocols=tuple(a.I_p_protocol for a in rule.allowed
                                           if a.I_p_protocol != "tcp"),
                     network=rule.network.rsplit("/", 1)[-1], disabled=rule.disabled,
                     source_tags=tuple(rule.source_tags))


def differences(found: FoundRule, spec: FirewallSpec) -> list[str]:
    """What must change for the rule to match the spec, in words; empty when it does."""
    out = []
    for what, have, want in (("source ranges", found.source_ranges, spec.source_ranges),
                             ("source tags", found.source_tags, spec.source_tags),
                             ("target tags", found.target_tags, spec.target_tags),
                             ("tcp ports", found.ports, spec.ports)):
        if sorted(have) != sorted(want):
            out.append(f"{what} {', '.join(have) or '-'} -> {', '.join(want) or '-'}")
    if found.other_protocols:
        out.append(f"drop {', '.join(found.other_protocols)}")
    if found.disabled:
        out.append("enable it")
    return out


def _resource(spec: FirewallSpec) -> compute_v1.Firewall:
    return compute_v1.Firewall(
        name=spec.name, description=spec.description,
        network=f"global/networks/{spec.network}", direction="INGRESS", priority=1000,
        source_ranges=list(spec.source_ranges), source_tags=list(spec.source_tags),
        target_tags=list(spec.target_tags),
        allowed=[compute_v1.Allowed(I_p_protocol="tcp", ports=list(spec.ports))])


def create(clients: Any, project: str, spec: FirewallSpec, cancel: Cancel | None = None) -> None:
    try:
        op = call(clients.firewalls.insert_unary, cancel=cancel,
                  request=compute_v1.InsertFirewallRequest(
                      project=project, firewall_resource=_resource(spec),
                      request_id=new_request_id()))
    except exceptions.Conflict:
        # Made meanwhile: by a concurrent run of this farm (fine), or by someone else.
        found = get(clients, project, spec.name, cancel)
        if found is not None and found.description != spec.description:
            raise RuleConflict(f"a rule named {spec.name} was made meanwhile, not by archfarm"
                               " for this farm; delete or rename it, then run again") from None
        return
    wait(clients, project, op, cancel)


def patch(clients: Any, project: str, spec: FirewallSpec, cancel: Cancel | None = None) -> None:
    resource = compute_v1.Firewall(
        name=spec.name, disabled=False, source_ranges=list(spec.source_ranges),
        source_tags=list(spec.source_tags), target_tags=list(spec.target_tags),
        allowed=[compute_v1.Allowed(I_p_protocol="tcp", ports=list(spec.ports))])
    op = call(clients.firewalls.patch_unary, cancel=cancel,
              request=compute_v1.PatchFirewallRequest(
                  project=project, firewall=spec.name, firewall_resource=resource,
                  request_id=new_request_id()))
    wait(clients, project, op, cancel)


def delete(clients: Any, project: str, name: str, cancel: Cancel | None = None) -> bool:
    """Delete the rule and wait. True if this call deleted it; False if it was gone already,
    or went meanwhile: another operation on the rule in flight (400 resourceNotReady, as when
    two destroys race) is waited out, then the delete is tried again."""
    cancel = cancel or NoCancel()
    stop = time.monotonic() + OPERATION_DEADLINE
    while True:
        try:
            op = call(clients.firewalls.delete_unary, cancel=cancel,
                      request=compute_v1.DeleteFirewallRequest(
                          project=project, firewall=name, request_id=new_request_id()))
        except exceptions.NotFound:
            return False
        except exceptions.BadRequest as e:
            if "resourceNotReady" not in reasons(e) or time.monotonic() > stop:
                raise
            cancel.sleep(NOT_READY_SECONDS)
            continue
        wait(clients, project, op, cancel)
        return True
