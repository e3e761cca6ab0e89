"""Response handlers: one function per REST method, from parsed request to JSON body.

Each handler takes `(state, path params, query, body)` and returns the JSON dict; errors are
raised as `errors.GceError`. The URL table in `urls.py` maps paths to these handlers.
"""

from __future__ import annotations

import base64
import binascii
import zlib

from . import catalog, rules
from .errors import InvalidField, NotFound
from .filters import compile_filter
from .state import BASE, ComputeState, zone_url

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
    """Apply `filter` and `orderBy` as GCE does (only `name` and `creationTimestamp desc`)."""
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
    out = {"kind": kind, "id": list_id, "selfLink": self_link}
    if selected[start:end]:
        out["items"] = selected[start:end]
    if end < len(selected):
        out["nextPageToken"] = _token(end)
    return out


def _zone(p: dict) -> str:
    if p["zone"] not in catalog.ALL_ZONES:
        raise NotFound(f"projects/{p['project']}/zones/{p['zone']}")
    return p["zone"]


# -- instances --------------------------------------------------------------------------------

def instances_insert(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return state.insert_instance(p["project"], p["zone"], body,
                                 request_id=q.get("requestId")).to_json()


def instances_get(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return state.get_instance(p["project"], p["zone"], p["instance"]).to_json()


def instances_list(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    project, zone = p["project"], _zone(p)
    vms = [vm.to_json() for vm in state.list_instances(project, zone)]
    return list_body("compute#instanceList", f"projects/{project}/zones/{zone}/instances",
                     f"{zone_url(project, zone)}/instances", vms, q)


def instances_aggregated_list(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    project = p["project"]
    vms = _select([vm.to_json() for vm in state.list_instances(project)], q)
    vms.sort(key=lambda vm: catalog.ALL_ZONES.index(rules.last_segment(vm["zone"])))
    start, end = _page_bounds(q, len(vms))
    scopes: dict[str, dict] = {}
    for vm in vms[start:end]:
        scopes.setdefault(f"zones/{rules.last_segment(vm['zone'])}", {"instances": []})
        scopes[f"zones/{rules.last_segment(vm['zone'])}"]["instances"].append(vm)
    items = {}
    for zone in catalog.ALL_ZONES:
        scope = f"zones/{zone}"
        items[scope] = scopes.get(scope) or {"warning": {
            "code": "NO_RESULTS_ON_PAGE",
            "message": f"There are no results for scope '{scope}' on this page.",
            "data": [{"key": "scope", "value": scope}]}}
    out = {"kind": "compute#instanceAggregatedList",
           "id": f"projects/{project}/aggregated/instances", "items": items,
           "selfLink": f"{BASE}projects/{project}/aggregated/instances"}
    if end < len(vms):
        out["nextPageToken"] = _token(end)
    return out


def instances_delete(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return state.delete_instance(p["project"], p["zone"], p["instance"],
                                 request_id=q.get("requestId")).to_json()


def instances_start(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return state.start_instance(p["project"], p["zone"], p["instance"],
                                request_id=q.get("requestId")).to_json()


def instances_stop(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return state.stop_instance(p["project"], p["zone"], p["instance"],
                               request_id=q.get("requestId")).to_json()


def instances_set_labels(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return state.set_labels(p["project"], p["zone"], p["instance"], body,
                            request_id=q.get("requestId")).to_json()


def instances_set_metadata(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return state.set_metadata(p["project"], p["zone"], p["instance"], body,
                              request_id=q.get("requestId")).to_json()


def instances_bulk_insert(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return state.bulk_insert(p["project"], p["zone"], body,
                             request_id=q.get("requestId")).to_json()


def instances_get_guest_attributes(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return state.guest_attributes(p["project"], p["zone"], p["instance"], q.get("queryPath"),
                                  q.get("variableKey"))


# -- operations -------------------------------------------------------------------------------

def zone_operations_get(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return state.get_operation(p["project"], _zone(p), p["operation"]).to_json()


def zone_operations_wait(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return state.wait_operation(p["project"], _zone(p), p["operation"]).to_json()


def global_operations_get(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return state.get_operation(p["project"], None, p["operation"]).to_json()


def global_operations_wait(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return state.wait_operation(p["project"], None, p["operation"]).to_json()


# -- catalog: images, machine types, zones ----------------------------------------------------

def _stable_id(name: str) -> str:
    return str(10**18 + zlib.crc32(name.encode()))


def _image_json(img: catalog.Image) -> dict:
    out = {
        "kind": "compute#image", "id": _stable_id(img.name),
        "creationTimestamp": "2025-11-11T00:00:00.000-08:00", "name": img.name,
        "description": img.description, "family": img.family,
        "architecture": img.architecture, "status": "READY", "sourceType": "RAW",
        "diskSizeGb": str(img.disk_size_gb), "archiveSizeBytes": "1234567890",
        "licenses": [f"{BASE}projects/{img.project}/global/licenses/{img.family}"],
        "guestOsFeatures": [{"type": "UEFI_COMPATIBLE"}, {"type": "GVNIC"}],
        "storageLocations": ["us", "eu", "asia"], "labelFingerprint": "42WmSpB8rSM=",
        "selfLink": f"{BASE}projects/{img.project}/global/images/{img.name}",
    }
    if img.deprecated:
        out["deprecated"] = {"state": "DEPRECATED", "replacement": out["selfLink"].replace(
            img.name, catalog.image_from_family(img.project, img.family).name)}
    return out


def images_get(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    img = catalog.image(p["project"], p["image"])
    if img is None:
        raise NotFound(f"projects/{p['project']}/global/images/{p['image']}")
    return _image_json(img)


def images_get_from_family(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    img = catalog.image_from_family(p["project"], p["family"])
    if img is None:
        raise NotFound(f"projects/{p['project']}/global/images/family/{p['family']}")
    return _image_json(img)


def _machine_type_json(project: str, zone: str, mt: catalog.MachineType) -> dict:
    gb = mt.memory_mb / 1024
    return {
        "kind": "compute#machineType", "id": _stable_id(mt.name),
        "creationTimestamp": "2015-01-16T09:25:43.314-08:00", "name": mt.name,
        "description": f"{mt.cpus} vCPU{'s' if mt.cpus > 1 else ''}, {gb:g} GB RAM",
        "guestCpus": mt.cpus, "memoryMb": mt.memory_mb, "imageSpaceGb": 0,
        "maximumPersistentDisks": 128, "maximumPersistentDisksSizeGb": "263168",
        "zone": zone, "isSharedCpu": mt.name in ("e2-micro", "e2-small", "e2-medium"),
        "architecture": mt.architecture,
        "selfLink": f"{zone_url(project, zone)}/machineTypes/{mt.name}",
    }


def machine_types_get(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    zone = _zone(p)
    mt = catalog.machine_type(p["machineType"], zone)
    if mt is None:
        raise NotFound(f"projects/{p['project']}/zones/{zone}/machineTypes/{p['machineType']}")
    return _machine_type_json(p["project"], zone, mt)


def machine_types_list(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    project, zone = p["project"], _zone(p)
    items = [_machine_type_json(project, zone, mt) for mt in catalog.machine_types_in(zone)]
    return list_body("compute#machineTypeList", f"projects/{project}/zones/{zone}/machineTypes",
                     f"{zone_url(project, zone)}/machineTypes", items, q)


def _zone_json(project: str, zone: str) -> dict:
    platforms = sorted({f.cpu_platform for f in catalog.FAMILIES if zone in f.zones})
    region = catalog.region_of(zone)
    return {
        "kind": "compute#zone", "id": str(2000 + catalog.ALL_ZONES.index(zone)),
        "creationTimestamp": "1969-12-31T16:00:00.000-08:00", "name": zone,
        "description": zone, "status": "UP",
        "region": f"{BASE}projects/{project}/regions/{region}",
        "selfLink": zone_url(project, zone), "availableCpuPlatforms": platforms,
        "supportsPzs": False,
    }


def zones_get(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    zone = p["zone"]
    if zone not in catalog.ALL_ZONES:
        raise NotFound(f"projects/{p['project']}/zones/{zone}")
    return _zone_json(p["project"], zone)


def zones_list(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    project = p["project"]
    items = [_zone_json(project, z) for z in catalog.ALL_ZONES]
    return list_body("compute#zoneList", f"projects/{project}/zones",
                     f"{BASE}projects/{project}/zones", items, q)


# -- firewalls --------------------------------------------------------------------------------

def firewalls_insert(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return state.insert_firewall(p["project"], body, request_id=q.get("requestId")).to_json()


def firewalls_get(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return state.get_firewall(p["project"], p["firewall"]).to_json()


def firewalls_list(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    project = p["project"]
    items = [fw.to_json() for fw in state.list_firewalls(project)]
    return list_body("compute#firewallList", f"projects/{project}/global/firewalls",
                     f"{BASE}projects/{project}/global/firewalls", items, q)


def firewalls_delete(state: ComputeState, p: dict, q: dict, body: dict) -> dict:
    return state.delete_firewall(p["project"], p["firewall"],
                                 request_id=q.get("requestId")).to_json()
