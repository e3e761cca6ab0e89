"""`inv status`: what the farm looks like right now, from one aggregated list."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .cli import Session, load_with_clients, task
from .gce import instances, labels
from .inventory import Farm
from .report import Reporter

# A VM that is down, and the timestamp that says since when.
DOWN = {"TERMINATED": ("stopped", "last_stop"), "SUSPENDED": ("suspended", "last_suspended")}


def since(vm: instances.FoundVm) -> str | None:
    """When a stopped or suspended VM went down (Compute Engine's timestamp), else None."""
    down = DOWN.get(vm.status)
    return getattr(vm, down[1]) if down else None


def age(timestamp: str, now: datetime | None = None) -> str:
    """`12 min ago` for an RFC 3339 timestamp; the timestamp itself if it does not parse."""
    try:
        then = datetime.fromisoformat(timestamp)
    except ValueError:
        return timestamp
    seconds = max(0, int(((now or datetime.now(UTC)) - then).total_seconds()))
    if seconds < 60:
        return f"{seconds} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def collect(clients: Any, farm: Farm, cancel: Any = None) -> dict:
    vms = instances.find(clients, farm.gcp.project, labels.farm_filter(farm.farm), cancel)
    idle = {n.name: n.idle_stop_minutes for n in farm.expanded()}
    bastion = farm.bastion.name if farm.bastion else None
    private = {n.name for n in farm.expanded() if n.private}
    return {"farm": farm.farm, "nodes": [{
        "name": labels.node_of(vm) or vm.name, "vm": vm.name, "zone": vm.zone,
        "platform": labels.platform_of(vm),
        "machine_type": vm.machine_type, "status": vm.status, "since": since(vm),
        "external_ip": vm.external_ip, "internal_ip": vm.internal_ip,
        # a private node is reached through the bastion (docs/private-nodes.md)
        "via": bastion if (labels.node_of(vm) or vm.name) in private else None,
        "idle_stop_minutes": idle.get(labels.node_of(vm) or vm.name),
        "docker": None, "emulated": None, "builds": None,  # live facts, below
    } for vm in vms]}


def add_live_facts(farm: Farm, clients: Any, status: dict, cancel: Any,
                   timeout: float = 5.0) -> None:
    """Each running node's docker version, emulated flag and builds in flight (build slots
    held there, by any run of archfarm on any machine), over SSH, all nodes at once
    (one round trip each, `timeout` seconds at most); a node that does not answer is marked
    unreachable and the rest of the status stands."""
    from .configure import live_facts
    from .hosts.directory import Directory
    from .runner import Outcome, run

    nodes = {n.name: n for n in farm.expanded()}
    looked = [n for n in status["nodes"] if n["status"] == "RUNNING" and n["name"] in nodes]
    directory = Directory(farm, lambda: clients)
    found: dict[str, dict] = {}

    def look(name: str) -> Any:
        def job(progress: Any) -> Outcome:
            found[name] = live_facts(farm, directory, nodes[name], progress, timeout)
            return Outcome(converged=["facts"])
        return job

    run([(n["name"], look(n["name"])) for n in looked], cancel)
    for entry in looked:
        live = found.get(entry["name"], {"docker": None, "emulated": None, "builds": None,
                                         "reachable": False})
        # Whether a node is emulated is the engine's to say: without an answer, unknown. The
        # slots are counted without the engine: a stopped one still shows what holds them.
        entry.update(docker=live["docker"],
                     emulated=live["emulated"] if live["docker"] else None,
                     builds=live["builds"])
        if not live["reachable"]:
            status.setdefault("unreachable", {})[entry["name"]] = live.get("note", "no answer")
        elif not live["docker"]:
            status.setdefault("engine_down", {})[entry["name"]] = (
                "docker does not answer (not installed, or its engine is stopped);"
                " `inv configure` installs and starts it")


def add_builder_platforms(farm: Farm, status: dict) -> None:
    """Each node's platforms in the farm's buildx builder (`inv register`), or None; and the
    builder nodes whose docker context is gone (deleted by hand: builds cannot reach them)."""
    import shutil

    from . import names
    from .buildx import docker_cli

    members: dict[str, dict] = {}
    contexts: dict[str, tuple[str, str]] = {}
    if shutil.which("docker"):
        try:
            builder = docker_cli.builders().get(names.builder(farm.farm)) or {}
            contexts = docker_cli.contexts()
        except docker_cli.DockerError:
            builder = {}
        members = {n.get("Name", ""): n for n in builder.get("Nodes") or []}
    for entry in status["nodes"]:
        member = members.get(names.builder_node(farm.farm, entry["name"]))
        entry["builder"] = None if member is None else member.get("Platforms") or []
        context = (member or {}).get("Endpoint")
        if context and context not in contexts:
            status.setdefault("context_missing", {})[entry["name"]] = (
                f"docker context {context} is gone, so the builder cannot reach this node;"
                " `inv register` makes it again")


def show(reporter: Reporter, status: dict) -> None:
    cols = ["name", "zone", "platform", "machine_type", "status", "address", "docker",
            "emulated", "builder", "idle_stop", "builds"]
    unreachable = status.get("unreachable", {})
    engine_down = status.get("engine_down", {})

    def cell(node: dict, col: str) -> str:
        value = node.get(col)
        if col == "docker" and node["name"] in unreachable:
            return "unreachable"
        if col == "docker" and node["name"] in engine_down:
            return "down"
        if col == "emulated" and value is None and node["status"] == "RUNNING":
            return "unknown"  # running, but its engine did not say
        if col == "status" and node["status"] in DOWN:
            word = DOWN[node["status"]][0]
            return f"{word} {age(node['since'])}" if node.get("since") else word
        if col == "address":  # where archfarm reaches it: its external IP, or via the bastion
            if node.get("via") and node.get("internal_ip"):
                return f"{node['internal_ip']} via {node['via']}"
            return node.get("external_ip") or "-"
        if col == "idle_stop":
            minutes = node.get("idle_stop_minutes")
            return "off" if minutes is None else f"{minutes:g} min"
        return "-" if value is None else ",".join(value) if isinstance(value, list) else str(value)

    rows = [[cell(n, c) for c in cols] for n in status["nodes"]]
    if rows:
        reporter.table(f"farm {status['farm']}", cols, rows)
    else:
        reporter.say(f"farm {status['farm']}: no VMs (run `inv vms` to create them)")
    for name, why in sorted(unreachable.items()):
        reporter.node(name, f"unreachable: {why}")
    for name, why in [*sorted(engine_down.items()),
                      *sorted(status.get("context_missing", {}).items())]:
        reporter.node(name, why)


@task
def status(session: Session, *, inventory: str | None) -> int:
    farm, clients = load_with_clients(inventory)
    state = collect(clients, farm, session.cancel)
    add_live_facts(farm, clients, state, session.cancel)
    add_builder_platforms(farm, state)
    show(session.reporter, state)
    session.emit(state)
    return 130 if session.cancel.is_set() else 0
