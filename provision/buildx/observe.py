"""The farm's nodes as a build sees them, just before it is scheduled: which are up, how busy,
whose cache is warm.

Each node gets one SSH round trip (5 s at most), all at once, through the alias `inv register`
wrote (the same OpenSSH hop, pinned host keys and shared connection its docker context uses):
does its docker engine answer, and how many builds hold a slot on it (`slots.py`). Only when a
node does not answer is Compute Engine asked why (its VM stopped, say), so a build on a healthy
farm never waits for the client library.

Cache affinity is remembered in `affinity.json` beside the hosts cache: for each context and
Dockerfile, the node of each platform that built it last. It only breaks ties; losing it costs
a cold cache, never a build.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .. import names
from ..hosts.cache import cache_dir
from ..inventory import Farm, Node
from ..runner import Cancel, Outcome, Progress, run
from . import docker_cli, slots
from .register import farm_config
from .schedule import NodeState

PROBE_SECONDS = 5.0
# Statuses of a VM that is powered off or on its way there (idle stop, a stop, a preemption,
# a suspend), which a build may start again; docs/compute-engine.md, "Instance states".
ASLEEP = ("TERMINATED", "STOPPED", "STOPPING", "SUSPENDED", "SUSPENDING")
SECTION = "@@ builds"


def ssh_command(farm: Farm, node: str, timeout: float = PROBE_SECONDS) -> list[str]:
    """OpenSSH to a node through the farm's own config (`inv register`), whatever
    ~/.ssh/config includes: the host key pinned, the connection shared with docker's."""
    return ["ssh", "-F", str(farm_config(farm.farm)), "-o", f"ConnectTimeout={timeout:.0f}",
            names.alias(farm.farm, node)]


def probe_script() -> str:
    return (f"docker version --format '{{{{.Server.Version}}}}' 2>/dev/null || echo -;"
            f" echo '{SECTION}'; {slots.count_script()}")


def parse_probe(text: str) -> tuple[str | None, int]:
    """(the engine's version, or None when it does not answer; builds in flight)."""
    engine, _, count = text.partition(SECTION)
    version = engine.strip().splitlines()[-1].strip() if engine.strip() else "-"
    return (None if version in ("-", "") else version), slots.parse_count(count)


@dataclass
class Seen:
    """What one probe saw."""

    engine: str | None = None
    builds: int = 0
    answered: bool = False
    why: str = ""


def probe(farm: Farm, node: str) -> Seen:
    """One ssh round trip to the node; whatever goes wrong is the node not answering."""
    try:
        done = subprocess.run([*ssh_command(farm, node), probe_script()], capture_output=True,
                              text=True, timeout=PROBE_SECONDS + 1, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return Seen(why=f"no answer over ssh within {PROBE_SECONDS:.0f} s")
    except OSError as e:  # no ssh client here, no process to spare
        return Seen(why=f"ssh could not be run ({e})")
    if done.returncode == 255:  # ssh's own failure, not the script's
        said = done.stderr.strip().splitlines()
        return Seen(why=f"unreachable over ssh ({said[-1] if said else 'no answer'})")
    engine, builds = parse_probe(done.stdout)
    if engine is None:
        return Seen(answered=True, builds=builds,
                    why="its docker engine does not answer; `inv configure` starts it")
    return Seen(engine, builds, answered=True)


def cache_key(context_dir: Path, dockerfile: str | None) -> str:
    """What a node's warm cache is keyed by: the build context and its Dockerfile."""
    where = f"{context_dir.resolve()}\0{dockerfile or 'Dockerfile'}"
    return hashlib.sha256(where.encode()).hexdigest()[:16]


def _affinity_path(farm: Farm) -> Path:
    return cache_dir(farm.gcp.project, farm.farm) / "affinity.json"


def load_affinity(farm: Farm) -> dict[str, dict[str, str]]:
    """cache key -> platform -> the node that built it last; unreadable reads as empty."""
    try:
        raw = json.loads(_affinity_path(farm).read_text())
        return {k: dict(v) for k, v in raw.items() if isinstance(v, dict)}
    except (OSError, ValueError, TypeError):
        return {}


def remember(farm: Farm, built: Iterable[tuple[str, str, str]]) -> None:
    """Note (cache key, platform, node) for each build that succeeded; best effort."""
    affinity = load_affinity(farm)
    for key, platform, node in built:
        affinity.setdefault(key, {})[platform] = node
    path = _affinity_path(farm)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a file of its own, then renamed: two runs finishing at once never mix their writes
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".affinity-",
                                         delete=False) as tmp:
            tmp.write(json.dumps(affinity, sort_keys=True))
        Path(tmp.name).replace(path)
    except OSError:
        pass


def observe(farm: Farm, nodes: list[Node], cancel: Cancel,
            vm_status: Callable[[], dict[str, str]],
            say: Callable[[str, str], None] = lambda key, text: None) -> list[NodeState]:
    """Every node's state, probed all at once. `vm_status` (node -> Compute Engine status) is
    called only if some node does not answer, to say why."""
    registered = _registered(farm)
    contexts = _contexts()
    seen: dict[str, Seen] = {}

    def look(node: str) -> Callable[[Progress], Outcome]:
        def job(progress: Progress) -> Outcome:
            seen[node] = probe(farm, node)
            return Outcome(converged=["probe"])
        return job

    asked = [n.name for n in nodes if names.alias(farm.farm, n.name) in registered]
    run([(n, look(n)) for n in asked], cancel, say=say)
    cancel.check()
    statuses: dict[str, str] | None = None
    affinity = load_affinity(farm)
    out = []
    for node in nodes:
        alias = names.alias(farm.farm, node.name)
        look_ = seen.get(node.name, Seen(why="no answer"))
        why, asleep = look_.why, ""
        if alias not in registered:
            why = "not registered as a build node; `inv register` (or `inv provision`) does it"
        elif contexts is not None and alias not in contexts:
            why = f"its docker context {alias} is gone; `inv register` makes it again"
        elif not look_.answered:
            if statuses is None:
                statuses = _safely(vm_status)
            status = statuses.get(node.name)
            if status is None and statuses:
                why = "its VM does not exist; `inv vms` (or `inv provision`) creates it"
            elif status in ASLEEP:
                asleep = status
                why = f"its VM is {status}; a build that needs it wakes it"
            elif status and status != "RUNNING":
                why = f"its VM is {status}; `inv vms` starts it"
        up = not why
        warm = frozenset(k for k, by in affinity.items() if by.get(node.platform) == node.name)
        out.append(NodeState(node.name, node.platform, up, why, look_.builds, warm, asleep))
    return out


def _registered(farm: Farm) -> set[str]:
    """The aliases in the farm's ssh config (`inv register` writes one per node)."""
    try:
        text = farm_config(farm.farm).read_text()
    except OSError:
        return set()
    return {line.split()[1] for line in text.splitlines()
            if line.startswith("Host ") and len(line.split()) == 2}


def _contexts() -> set[str] | None:
    try:
        return set(docker_cli.contexts())
    except docker_cli.DockerError:
        return None  # the build itself will say what is wrong with docker


def _safely(vm_status: Callable[[], dict[str, str]]) -> dict[str, str]:
    try:
        return vm_status()
    except Exception:  # noqa: BLE001 (only the reason's wording depends on it)
        return {}


def vm_statuses(farm: Farm) -> dict[str, str]:
    """node -> its VM's status now ({} when the API cannot say)."""
    return _safely(vm_status_from_api(farm))


def vm_status_from_api(farm: Farm) -> Callable[[], dict[str, str]]:
    """node -> its VM's status, from one aggregated list (imports the client library)."""
    def ask() -> dict[str, str]:
        from ..gce import instances, labels
        from ..gce.clients import lazy_clients

        clients = lazy_clients(farm.gcp.api_endpoint)()
        vms = instances.find(clients, farm.gcp.project, labels.farm_filter(farm.farm))
        return {labels.node_of(vm) or vm.name: vm.status for vm in vms}
    return ask

