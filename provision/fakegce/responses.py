"""Response handlers: one function per REST method, from parsed request to JSON body.

Each handler takes `(state, path params, query, body)` and returns the JSON dict; errors are
raised as `errors.GceError`. The URL table in `urls.py` maps paths to these handlers, and has
already checked path names and that a zone exists. Wire JSON is made by `serializers.py`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from . import catalog, rules
from . import serializers as s
from .errors import InvalidField, NotFound
from .filters import compile_filter
from .state import ComputeState

MAX_RESULTS = 500


def _int_param(query: dict, key: str, default: int, low: int, high: int) -> int:
    raw = query.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidField(key, raw, "Must be an integer.") from None
    if not low <= value <= high:
        raise InvalidField(key, raw, f"Must be between {low} and {high}.")
    return value


def _page_bounds(query: dict, total: int) -> tuple[int, int]:
    size = _int_param(query, "maxResults", MAX_RESULTS, 0, MAX_RESULTS) or MAX_RESULTS
    token = query.get("pageToken")
    start = 0
    if token:
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode())
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise InvalidField("pageToken", token, "Invalid page token.") from None
    return start, min(start + size, total)


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode()


def _select(items: list[dict], query: dict) -> list[dict]:
    """Apply `filter` and `orderBy` as GCE does (only `name` and `creationTimestamp desc`).

    See docs/compute-engine.md, "Filters".
    """
    keep = compile_filter(query.get("filter"))
    selected = [i for i in items if keep(i)]
    order = query.get("orderBy")
    if order in (None, "", "name"):
        selected.sort(key=lambda i: i.get("name", ""))
    elif order == "creationTimestamp desc":
        selected.sort(key=lambda i: i.get("creationTimestamp", ""), reverse=True)
    else:
        raise InvalidField("orderBy", order,
                           "Only 'name' and 'creationTimestamp desc' are supported.")
    return selected


def list_body(kind: str, list_id: str, self_link: str, items: list[dict], query: dict) -> dict:
    selected = _select(items, query)
    start, end = _page_bounds(query, len(selected))
    out: dict[str, Any] = {"kind": kind, "id": list_id, "selfLink": self_link}
    if selected[start:end]:
        out["items"] = selected[start:end]
    if end < len(selected):
        out["nextPageToken"] = _token(end)
    return out


def _op(op) -> dict:
    return s.operation_json(op)


# -- instances --------------------------------------------------------------------------------

def instances_insert(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return _op(state.instances.insert(p["project"], p["zone"], body,
                                      request_id=q.get("requestId")))


def instances_bulk_insert(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return _op(state.instances.bulk_insert(p["project"], p["zone"], body,
                                           request_id=q.get("requestId")))


def instances_get(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return s.instance_json(state.instances.get(p["project"], p["zone"], p["instance"]))


def instances_list(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    project, zone = p["project"], p["zone"]
    vms = [s.instance_json(vm) for vm in state.instances.list(project, zone)]
    return list_body("compute#instanceList", f"projects/{project}/zones/{zone}/instances",
                     f"{s.zone_url(project, zone)}/instances", vms, q)


def instances_aggregated_list(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    project = p["project"]
    vms = _select([s.instance_json(vm) for vm in state.instances.list(project)], q)
    vms.sort(key=lambda vm: catalog.ALL_ZONES.index(rules.last_segment(vm["zone"])))
    start, end = _page_bounds(q, len(vms))
    scopes: dict[str, dict] = {}
    for vm in vms[start:end]:
        scope = f"zones/{rules.last_segment(vm['zone'])}"
        scopes.setdefault(scope, {"instances": []})["instances"].append(vm)
    items = {}
    for zone in catalog.ALL_ZONES:
        scope = f"zones/{zone}"
        items[scope] = scopes.get(scope) or {"warning": {
            "code": "NO_RESULTS_ON_PAGE",
            "message": f"There are no results for scope '{scope}' on this page.",
            "data": [{"key": "scope", "value": scope}]}}
    out = {"kind": "compute#instanceAggregatedList",
           "id": f"projects/{project}/aggregated/instances", "items": items,
           "selfLink": f"{s.BASE}projects/{project}/aggregated/instances"}
    if end < len(vms):
        out["nextPageToken"] = _token(end)
    return out


def _instance_call(name: str):
    """A handler for a per-instance mutation without a body (delete, start, stop, ...)."""
    def handler(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
        method = getattr(state.instances, name)
        return _op(method(p["project"], p["zone"], p["instance"],
                          request_id=q.get("requestId")))
    handler.__name__ = f"instances_{name}"
    return handler


instances_delete = _instance_call("delete")
instances_start = _instance_call("start")
instances_stop = _instance_call("stop")
instances_suspend = _instance_call("suspend")
instances_resume = _instance_call("resume")


def instances_set_labels(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return _op(state.instances.set_labels(p["project"], p["zone"], p["instance"], body,
                                          request_id=q.get("requestId")))


def instances_set_metadata(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return _op(state.instances.set_metadata(p["project"], p["zone"], p["instance"], body,
                                            request_id=q.get("requestId")))


def instances_get_guest_attributes(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    project, zone, ref = p["project"], p["zone"], p["instance"]
    if q.get("variableKey"):
        key = q["variableKey"]
        vm, value = state.instances.guest_attribute(project, zone, ref, key)
        return s.guest_attribute_json(vm, key, value)
    path = q.get("queryPath") or ""
    vm, items = state.instances.guest_attributes(project, zone, ref, path)
    return s.guest_attributes_json(vm, path, items)


# -- operations -------------------------------------------------------------------------------

def zone_operations_get(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return _op(state.operations.get(p["project"], p["zone"], p["operation"]))


def zone_operations_wait(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return _op(state.operations.wait(p["project"], p["zone"], p["operation"]))


def zone_operations_list(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    project, zone = p["project"], p["zone"]
    ops = [_op(op) for op in state.operations.list(project, zone)]
    return list_body("compute#operationList", f"projects/{project}/zones/{zone}/operations",
                     f"{s.zone_url(project, zone)}/operations", ops, q)


def global_operations_get(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return _op(state.operations.get(p["project"], None, p["operation"]))


def global_operations_wait(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return _op(state.operations.wait(p["project"], None, p["operation"]))


# -- catalog: images, machine types, zones ----------------------------------------------------

def images_get(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    img = catalog.image(p["project"], p["image"])
    if img is None:
        raise NotFound(f"projects/{p['project']}/global/images/{p['image']}")
    return s.image_json(img)


def images_get_from_family(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    img = catalog.image_from_family(p["project"], p["family"])
    if img is None:
        raise NotFound(f"projects/{p['project']}/global/images/family/{p['family']}")
    return s.image_json(img)


def machine_types_get(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    project, zone = p["project"], p["zone"]
    mt = catalog.machine_type(p["machineType"], zone)
    if mt is None:
        raise NotFound(f"projects/{project}/zones/{zone}/machineTypes/{p['machineType']}")
    return s.machine_type_json(project, zone, mt)


def machine_types_list(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    project, zone = p["project"], p["zone"]
    items = [s.machine_type_json(project, zone, mt) for mt in catalog.machine_types_in(zone)]
    return list_body("compute#machineTypeList", f"projects/{project}/zones/{zone}/machineTypes",
                     f"{s.zone_url(project, zone)}/machineTypes", items, q)


def zones_get(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    zone = p["zone"]
    if zone not in catalog.ZONE_SET:  # zones.get is the one zonal call that 404s
        raise NotFound(f"projects/{p['project']}/zones/{zone}")
    return s.zone_json(p["project"], zone)


def zones_list(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    project = p["project"]
    items = [s.zone_json(project, z) for z in catalog.ALL_ZONES]
    return list_body("compute#zoneList", f"projects/{project}/zones",
                     f"{s.BASE}projects/{project}/zones", items, q)


def regions_get(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    project, region = p["project"], p["region"]
    if region not in catalog.ZONES:
        raise NotFound(f"projects/{project}/regions/{region}")
    return s.region_json(project, region, state.quotas.region(project, region))


def regions_list(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    project = p["project"]
    items = [s.region_json(project, r, state.quotas.region(project, r)) for r in catalog.ZONES]
    return list_body("compute#regionList", f"projects/{project}/regions",
                     f"{s.BASE}projects/{project}/regions", items, q)


# -- projects ---------------------------------------------------------------------------------

def projects_get(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return s.project_json(state.projects.get(p["project"]))


def projects_set_common_instance_metadata(state: ComputeState, p: dict, q: dict,
                                          body: dict) -> dict:
    return _op(state.projects.set_common_instance_metadata(p["project"], body,
                                                           request_id=q.get("requestId")))


# -- firewalls --------------------------------------------------------------------------------

def firewalls_insert(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return _op(state.firewalls.insert(p["project"], body, request_id=q.get("requestId")))


def firewalls_get(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return s.firewall_json(state.firewalls.get(p["project"], p["firewall"]))


def firewalls_list(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    project = p["project"]
    items = [s.firewall_json(fw) for fw in state.firewalls.list(project)]
    return list_body("compute#firewallList", f"projects/{project}/global/firewalls",
                     f"{s.BASE}projects/{project}/global/firewalls", items, q)


def firewalls_patch(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return _op(state.firewalls.patch(p["project"], p["firewall"], body,
                                     request_id=q.get("requestId")))


def firewalls_delete(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return _op(state.firewalls.delete(p["project"], p["firewall"],
                                      request_id=q.get("requestId")))
