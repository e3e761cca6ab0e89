"""The URL table: (HTTP verb, path pattern) -> REST method name and handler."""

from __future__ import annotations

import re
from collections.abc import Callable

from . import responses as r

NAME = r"[^/]+"
P = "/compute/v1/projects/(?P<project>[^/]+)"
Z = P + "/zones/(?P<zone>[^/]+)"
I = Z + "/instances/(?P<instance>[^/]+)"  # noqa: E741 (a path prefix, not a variable)
FW = P + f"/global/firewalls/(?P<firewall>{NAME})"

ROUTES: list[tuple[str, str, str, Callable]] = [
    ("GET", I, "instances.get", r.instances_get),  # first: the call polled most
    ("POST", Z + "/instances", "instances.insert", r.instances_insert),
    ("GET", Z + "/instances", "instances.list", r.instances_list),
    ("POST", Z + "/instances/bulkInsert", "instances.bulkInsert", r.instances_bulk_insert),
    ("GET", P + "/aggregated/instances", "instances.aggregatedList",
     r.instances_aggregated_list),
    ("DELETE", I, "instances.delete", r.instances_delete),
    ("POST", I + "/start", "instances.start", r.instances_start),
    ("POST", I + "/stop", "instances.stop", r.instances_stop),
    ("POST", I + "/suspend", "instances.suspend", r.instances_suspend),
    ("POST", I + "/resume", "instances.resume", r.instances_resume),
    ("POST", I + "/setLabels", "instances.setLabels", r.instances_set_labels),
    ("POST", I + "/setMetadata", "instances.setMetadata", r.instances_set_metadata),
    ("GET", I + "/getGuestAttributes", "instances.getGuestAttributes",
     r.instances_get_guest_attributes),
    ("GET", Z + f"/operations/(?P<operation>{NAME})", "zoneOperations.get",
     r.zone_operations_get),
    ("POST", Z + f"/operations/(?P<operation>{NAME})/wait", "zoneOperations.wait",
     r.zone_operations_wait),
    ("GET", Z + "/operations", "zoneOperations.list", r.zone_operations_list),
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
    ("GET", P + f"/regions/(?P<region>{NAME})", "regions.get", r.regions_get),
    ("GET", P + "/regions", "regions.list", r.regions_list),
    ("GET", P, "projects.get", r.projects_get),
    ("POST", P + "/setCommonInstanceMetadata", "projects.setCommonInstanceMetadata",
     r.projects_set_common_instance_metadata),
    ("POST", P + "/global/firewalls", "firewalls.insert", r.firewalls_insert),
    ("GET", P + "/global/firewalls", "firewalls.list", r.firewalls_list),
    ("GET", FW, "firewalls.get", r.firewalls_get),
    ("PATCH", FW, "firewalls.patch", r.firewalls_patch),
    ("DELETE", FW, "firewalls.delete", r.firewalls_delete),
]

# verb -> [(pattern, method, handler)], in table order
COMPILED: dict[str, list[tuple[re.Pattern, str, Callable]]] = {}
for _verb, _pattern, _method, _handler in ROUTES:
    COMPILED.setdefault(_verb, []).append((re.compile(_pattern), _method, _handler))

# Methods that change state: a request log filtered on these shows whether a run mutated.
MUTATING = frozenset(method for verb, _, method, _ in ROUTES
                     if verb in ("POST", "DELETE", "PATCH") and not method.endswith(".wait"))

# Path parameters GCE checks against its name pattern (400 when violated).
CHECKED_PARAMS = ("instance", "operation", "firewall", "family", "machineType", "zone",
                  "region")

# Zonal methods that answer an unknown zone with 400 "Unknown zone." (zones.get says 404).
UNKNOWN_ZONE_IS_INVALID = frozenset(method for _, pattern, method, _ in ROUTES
                                    if "(?P<zone>" in pattern and method != "zones.get")


def match(verb: str, path: str) -> tuple[str, Callable, dict] | None:
    for pattern, method, handler in COMPILED.get(verb, ()):
        m = pattern.fullmatch(path)
        if m:
            return method, handler, m.groupdict()
    return None
