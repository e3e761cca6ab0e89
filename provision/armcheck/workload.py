"""The images of a Kubernetes or Compose workload, where each is used, and each Pod template's
scheduling: what `inv check-arm --manifests PATH|-` and `--compose FILE` check.

The YAML is composed into nodes (never constructed into Python objects), so every value keeps
its line, and anchors and aliases stay shared nodes: only the known paths (the Pod spec, its
containers, their image) are walked, and a walk that aliases multiply is cut short. Bad input
is one `FileError` sentence, "FILE:LINE: problem. Fix: ...".
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import yaml

from ..buildx import reference
from ..errors import FileError

MAX_BYTES = 20 << 20  # `helm template` of a large chart is a few MB; beyond this, a wrong file
MAX_REPEATS = 100_000  # containers or items reached again through aliases: an alias bomb
YAML_SUFFIXES = (".yaml", ".yml", ".json")
ARCH_LABELS = ("kubernetes.io/arch", "beta.kubernetes.io/arch")
# The architectures Kubernetes ships nodes for: what `NotIn [amd64]` leaves allowed.
NODE_ARCHES = frozenset({"amd64", "arm64", "arm", "ppc64le", "s390x"})
ARM64 = "arm64"
# Where each kind keeps its Pod template spec.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
SECTIONS = {"containers": "container", "initContainers": "init container",
            "ephemeralContainers": "ephemeral container"}
HELM_FIX = ("this is an unrendered Helm template: pipe the rendered chart instead,"
            " `helm template RELEASE CHART | inv check-arm --manifests -`")
# Whatever parses YAML fastest here; both compose nodes with marks and never build objects.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Use:
    """One place an image is used: a container of a Kubernetes object, or a compose service."""

    kind: str       # "Deployment", "CronJob", "Pod", ... or "compose" for a compose service
    name: str       # metadata.name (namespace/name when namespaced), or the service name
    container: str  # the container's name; "" for compose
    section: str    # "containers" | "initContainers" | "ephemeralContainers" | "service"
    file: str       # as given ("-" for stdin); for a directory, the file inside it
    line: int       # 1-based line of the image value
    platform: str | None = None  # compose `platform:` when the service pins one
    # What runs in place of the image's entrypoint: a container's `command:`, a compose
    # service's `entrypoint:`; empty when the image's own runs.
    command: tuple[str, ...] = ()
    # What replaces the image's Cmd: a container's `args:`, a compose service's `command:`.
    args: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.kind == "compose":
            return f"compose service {self.name}"
        role = SECTIONS.get(self.section, "container")
        return f"{self.kind}/{self.name} ({role}{' ' + self.container if self.container else ''})"


@dataclass(frozen=True)
class Template:
    """One Pod template and the nodes its scheduling lets it run on."""

    kind: str
    name: str
    file: str
    line: int  # the line of the object's `kind:`
    # What nodeSelector and required node affinity on the arch label allow; None: unconstrained.
    allowed_arches: frozenset[str] | None
    tolerates_arm64: bool  # tolerates the taint kubernetes.io/arch=arm64:NoSchedule
    images: tuple[str, ...]  # normalized references, in order of use


@dataclass
class Workload:
    images: dict[str, list[Use]] = field(default_factory=dict)  # normalized -> uses, first first
    written: dict[str, str] = field(default_factory=dict)  # normalized -> as first written
    templates: list[Template] = field(default_factory=list)
    unbuilt: list[Use] = field(default_factory=list)  # compose services with build: and no image
    sources: list[str] = field(default_factory=list)  # the files read

    def add(self, image: str, use: Use) -> str:
        """Record one use of a valid reference; return its normalized form."""
        key = reference.normalized(image)
        self.images.setdefault(key, []).append(use)
        self.written.setdefault(key, image)
        return key


def merge(*workloads: Workload) -> Workload:
    """One workload of several (e.g. manifests and a compose file): uses of one image joined."""
    merged = Workload()
    for workload in workloads:
        for key, uses in workload.images.items():
            merged.images.setdefault(key, []).extend(uses)
            merged.written.setdefault(key, workload.written[key])
        merged.templates.extend(workload.templates)
        merged.unbuilt.extend(workload.unbuilt)
        merged.sources.extend(s for s in workload.sources if s not in merged.sources)
    return merged


# -- reading files -----------------------------------------------------------------------------

def _too_big(file: str) -> FileError:
    return FileError(file, None, f"it is over the {MAX_BYTES >> 20} MB a workload's YAML can be",
                  "give the manifests themselves (a file, a directory of YAML, or"
                  " `helm template` output), not an archive or a log")


def _decode(data: bytes, file: str) -> str:
    if len(data) > MAX_BYTES:
        raise _too_big(file)
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise FileError(file, line, f"not UTF-8 text (byte 0x{data[e.start]:02x})",
                     "save it as UTF-8, or give the YAML file rather than a binary") from None


def _read_file(path: Path, file: str) -> str:
    try:
        if path.stat().st_size > MAX_BYTES:
            raise _too_big(file)
        return _decode(path.read_bytes(), file)
    except FileNotFoundError:
        raise FileError(file, None, "no such file", "check the path") from None
    except IsADirectoryError:
        raise FileError(file, None, "a directory where a file was expected",
                     "give the compose file itself (e.g. compose.yaml)") from None
    except OSError as e:
        raise FileError(file, None, f"cannot be read: {e.strerror}",
                     "check the path and its permissions") from None


def _read_stdin(stdin: TextIO) -> str:
    raw = getattr(stdin, "buffer", None)
    if raw is not None:
        return _decode(raw.read(MAX_BYTES + 1), "-")
    try:
        text = stdin.read(MAX_BYTES + 1)
    except UnicodeDecodeError:
        raise FileError("-", None, "standard input is not UTF-8 text",
                     "pipe YAML (e.g. `helm template ...`) into it") from None
    if len(text) > MAX_BYTES:
        raise _too_big("-")
    return text.removeprefix("\ufeff")


def _yaml_files(directory: Path, given: str) -> list[tuple[Path, str]]:
    """Every YAML or JSON file under `directory`, sorted, hidden directories skipped."""
    found = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.endswith(YAML_SUFFIXES):
                path = Path(root) / name
                found.append((path, os.path.join(given, str(path.relative_to(directory)))))
    return found


def _documents(text: str, file: str) -> Iterator[yaml.Node]:
    """The YAML documents of `text` as nodes; a syntax error names its line."""
    if file.endswith(".json"):
        text = text.replace("\t", " ")  # JSON indents with tabs; in valid JSON tabs are blanks
    try:
        for node in yaml.compose_all(text, Loader=_Loader):
            if node is not None:
                yield node
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line = mark.line + 1 if mark else None
        if isinstance(e, yaml.reader.ReaderError):
            line = text[:e.position].count("\n") + 1
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        fix = HELM_FIX if "{{" in text else "fix the YAML syntax (indentation, quotes, colons)"
        raise FileError(file, line, f"not valid YAML: {problem}", fix) from None
    except RecursionError:
        raise FileError(file, None, "not valid YAML: nested too deeply",
                     "give Kubernetes manifests or a compose file") from None


# -- walking nodes -----------------------------------------------------------------------------

def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _get(node: yaml.Node | None, key: str, depth: int = 0) -> yaml.Node | None:
    """The value of `key` in a mapping node (the last one written wins, as when loading),
    else from its YAML merge keys (`<<: *base`); None when absent or not a mapping."""
    if not isinstance(node, yaml.MappingNode) or depth > 8:  # merges of merges, bounded
        return None
    merged: list[yaml.Node] = []
    found = None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode):
            if k.value == key and k.tag != "tag:yaml.org,2002:merge":
                found = v
            elif k.tag == "tag:yaml.org,2002:merge":
                merged.extend(v.value if isinstance(v, yaml.SequenceNode) else [v])
    if found is None:
        for base in merged:
            found = _get(base, key, depth + 1)
            if found is not None:
                break
    return found


def _key_line(node: yaml.Node, key: str) -> int:
    """The line of `key:` in a mapping node (the node's own line if absent)."""
    if isinstance(node, yaml.MappingNode):
        for k, _ in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return _line(k)
    return _line(node)


def _text(node: yaml.Node | None) -> str | None:
    """A scalar's text; None for a null, a mapping or a list."""
    if not isinstance(node, yaml.ScalarNode) or node.tag == "tag:yaml.org,2002:null":
        return None
    return str(node.value)


def _strings(node: yaml.Node | None) -> list[str]:
    if not isinstance(node, yaml.SequenceNode):
        return []
    return [t for t in map(_text, node.value) if t is not None]


def _is_string(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:str"


def _source(node: yaml.Node, text: str) -> str:
    """The node as written (for a message), on one line."""
    return " ".join(text[node.start_mark.index:node.end_mark.index].split())[:120]


class _Walk:
    """One file's walk: counts what aliases make it visit again, to cut a bomb short."""

    def __init__(self, file: str, text: str, workload: Workload):
        self.file, self.text, self.workload = file, text, workload
        self.seen: set[int] = set()
        self.repeats = 0

    def visit(self, node: yaml.Node) -> None:
        if id(node) in self.seen:
            self.repeats += 1
            if self.repeats > MAX_REPEATS:
                raise FileError(self.file, _line(node), f"YAML aliases reuse its objects or"
                             f" containers more than {MAX_REPEATS} times (an alias bomb?)",
                             "give the manifests without aliases, as `kubectl get -o yaml`"
                             " or `helm template` write them")
        self.seen.add(id(node))

    def image(self, node: yaml.Node | None, at: yaml.Node, what: str) -> str:
        """The valid reference `node` holds, or the error naming what is wrong with it."""
        if node is None or _text(node) is None and not isinstance(
                node, yaml.MappingNode | yaml.SequenceNode):
            raise FileError(self.file, _line(at), f"{what} has no image",
                         "add `image: REGISTRY/REPOSITORY:TAG` to it")
        written = _source(node, self.text)
        if "{{" in written:
            raise FileError(self.file, _line(node), f"{what} has image {written}, {HELM_FIX}",
                         "render the chart with `helm template` and pipe that in")
        if not _is_string(node):
            raise FileError(self.file, _line(node), f"{what} has image {written}, which is not a"
                         " string", "write the image as `REGISTRY/REPOSITORY:TAG`")
        image = str(node.value)
        why = reference.problem(image, digest=True)
        if why is not None:
            raise FileError(self.file, _line(node), f"{what} has image {image!r}, which is not a"
                         f" docker reference: {why}", "write it as REGISTRY/REPOSITORY:TAG")
        return image


# -- Kubernetes ------------------------------------------------------------------------------

def read_manifests(path: str, stdin: TextIO = sys.stdin) -> Workload:
    """Every image of the Pod templates in a file, a directory of YAML, or stdin (`-`)."""
    workload = Workload()
    files: list[tuple[Path | None, str]]
    if path == "-":
        files = [(None, "-")]
    elif Path(path).is_dir():
        files = list(_yaml_files(Path(path), path))
        if not files:
            raise FileError(path, None, "a directory with no .yaml, .yml or .json file in it",
                         "give the directory of the manifests, or pipe `helm template` output"
                         " with --manifests -")
    else:
        files = [(Path(path), path)]
    for file_path, file in files:
        text = _read_stdin(stdin) if file_path is None else _read_file(file_path, file)
        workload.sources.append(file)
        walk = _Walk(file, text, workload)
        for document in _documents(text, file):
            _object(walk, document, None, 0)
    if not workload.images:
        where = "standard input" if path == "-" else path
        raise FileError(path, None, f"found no images in {where}: no Pod, Deployment,"
                     " StatefulSet, DaemonSet, ReplicaSet, Job or CronJob with a container",
                     "give the workload's manifests (for a Helm chart, pipe"
                     " `helm template RELEASE CHART` into --manifests -)")
    return workload


def _object(walk: _Walk, node: yaml.Node, list_kind: str | None, depth: int) -> None:
    """One Kubernetes object: a List's items, a Pod template's containers, or nothing."""
    kind = _text(_get(node, "kind"))
    if kind is None and list_kind is not None:  # typed lists' items (DeploymentList) omit it
        kind = list_kind
    if kind is None:
        return  # not a Kubernetes object (e.g. a chart's values.yaml)
    if kind.endswith("List") and depth < 4:
        items = _get(node, "items")
        if isinstance(items, yaml.SequenceNode):
            for item in items.value:
                walk.visit(item)
                _object(walk, item, kind.removesuffix("List") or None, depth + 1)
        return
    if kind not in POD_SPEC_PATHS:
        return
    metadata = _get(node, "metadata")
    name = _text(_get(metadata, "name")) or ""
    namespace = _text(_get(metadata, "namespace"))
    if namespace:
        name = f"{namespace}/{name}"
    spec: yaml.Node | None = node
    for key in POD_SPEC_PATHS[kind]:
        spec = _get(spec, key)
    if spec is None:
        return  # no Pod template written: nothing runs
    line = _key_line(node, "kind")
    uses = []
    for section in SECTIONS:
        containers = _get(spec, section)
        if containers is None or _text(containers) is None and not isinstance(
                containers, yaml.SequenceNode | yaml.MappingNode):
            continue
        if not isinstance(containers, yaml.SequenceNode):
            raise FileError(walk.file, _line(containers), f"{kind}/{name}: {section} is not a list",
                         f"write {section} as a list of containers (`- name: ...`)")
        for container in containers.value:
            walk.visit(container)
            cname = _text(_get(container, "name")) or ""
            use = Use(kind, name, cname, section, walk.file, 0)
            image_node = _get(container, "image")
            image = walk.image(image_node, container, str(use))
            assert image_node is not None  # walk.image refused a missing one
            uses.append((image, Use(kind, name, cname, section, walk.file, _line(image_node),
                                    command=tuple(_strings(_get(container, "command"))),
                                    args=tuple(_strings(_get(container, "args"))))))
    images = []
    for image, use in sorted(uses, key=lambda pair: pair[1].line):  # in the order written
        key = walk.workload.add(image, use)
        if key not in images:
            images.append(key)
    walk.workload.templates.append(Template(
        kind, name, walk.file, line, _allowed_arches(spec), _tolerates_arm64(spec),
        tuple(images)))


def _allowed_arches(spec: yaml.Node) -> frozenset[str] | None:
    """The architectures the nodeSelector and the required node affinity both allow."""
    allowed: frozenset[str] | None = None
    selector = _get(spec, "nodeSelector")
    for label in ARCH_LABELS:
        value = _text(_get(selector, label))
        if value is not None:
            allowed = frozenset({value}) if allowed is None else allowed & {value}
    required = _get(_get(_get(spec, "affinity"), "nodeAffinity"),
                    "requiredDuringSchedulingIgnoredDuringExecution")
    terms = _get(required, "nodeSelectorTerms")
    if isinstance(terms, yaml.SequenceNode) and terms.value:
        # Terms are ORed: any term without an arch constraint allows every node.
        union: set[str] | None = set()
        for term in terms.value:
            term_allows = _term_arches(term)
            if term_allows is None:
                union = None
                break
            assert union is not None
            union |= term_allows
        if union is not None:
            allowed = frozenset(union) if allowed is None else allowed & union
    return allowed


def _term_arches(term: yaml.Node) -> frozenset[str] | None:
    """What one node selector term's expressions (ANDed) allow of the arch label."""
    allowed: frozenset[str] | None = None
    expressions = _get(term, "matchExpressions")
    for expression in expressions.value if isinstance(expressions, yaml.SequenceNode) else []:
        if _text(_get(expression, "key")) not in ARCH_LABELS:
            continue
        operator = _text(_get(expression, "operator"))
        values = frozenset(_strings(_get(expression, "values")))
        if operator == "In":
            these = values
        elif operator == "NotIn":
            these = NODE_ARCHES - values
        elif operator == "DoesNotExist":
            these = frozenset()  # every node has the label
        else:
            continue  # Exists: every node has it
        allowed = these if allowed is None else allowed & these
    return allowed


def _tolerates_arm64(spec: yaml.Node) -> bool:
    """Whether a toleration matches the taint GKE puts on Arm nodes,
    kubernetes.io/arch=arm64:NoSchedule."""
    tolerations = _get(spec, "tolerations")
    for toleration in tolerations.value if isinstance(tolerations, yaml.SequenceNode) else []:
        key = _text(_get(toleration, "key")) or ""
        operator = _text(_get(toleration, "operator")) or "Equal"
        value = _text(_get(toleration, "value")) or ""
        effect = _text(_get(toleration, "effect")) or ""
        if effect not in ("", "NoSchedule"):
            continue
        if operator == "Exists" and key in ("", ARCH_LABELS[0]):
            return True
        if operator == "Equal" and key == ARCH_LABELS[0] and value == ARM64:
            return True
    return False


def scheduling_hint(template: Template) -> str | None:
    """The scheduling a Pod template needs to run on GKE Arm nodes, as one sentence with the
    YAML to add; None when it already selects arm64 nodes or tolerates their taint."""
    allowed = template.allowed_arches
    if allowed is not None and ARM64 not in allowed:
        pinned = ", ".join(sorted(allowed)) or "no architecture at all"
        return (f"its nodeSelector or required node affinity on kubernetes.io/arch pins it to"
                f" {pinned}, so it never runs on Arm nodes: change it to"
                " `kubernetes.io/arch: arm64` (or to affinity `operator: In, values: [amd64,"
                " arm64]` to run on both)")
    if allowed is not None or template.tolerates_arm64:
        return None
    return ("add `nodeSelector: {kubernetes.io/arch: arm64}` to its Pod spec (GKE then adds the"
            " toleration for the kubernetes.io/arch=arm64:NoSchedule taint of its Arm nodes),"
            " or only that toleration to let it run on Arm and x86 nodes alike")


# -- Compose ---------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Unset(Exception):
    """`${VAR:?message}` with VAR unset (or empty)."""

    def __init__(self, name: str, message: str):
        self.name, self.message = name, message


def interpolate(text: str, variables: Mapping[str, str], unset: list[str]) -> str:
    """`text` with compose's variables substituted: `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`,
    `${VAR-default}`, `${VAR:?message}`, `${VAR?message}`, `${VAR:+other}`, `${VAR+other}`.
    Unset variables without a default become "" and are added to `unset`."""
    out, i = [], 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
            continue
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if text.startswith("${", i):
            end = _closing_brace(text, i + 2)
            if end is None:
                raise ValueError(f"`{text[i:]}` has no closing brace")
            out.append(_braced(text[i + 2:end], variables, unset))
            i = end + 1
            continue
        match = _NAME.match(text, i + 1)
        if match is None:
            raise ValueError(f"`$` at `{text[i:]}` starts no variable (write `$$` for a `$`)")
        out.append(_lookup(match[0], variables, unset))
        i = match.end()
    return "".join(out)


def _closing_brace(text: str, start: int) -> int | None:
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "{" and text[i - 1] == "$":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
    return None


def _lookup(name: str, variables: Mapping[str, str], unset: list[str]) -> str:
    if name not in variables:
        unset.append(name)
        return ""
    return variables[name]


def _braced(inner: str, variables: Mapping[str, str], unset: list[str]) -> str:
    match = _NAME.match(inner)
    if match is None:
        raise ValueError(f"`${{{inner}}}` does not start with a variable name")
    name, rest = match[0], inner[match.end():]
    value = variables.get(name)
    if not rest:
        return _lookup(name, variables, unset)
    for op in (":-", "-", ":?", "?", ":+", "+"):
        if rest.startswith(op):
            word = rest[len(op):]
            break
    else:
        raise ValueError(f"`${{{inner}}}` is not a substitution compose knows")
    empty_counts = op.startswith(":")  # `:-` and `:?` treat an empty value as unset
    missing = value is None or (empty_counts and value == "")
    if op.endswith("-"):
        return interpolate(word, variables, unset) if missing else str(value)
    if op.endswith("?"):
        if missing:
            raise _Unset(name, interpolate(word, variables, unset))
        return str(value)
    return "" if missing else interpolate(word, variables, unset)


def _dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (comments, `export`, quotes), as compose reads them."""
    values: dict[str, str] = {}
    text = _read_file(path, str(path))
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip()
        quote = value[:1]
        if len(value) >= 2 and quote in ("'", '"') and value.endswith(quote):
            value = value[1:-1]
            if quote == '"':
                value = value.replace("\\n", "\n").replace('\\"', '"')
        else:
            value = re.sub(r"(?:^|\s)#.*", "", value).strip()  # a comment after a blank
        values[key] = value
    return values


def read_compose(path: str, environ: Mapping[str, str] = os.environ) -> Workload:
    """Every image of a compose file's services, interpolated from `environ` and the `.env`
    file beside it (`environ` wins)."""
    workload = Workload()
    text = _read_file(Path(path), path)
    workload.sources.append(path)
    dotenv = Path(path).parent / ".env"
    variables: dict[str, str] = {}
    if dotenv.is_file():
        variables.update(_dotenv(dotenv))
        workload.sources.append(str(dotenv))
    variables.update(environ)
    documents = list(_documents(text, path))
    root = documents[0] if documents else None
    services = _get(root, "services")
    if not isinstance(services, yaml.MappingNode):
        line = _key_line(root, "services") if services is not None and root else None
        raise FileError(path, line, "a compose file needs `services:`, a mapping of service names"
                     " to their image", "give the compose file (compose.yaml or"
                     " docker-compose.yml) of the workload")
    for key, service in services.value:
        name = str(key.value)
        keys = _service_keys(service, name, _Walk(path, text, workload), services, set())
        if "image" not in keys:
            if "build" in keys:
                workload.unbuilt.append(Use("compose", name, "", "service", path, _line(key)))
                continue
            raise FileError(path, _line(key), f"compose service {name} has no image",
                         "add `image: REGISTRY/REPOSITORY:TAG` to it (or `build:` and an image"
                         " to push the build to)")
        image_node, walk = keys["image"]
        image, unset = _interpolated(walk, image_node, f"compose service {name}", "image",
                                     variables)
        platform = None
        if "platform" in keys and keys["platform"][0].tag != "tag:yaml.org,2002:null":
            platform_node, platform_walk = keys["platform"]
            platform = _interpolated(platform_walk, platform_node, f"compose service {name}",
                                     "platform", variables)[0] or None
        why = reference.problem(image, digest=True) if image else "it is empty"
        if why is not None:
            written = str(image_node.value)
            because = f" (unset: {', '.join(dict.fromkeys(unset))})" if unset else ""
            fix = (f"set {', '.join(dict.fromkeys(unset))} in the environment or in the .env"
                   f" file beside {path}, or give a default, `${{{unset[0]}:-...}}`"
                   if unset else "write it as REGISTRY/REPOSITORY:TAG")
            raise FileError(walk.file, _line(image_node), f"compose service {name} has image"
                         f" {written!r}, which is {image!r}{because}, not a docker reference:"
                         f" {why}", fix)
        command, args = (_words(*keys[key], name, key, variables) if key in keys else ()
                         for key in ("entrypoint", "command"))
        workload.add(image, Use("compose", name, "", "service", walk.file, _line(image_node),
                                platform, command, args))
    if not workload.images:
        built = " (its services all have `build:` and no `image:`)" if workload.unbuilt else ""
        raise FileError(path, None, f"found no images in {path}{built}",
                     "give each service the `image:` it runs (a built one: the name its build"
                     " is pushed to)")
    return workload


MAX_EXTENDS = 10  # services extending services, this deep


def _words(node: yaml.Node, walk: _Walk, name: str, key: str,
           variables: Mapping[str, str]) -> tuple[str, ...]:
    """A compose service's `entrypoint:` or `command:`, a list or a string split as a shell
    would."""
    if not _is_string(node):
        return tuple(_strings(node))
    text = _interpolated(walk, node, f"compose service {name}", key, variables)[0]
    try:
        return tuple(shlex.split(text))
    except ValueError as e:
        raise FileError(walk.file, _line(node), f"compose service {name} has {key}"
                     f" {text!r}, which cannot be split into words ({e})",
                     "close its quotes, or write it as a list") from None


def _service_keys(service: yaml.Node, name: str, walk: _Walk, services: yaml.Node | None,
                  seen: set[tuple[str, str]]) -> dict[str, tuple[yaml.Node, _Walk]]:
    """A compose service's image, platform and build, each with the file it is written in:
    its own, else what `extends:` (the same file's service, or another file's) gives it."""
    own = {k: (node, walk) for k in ("image", "platform", "build", "entrypoint", "command")
           if (node := _get(service, k)) is not None}
    extends = _get(service, "extends")
    if extends is None:
        return own
    base_file = None
    if isinstance(extends, yaml.MappingNode):
        base_name, base_file = _text(_get(extends, "service")), _text(_get(extends, "file"))
    else:
        base_name = _text(extends)
    if not base_name:
        raise FileError(walk.file, _line(extends), f"compose service {name}: `extends` names no"
                     " service", "write `extends: {service: NAME}` (and `file:` for another"
                     " compose file)")
    base_walk, base_services = walk, services
    if base_file:
        base_path = Path(walk.file).parent / base_file
        text = _read_file(base_path, str(base_path))
        documents = list(_documents(text, str(base_path)))
        base_walk = _Walk(str(base_path), text, walk.workload)
        base_services = _get(documents[0] if documents else None, "services")
        if str(base_path) not in walk.workload.sources:
            walk.workload.sources.append(str(base_path))
    here = (base_walk.file, base_name)
    if here in seen or len(seen) >= MAX_EXTENDS:
        raise FileError(walk.file, _line(extends), f"compose service {name} extends {base_name},"
                     " which extends it back (or goes more than ten services deep)",
                     "break the loop of `extends:`")
    base = _get(base_services, base_name) if isinstance(base_services, yaml.MappingNode) \
        else None
    if base is None:
        raise FileError(walk.file, _line(extends), f"compose service {name} extends"
                     f" {base_name}, which {base_walk.file} does not define",
                     "name a service of that file in `extends:`")
    inherited = _service_keys(base, base_name, base_walk, base_services, seen | {here})
    return {**inherited, **own}


def _interpolated(walk: _Walk, node: yaml.Node, what: str, key: str,
                  variables: Mapping[str, str]) -> tuple[str, list[str]]:
    """A compose value with its variables substituted, and the unset ones it used."""
    if not _is_string(node):
        raise FileError(walk.file, _line(node), f"{what} has {key} {_source(node, walk.text)},"
                     " which is not a string", f"write the {key} as a string")
    unset: list[str] = []
    try:
        return interpolate(str(node.value), variables, unset), unset
    except _Unset as e:
        raise FileError(walk.file, _line(node), f"{what}: variable {e.name} is required"
                     f"{': ' + e.message if e.message else ''}",
                     f"set {e.name} in the environment or in the .env file beside"
                     f" {walk.file}") from None
    except ValueError as e:
        raise FileError(walk.file, _line(node), f"{what}: {e}",
                     "write variables as $VAR or ${VAR:-default}, and $$ for a `$`") from None
