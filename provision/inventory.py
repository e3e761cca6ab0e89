"""The inventory: a farm described in YAML, validated into typed models before any API call.

Every problem becomes one `InventoryError` naming the file, the line, the key and the fix.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from .errors import InventoryError

DEFAULT_INVENTORY = "inventory/lab.yaml"
IMAGES = {"linux/arm64": "projects/debian-cloud/global/images/family/debian-12-arm64",
          "linux/amd64": "projects/debian-cloud/global/images/family/debian-12"}
ARM64_FAMILIES = {"t2a", "c4a"}  # every other Compute Engine family is x86-64
# Zones offering each arm64 family (shared/reference/gce-facts.md §6).
ARM64_ZONES = {
    "t2a": {"us-central1-a", "us-central1-b", "us-central1-f", "europe-west4-a",
            "europe-west4-b", "europe-west4-c", "asia-southeast1-b", "asia-southeast1-c"},
}

FarmName = Annotated[str, StringConstraints(pattern=r"^[a-z][-a-z0-9]{0,19}$")]
NodeName = Annotated[str, StringConstraints(pattern=r"^[a-z][-a-z0-9]{0,19}$")]
Zone = Annotated[str, StringConstraints(pattern=r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")]
Platform = Literal["linux/arm64", "linux/amd64"]


def platform_of(machine_type: str) -> str:
    return "linux/arm64" if machine_type.split("-", 1)[0] in ARM64_FAMILIES else "linux/amd64"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Gcp(Strict):
    project: Annotated[str, StringConstraints(pattern=r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")]
    zones: list[Zone] = Field(min_length=1)
    api_endpoint: str | None = None
    network: str = "default"
    ssh_source_ranges: list[str] = []

    @field_validator("ssh_source_ranges")
    @classmethod
    def _cidrs(cls, ranges: list[str]) -> list[str]:
        for r in ranges:
            try:
                ipaddress.ip_network(r)
            except ValueError:
                raise ValueError(f"'{r}' is not a CIDR range; write it like 203.0.113.7/32")\
                    from None
        return ranges


class Ssh(Strict):
    user: Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] = "builder"
    private_key: str | None = None  # default ~/.ssh/archfarm-<farm>


class Docker(Strict):
    package: Literal["docker-ce", "docker.io"] = "docker-ce"


class NodeSpec(Strict):
    name: NodeName
    platform: Platform
    machine_type: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9]*-[-a-z0-9]+$")]
    count: int = Field(default=1, ge=1, le=100)
    zones: list[Zone] | None = Field(default=None, min_length=1)
    spot: bool = False
    max_run_hours: int | None = Field(default=None, ge=1, le=720)
    image: str | None = None
    disk_gb: int = Field(default=50, ge=10, le=65536)
    disk_type: str = "pd-balanced"

    def names(self) -> list[str]:
        """Node names after `count` expansion: `name`, or `name-1` .. `name-N`."""
        if self.count == 1:
            return [self.name]
        return [f"{self.name}-{i}" for i in range(1, self.count + 1)]


class Node(Strict):
    """One VM of the farm, after `count` expansion and defaults."""

    name: str
    vm_name: str
    platform: str
    machine_type: str
    zones: list[str]
    image: str
    disk_gb: int
    disk_type: str
    spot: bool
    max_run_hours: int | None

    @property
    def arch(self) -> str:
        return self.platform.split("/", 1)[1]


class Farm(Strict):
    farm: FarmName
    gcp: Gcp
    ssh: Ssh = Ssh()
    docker: Docker = Docker()
    nodes: list[NodeSpec] = Field(min_length=1)

    def expanded(self) -> list[Node]:
        nodes = []
        for spec in self.nodes:
            for name in spec.names():
                nodes.append(Node(
                    name=name, vm_name=f"{self.farm}-{name}", platform=spec.platform,
                    machine_type=spec.machine_type, zones=spec.zones or self.gcp.zones,
                    image=spec.image or IMAGES[spec.platform], disk_gb=spec.disk_gb,
                    disk_type=spec.disk_type, spot=spec.spot, max_run_hours=spec.max_run_hours))
        return nodes

    @property
    def key_path(self) -> Path:
        return Path(os.path.expanduser(self.ssh.private_key or f"~/.ssh/archfarm-{self.farm}"))


# -- loading with line numbers -----------------------------------------------------------------

def _lines(node: yaml.Node, path: tuple = ()) -> dict[tuple, int]:
    """Map each key path in a composed YAML document to its 1-based line."""
    out = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, key.value)
            out.update(_lines(value, sub))
            out[sub] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.update(_lines(item, (*path, i)))
    return out


def _key_text(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


FIXES = {
    "extra_forbidden": "remove it, or check its spelling against inventory/gcp-example.yaml",
    "missing": "add it",
    "string_pattern_mismatch": "use lowercase letters, digits and dashes, starting with a letter",
    "literal_error": "use one of the allowed values",
    "bool_type": "use true or false",
    "bool_parsing": "use true or false",
    "int_type": "use a whole number",
    "int_parsing": "use a whole number",
    "int_from_float": "use a whole number",
    "string_type": "use a string",
    "list_type": "use a list, e.g. [a, b]",
    "model_type": "use a mapping of keys to values",
    "dict_type": "use a mapping of keys to values",
    "too_short": "give at least one entry",
}


def _message(err: dict) -> tuple[str, str]:
    kind, ctx = err["type"], err.get("ctx", {})
    if kind == "extra_forbidden":
        return "unknown key", FIXES[kind]
    if kind == "missing":
        return "required key is missing", FIXES[kind]
    if kind == "string_pattern_mismatch":
        return f"{err['input']!r} does not match {ctx.get('pattern', '')}", FIXES[kind]
    if kind == "value_error":
        msg, _, fix = str(ctx.get("error", err["msg"])).partition("; ")
        return msg, fix or "correct the value"
    if kind in ("greater_than_equal", "less_than_equal"):
        bound = ctx.get("ge", ctx.get("le"))
        word = "at least" if kind == "greater_than_equal" else "at most"
        return f"{err['input']!r} is out of range", f"use a value {word} {bound}"
    return f"{err['msg'].rstrip('.')} (got {err.get('input')!r})", FIXES.get(kind,
                                                                           "correct the value")


def semantic_problems(farm: Farm) -> list[tuple[tuple, str, str]]:
    """Cross-field problems as (key path, problem, fix): what a schema alone cannot say."""
    problems = []
    for i, spec in enumerate(farm.nodes):
        arch = platform_of(spec.machine_type)
        if arch != spec.platform:
            kind = "a t2a-* or c4a-*" if spec.platform == "linux/arm64" else "an x86 (e2, n2, c3)"
            problems.append((("nodes", i, "platform"),
                             f"platform {spec.platform} does not match machine type"
                             f" {spec.machine_type}, which is {arch}",
                             f"set platform: {arch}, or use {kind} machine type"))
        family = spec.machine_type.split("-", 1)[0]
        zones = spec.zones or farm.gcp.zones
        if family in ARM64_ZONES and not ARM64_ZONES[family] & set(zones):
            where = ("nodes", i, "zones") if spec.zones else ("gcp", "zones")
            problems.append((where, f"none of {', '.join(zones)} offers {family.upper()}"
                             f" (node {spec.name}, {spec.machine_type})",
                             f"add one of {', '.join(sorted(ARM64_ZONES[family]))}"))
    seen: set[str] = set()
    for i, spec in enumerate(farm.nodes):
        clash = seen & set(spec.names())
        if clash:
            problems.append((("nodes", i, "name"),
                             f"node name {sorted(clash)[0]} is used twice",
                             "give every node (after count expansion) its own name"))
        seen |= set(spec.names())
    return problems


def parse(text: str, source: str) -> Farm:
    """Validate inventory text; raise InventoryError on the first problem."""
    try:
        docs = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        data = yaml.safe_load(text) if docs else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise InventoryError(source, mark.line + 1 if mark else None, None,
                             f"not valid YAML: {problem}",
                             "fix the YAML syntax (indentation, quotes, colons)") from None
    if len(docs) > 1:
        raise InventoryError(source, docs[1].start_mark.line + 1, None,
                             "more than one YAML document", "keep one farm per file")
    if not isinstance(data, dict):
        raise InventoryError(source, 1, None, "the inventory must be a mapping with farm, gcp"
                             " and nodes", "start from inventory/gcp-example.yaml")
    lines = _lines(docs[0])

    def error(loc: tuple, problem: str, fix: str) -> InventoryError:
        line = next((lines[loc[:i]] for i in range(len(loc), -1, -1) if loc[:i] in lines), None)
        return InventoryError(source, line, _key_text(loc), problem, fix)

    try:
        farm = Farm.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        raise error(tuple(err["loc"]), *_message(err)) from None
    for loc, problem, fix in semantic_problems(farm)[:1]:
        raise error(loc, problem, fix)
    return farm


def resolve_path(path: str | None) -> Path:
    return Path(path or os.environ.get("ARCHFARM_INVENTORY") or DEFAULT_INVENTORY)


def load(path: str | None = None) -> Farm:
    file = resolve_path(path)
    try:
        text = file.read_text()
    except FileNotFoundError:
        raise InventoryError(str(file), None, None, "no such inventory file",
                             "pass -i PATH or set ARCHFARM_INVENTORY") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InventoryError(str(file), None, None, f"cannot read it ({e})",
                             "check the path and its permissions") from None
    return parse(text, str(file))


def parse_limit(limit: str | None, farm: Farm) -> set[str] | None:
    """`--limit a,b`: node names, or a base name standing for all its counted nodes."""
    if not limit:
        return None
    wanted = {n.strip() for n in limit.split(",") if n.strip()}
    base_of = {name: spec.name for spec in farm.nodes for name in spec.names()}
    unknown = wanted - set(base_of) - set(base_of.values())
    if unknown:
        raise InventoryError("--limit", None, None,
                             f"no node named {', '.join(sorted(unknown))} in farm {farm.farm}",
                             f"use node names from the inventory: {', '.join(base_of)}")
    return {name for name, base in base_of.items() if name in wanted or base in wanted}
