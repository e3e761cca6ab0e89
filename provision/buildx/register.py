"""The register stage: each node becomes a buildx node the user's docker CLI can reach.

Per node: a `Host archfarm-<farm>-<node>` entry in an ssh config file archfarm manages
(`~/.ssh/archfarm/<farm>.conf`, pulled into `~/.ssh/config` by one Include line), a docker
context `archfarm-<farm>-<node>` over ssh://, and a node `<farm>-<node>` of the builder named
after the farm (docker-container driver), pinned to the node's platform. Idempotent: each is
compared with what exists and changed only when it differs. `unregister` undoes all of it.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..hosts.cache import Host, known_hosts_path, write_private
from ..inventory import Farm, Node
from ..runner import Cancel, NodeResult, RunResult
from . import docker as cli

MARK = "# added by archfarm (inv destroy removes it when no farm is left)"


def ssh_dir() -> Path:
    """The ~/.ssh that OpenSSH reads: the account's home, whatever $HOME says."""
    return Path(pwd.getpwuid(os.getuid()).pw_dir) / ".ssh"


def farm_config(farm: str) -> Path:
    return ssh_dir() / "archfarm" / f"{farm}.conf"


def include_line() -> str:
    return f'Include "{ssh_dir() / "archfarm" / "*.conf"}"'


def alias(farm: str, node: str) -> str:
    return f"archfarm-{farm}-{node}"


def host_block(farm: Farm, host: Host) -> str:
    name = alias(farm.farm, host.node)
    control = ssh_dir() / "archfarm" / "cm-%C"
    lines = [f"Host {name}",
             f"  HostName {host.address}",
             f"  User {farm.ssh.user}",
             "  Port 22",
             f'  IdentityFile "{farm.key_path.absolute()}"',
             "  IdentitiesOnly yes",
             # Keys are pinned under the alias too, so a new address needs no new pin.
             f"  HostKeyAlias {host.alias}",
             f'  UserKnownHostsFile "{known_hosts_path(farm.gcp.project, farm.farm)}"',
             "  StrictHostKeyChecking yes",
             "  BatchMode yes",
             "  ControlMaster auto",
             f'  ControlPath "{control}"',
             "  ControlPersist 10m",
             "  ServerAliveInterval 30"]
    return "\n".join(lines) + "\n"


def render(farm: Farm, hosts: dict[str, Host]) -> str:
    blocks = [host_block(farm, hosts[n]) for n in sorted(hosts)]
    return (f"# {marker(farm)}: managed by archfarm, rewritten by `inv register`, removed by"
            " `inv destroy`.\n\n" + "\n".join(blocks))


def ensure_include(check: bool) -> bool:
    """One Include line at the top of ~/.ssh/config (an Include under a Host block would only
    apply to that host). True if it was (or would be) added."""
    config = (ssh_dir() / "config").resolve()  # a dotfile manager's symlink stays a symlink
    text = config.read_text() if config.exists() else ""
    if include_line() in text.splitlines():
        return False
    if not check:
        mode = config.stat().st_mode & 0o777 if config.exists() else 0o600
        write_private(config, f"{MARK}\n{include_line()}\n\n{text}")
        os.chmod(config, mode)
    return True


def remove_include() -> bool:
    """Drop archfarm's Include (and its mark) once no farm config is left."""
    config = (ssh_dir() / "config").resolve()
    if not config.exists() or any((ssh_dir() / "archfarm").glob("*.conf")):
        return False
    lines = config.read_text().splitlines(keepends=True)
    kept = [ln for ln in lines if ln.rstrip("\n") not in (MARK, include_line())]
    if kept == lines:
        return False
    if kept and not kept[0].strip():
        kept = kept[1:]  # the blank line archfarm added after its Include
    if not kept:  # archfarm made the file for its Include: leave no empty file behind
        config.unlink()
        return True
    mode = config.stat().st_mode & 0o777
    write_private(config, "".join(kept))
    os.chmod(config, mode)
    return True


@dataclass(frozen=True)
class Wanted:
    node: Node
    context: str
    endpoint: str
    builder_node: str


def wanted(farm: Farm, node: Node) -> Wanted:
    name = alias(farm.farm, node.name)
    return Wanted(node, name, f"ssh://{name}", f"{farm.farm}-{node.name}")


def builder_create_args(farm: Farm, w: Wanted, append: bool) -> list[str]:
    args = ["buildx", "create", "--name", farm.farm, "--driver", "docker-container",
            "--platform", w.node.platform, "--node", w.builder_node]
    if farm.buildx.buildkit_image:
        args += ["--driver-opt", f"image={farm.buildx.buildkit_image}"]
    if append:
        args.append("--append")
    return [*args, w.context]


def _builder_node(builder: dict | None, name: str) -> dict | None:
    for node in (builder or {}).get("Nodes") or []:
        if node.get("Name") == name:
            return node
    return None


def _stored_builder(farm: str) -> dict | None:
    """The builder as buildx's own store keeps it (`buildx ls` omits driver options, and
    needs no daemon for this): None when there is no such builder."""
    root = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    try:
        return json.loads((root / "buildx" / "instances" / farm).read_text())
    except (OSError, ValueError):
        return None


def _driver_image(farm: str, node: str) -> str | None:
    """The node's `image=` driver option."""
    for n in (_stored_builder(farm) or {}).get("Nodes") or []:
        if n.get("Name") == node:
            return (n.get("DriverOpts") or {}).get("image")
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
    """Another project's farm of the same name owns the names this farm would use."""
    owner = _owner_of_config(farm)
    foreign = [name for n in farm.expanded()
               if (name := alias(farm.farm, n.name)) in contexts
               and contexts[name][1] not in ("", marker(farm))]
    if (owner not in (None, "", marker(farm))) or foreign:
        raise UserError(f"farm {farm.farm} of project {farm.gcp.project}: its local names are"
                        f" taken by {owner or contexts[foreign[0]][1]}"
                        f" ({farm_config(farm.farm) if owner else foreign[0]}). Fix: give this"
                        " farm another `farm:` name, or destroy the other farm first.")


def register(farm: Farm, hosts: dict[str, Host], nodes: list[Node], check: bool,
             cancel: Cancel | None = None) -> RunResult:
    """Converge the ssh config, the contexts and the builder for `nodes`; one result each.
    A node whose docker command fails is that node's failure; the others go on."""
    cancel = cancel or Cancel()
    contexts = cli.contexts()
    _refuse_foreign(farm, contexts)
    results: dict[str, NodeResult] = {}
    config = farm_config(farm.farm)
    old_text = config.read_text() if config.exists() else ""
    known = {n: h for n, h in hosts.items() if n in {x.name for x in farm.expanded()}}
    new_text = render(farm, known)
    old_blocks = {b.rstrip("\n") for b in old_text.split("\n\n")}
    cancel.check()
    include_added = ensure_include(check)
    if new_text != old_text and not check:
        write_private(config, new_text)

    builder = cli.builders().get(farm.farm)
    for node in nodes:
        w, changes = wanted(farm, node), []
        try:
            if host_block(farm, hosts[node.name]).rstrip("\n") not in old_blocks:
                changes.append("ssh config")
            if contexts.get(w.context) != (w.endpoint, marker(farm)):
                changes.append("docker context")
                if not check:
                    cancel.check()
                    verb = "update" if w.context in contexts else "create"
                    cli.docker("context", verb, w.context, "--docker", f"host={w.endpoint}",
                               "--description", marker(farm))
            current = _builder_node(builder, w.builder_node)
            if (current is None or current.get("Endpoint") != w.context
                    or current.get("Platforms", [None])[:1] != [node.platform]
                    or _driver_image(farm.farm, w.builder_node) != farm.buildx.buildkit_image):
                changes.append("builder node")
                if not check:
                    cancel.check()
                    # --append adds or replaces a node of an existing builder.
                    cli.docker(*builder_create_args(farm, w, append=builder is not None))
                    builder = cli.builders().get(farm.farm)
        except cli.DockerError as e:
            results[node.name] = NodeResult(ok=3 - len(changes), changed=len(changes) - 1,
                                            failed=1, note=str(e))
            continue
        note = (("would change: " if check else "changed: ") + ", ".join(changes) if changes
                else f"{w.builder_node} in builder {farm.farm}, {node.platform}")
        results[node.name] = NodeResult(ok=3 - len(changes), changed=len(changes), note=note,
                                        extra={"context": w.context, "builder": farm.farm})
    for name, context in _left(farm, contexts).items():
        results[name] = _remove_left(farm, context, builder, old_text, check, cancel)
    if include_added and nodes:
        results[nodes[0].name].note += f"; {'would add' if check else 'added'} Include to" \
                                       f" {shlex.quote(str(ssh_dir() / 'config'))}"
    return RunResult(results, cancel.is_set())


def _left(farm: Farm, contexts: dict[str, tuple[str, str]]) -> dict[str, str]:
    """The farm's contexts (by its marker) whose node has left the inventory, by node name."""
    kept = {alias(farm.farm, n.name) for n in farm.expanded()}
    return {name.removeprefix(alias(farm.farm, "")): name
            for name, (_, description) in sorted(contexts.items())
            if description == marker(farm) and name not in kept}


def _remove_left(farm: Farm, context: str, builder: dict | None, old_text: str,
                 check: bool, cancel: Cancel) -> NodeResult:
    """A node taken out of the inventory leaves the builder (so builds no longer go to it)
    and loses its context and ssh entry; its VM is `inv vms --prune`'s business."""
    members = [n["Name"] for n in (builder or {}).get("Nodes") or []
               if n.get("Endpoint") == context]
    gone = [f"builder node {m}" for m in members] + [f"docker context {context}"]
    if f"Host {context}\n" in old_text:
        gone.append("ssh config entry")  # already dropped: the config lists inventory nodes
    if not check:
        try:
            for member in members:
                cancel.check()
                cli.docker("buildx", "create", "--name", farm.farm, "--leave", "--node", member)
            cancel.check()
            cli.docker("context", "rm", "--force", context)
        except cli.DockerError as e:
            return NodeResult(failed=1, note=f"no longer in the inventory, not removed: {e}")
    return NodeResult(changed=1, note="no longer in the inventory: "
                                      f"{'would remove' if check else 'removed'} "
                                      + ", ".join(gone))


def unregister(farm: Farm, check: bool) -> RunResult:
    """Remove the farm's builder, its contexts, its ssh config and (if last) the Include:
    only what carries this farm's marker (a same-named farm of another project is left)."""
    results: dict[str, NodeResult] = {}
    contexts = cli.contexts() if shutil.which("docker") else {}
    names = {alias(farm.farm, n.name) for n in farm.expanded()}
    mine = sorted(name for name, (_, description) in contexts.items()
                  if description == marker(farm) or (not description and name in names))
    stored = _stored_builder(farm.farm)
    if stored and mine and any(n.get("Endpoint") in mine for n in stored.get("Nodes") or []):
        if not check:
            done = cli.docker("buildx", "rm", "--force", farm.farm, check=False, timeout=60)
            if _stored_builder(farm.farm):
                results[f"builder {farm.farm}"] = NodeResult(
                    failed=1, note=f"`docker buildx rm {farm.farm}` failed: "
                                   f"{done.stderr.strip()[-300:]}")
        results.setdefault(f"builder {farm.farm}", NodeResult(changed=1, note="removed"))
    if mine:
        if not check:
            cli.docker("context", "rm", "--force", *mine)
        results["docker contexts"] = NodeResult(changed=1, note=", ".join(mine))
    config = farm_config(farm.farm)
    if config.exists() and _owner_of_config(farm) in ("", marker(farm)):
        if not check:
            config.unlink()
        results["ssh config"] = NodeResult(changed=1, note=str(config))
    if not check and remove_include():
        results.setdefault("ssh config", NodeResult(changed=1)).note += \
            f"; Include removed from {ssh_dir() / 'config'}"
    return RunResult(results, False)
