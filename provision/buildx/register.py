"""The register stage: each node becomes a buildx node the user's docker CLI can reach.

Per node, three items: a `Host archfarm-<farm>-<node>` entry in an ssh config file archfarm
manages (`~/.ssh/archfarm/<farm>.conf`, pulled into `~/.ssh/config` by one Include line), a
docker context `archfarm-<farm>-<node>` over ssh://, and a node `<farm>-<node>` of the builder
named after the farm (docker-container driver), pinned to the node's platform.

Like the other stages: `observe` what exists, `plan` (pure) the changes, then `apply` them,
or only show them under --check. `unregister` undoes all of it.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from .. import names
from ..errors import UserError
from ..hosts.cache import Host, known_hosts_path, write_private
from ..inventory import Farm, Node
from ..runner import Cancel, Interrupted, Outcome, Recap
from . import docker_cli
from .docker_cli import DockerError

MARK = "# added by archfarm (inv destroy removes it when no farm is left)"


def ssh_dir() -> Path:
    """The ~/.ssh that OpenSSH reads: the account's home, whatever $HOME says."""
    return Path(pwd.getpwuid(os.getuid()).pw_dir) / ".ssh"


def farm_config(farm: str) -> Path:
    return ssh_dir() / "archfarm" / f"{farm}.conf"


def include_line() -> str:
    return f'Include "{ssh_dir() / "archfarm" / "*.conf"}"'


def host_block(farm: Farm, host: Host) -> str:
    name = names.alias(farm.farm, host.node)
    control = ssh_dir() / "archfarm" / "cm-%C"
    lines = [f"Host {name}",
             f"  HostName {host.address}",
             f"  User {farm.ssh.user}",
             "  Port 22",
             f'  IdentityFile "{farm.key_path.absolute()}"',
             "  IdentitiesOnly yes",
             # Keys are pinned under the alias too, so a new address needs no new pin.
             f"  HostKeyAlias {name}",
             f'  UserKnownHostsFile "{known_hosts_path(farm.gcp.project, farm.farm)}"',
             "  StrictHostKeyChecking yes",
             "  BatchMode yes",
             "  ControlMaster auto",
             f'  ControlPath "{control}"',
             "  ControlPersist 10m",
             "  ServerAliveInterval 30"]
    if host.via:
        # A private node: the bastion's sshd connects to its internal address, never this
        # machine. ssh passes -F on to the jump, so `ssh -F <farm>.conf` works as well.
        lines.append(f"  ProxyJump {names.alias(farm.farm, host.via)}")
    return "\n".join(lines) + "\n"


def render(farm: Farm, hosts: dict[str, Host]) -> str:
    blocks = [host_block(farm, hosts[n]) for n in sorted(hosts)]
    return (f"# {marker(farm)}: managed by archfarm, rewritten by `inv register`, removed by"
            " `inv destroy`.\n\n" + "\n".join(blocks))


def user_config() -> Path:
    return (ssh_dir() / "config").resolve()  # a dotfile manager's symlink stays a symlink


def _read_exactly(path: Path) -> str:
    """The file's text with its line endings as they are (CRLF stays CRLF)."""
    with path.open(newline="") as f:
        return f.read()


def include_present() -> bool:
    config = user_config()
    return config.exists() and include_line() in config.read_text().splitlines()


def ensure_include() -> bool:
    """One Include line at the top of ~/.ssh/config (an Include under a Host block would only
    apply to that host), written with the file's own line ending. True if it was added."""
    config = user_config()
    text = _read_exactly(config) if config.exists() else ""
    if include_line() in text.splitlines():
        return False
    eol = "\r\n" if text.split("\n", 1)[0].endswith("\r") else "\n"
    mode = config.stat().st_mode & 0o777 if config.exists() else 0o600
    write_private(config, f"{MARK}{eol}{include_line()}{eol}{eol}{text}")
    os.chmod(config, mode)
    return True


def remove_include() -> bool:
    """Drop archfarm's lines (its mark, its Include and the blank line after it) once no farm
    config is left; every other byte of the file stays as it is."""
    config = user_config()
    if not config.exists() or any((ssh_dir() / "archfarm").glob("*.conf")):
        return False
    try:
        lines = _read_exactly(config).splitlines(keepends=True)
    except FileNotFoundError:  # a concurrent destroy removed it meanwhile
        return False
    ours = {MARK, include_line()}
    kept = []
    for i, line in enumerate(lines):
        after_include = i > 0 and lines[i - 1].rstrip("\r\n") == include_line()
        if line.rstrip("\r\n") in ours or (after_include and not line.strip()):
            continue
        kept.append(line)
    if len(kept) == len(lines):
        return False
    if not kept:  # archfarm made the file for its Include: leave no empty file behind
        config.unlink(missing_ok=True)  # or a concurrent destroy did
        return True
    mode = config.stat().st_mode & 0o777
    write_private(config, "".join(kept))
    os.chmod(config, mode)
    return True


ITEMS = ("ssh config", "docker context", "builder node")  # what register converges per node


@dataclass(frozen=True)
class Observed:
    """What exists locally: docker contexts (name -> (endpoint, description)), the farm's
    builder as `buildx ls` shows it, each builder node's `image=` driver option, and the
    farm's ssh config file's text."""

    contexts: dict[str, tuple[str, str]]
    builder: dict | None
    driver_images: dict[str, str | None]
    config_text: str


@dataclass(frozen=True)
class Change:
    item: str                        # one of ITEMS
    detail: str
    command: tuple[str, ...] = ()    # the docker command that makes it; none for the ssh config


@dataclass
class Plan:
    farm: str
    config_text: str                 # the farm's ssh config as it must be
    add_include: bool                # ~/.ssh/config lacks archfarm's Include line
    nodes: dict[str, list[Change]] = field(default_factory=dict)       # inventory nodes
    leaving: dict[str, list[Change]] = field(default_factory=dict)     # nodes taken out
    notes: dict[str, str] = field(default_factory=dict)


def observe(farm: Farm) -> Observed:
    contexts = docker_cli.contexts()
    _refuse_foreign(farm, contexts)
    builder = docker_cli.builders().get(names.builder(farm.farm))
    stored = _stored_builder(names.builder(farm.farm)) or {}
    images = {n.get("Name", ""): (n.get("DriverOpts") or {}).get("image")
              for n in stored.get("Nodes") or []}
    return Observed(contexts, builder, images, _config_text(farm))


def plan(farm: Farm, hosts: dict[str, Host], nodes: list[Node], seen: Observed,
         include_present: bool) -> Plan:
    """Pure: the changes that make `nodes` buildx nodes, and remove the nodes that left."""
    inventory = {n.name for n in farm.expanded()}
    text = render(farm, {n: h for n, h in hosts.items() if n in inventory})
    old_blocks = {b.rstrip("\n") for b in seen.config_text.split("\n\n")}
    out = Plan(farm.farm, text, not include_present)
    builder_exists = seen.builder is not None
    for node in nodes:
        changes = []
        if host_block(farm, hosts[node.name]).rstrip("\n") not in old_blocks:
            changes.append(Change("ssh config", str(farm_config(farm.farm))))
        context = names.alias(farm.farm, node.name)
        endpoint = f"ssh://{context}"
        if seen.contexts.get(context) != (endpoint, marker(farm)):
            verb = "update" if context in seen.contexts else "create"
            changes.append(Change("docker context", f"{verb} {context}",
                                  ("context", verb, context, "--docker", f"host={endpoint}",
                                   "--description", marker(farm))))
        member = names.builder_node(farm.farm, node.name)
        current = _builder_node(seen.builder, member)
        pinned = pinned_node(farm, node.platform)
        if node.name != pinned:
            # buildx pins a platform to one node of a builder: pinning it on a second node
            # unpins it from the first (store/nodegroup.go, validateDuplicates). So the builder
            # has one node per platform; the others build through their own docker contexts
            # (merge strategy, bake), which is where the scheduler sends work.
            if current is not None:
                changes.append(Change("builder node", f"{member} leaves builder"
                                      f" {names.builder(farm.farm)} ({node.platform} is pinned"
                                      f" to {names.builder_node(farm.farm, pinned)})",
                                      ("buildx", "create", "--name", names.builder(farm.farm),
                                       "--leave", "--node", member)))
            out.nodes[node.name] = changes
            out.notes[node.name] = (f"builds through docker context {context}; builder"
                                    f" {names.builder(farm.farm)} pins {node.platform} to"
                                    f" {names.builder_node(farm.farm, pinned)}")
            continue
        if (current is None or current.get("Endpoint") != context
                or current.get("Platforms", [None])[:1] != [node.platform]
                or seen.driver_images.get(member) != farm.buildx.buildkit_image):
            # --append adds or replaces a node of an existing builder.
            changes.append(Change("builder node", f"{member} pinned to {node.platform}",
                                  builder_create_args(farm, node, append=builder_exists)))
            builder_exists = True
        out.nodes[node.name] = changes
        out.notes[node.name] = f"{member} in builder {names.builder(farm.farm)}, {node.platform}"
    for name, context in _left(farm, seen).items():
        out.leaving[name] = _leaving(farm, context, seen)
    return out


def pinned_node(farm: Farm, platform: str) -> str:
    """The node the builder pins `platform` to: the first of that platform in the inventory."""
    return next(n.name for n in farm.expanded() if n.platform == platform)


def _leaving(farm: Farm, context: str, seen: Observed) -> list[Change]:
    """A node taken out of the inventory leaves the builder (so builds no longer go to it)
    and loses its context and ssh entry; its VM is `inv vms --prune`'s business."""
    members = [n["Name"] for n in (seen.builder or {}).get("Nodes") or []
               if n.get("Endpoint") == context]
    # Its ssh entry goes first, with the rewrite of the farm's file (inventory nodes only).
    changes = ([Change("ssh config", "ssh config entry")]
               if f"Host {context}\n" in seen.config_text else [])
    changes += [Change("builder node", f"builder node {m}",
                       ("buildx", "create", "--name", names.builder(farm.farm), "--leave",
                        "--node", m)) for m in members]
    if context in seen.contexts:
        changes.append(Change("docker context", f"docker context {context}",
                              ("context", "rm", "--force", context)))
    return changes


def apply(farm: Farm, planned: Plan, cancel: Cancel,
          relook: Callable[[], Plan] | None = None) -> Recap:
    """Carry out the plan: the ssh config first (one file for the farm), then each node's
    docker commands in order. A node whose docker command fails is that node's failure, unless
    a fresh look (`relook`: observe and plan again) finds the item made meanwhile, as when two
    runs race; the other nodes go on. Ctrl-C stops before the next command, and the recap says
    what was done."""
    results: dict[str, Outcome] = {}
    made_meanwhile = partial(_made_meanwhile, relook)
    try:
        cancel.check()
        include_added = planned.add_include and ensure_include()
        if planned.config_text != _config_text(farm):
            write_private(farm_config(farm.farm), planned.config_text)
        for name, changes in planned.nodes.items():
            results[name] = _apply_node(name, changes, ITEMS, cancel, results, made_meanwhile)
            results[name].extra.update(_keys(farm.farm, name))
            if not results[name].changes and not results[name].bad:
                results[name].note = "; ".join(
                    n for n in (planned.notes.get(name, ""), results[name].note) if n)
        for name, changes in planned.leaving.items():
            results[name] = _apply_node(name, changes, _items(changes), cancel, results,
                                        made_meanwhile)
            results[name].note = (f"no longer in the inventory, not removed: {results[name].note}"
                                  if results[name].bad else "no longer in the inventory:"
                                  " removed " + ", ".join(c.detail for c in changes))
        if include_added and planned.nodes:
            results[next(iter(planned.nodes))].note += f"; added Include to {_user_config()}"
    except Interrupted:
        for name in [*planned.nodes, *planned.leaving]:
            results.setdefault(name, Outcome(interrupted=True,
                                             note="interrupted before it started"))
        return Recap(results, True)
    return Recap(results, cancel.is_set())


def _keys(farm: str, node: str) -> dict[str, str]:
    """What --json adds for a registered node: its docker context and the builder."""
    return {"context": names.alias(farm, node), "builder": names.builder(farm)}


def _user_config() -> str:
    return shlex.quote(str(ssh_dir() / "config"))


def _items(changes: list[Change]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(c.item for c in changes))


def _made_meanwhile(relook: Callable[[], Plan] | None, name: str, item: str) -> bool:
    """After a docker command failed: whether a fresh look finds the node's item as wanted
    anyway (another run made it, or removed it, meanwhile)."""
    if relook is None:
        return False
    try:
        fresh = relook()
    except (DockerError, UserError):
        return False
    pending = fresh.nodes[name] if name in fresh.nodes else fresh.leaving.get(name, [])
    return all(c.item != item for c in pending)


def _apply_node(name: str, changes: list[Change], items: tuple[str, ...], cancel: Cancel,
                results: dict[str, Outcome], made_meanwhile: Callable[[str, str], bool]
                ) -> Outcome:
    """One node's changes in order; on Ctrl-C its partial outcome goes into `results`."""
    done: list[str] = []
    meanwhile: list[str] = []  # found as wanted after all, made by another run
    for change in changes:
        started = False
        try:
            if change.command:
                cancel.check()
                started = True
                docker_cli.run(*change.command)
        except (DockerError, Interrupted) as e:
            if cancel.is_set():
                # Ctrl-C (which reaches the docker child too): what was done, where it stopped.
                results[name] = replace(
                    Outcome.of(items, done, failed=change.item), failures=[], interrupted=True,
                    note=f"interrupted {'during' if started else 'before'} its {change.item}"
                         f" ({change.detail}); done: {', '.join(done) or 'nothing'}")
                raise Interrupted() from e
            if not made_meanwhile(name, change.item):
                return Outcome.of(items, done, failed=change.item, note=str(e))
            meanwhile.append(change.item)
            continue
        if change.item not in done:  # a node may leave the builder under several names
            done.append(change.item)
    notes = [f"changed: {', '.join(done)}" if done else "",
             f"found as wanted, made meanwhile by another run: {', '.join(meanwhile)}"
             if meanwhile else ""]
    return Outcome.of(items, done, note="; ".join(n for n in notes if n))


def checked(planned: Plan) -> Recap:
    """The plan as --check reports it: what would change, node by node."""
    results = {name: Outcome.of(ITEMS, list(_items(changes)), extra=_keys(planned.farm, name),
                                note="would change: " + ", ".join(_items(changes))
                                if changes else planned.notes.get(name, ""))
               for name, changes in planned.nodes.items()}
    if planned.add_include and planned.nodes:
        results[next(iter(planned.nodes))].note += f"; would add Include to {_user_config()}"
    for name, changes in planned.leaving.items():
        results[name] = Outcome(changes=list(_items(changes)),
                                note="no longer in the inventory: would remove "
                                     + ", ".join(c.detail for c in changes))
    return Recap(results)


def _config_text(farm: Farm) -> str:
    config = farm_config(farm.farm)
    return config.read_text() if config.exists() else ""


def builder_create_args(farm: Farm, node: Node, append: bool) -> tuple[str, ...]:
    args = ["buildx", "create", "--name", names.builder(farm.farm), "--driver",
            "docker-container", "--platform", node.platform, "--node",
            names.builder_node(farm.farm, node.name)]
    if farm.buildx.buildkit_image:
        args += ["--driver-opt", f"image={farm.buildx.buildkit_image}"]
    if append:
        args.append("--append")
    return (*args, names.alias(farm.farm, node.name))


def _builder_node(builder: dict | None, name: str) -> dict | None:
    for node in (builder or {}).get("Nodes") or []:
        if node.get("Name") == name:
            return node
    return None


def _stored_builder(builder: str) -> dict | None:
    """The builder as buildx's own store keeps it (`buildx ls` omits driver options, and
    needs no daemon for this): None when there is no such builder."""
    try:
        return json.loads((docker_cli.config_dir() / "buildx" / "instances" / builder)
                          .read_text())
    except (OSError, ValueError):
        return None


def marker(farm: Farm) -> str:
    """What archfarm writes into its contexts' description and its ssh config's first line:
    the farm and its project, so a same-named farm of another project is never taken."""
    return f"archfarm farm={farm.farm} project={farm.gcp.project}"


def _owner_of_config(farm: Farm) -> str | None:
    """The marker in the farm's ssh config file, if it exists."""
    config = farm_config(farm.farm)
    if not config.exists():
        return None
    first = config.read_text().split("\n", 1)[0]
    return first.removeprefix("# ").split(":", 1)[0] if first.startswith("# archfarm") else ""


def _refuse_foreign(farm: Farm, contexts: dict[str, tuple[str, str]]) -> None:
    """Something not this farm's owns a name this farm would use: another project's farm of
    the same name (its ssh config file, or a context), or a context someone else made."""
    owner = _owner_of_config(farm)
    foreign = [name for n in farm.expanded()
               if (name := names.alias(farm.farm, n.name)) in contexts
               and contexts[name][1] not in ("", marker(farm))]
    if owner not in (None, "", marker(farm)):
        taken = f"{farm_config(farm.farm)}, which belongs to {owner}"
        fix = "give this farm another `farm:` name, or destroy the other farm first"
    elif foreign:
        taken = (f"docker context {foreign[0]}, whose description is"
                 f" {contexts[foreign[0]][1]!r}")
        fix = (f"if that context is yours to drop, `docker context rm {foreign[0]}`; else give"
               " this farm another `farm:` name (or destroy the other farm first)")
    else:
        return
    raise UserError(f"farm {farm.farm} of project {farm.gcp.project}: its local names are"
                    f" taken by {taken}. Fix: {fix}, then run `inv register` again.")


def _left(farm: Farm, seen: Observed) -> dict[str, str]:
    """The farm's contexts (by its marker) whose node has left the inventory, by node name;
    and the builder's nodes that left and whose context was deleted by hand."""
    kept = {names.alias(farm.farm, n.name) for n in farm.expanded()}
    prefix = names.alias(farm.farm, "")
    ours = [name for name, (_, description) in seen.contexts.items()
            if description == marker(farm)]
    deleted = [n.get("Endpoint", "") for n in (seen.builder or {}).get("Nodes") or []
               if n.get("Endpoint", "").startswith(prefix) and n["Endpoint"] not in seen.contexts]
    return {name.removeprefix(prefix): name for name in sorted({*ours, *deleted})
            if name not in kept}


def register(farm: Farm, hosts: dict[str, Host], nodes: list[Node], check: bool,
             cancel: Cancel | None = None) -> Recap:
    """Observe, plan, then apply (or under --check only report) for `nodes`."""
    cancel = cancel or Cancel()
    seen = observe(farm)
    planned = plan(farm, hosts, nodes, seen, include_present())
    if check:
        return checked(planned)
    return apply(farm, planned, cancel,
                 relook=lambda: plan(farm, hosts, nodes, observe(farm), include_present()))


def register_nodes(session: Any, farm: Farm, nodes: set[str] | None, check: bool,
                   make_clients: Any) -> Recap:
    """The register stage for the nodes given (None: every node); a node with no known
    address and host keys is asked of the API, and one that has none is reported."""
    from ..hosts.directory import Directory, NotUp
    from ..runner import merge

    targets = farm.selected(nodes)
    if not targets:
        return Recap({}, session.cancel.is_set())
    session.say(f"farm {farm.farm}: registering {len(targets)} node(s) as buildx nodes"
                f"{' (check mode: nothing will be changed)' if check else ''}")
    directory = Directory(farm, make_clients)
    missing: dict[str, Outcome] = {}
    for node in targets:
        if directory.cached(node.name) is None:
            try:
                directory.refresh(node.name, session.cancel, 0, lambda text: None)
            except NotUp as e:
                missing[node.name] = Outcome(unreachable=True, note=str(e))
    # A private node's entry names its bastion's alias (ProxyJump): the bastion's entry must
    # be written too, even under --limit.
    for via in sorted({h.via for h in directory.hosts.values() if h.via} - set(missing)):
        if directory.cached(via) is None:
            try:
                directory.refresh(via, session.cancel, 0, lambda text: None)
            except NotUp as e:
                missing.setdefault(via, Outcome(unreachable=True, note=f"bastion: {e}"))
    ready = [n for n in targets if n.name not in missing]
    hosts = {n: h for n, h in directory.hosts.items() if directory.cached(n)}
    return merge(register(farm, hosts, ready, check, session.cancel), Recap(missing))


def unregister(farm: Farm, check: bool) -> Recap:
    """Remove the farm's builder, its contexts, its ssh config and (if last) the Include:
    only what carries this farm's marker (a same-named farm of another project is left)."""
    results: dict[str, Outcome] = {}
    contexts = docker_cli.contexts() if shutil.which("docker") else {}
    ours = {names.alias(farm.farm, n.name) for n in farm.expanded()}
    mine = sorted(name for name, (_, description) in contexts.items()
                  if description == marker(farm) or (not description and name in ours))
    builder = names.builder(farm.farm)
    stored = _stored_builder(builder)
    if stored and mine and any(n.get("Endpoint") in mine for n in stored.get("Nodes") or []):
        if not check:
            done = docker_cli.run("buildx", "rm", "--force", builder, check=False, timeout=60)
            if _stored_builder(builder):
                results[f"builder {builder}"] = Outcome(
                    failures=["builder"], note=f"`docker buildx rm {builder}` failed: "
                                               f"{done.stderr.strip()[-300:]}")
        results.setdefault(f"builder {builder}", Outcome(changes=["builder"], note="removed"))
    if mine:
        if not check:
            docker_cli.run("context", "rm", "--force", *mine)
        results["docker contexts"] = Outcome(changes=mine, note=", ".join(mine))
    config = farm_config(farm.farm)
    if config.exists() and _owner_of_config(farm) in ("", marker(farm)):
        if not check:
            config.unlink(missing_ok=True)  # a concurrent destroy may have
        results["ssh config"] = Outcome(changes=[str(config)], note=str(config))
    if not check and remove_include():
        entry = results.setdefault("ssh config", Outcome())
        entry.changes.append("Include")
        entry.note = "; ".join(n for n in (entry.note,
                                           f"Include removed from {ssh_dir() / 'config'}") if n)
    return Recap(results)
