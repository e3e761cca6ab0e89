"""The URL table: (HTTP verb, path pattern) -> REST method name and handler."""

from __future__ import annotations

import re
from collections.abc import Callable

from . import responses as r

NAME = r"[^/]+"
P = "/compute/v1/projects/(?P<project>[^/]+)"
Z = P + "/zones/(?P<zone>[^/]+)"
I = Z + "/instances/(?P<instance>[^/]+)"  # noqa: E741 (a path prefix, not a variable)

ROUTES: list[tuple[str, str, str, Callable]] = [
    ("POST", Z + "/instances", "instances.insert", r.instances_insert),
    ("GET", Z + "/instances", "instances.list", r.instances_list),
    ("POST", Z + "/instances/bulkInsert", "instances.bulkInsert", r.instances_bulk_insert),
    ("GET", P + "/aggregated/instances", "instances.aggregatedList",
     r.instances_aggregated_list),
    ("GET", I, "instances.get", r.instances_get),
    ("DELETE", I, "instances.delete", r.instances_delete),
    ("POST", I + "/start", "instances.start", r.instances_start),
    ("POST", I + "/stop", "instances.stop", r.instances_stop),
    ("POST", I + "/setLabels", "instances.setLabels", r.instances_set_labels),
    ("POST", I + "/setMetadata", "instances.setMetadata", r.instances_set_metadata),
    ("GET", I + "/getGuestAttributes", "instances.getGuestAttributes",
     r.instances_get_guest_attributes),
    ("GET", Z + f"/operations/(?P<operation>{NAME})", "zoneOperations.get",
     r.zone_operations_get),
    ("POST", Z + f"/operations/(?P<operation>{NAME})/wait", "zoneOperations.wait",
     r.zone_operations_wait),
    ("GET", P + f"/global/operations/(?P<operation>{NAME})", "globalOperations.get",
     r.global_operations_get),
    ("POST", P + f"/global/operations/(?P<operation>{NAME})/wait", "globalOperations.wait",
     r.global_operations_wait),
    ("GET", P + f"/global/images/family/(?P<family>{NAME})", "images.getFromFamily",
     r.images_get_from_family),
    ("GET", P + f"/global/images/(?P<image>{NAME})", "images.get", r.images_get),
    ("GET", Z + f"/machineTypes/(?P<machineType>{NAME})", "machineTypes.get",
     r.machine_types_get),
    ("GET", Z + "/machineTypes", "machineTypes.list", r.machine_types_list),
    ("GET", P + "/zones", "zones.list", r.zones_list),
    ("GET", Z, "zones.get", r.zones_get),
    ("POST", P + "/global/firewalls", "firewalls.insert", r.firewalls_insert),
    ("GET", P + "/global/firewalls", "firewalls.list", r.firewalls_list),
    ("GET", P + f"/global/firewalls/(?P<firewall>{NAME})", "firewalls.get", r.firewalls_get),
    ("DELETE", P + f"/global/firewalls/(?P<firewall>{NAME})", "firewalls.delete",
     r.firewalls_delete),
]

COMPILED = [(verb, re.compile(pattern), method, handler)
            for verb, pattern, method, handler in ROUTES]

# Methods that change state: a request log filtered on these shows whether a run mutated.
MUTATING = {method for verb, _, method, _ in ROUTES
            if verb in ("POST", "DELETE") and not method.endswith(".wait")}

# Path parameters GCE checks against its name pattern (400 when violated).
CHECKED_PARAMS = ("instance", "operation", "firewall", "family", "machineType", "zone")


def match(verb: str, path: str) -> tuple[str, Callable, dict] | None:
    for route_verb, pattern, method, handler in COMPILED:
        m = pattern.fullmatch(path)
        if m and route_verb == verb:
            return method, handler, m.groupdict()
    return None
