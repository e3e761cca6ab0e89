"""Compute Engine's validation rules, as pure functions that raise `errors.GceError`.

Messages follow the real ones: docs/compute-engine.md, "Errors and retries".
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from . import catalog
from .errors import BadRequest, InvalidField, InvalidResourceUsage, NotFound, Required

NAME_RE = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?")
PATH_NAME_RE = re.compile(r"[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?|[1-9][0-9]{0,19}")
LABEL_KEY_RE = re.compile(r"[a-z][a-z0-9_-]{0,62}")
LABEL_VALUE_RE = re.compile(r"[a-z0-9_-]{0,63}")
METADATA_KEY_RE = re.compile(r"[a-zA-Z0-9_-]{1,128}")
MAX_LABELS = 64
MAX_METADATA_BYTES = 512 * 1024


def name(field: str, value: object) -> str:
    if not value:
        raise Required(field)
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise InvalidField(field, value, f"Must be a match of regex '(?:{NAME_RE.pattern})'")
    return value


def zone(value: str) -> str:
    """A zone the catalog knows; any other is 400 on every zonal method (not 404)."""
    if value not in catalog.ZONE_SET:
        raise InvalidField("zone", value, "Unknown zone.")
    return value


def path_name(field: str, value: str) -> str:
    if not PATH_NAME_RE.fullmatch(value):
        raise InvalidField(field, value, f"Must be a match of regex '{PATH_NAME_RE.pattern}'")
    return value


def labels(field: str, value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidField(field, "", "Labels must be a map of strings.")
    if len(value) > MAX_LABELS:
        raise InvalidField(field, "", f"Resource can have at most {MAX_LABELS} labels.")
    for key, val in value.items():
        if not LABEL_KEY_RE.fullmatch(key):
            raise InvalidField(
                field, "",
                f"Label key '{key}' violates format constraints. The key must start with a"
                " lowercase character, can only contain lowercase letters, numeric characters,"
                " underscores and dashes. The key can be at most 63 characters long."
                " International characters are allowed.")
        if not isinstance(val, str) or not LABEL_VALUE_RE.fullmatch(val):
            raise InvalidField(
                field, "",
                f"Label value '{val}' violates format constraints. The value can only contain"
                " lowercase letters, numeric characters, underscores and dashes. The value can"
                " be at most 63 characters long. International characters are allowed.")
    return dict(value)


def metadata_items(field: str, items: Any) -> list[dict]:
    """`items` is the request's JSON as sent: a list of `{"key", "value"}` objects, or null."""
    items = items or []
    seen: set[str] = set()
    size = 0
    for i, item in enumerate(items):
        key, val = item.get("key"), item.get("value", "")
        if not key or not METADATA_KEY_RE.fullmatch(key):
            raise InvalidField(f"{field}.items[{i}].key", key or "",
                               "Must be a match of regex '[a-zA-Z0-9-_]{1,128}'")
        if key in seen:
            raise InvalidField(f"{field}.items[{i}].key", key, "Duplicate metadata key.")
        seen.add(key)
        size += len(key) + len(val or "")
    if size > MAX_METADATA_BYTES:
        raise InvalidField(field, "", "Metadata is too large.")
    return [{"key": it["key"], "value": it.get("value", "")} for it in items]


def request_id(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        parsed = None
    if parsed is None or parsed.int == 0:
        raise InvalidField("requestId", value, "The requestId must be a valid non-zero UUID.")
    return str(parsed)


def last_segment(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def machine_type(field: str, value: object, project: str, zone: str) -> catalog.MachineType:
    """A `machineType` given as a bare name, partial or full URL, offered in `zone`."""
    if not value:
        raise Required(field)
    url = str(value)
    type_name = last_segment(url)
    if "/zones/" in f"/{url}":
        url_zone = url.split("zones/", 1)[1].split("/", 1)[0]
        if url_zone != zone:
            raise InvalidField(field, url, f"Machine type must be in zone '{zone}'.")
    mt = catalog.machine_type(type_name, zone)
    if mt is None:
        raise InvalidField(field, url, f"Machine type with name '{type_name}' does not exist"
                                       f" in zone '{zone}'.")
    return mt


def source_image(field: str, value: object, project: str) -> catalog.Image:
    """Resolve `projects/P/global/images/[family/]X` (partial or full URL) to an image."""
    if not value:
        raise Required(field)
    url = str(value)
    tail = url.split("/compute/v1/", 1)[-1]
    m = re.fullmatch(r"(?:projects/([^/]+)/)?global/images/(family/)?([^/]+)", tail)
    if not m:
        raise InvalidField(field, url, "The URL is malformed.")
    img_project = m.group(1) or project
    if m.group(2):
        img = catalog.image_from_family(img_project, m.group(3))
    else:
        img = catalog.image(img_project, m.group(3))
    if img is None:  # 400 on an insert, though images.get of the same name is 404
        raise InvalidField(field, url, "The referenced image resource cannot be found.")
    return img


def boot_disk(prefix: str, disks: Any, project: str, zone: str,
              mt: catalog.MachineType) -> dict:
    """Validate the boot disk of an insert (fields under `prefix`); return its description.

    `disks` is the request's JSON as sent: a list of attached-disk objects, or null.
    """
    if not disks:
        raise Required(f"{prefix}.disks")
    boots = [i for i, d in enumerate(disks) if d.get("boot")]
    if len(boots) != 1:
        raise InvalidField(f"{prefix}.disks", "", "Exactly one boot disk must be specified.")
    i = boots[0]
    params = disks[i].get("initializeParams") or {}
    field = f"{prefix}.disks[{i}].initializeParams"
    img = source_image(f"{field}.sourceImage", params.get("sourceImage"), project)
    size = int(params.get("diskSizeGb") or img.disk_size_gb)
    if size < img.disk_size_gb:
        raise InvalidField(f"{field}.diskSizeGb", size,
                           "Requested disk size cannot be smaller than the image size"
                           f" ({img.disk_size_gb} GB)")
    disk_type = last_segment(params.get("diskType") or "pd-standard")
    if disk_type not in ("pd-standard", "pd-balanced", "pd-ssd", "pd-extreme",
                         "hyperdisk-balanced", "hyperdisk-extreme", "hyperdisk-throughput"):
        raise NotFound(f"projects/{project}/zones/{zone}/diskTypes/{disk_type}")
    if disk_type not in mt.family.disk_types:
        raise BadRequest(f"[{disk_type}, {mt.name}] features are not compatible for creating"
                         " instance.")
    if img.architecture != mt.architecture:
        raise InvalidResourceUsage(
            f"Requested boot disk architecture ({img.architecture}) is not compatible with"
            f" machine type architecture ({mt.architecture})")
    return {"image": img, "size_gb": size, "disk_type": disk_type,
            "auto_delete": disks[i].get("autoDelete", True)}


def scheduling(value: Any) -> dict:
    """`value` is the request's `scheduling` JSON as sent: an object, or null."""
    sched = dict(value or {})
    if sched.get("provisioningModel") == "SPOT":
        if sched.get("automaticRestart", False):
            raise InvalidField("resource.scheduling.automaticRestart", "true",
                               "Spot VMs do not support automatic restart.")
        if sched.get("onHostMaintenance", "TERMINATE") != "TERMINATE":
            raise InvalidField("resource.scheduling.onHostMaintenance",
                               sched["onHostMaintenance"],
                               "Spot VMs only support TERMINATE on host maintenance.")
        sched.setdefault("onHostMaintenance", "TERMINATE")
        sched.setdefault("automaticRestart", False)
        sched.setdefault("instanceTerminationAction", "STOP")
    else:
        sched.setdefault("onHostMaintenance", "MIGRATE")
        sched.setdefault("automaticRestart", True)
        sched.setdefault("provisioningModel", "STANDARD")
    sched.setdefault("preemptible", False)
    return sched
