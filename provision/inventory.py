"""The inventory: a farm described in YAML, validated into typed models before any API call.

Every problem becomes one `InventoryError` naming the file, the line, the key and the fix.
Machine families, their platforms and zones come from `gce.catalog` (one source of truth).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import stat
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

from . import names
from .errors import InventoryError
from .gce.catalog import (
    DEFAULT_IMAGES,
    FAMILIES,
    family_of,
    platform_of,
    zones_offering,
)
from .platforms import AMD64, ARM64

DEFAULT_INVENTORY = "inventory/lab.yaml"
MAX_BYTES = 1 << 20  # an inventory is a page of YAML; anything this big is the wrong file
MAX_DEPTH = 32       # real inventories nest 4 deep; this stops runaway nesting before recursion
# SSH from a range wider than this is refused unless gcp.allow_ssh_from_anywhere is true.
# IPv4 /8 is 1/256 of the internet. For IPv6 the /8 "equivalent" is taken as /32, the
# smallest block a regional registry hands an ISP: anything wider spans whole providers.
WIDEST_SSH_PREFIX = {4: 8, 6: 32}

# Compute Engine names (and network tags) end in a letter or digit, never a dash.
FarmName = Annotated[str, StringConstraints(pattern=r"^[a-z]([-a-z0-9]{0,18}[a-z0-9])?$")]
NodeName = Annotated[str, StringConstraints(pattern=r"^[a-z]([-a-z0-9]{0,18}[a-z0-9])?$")]
Zone = Annotated[str, StringConstraints(pattern=r"^[a-z]+-[a-z]+[0-9]+-[a-z]$")]
# The platforms of platforms.ARCHES, spelled out for Literal (a unit test holds them equal).
Platform = Literal["linux/arm64", "linux/amd64"]


def _cidr(text: str) -> str:
    """One SSH source range: a network in CIDR form, host bits clear."""
    try:
        ipaddress.ip_network(text)
    except ValueError:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"{text!r} is not a CIDR range; write it like 203.0.113.7/32")\
                from None
        host = text.split("/", 1)[0]
        single = f"{host}/{net.max_prefixlen}"
        raise ValueError(f"{text} has host bits set; write the network, {net},"
                         f" or {single} for that one address") from None
    return text


def _matching(pattern: str, what: str, fix: str) -> AfterValidator:
    """A string checked against `pattern` here, before any API call ever sees it."""
    def check(text: str) -> str:
        if not re.fullmatch(pattern, text):
            raise ValueError(f"{text!r} is not {what}; {fix}")
        return text
    return AfterValidator(check)


# Compute Engine resource names (network, disk type).
GceName = Annotated[str, _matching(
    r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", "a Compute Engine name", "use lowercase letters,"
    " digits and dashes, starting with a letter and ending with a letter or digit")]
ImageRef = Annotated[str, _matching(
    r"(https://www\.googleapis\.com/compute/v1/)?(projects/[a-z][-a-z0-9.:]*/)?"
    r"global/images/(family/)?[a-z]([-a-z0-9]*[a-z0-9])?", "an image",
    "name one like projects/debian-cloud/global/images/family/debian-13, or leave image out"
    " for Debian 13 on the node's platform")]
Endpoint = Annotated[str, _matching(
    r"https?://[^\s/]+(/\S*)?", "a URL", "use one like http://127.0.0.1:8089 for the fake or"
    " the lab, or leave api_endpoint out for Compute Engine")]


def _key_path(text: str) -> str:
    # It is written into ssh config files: no quotes, % tokens or control characters.
    if any(c in text for c in '"%') or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError(f"{text!r} has a quote, a % or a control character, which ssh"
                         " configuration cannot hold; use a plain path like ~/.ssh/archfarm-demo")
    if not text.strip() or text != text.strip():
        raise ValueError(f"{text!r} is empty or has spaces at either end; write the private key"
                         " file's path, like ~/.ssh/archfarm-demo, or leave private_key out for"
                         " ~/.ssh/archfarm-<farm>")
    return text


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Gcp(Strict):
    project: Annotated[str, StringConstraints(pattern=r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")]
    zones: list[Zone] = Field(min_length=1)
    api_endpoint: Endpoint | None = None
    network: GceName = "default"
    ssh_source_ranges: list[Annotated[str, AfterValidator(_cidr)]] = []
    # Off: a range wider than WIDEST_SSH_PREFIX (0.0.0.0/0, ::/0, 10.0.0.0/7...) is an error.
    allow_ssh_from_anywhere: bool = Field(default=False, strict=True)
    # False: nodes get no external address (none of the region's IN_USE_ADDRESSES quota) and
    # are reached through the farm's bastion node (docs/private-nodes.md). A node may say
    # otherwise with its own `external_ip`.
    external_ip: bool = Field(default=True, strict=True)


class Ssh(Strict):
    user: Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] = "builder"
    private_key: Annotated[str, AfterValidator(_key_path)] | None = None  # default below


MirrorUrl = Annotated[str, _matching(
    r"https?://[^\s/]+/?", "a registry mirror URL", "write one like https://mirror.gcr.io")]
RegistryHost = Annotated[str, _matching(
    r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|[0-9.]+/[0-9]{1,2}", "a registry host[:port] or CIDR",
    "write one like registry.internal:5000 or 10.0.0.0/8")]


class Daemon(Strict):
    """/etc/docker/daemon.json on every node; log rotation is always on."""

    registry_mirrors: list[MirrorUrl] = []
    insecure_registries: list[RegistryHost] = []
    log_max_size: Annotated[str, _matching(
        r"[1-9][0-9]*[kmg]", "a size", "write one like 10m or 1g")] = "10m"
    log_max_file: int = Field(default=3, ge=1, le=100, strict=True)


class Docker(Strict):
    package: Literal["docker-ce", "docker.io"] = "docker-ce"
    daemon: Daemon = Daemon()
    # The containerd image store on every engine that has it (Docker 24+): buildx's docker
    # driver then exports attestations and registry cache.
    containerd_store: bool = Field(default=True, strict=True)


class Buildx(Strict):
    # `--driver-opt image=` for the builder strategy: a mirror of moby/buildkit the nodes can
    # pull (Docker Hub may be out of reach or rate-limited).
    buildkit_image: Annotated[str, _matching(
        r"[a-z0-9]([-a-z0-9._:/@]*[a-z0-9])?", "an image reference",
        "write one like mirror.gcr.io/moby/buildkit:v0.16.0")] | None = None
    # A build whose log is silent this long is taken for lost (its node may be gone) and failed,
    # or moved to another node of its platform. Generous: a long quiet compile step is normal.
    stall_timeout_seconds: int = Field(default=1200, ge=1, le=86400, strict=True)
    # Attestations of every build, unless `--provenance`/`--sbom` say otherwise: provenance
    # min, max or false (YAML reads `off` as false too); unset leaves buildx's own default
    # (a minimal one where the driver can).
    provenance: Literal["min", "max", False] | None = None
    sbom: bool = Field(default=False, strict=True)
    # The SBOM generator image (BuildKit's SBOM protocol): buildx's default,
    # docker/buildkit-syft-scanner, is pulled from Docker Hub by each node.
    sbom_generator: Annotated[str, _matching(
        r"[a-z0-9]([-a-z0-9._:/@]*[a-z0-9])?", "an image reference",
        "write one like mirror.gcr.io/docker/buildkit-syft-scanner:stable-1")] | None = None
    # Build cache kept in the registry beside the image (`--cache registry`): a node that
    # is new, or was recreated, starts with the farm's cache rather than none.
    cache: Literal["registry", "none"] = "none"
    # The most build cache (GB) a node's engine keeps; older cache is collected beyond it,
    # so a long-lived node never fills its disk. Unset: the engine's own default.
    cache_max_gb: int | None = Field(default=None, ge=1, le=65536, strict=True)


# Minutes with no build before a node powers itself off; fractions are allowed (a test farm).
IdleMinutes = Annotated[float, Field(gt=0, le=10080, strict=True)]


class NodeSpec(Strict):
    name: NodeName
    platform: Platform
    machine_type: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9]*-[-a-z0-9]+$")]
    # Strict: YAML `true` is no count and "3" (quoted) is no number; no silent coercion.
    count: int = Field(default=1, ge=1, le=100, strict=True)
    zones: list[Zone] | None = Field(default=None, min_length=1)
    spot: bool = Field(default=False, strict=True)
    max_run_hours: int | None = Field(default=None, ge=1, le=720, strict=True)
    image: ImageRef | None = None
    disk_gb: int = Field(default=50, ge=10, le=65536, strict=True)
    disk_type: GceName = "pd-balanced"
    # Unset: the farm's gcp.external_ip.
    external_ip: bool | None = Field(default=None, strict=True)
    # The node that keeps its external address and through which the private nodes are
    # reached (ProxyJump). It is never stopped for idleness: the others are woken through it.
    bastion: bool = Field(default=False, strict=True)
    # Unset: the farm's idle_stop_minutes.
    idle_stop_minutes: IdleMinutes | None = None

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
    external_ip: bool
    bastion: bool
    idle_stop_minutes: float | None  # None: never stopped for idleness

    @property
    def private(self) -> bool:
        return not self.external_ip

    @property
    def arch(self) -> str:
        return self.platform.split("/", 1)[1]


class Farm(Strict):
    farm: FarmName
    gcp: Gcp
    ssh: Ssh = Ssh()
    docker: Docker = Docker()
    buildx: Buildx = Buildx()
    # Every node powers itself off after this many minutes with no build (a node's own
    # idle_stop_minutes wins); `inv build` wakes the nodes it needs. Unset: always on.
    idle_stop_minutes: IdleMinutes | None = None
    nodes: list[NodeSpec] = Field(min_length=1)

    def expanded(self) -> list[Node]:
        nodes = []
        for spec in self.nodes:
            for name in spec.names():
                nodes.append(Node(
                    name=name, vm_name=names.vm(self.farm, name), platform=spec.platform,
                    machine_type=spec.machine_type, zones=spec.zones or self.gcp.zones,
                    image=spec.image or DEFAULT_IMAGES[spec.platform], disk_gb=spec.disk_gb,
                    disk_type=spec.disk_type, spot=spec.spot, max_run_hours=spec.max_run_hours,
                    external_ip=(self.gcp.external_ip if spec.external_ip is None
                                 else spec.external_ip),
                    bastion=spec.bastion,
                    idle_stop_minutes=None if spec.bastion else (
                        spec.idle_stop_minutes or self.idle_stop_minutes)))
        return nodes

    @property
    def bastion(self) -> Node | None:
        """The node the private nodes are reached through (semantic_problems: at most one)."""
        return next((n for n in self.expanded() if n.bastion), None)

    def selected(self, names: set[str] | None) -> list[Node]:
        """The expanded nodes named in `names` (from `--limit`); every node for None."""
        return [n for n in self.expanded() if names is None or n.name in names]

    @property
    def platforms(self) -> list[str]:
        """The farm's platforms, each once, sorted."""
        return sorted({n.platform for n in self.expanded()})

    @property
    def key_path(self) -> Path:
        default = f"~/.ssh/{names.farm_tag(self.farm)}"
        return Path(os.path.expanduser(self.ssh.private_key or default))


# -- YAML, strictly ------------------------------------------------------------------------------

class _Refused(Exception):
    """A YAML construct archfarm does not accept, found while composing."""

    def __init__(self, line: int, loc: tuple, problem: str, fix: str):
        super().__init__(problem)
        self.line, self.loc, self.problem, self.fix = line, loc, problem, fix


class _Loader(yaml.SafeLoader):
    """SafeLoader, stricter: no anchors or aliases, bounded nesting, keys kept as written.

    Anchors (&a) and aliases (*a) are refused outright rather than expansion being limited:
    an inventory is a page long and never needs them, a refusal is one clear rule with no
    threshold to tune, it stops an alias bomb ("billion laughs") at its first anchor before
    anything is expanded, and it keeps one line per value for the error messages (a shared
    node would have one line for every place it is used). YAML merge keys (`<<: *base`) need
    an alias, so they go too; without one `<<` is an ordinary, unknown key.
    """

    def __init__(self, stream: str):
        super().__init__(stream)
        self._path: list[Any] = []

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if isinstance(index, yaml.ScalarNode):
            part = index.value  # a mapping value, under its key
        elif isinstance(index, int):
            part = index        # a sequence item
        else:
            part = None         # the root, or a mapping key
        self._path.append(part)
        try:
            loc = tuple(p for p in self._path if p is not None)
            event = self.peek_event()
            line = event.start_mark.line + 1
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                sign = "*" if isinstance(event, yaml.AliasEvent) else "&"
                what = "alias" if sign == "*" else "anchor"
                raise _Refused(line, loc, f"YAML {what} {sign}{event.anchor} is not accepted",
                               "write the value out in full wherever it is needed (archfarm"
                               " refuses YAML anchors and aliases, and so merge keys)")
            if len(self._path) > MAX_DEPTH:
                raise _Refused(line, (), f"nested more than {MAX_DEPTH} levels deep",
                               "start from inventory/gcp-example.yaml")
            return super().compose_node(parent, index)
        finally:
            self._path.pop()

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        # Keys are names, kept as written: YAML 1.1 would read `yes:` as True and `1:` as 1.
        # _index() has already refused non-scalar and duplicate keys.
        if not isinstance(node, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(
                None, None, f"expected a mapping for {node.tag}", node.start_mark)
        return {key.value: self.construct_object(value, deep=deep) for key, value in node.value}

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # An explicit tag on a value it cannot read (`!!int x`, `!!timestamp y`) raises plain
        # ValueError and the like from the constructor: make it a YAML error with its line.
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except Exception:  # noqa: BLE001 (any constructor failure is a bad value)
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {_show(node.value)} as {node.tag}",
                node.start_mark) from None


def _index(node: yaml.Node, loc: tuple, lines: dict[tuple, int]) -> None:
    """Map each key path to its 1-based line; refuse duplicate and non-scalar keys."""
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            line = key.start_mark.line + 1
            if not isinstance(key, yaml.ScalarNode):
                raise _Refused(line, loc, "a key here is a list or a mapping",
                               "use a plain name as the key, like the ones in"
                               " inventory/gcp-example.yaml")
            sub = (*loc, key.value)
            if key.value in seen:
                raise _Refused(line, sub, f"key {_part(key.value)} appears twice, on lines"
                               f" {seen[key.value]} and {line}",
                               "keep one of them (YAML would silently use the last)")
            seen[key.value] = line
            _index(value, sub, lines)
            lines[sub] = line
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*loc, i), lines)


def _part(part: Any) -> str:
    if isinstance(part, int):
        return f"[{part}]"
    text = str(part)
    return text if re.fullmatch(r"[A-Za-z0-9_/-]+", text) else repr(text)


def key_text(loc: tuple) -> str:
    """`nodes[0].count` for ("nodes", 0, "count"); odd keys quoted so a message stays one line."""
    text = ""
    for part in loc:
        shown = _part(part)
        text += shown if isinstance(part, int) or not text else f".{shown}"
    return text or "(top level)"


def _show(value: Any) -> str:
    """A value as the user wrote it in YAML, briefly."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null (empty)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- messages --------------------------------------------------------------------------------

def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The model validating the mapping at `loc` (list indexes skipped), if any."""
    model: type[BaseModel] | None = Farm
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if model else None
        model = _model_in(field.annotation) if field else None
        if model is None:
            return None
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for m in map(_model_in, typing.get_args(annotation)) if m), None)


def _unknown_key(loc: tuple) -> tuple[str, str]:
    model = _model_at(loc[:-1])
    allowed = list(model.model_fields) if model else []
    name = _part(loc[-1])
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown key {name}; did you mean {close[0]}?", f"rename it to {close[0]}"
    return f"unknown key {name}", f"remove it; the keys allowed here are {', '.join(allowed)}"


def _looks_like(value: Any, kind: type) -> bool:
    """Whether a string would have been an int / a bool had it not been quoted."""
    if not isinstance(value, str):
        return False
    if kind is bool:
        return value.strip().lower() in ("true", "false", "yes", "no", "on", "off")
    return re.fullmatch(r"[-+]?[0-9][0-9_]*", value.strip()) is not None


def _message(err: dict) -> tuple[str, str]:
    kind, ctx, value = err["type"], err.get("ctx", {}), err.get("input")
    if kind == "extra_forbidden":
        return _unknown_key(tuple(err["loc"]))
    if kind == "missing":
        return "required key is missing", "add it (inventory/gcp-example.yaml shows each key)"
    if kind == "string_pattern_mismatch":
        return (f"{_show(value)} does not match {ctx.get('pattern', '')}",
                "use lowercase letters, digits and dashes, starting with a letter and ending"
                " with a letter or digit")
    if kind == "value_error":
        msg, _, fix = str(ctx.get("error", err["msg"])).partition("; ")
        return msg, fix or "correct the value"
    if kind in ("greater_than_equal", "less_than_equal"):
        bound = ctx.get("ge", ctx.get("le"))
        word = "at least" if kind == "greater_than_equal" else "at most"
        return f"{_show(value)} is out of range", f"use a value {word} {bound}"
    if kind == "greater_than":
        return f"{_show(value)} is out of range", f"use a value above {ctx.get('gt', 0):g}"
    if kind in ("float_type", "float_parsing"):
        if _looks_like(value, int):
            return (f"expected a number, got the quoted string {_show(value)}",
                    f"write it without quotes: {str(value).strip()}")
        return f"expected a number, got {_show(value)}", "use a number of minutes, like 30"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        if _looks_like(value, int):
            return (f"expected a whole number, got the quoted string {_show(value)}",
                    f"write it without quotes: {str(value).strip()}")
        return f"expected a whole number, got {_show(value)}", "use a whole number, like 2"
    if kind in ("bool_type", "bool_parsing"):
        if _looks_like(value, bool):
            return (f"expected true or false, got the quoted string {_show(value)}",
                    "use true or false, without quotes")
        return f"expected true or false, got {_show(value)}", "use true or false"
    if kind == "string_type":
        return (f"expected text, got {_show(value)}",
                "write text (quote it if it looks like a number or true/false)")
    if kind == "literal_error":
        return (f"{_show(value)} is not one of {ctx.get('expected', 'the allowed values')}",
                "use one of the allowed values")
    if kind in ("list_type", "too_short"):
        if kind == "too_short":
            return "the list is empty", "give at least one entry"
        return f"expected a list, got {_show(value)}", "use a list, e.g. [a, b]"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return (f"expected a mapping of keys to values, got {_show(value)}",
                "write it as indented `key: value` lines")
    return f"{err['msg'].rstrip('.')} (got {_show(value)})", "correct the value"


def _first_error(errors: list[Any]) -> Any:
    """Pydantic's first error, except that a misspelt key explains the missing key it causes:
    `zone:` under gcp reports "unknown key zone; did you mean zones?", not "zones missing"."""
    first = errors[0]
    if first["type"] == "missing":
        parent = tuple(first["loc"][:-1])
        for err in errors:
            if err["type"] == "extra_forbidden" and tuple(err["loc"][:-1]) == parent:
                return err
    return first


def semantic_problems(farm: Farm) -> list[tuple[tuple, str, str]]:
    """Cross-field problems as (key path, problem, fix): what a schema alone cannot say."""
    problems: list[tuple[tuple, str, str]] = []
    arm = ", ".join(f"{f}-*" for f in FAMILIES if FAMILIES[f].platform == ARM64)
    x86 = ", ".join(f for f in FAMILIES if FAMILIES[f].platform == AMD64)
    for i, spec in enumerate(farm.nodes):
        arch = platform_of(spec.machine_type)
        if arch != spec.platform:
            kind = f"an Arm ({arm})" if spec.platform == ARM64 else f"an x86 ({x86})"
            problems.append((("nodes", i, "platform"),
                             f"platform {spec.platform} does not match machine type"
                             f" {spec.machine_type}, which is {arch}",
                             f"set platform: {arch}, or use {kind} machine type"))
        offering = zones_offering(spec.machine_type)
        zones = spec.zones or farm.gcp.zones
        if offering is not None and not offering & set(zones):
            family = family_of(spec.machine_type)
            where = ("nodes", i, "zones") if spec.zones else ("gcp", "zones")
            problems.append((where, f"none of {', '.join(zones)} offers {family.upper()}"
                             f" (node {spec.name}, {spec.machine_type})",
                             f"add one of {', '.join(sorted(offering))}"))
    seen: set[str] = set()
    for i, spec in enumerate(farm.nodes):
        if spec.name.startswith("archfarm-"):  # archfarm's own resources (the SSH rule)
            problems.append((("nodes", i, "name"), f"node names starting with archfarm- are"
                             f" reserved (got {spec.name})", "rename the node"))
        clash = seen & set(spec.names())
        if clash:
            problems.append((("nodes", i, "name"),
                             f"node name {sorted(clash)[0]} is used twice",
                             "give every node (after count expansion) its own name"))
        seen |= set(spec.names())
    problems += _bastion_problems(farm)
    if not farm.gcp.allow_ssh_from_anywhere:
        for i, text in enumerate(farm.gcp.ssh_source_ranges):
            net = ipaddress.ip_network(text)
            widest = WIDEST_SSH_PREFIX[net.version]
            if net.prefixlen < widest:
                whom = ("the whole internet" if net.prefixlen == 0
                        else f"everyone in a range wider than a /{widest}")
                problems.append((("gcp", "ssh_source_ranges", i),
                                 f"{text} would open SSH on every node to {whom}",
                                 "list only the addresses your SSH comes from, like"
                                 " 203.0.113.7/32; to open it that wide on purpose, set"
                                 " gcp.allow_ssh_from_anywhere: true"))
    return problems


def _bastion_problems(farm: Farm) -> list[tuple[tuple, str, str]]:
    """Private nodes need exactly one bastion, which keeps its external address."""
    bastions = [(i, spec) for i, spec in enumerate(farm.nodes) if spec.bastion]
    for i, spec in bastions:
        if spec.count > 1 or len(bastions) > 1:
            return [(("nodes", i, "bastion"), "a farm has one bastion node",
                     "set bastion: true on one node whose count is 1")]
        if spec.external_ip is False or (spec.external_ip is None and not farm.gcp.external_ip):
            fix = "set external_ip: true on it"
            if spec.external_ip is False and farm.gcp.external_ip:
                fix += " (or remove the line: the farm's default gives it one)"
            return [(("nodes", i, "external_ip"), f"bastion node {spec.name} needs its"
                     " external address: the other nodes are reached through it", fix)]
        if spec.idle_stop_minutes is not None:
            return [(("nodes", i, "idle_stop_minutes"), f"bastion node {spec.name} is never"
                     " stopped for idleness: the private nodes are woken through it",
                     "remove idle_stop_minutes from it")]
        for key in ("spot", "max_run_hours"):
            if getattr(spec, key):
                return [(("nodes", i, key), f"bastion node {spec.name} must not be taken"
                         f" away ({key}): the private nodes are reached through it",
                         f"remove {key} from it, or make another node the bastion")]
    private = [(i, spec) for i, spec in enumerate(farm.nodes)
               if spec.external_ip is False or (spec.external_ip is None
                                                and not farm.gcp.external_ip)]
    if private and not bastions:
        i, spec = private[0]
        where = ("nodes", i, "external_ip") if spec.external_ip is False else ("gcp", "external_ip")
        return [(where, f"node {spec.name} has no external address and the farm has no bastion"
                 " to reach it through", "set bastion: true on one node that keeps its external"
                 " address (docs/private-nodes.md)")]
    return []


# -- loading ---------------------------------------------------------------------------------

def parse(text: str, source: str) -> Farm:
    """Validate inventory text; raise InventoryError on the first problem."""
    lines: dict[tuple, int] = {}

    def error(loc: tuple, problem: str, fix: str) -> InventoryError:
        line = next((lines[loc[:i]] for i in range(len(loc), -1, -1) if loc[:i] in lines), 1)
        return InventoryError(source, line, key_text(loc) if loc else None, problem, fix)

    loader = None
    try:
        loader = _Loader(text)
        root = loader.get_node() if loader.check_node() else None
        if root is not None and loader.check_node():
            raise _Refused(loader.peek_event().start_mark.line + 1, (),
                           "more than one YAML document", "keep one farm per file")
        if root is not None:
            _index(root, (), lines)
        data = loader.construct_document(root) if root is not None else None
    except _Refused as e:
        lines[e.loc] = e.line
        raise error(e.loc, e.problem, e.fix) from None
    except yaml.reader.ReaderError as e:
        line = text[:e.position].count("\n") + 1
        raise InventoryError(source, line, None, f"not valid YAML: character {chr(e.character)!r}"
                             " is not allowed", "remove it (inside double quotes it can be"
                             f' written as an escape, "\\x{e.character:02x}")') from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        fix = ("remove the tag (the !... before the value), or write a value it accepts"
               if isinstance(e, yaml.constructor.ConstructorError)
               else "fix the YAML syntax (indentation, quotes, colons)")
        raise InventoryError(source, mark.line + 1 if mark else 1, None,
                             f"not valid YAML: {problem}", fix) from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(data, dict):
        raise InventoryError(source, 1, None, "the inventory must be a mapping with farm, gcp"
                             " and nodes", "start from inventory/gcp-example.yaml")
    try:
        farm = Farm.model_validate(data)
    except ValidationError as e:
        err = _first_error(e.errors())
        raise error(tuple(err["loc"]), *_message(err)) from None
    for loc, problem, fix in semantic_problems(farm)[:1]:
        raise error(loc, problem, fix)
    return farm


def resolve_path(path: str | None) -> Path:
    """-i PATH; None: $ARCHFARM_INVENTORY, else inventory/lab.yaml. An empty -i is an error,
    never a silent fall back to the default (think `-i "$UNSET_VARIABLE"`)."""
    if path is None:
        return Path(os.environ.get("ARCHFARM_INVENTORY") or DEFAULT_INVENTORY)
    if not path.strip():
        raise InventoryError(f"-i {path!r}", None, None, "the inventory path is empty",
                             "pass -i PATH naming an inventory file, or leave -i out to use"
                             f" $ARCHFARM_INVENTORY or {DEFAULT_INVENTORY}")
    return Path(path)


def load(path: str | None = None) -> Farm:
    file = resolve_path(path)
    return parse(_read(file), str(file))


def _read(file: Path) -> str:
    def fail(problem: str, fix: str) -> InventoryError:
        return InventoryError(str(file), None, None, problem, fix)

    try:
        # O_NONBLOCK: a FIFO named as the inventory must not hang the open.
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise fail("no such inventory file", "pass -i PATH or set ARCHFARM_INVENTORY") from None
    except NotADirectoryError:
        raise fail("a parent of this path is a file, not a directory",
                   "pass -i PATH naming the inventory file") from None
    except IsADirectoryError:
        raise _directory(file) from None
    except OSError as e:
        raise fail(f"cannot open it ({e.strerror})", "check the path and its permissions") \
            from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise _directory(file)
        if not stat.S_ISREG(st.st_mode):
            raise fail("not a regular file", "pass -i PATH naming the inventory's YAML file")
        if st.st_size > MAX_BYTES:
            raise fail(f"{st.st_size} bytes is too big for an inventory",
                       "pass -i PATH naming the inventory's YAML file")
        chunks: list[bytes] = []
        while len(chunks) < 64 and (chunk := os.read(fd, MAX_BYTES + 1)):
            chunks.append(chunk)  # bounded: /proc files say size 0, devices never end
        data = b"".join(chunks)
        if len(data) > MAX_BYTES:
            raise fail("too big for an inventory", "pass -i PATH naming the inventory's YAML file")
    except OSError as e:
        raise fail(f"cannot read it ({e.strerror})", "check the path and its permissions") \
            from None
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise InventoryError(str(file), line, None, "not UTF-8 text",
                             "save the inventory as UTF-8") from None


def _directory(file: Path) -> InventoryError:
    try:
        found = sorted(p.name for p in file.iterdir() if p.suffix in (".yaml", ".yml"))[:3]
    except OSError:
        found = []
    example = str(file / found[0]) if found else str(file / "farm.yaml")
    return InventoryError(str(file), None, None, "is a directory, not an inventory file",
                          f"pass -i with the YAML file itself, e.g. -i {example}")


def parse_limit(limit: str | None, farm: Farm) -> set[str] | None:
    """`--limit a,b`: node names, or a base name standing for all its counted nodes.
    None means every node; an empty --limit is an error, never "every node"."""
    if limit is None:
        return None
    wanted = {n.strip() for n in limit.split(",") if n.strip()}
    base_of = {name: spec.name for spec in farm.nodes for name in spec.names()}
    if not wanted:
        raise InventoryError("--limit", None, None, f"{limit!r} names no node",
                             f"name nodes from the inventory ({', '.join(base_of)}), or leave"
                             " --limit out to act on every node")
    unknown = wanted - set(base_of) - set(base_of.values())
    if unknown:
        raise InventoryError("--limit", None, None,
                             f"no node named {', '.join(sorted(unknown))} in farm {farm.farm}",
                             f"use node names from the inventory: {', '.join(base_of)}")
    return {name for name, base in base_of.items() if name in wanted or base in wanted}
