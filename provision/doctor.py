"""`inv doctor`: every prerequisite of the farm, one line each: ok, warning or problem, and the
fix. Reads only: no call here creates or changes anything, locally or in the project.

Local tools and the farm key first, then credentials, then what Compute Engine says: the
project (and its OS Login setting), each node's machine type and image, regional quotas
against what the inventory asks for, and the SSH firewall rule. Every check runs even when
another fails; only when the API is unusable are the API checks skipped, in one line.
The Compute Engine facts relied on: docs/compute-engine.md, "Projects and regions".
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from .cli import Session, task
from .errors import CredentialsError, KeyFileError
from .gce.catalog import DEFAULT_IMAGES
from .inventory import Farm, Node, NodeSpec
from .platforms import AMD64, BY_GCE, of_platform
from .report import Reporter

# Docker CLI 20.10: ssh:// docker contexts (the farm's nodes are reached as ssh contexts)
# and the oldest CLI a supported Debian ships (bullseye's docker.io).
MIN_DOCKER = (20, 10)
# buildx 0.10: the oldest the build stage is written against, for `--metadata-file` (the
# pushed digest per platform) and `buildx imagetools` (joining them into one manifest list).
MIN_BUILDX = (0, 10)
# OpenSSH 6.5: ed25519 keys, the kind archfarm generates for a farm.
MIN_OPENSSH = (6, 5)
# SSH open to more than a /16 (65,536 addresses) is worth a second look; for IPv6 a /48, one
# site's allocation. Wider than /8 is refused by the inventory unless allowed on purpose.
WIDE_SSH_PREFIX = {4: 16, 6: 48}
TOOL_SECONDS = 10.0
# A VM in these states holds no vCPUs or ephemeral address; starting it needs them again.
QUOTA_FREE_STATES = {"TERMINATED", "STOPPED", "SUSPENDED", "STOPPING", "SUSPENDING"}
# docker.io of the Debian releases whose engine predates the containerd image store (Docker
# 24); Debian 13 has 26.1. Doctor reaches no node, so a node's image says what it will run.
OLD_DEBIAN_DOCKER_IO = {10: "18.09", 11: "20.10", 12: "20.10"}

OK, PROBLEM, WARNING, SKIPPED = "ok", "problem", "warning", "skipped"
INSTALL_DOCKER = ("install the Docker CLI and buildx: `apt-get install docker.io docker-buildx`"
                  " on Debian 12, or Docker's docker-ce-cli and docker-buildx-plugin"
                  " (https://docs.docker.com/engine/install/debian/); no engine needs to run"
                  " here")


@dataclass
class Check:
    check: str    # what was checked
    status: str   # ok | problem | warning | skipped
    detail: str   # what was found
    fix: str = ""


# -- local tools -------------------------------------------------------------------------------

def _run(argv: list[str]) -> tuple[int, str] | None:
    """(exit code, stdout + stderr) of a local tool, or None when it is not on PATH."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_SECONDS,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return 1, str(e)
    return done.returncode, (done.stdout or "") + (done.stderr or "")


def _version(text: str, pattern: str = r"v?(\d+)\.(\d+)") -> tuple[int, int] | None:
    m = re.search(pattern, text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _shown(version: tuple[int, int]) -> str:
    return ".".join(map(str, version))


def _versioned(name: str, found: str, version: tuple[int, int] | None,
               minimum: tuple[int, int], fix: str) -> Check:
    if version is None:
        return Check(name, PROBLEM, f"cannot read a version from {found!r}", fix)
    if version < minimum:
        return Check(name, PROBLEM, f"{found} is older than {_shown(minimum)}", fix)
    return Check(name, OK, f"{found} (>= {_shown(minimum)})")


def docker_cli() -> Check:
    ran = _run(["docker", "version", "--format", "json"])
    if ran is None:
        return Check("docker CLI", PROBLEM, "docker is not on PATH", INSTALL_DOCKER)
    # The client's part is printed even when no engine answers (then the exit code is 1).
    _, out = ran
    try:
        found = str(json.loads(out.strip().splitlines()[0])["Client"]["Version"])
    except (ValueError, IndexError, KeyError, TypeError):
        found = out.strip().splitlines()[0] if out.strip() else "no output"
    return _versioned("docker CLI", found, _version(found), MIN_DOCKER, INSTALL_DOCKER)


def docker_buildx() -> Check:
    ran = _run(["docker", "buildx", "version"])
    if ran is None:
        return Check("docker buildx", PROBLEM, "docker is not on PATH", INSTALL_DOCKER)
    code, out = ran
    first = out.strip().splitlines()[0] if out.strip() else "no output"
    if code != 0:
        return Check("docker buildx", PROBLEM, f"the buildx plugin is missing ({first})",
                     INSTALL_DOCKER)
    # `github.com/docker/buildx v0.11.2 9872040`; Debian's reads `0.13.1+ds1-3` without a v.
    words = first.split()
    found = words[1] if len(words) > 1 else first
    return _versioned("docker buildx", found, _version(found), MIN_BUILDX, INSTALL_DOCKER)


def openssh() -> Check:
    fix = "install the OpenSSH client: `apt-get install openssh-client`"
    ran = _run(["ssh", "-V"])
    if ran is None:
        return Check("OpenSSH client", PROBLEM, "ssh is not on PATH", fix)
    _, out = ran  # `OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024`, on stderr
    first = out.strip().splitlines()[0] if out.strip() else "no output"
    return _versioned("OpenSSH client", first.split(",")[0],
                      _version(first, r"OpenSSH_(\d+)\.(\d+)"), MIN_OPENSSH, fix)


def farm_key(farm: Farm) -> Check:
    from .keys import load_public_key

    name = f"farm key {farm.key_path}"
    try:
        line = load_public_key(farm.key_path)
    except KeyFileError as e:
        return Check(name, PROBLEM, e.problem, e.fix)
    if line is None:
        return Check(name, OK, "not there yet; `inv vms` generates an ed25519 pair")
    return Check(name, OK, f"a usable {line.split()[0]} key")


def ssh_ranges(farm: Farm) -> list[Check]:
    out = []
    for text in farm.gcp.ssh_source_ranges:
        net = ipaddress.ip_network(text)
        widest = WIDE_SSH_PREFIX[net.version]
        if net.prefixlen < widest:
            out.append(Check(
                f"SSH source range {text}", WARNING,
                f"wider than a /{widest}: {net.num_addresses:,} addresses may reach SSH on"
                " every node", "list only the networks your SSH comes from in"
                " gcp.ssh_source_ranges, like 203.0.113.7/32"))
    return out


def debian_release(image: str) -> int | None:
    """The Debian release of a Debian image or image family (`.../family/debian-12-arm64`,
    `.../images/debian-13-trixie-v20250915`), else None."""
    m = re.fullmatch(r"debian-([0-9]+)(-.*)?", image.rsplit("/", 1)[-1])
    return int(m.group(1)) if m else None


def containerd_store(farm: Farm) -> list[Check]:
    """A warning when configure will leave the containerd image store off on some nodes: the
    store is asked for, docker.io is the engine and the node's image is a Debian whose
    docker.io predates Docker 24."""
    from .hosts.steps import containerd_store_off

    if not farm.docker.containerd_store or farm.docker.package != "docker.io":
        return []
    engines = {node.name: OLD_DEBIAN_DOCKER_IO[release] for node in farm.expanded()
               if (release := debian_release(node.image)) in OLD_DEBIAN_DOCKER_IO}
    if not engines:
        return []
    off = containerd_store_off(engines)
    return [Check("containerd image store", WARNING, off.problem, off.fix)]


def local(farm: Farm) -> list[Check]:
    return [docker_cli(), docker_buildx(), openssh(), farm_key(farm), *ssh_ranges(farm),
            *containerd_store(farm)]


# -- credentials and the project -----------------------------------------------------------------

def credentials(clients: Any) -> Check:
    from .gce.clients import account_of, is_fake

    try:
        creds = clients.credentials
    except CredentialsError as e:
        problem, _, fix = str(e).partition(" Fix: ")
        return Check("credentials", PROBLEM, problem, fix)
    where = (f"for the fake or lab endpoint {clients.endpoint}" if is_fake(clients.endpoint)
             else "Application Default Credentials")
    return Check("credentials", OK, f"{where}: {account_of(creds)}")


def project(clients: Any, farm: Farm) -> tuple[Check, Any]:
    """projects.get: (its line, the Project), or (the problem, None) when the API is unusable."""
    from google.api_core import exceptions

    from .gce.operations import call, describe, reasons

    name, p = "Compute Engine API and project", farm.gcp.project
    try:
        found = call(clients.projects.get, project=p)
    except exceptions.NotFound:
        return Check(name, PROBLEM, f"project {p} was not found", "set gcp.project to the"
                     " project's ID (not its name or number; `gcloud projects list` shows"
                     " them), or create the project"), None
    except exceptions.Forbidden as e:
        if "accessNotConfigured" in reasons(e):
            return Check(name, PROBLEM, f"the Compute Engine API is not enabled in {p}",
                         f"gcloud services enable compute.googleapis.com --project {p}"), None
        return Check(name, PROBLEM, f"{p}: {describe(e)}", "grant the credentials' account a"
                     f" Compute Engine role on {p} (roles/compute.admin covers `inv vms`)"), None
    except Exception as e:  # noqa: BLE001 (whatever stops the API is this one line)
        what = describe(e)
        if "cannot reach" in what:
            fix = ("start the lab (`inv lab.up`) or the fake (`inv fake`), or correct"
                   " gcp.api_endpoint / ARCHFARM_GCE_ENDPOINT" if clients.endpoint
                   else "check this machine's network and proxy settings")
            return Check(name, PROBLEM, what, fix), None
        return Check(name, PROBLEM, what, "run `inv doctor` again; if it persists, see"
                     " https://status.cloud.google.com"), None
    where = f" at {clients.endpoint}" if clients.endpoint else ""
    return Check(name, OK, f"project {p} found{where}"), found


def os_login(found: Any, farm: Farm) -> Check:
    items = {i.key: i.value for i in found.common_instance_metadata.items}
    value = items.get("enable-oslogin", "")
    if value.strip().lower() == "true":
        p = farm.gcp.project
        return Check(
            "project metadata enable-oslogin", PROBLEM,
            f"enable-oslogin={value} in project {p}: OS Login manages SSH logins, so the guest"
            " ignores the ssh-keys archfarm puts on each VM and SSH to the nodes fails",
            "turn it off for the project with `gcloud compute project-info add-metadata"
            f" --project {p} --metadata enable-oslogin=FALSE`, or for the farm's VMs alone"
            " with enable-oslogin=FALSE in their instance metadata (it overrides the"
            " project's; archfarm does not set it today)")
    shown = f"enable-oslogin={value}" if value else "enable-oslogin not set"
    return Check("project metadata enable-oslogin", OK,
                 f"{shown}: archfarm's ssh-keys metadata applies")


# -- nodes: machine types and images ----------------------------------------------------------

def _by_spec(farm: Farm) -> list[tuple[NodeSpec, Node]]:
    """One representative expanded node per inventory entry (count: 3 asks the same thing)."""
    nodes = farm.expanded()
    return [(spec, next(n for n in nodes if n.name in spec.names())) for spec in farm.nodes]


def machine_type(machine_types: Any, spec: NodeSpec, node: Node) -> Check:
    name = f"node {spec.name}: machine type {node.machine_type}"
    offering = [z for z in node.zones if machine_types.offered(node.machine_type, z)]
    if not offering:
        return Check(name, PROBLEM, f"offered in none of {', '.join(node.zones)}",
                     "pick a type those zones offer (`gcloud compute machine-types list"
                     f" --zones {','.join(node.zones)}`) or zones offering it (`gcloud compute"
                     f" machine-types list --filter name={node.machine_type}`)")
    return Check(name, OK, f"offered in {', '.join(offering)}")


IMAGE_REF = re.compile(r"(?:https://www\.googleapis\.com/compute/v1/)?"
                       r"(?:projects/(?P<project>[^/]+)/)?global/images/"
                       r"(?:family/(?P<family>[^/]+)|(?P<image>[^/]+))")


def image(clients: Any, farm: Farm, spec: NodeSpec, node: Node) -> Check:
    from google.api_core import exceptions

    from .gce.operations import call, describe

    m = IMAGE_REF.fullmatch(node.image)
    name = f"node {spec.name}: image {node.image}"
    if m is None:  # the inventory's pattern makes this unreachable
        return Check(name, PROBLEM, "not an image reference", "leave image out")
    image_project = m.group("project") or farm.gcp.project
    what = (f"image family {m.group('family')}" if m.group("family")
            else f"image {m.group('image')}")
    default = "leave image out for Debian 13 on the node's platform"
    try:
        if m.group("family"):
            found = call(clients.images.get_from_family, project=image_project,
                         family=m.group("family"))
        else:
            found = call(clients.images.get, project=image_project, image=m.group("image"))
    except exceptions.NotFound:
        return Check(name, PROBLEM, f"{what} not found in project {image_project}",
                     f"correct the node's image (`gcloud compute images list --project"
                     f" {image_project}` lists what there is), or {default}")
    except exceptions.GoogleAPICallError as e:
        return Check(name, PROBLEM, describe(e), f"correct the node's image, or {default}")
    # ARCHITECTURE_UNSPECIFIED is taken as x86-64 (docs/compute-engine.md, "Images").
    arch = found.architecture if found.architecture in BY_GCE else of_platform(AMD64).gce
    want = of_platform(node.platform).gce
    if arch != want:
        return Check(name, PROBLEM, f"{found.name} is {arch}, but node {spec.name} is"
                     f" {node.platform}; Compute Engine refuses to boot it",
                     f"use an {want} image, like {DEFAULT_IMAGES[node.platform]}, or {default}")
    return Check(name, OK, f"{found.name}, {arch}")


# -- quotas --------------------------------------------------------------------------------------

def _demand(farm: Farm, machine_types: Any, holding: set[str],
            granted: Any) -> dict[tuple[str, str], list[tuple[str, int]]]:
    """(region, metric) -> [(node, amount)] for the nodes that need new quota: those without a
    VM holding it. Each node counts in its first zone's region (`inv vms` tries that first);
    a Spot node counts in PREEMPTIBLE_CPUS where the region grants that quota, otherwise in
    the regular CPU quotas, as Compute Engine counts it."""
    from .gce import catalog
    from .gce.instances import region_of

    demand: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    for node in farm.expanded():
        if node.name in holding:
            continue
        found = next((mt for z in node.zones
                      if (mt := machine_types.get(node.machine_type, z)) is not None), None)
        if found is None:  # not offered anywhere: its own line says so
            continue
        region, cpus = region_of(node.zones[0]), int(found.guest_cpus)
        if node.spot and granted(region):
            metrics = ["PREEMPTIBLE_CPUS"]
        else:
            metrics = ["CPUS", f"{catalog.family_of(node.machine_type).upper()}_CPUS"]
        for metric in metrics:
            demand[(region, metric)].append((node.name, cpus))
        if node.external_ip:  # a private node has none (docs/private-nodes.md)
            demand[(region, "IN_USE_ADDRESSES")].append((node.name, 1))
    return demand


def _fewer_addresses(farm: Farm) -> str:
    """The address quota's other fix: private nodes behind one bastion need one address."""
    if sum(1 for n in farm.expanded() if n.external_ip) <= 1:
        return ""
    return (", or give the nodes no external address: `gcp.external_ip: false` and"
            " `bastion: true` (with `external_ip: true`) on one node, through which the others"
            " are reached (docs/private-nodes.md)")


def quotas(clients: Any, farm: Farm, machine_types: Any) -> list[Check]:
    from google.api_core import exceptions

    from .gce import instances, labels
    from .gce.operations import call, describe

    p = farm.gcp.project
    regions: dict[str, dict[str, Any] | None] = {}
    out: list[Check] = []

    def region(name: str) -> dict[str, Any] | None:
        if name not in regions:
            try:
                got = call(clients.regions.get, project=p, region=name)
                regions[name] = {q.metric: q for q in got.quotas}
            except exceptions.GoogleAPICallError as e:
                regions[name] = None
                out.append(Check(f"quotas in {name}", PROBLEM, describe(e),
                                 "use zones of a region the project has (gcp.zones)"))
        return regions[name]

    def granted(name: str) -> bool:
        q = (region(name) or {}).get("PREEMPTIBLE_CPUS")
        return q is not None and q.limit > 0

    existing = instances.find(clients, p, labels.farm_filter(farm.farm))
    holding = {node for vm in existing if vm.status not in QUOTA_FREE_STATES
               and (node := labels.node_of(vm)) is not None}
    demand = _demand(farm, machine_types, holding, granted)
    for (name, metric), asks in sorted(demand.items()):
        quota = (region(name) or {}).get(metric)
        if quota is None:  # the region lists no such quota: nothing limits it there
            continue
        need = sum(n for _, n in asks)
        free = max(quota.limit - quota.usage, 0)
        unit = "address(es)" if metric == "IN_USE_ADDRESSES" else "vCPUs"
        nodes = ", ".join(node for node, _ in asks)
        detail = (f"{int(need)} {unit} more for {nodes} (region of their first zone);"
                  f" {free:g} of {quota.limit:g} free")
        check = f"quota {metric} in {name}"
        if need > free:
            other = (_fewer_addresses(farm) if metric == "IN_USE_ADDRESSES"
                     else ", or use smaller or fewer machines")
            out.append(Check(check, PROBLEM, detail,
                             f"request more {metric} in {name}"
                             f" (https://console.cloud.google.com/iam-admin/quotas?project={p}),"
                             f" or put the nodes' first zone in another region{other}"))
        else:
            out.append(Check(check, OK, detail))
    if existing:
        out.append(Check("farm VMs already there", OK,
                         f"{len(existing)} VM(s); running ones need no new quota"))
    return out


# -- firewall --------------------------------------------------------------------------------------

def firewall_rule(clients: Any, farm: Farm) -> Check:
    from .cloud import spec
    from .gce import firewall

    want = spec.firewall_spec(farm)
    name = f"firewall rule {want.name}"
    found = firewall.get(clients, farm.gcp.project, want.name)
    if found is None:
        if not want.source_ranges:
            return Check(name, PROBLEM, "does not exist yet and gcp.ssh_source_ranges is"
                         " empty, so `inv vms` cannot open SSH to the farm",
                         "set gcp.ssh_source_ranges to the networks your SSH comes from,"
                         " like [203.0.113.7/32]")
        return Check(name, OK, f"`inv vms` creates it: tcp:22 from"
                     f" {', '.join(want.source_ranges)}")
    if found.description != want.description:
        return Check(name, PROBLEM, "exists but was not made by archfarm for this farm, so"
                     " `inv vms` will not take it over", "delete or rename that rule, or give"
                     " this farm another name (farm: in the inventory)")
    changes = firewall.differences(found, want) if want.source_ranges else []
    if changes:
        return Check(name, OK, f"exists; `inv vms` updates it: {'; '.join(changes)}")
    return Check(name, OK, f"exists: tcp:22 from {', '.join(found.source_ranges) or '-'}")


def bastion_rule(clients: Any, farm: Farm) -> Check:
    """The rule letting the bastion reach the private nodes (only with private nodes)."""
    from .cloud import spec
    from .gce import firewall

    want = spec.bastion_rule_spec(farm)
    name = f"firewall rule {want.name}"
    found = firewall.get(clients, farm.gcp.project, want.name)
    if found is None:
        return Check(name, OK, "`inv vms` creates it: tcp:22 from the bastion"
                     f" (tag {want.source_tags[0]}) to the farm's nodes")
    if found.description != want.description:
        return Check(name, PROBLEM, "exists but was not made by archfarm for this farm, so"
                     " `inv vms` will not take it over", "delete or rename that rule, or give"
                     " this farm another name (farm: in the inventory)")
    changes = firewall.differences(found, want)
    if changes:
        return Check(name, OK, f"exists; `inv vms` updates it: {'; '.join(changes)}")
    return Check(name, OK, f"exists: tcp:22 from tag {want.source_tags[0]} to the farm")


# -- private nodes and their bastion -------------------------------------------------------------

REACH_SECONDS = 5.0  # one SSH attempt to the bastion, and through it to each private node


def private_nodes(clients: Any, farm: Farm) -> list[Check]:
    """With private nodes: the bastion's VM has its external address and answers SSH, and
    each private node's VM answers through it (only VMs already running are tried; the rest
    is `inv vms`'s to make). Host keys are pinned as `inv configure` pins them."""
    from .gce import instances, labels

    bastion = farm.bastion
    private = [n for n in farm.expanded() if n.private]
    if bastion is None or not private:
        return []
    vms = {labels.node_of(vm): vm for vm in
           instances.find(clients, farm.gcp.project, labels.farm_filter(farm.farm))}
    gate = vms.get(bastion.name)
    name = f"bastion {bastion.name}"
    if gate is None:
        return [Check(name, OK, f"no VM yet: `inv vms` creates it with an external address;"
                      f" {len(private)} private node(s) are reached through it")]
    if gate.status != "RUNNING":
        return [Check(name, WARNING, f"VM {gate.name} is {gate.status}: the private nodes"
                      " cannot be reached until it runs", "`inv vms` starts it")]
    if not gate.external_ip:
        return [Check(name, PROBLEM, f"VM {gate.name} has no external address, so nothing"
                      " can reach the private nodes", f"delete VM {gate.name} (it was made"
                      " without one), then `inv vms` makes it again with its address")]
    out = [_reach(clients, farm, bastion, gate, name, None)]
    if out[0].status != OK:
        return out
    for node in private:
        vm = vms.get(node.name)
        if vm is None or vm.status != "RUNNING":
            continue
        line = f"private node {node.name}"
        if vm.external_ip:
            out.append(Check(line, WARNING, f"VM {vm.name} has an external address"
                             f" ({vm.external_ip}), made before it was private: it is reached"
                             " directly and holds an IN_USE_ADDRESSES quota",
                             f"delete VM {vm.name}, then `inv vms` makes it without one"))
            continue
        out.append(_reach(clients, farm, node, vm, line, bastion))
    return out


def _reach(clients: Any, farm: Farm, node: Node, vm: Any, line: str,
           bastion: Node | None) -> Check:
    """One pinned SSH connection to the node (through the bastion when given), closed at
    once."""
    from .configure import connect, farm_key
    from .hosts.directory import Directory, NotUp
    from .runner import Cancel, Progress

    directory = Directory(farm, lambda: clients)
    progress = Progress(node.name, lambda key, text: None, Cancel())
    try:
        conn, host = connect(farm, directory, node, farm_key(farm), progress, REACH_SECONDS,
                             REACH_SECONDS)
        conn.close()
    except NotUp as e:
        return Check(line, WARNING, str(e), "`inv vms`, then `inv doctor` again")
    except Exception as e:  # Unreachable, a refused host key: the node's line says why
        how = f" through bastion {bastion.name}" if bastion else ""
        return Check(line, PROBLEM, f"VM {vm.name} does not answer SSH{how}: {e}",
                     "`inv status` and `inv provision`; a private node needs the bastion"
                     " running and the farm's firewall rules (`inv vms` makes them)")
    if bastion is None:
        return Check(line, OK, f"answers SSH at {host.address}")
    return Check(line, OK, f"reached at {host.address} through bastion {bastion.name}")


# -- all of it -----------------------------------------------------------------------------------

def _each(name: str, checks: Any) -> list[Check]:
    """Run one group of API checks; a call failing for good becomes its line, so the other
    groups still run."""
    from .gce.operations import describe, is_api_error

    try:
        return list(checks())
    except Exception as e:
        if not is_api_error(e):
            raise
        return [Check(name, PROBLEM, describe(e), "run `inv doctor` again; if it persists,"
                      " check the credentials' roles on the project")]


def api(clients: Any, farm: Farm) -> list[Check]:
    from .gce.instances import MachineTypes

    found_line, found = project(clients, farm)
    if found is None:
        return [found_line, Check(
            "project, machine types, images, quotas, firewall", SKIPPED,
            "not checked: the Compute Engine API is unusable (the line above)",
            "fix that line first, then run `inv doctor` again")]
    machine_types = MachineTypes(clients, farm.gcp.project)
    out = [found_line, os_login(found, farm)]
    for spec, node in _by_spec(farm):
        out += _each(f"node {spec.name}", lambda spec=spec, node=node: [
            machine_type(machine_types, spec, node), image(clients, farm, spec, node)])
    out += _each("quotas", lambda: quotas(clients, farm, machine_types))
    out += _each("firewall rule", lambda: [firewall_rule(clients, farm)])
    if any(n.private for n in farm.expanded()):
        out += _each("firewall rule", lambda: [bastion_rule(clients, farm)])
        out += _each("private nodes", lambda: private_nodes(clients, farm))
    return out


def run(farm: Farm, clients: Any) -> list[Check]:
    checks = local(farm)
    creds = credentials(clients)
    checks.append(creds)
    if creds.status == PROBLEM:
        checks.append(Check("Compute Engine", SKIPPED, "not checked without credentials",
                            "fix the credentials line first, then run `inv doctor` again"))
        return checks
    return checks + api(clients, farm)


def show(reporter: Reporter, checks: list[Check]) -> None:
    for c in checks:
        reporter.check(c.status, c.check, c.detail, c.fix)
    problems = sum(c.status == PROBLEM for c in checks)
    warnings = sum(c.status == WARNING for c in checks)
    if problems or warnings:
        reporter.say(f"{problems} problem(s), {warnings} warning(s) in {len(checks)} checks")
    else:
        reporter.say(f"all {len(checks)} checks ok")


def to_json(checks: list[Check]) -> dict:
    return {"checks": [asdict(c) for c in checks],
            "problems": sum(c.status == PROBLEM for c in checks),
            "warnings": sum(c.status == WARNING for c in checks)}


@task(stage=False)
def doctor(session: Session, *, inventory: str | None) -> int:
    """Check every prerequisite without changing anything: exit 1 if any check found a
    problem, 2 for a bad inventory."""
    from .gce.clients import Clients, resolve_endpoint
    from .inventory import load

    farm = load(inventory)
    session.say(f"farm {farm.farm}: prerequisites in project {farm.gcp.project}")
    checks = run(farm, Clients(resolve_endpoint(farm.gcp.api_endpoint)))
    show(session.reporter, checks)
    report = to_json(checks)
    session.emit(report)
    return 1 if report["problems"] else 0
