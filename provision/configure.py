"""The configure stage: every host gets Docker, QEMU/binfmt for the farm's other platforms,
the farm user in the docker group, daemon.json and its idle-stop timer (or none), over one
pinned SSH connection each.

Per host: find it (hosts cache, else the API), connect (waiting for SSH), gather facts in one
round trip, plan the steps (pure, in hosts/steps.py), then either report them (--check) or run
them and verify from fresh facts. A converged host costs one connection and one round trip.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from .cli import Session, load, task
from .errors import KeyFileError
from .hosts import facts as host_facts
from .hosts import steps
from .hosts.cache import Host
from .hosts.connect import (
    CONNECT_TIMEOUT,
    HostKeyRefused,
    Unreachable,
    load_key,
    open_connection,
    sudo,
)
from .hosts.directory import Directory, NotUp
from .inventory import Farm, Node
from .runner import Job, Outcome, Progress, Recap, run

SSH_WAIT_SECONDS = float(os.environ.get("ARCHFARM_SSH_WAIT_SECONDS", "300"))
FACTS_TIMEOUT = 60.0
STEP_TIMEOUT = 1800.0  # an apt install on a slow mirror
ITEMS = (*steps.STEPS, "verify")  # what configure converges and checks on every host
SETTLE = ("command -v cloud-init >/dev/null && timeout 600 cloud-init status --wait;"
          " timeout 600 systemctl is-system-running --wait; true")


def desired(farm: Farm, node: Node, host: Host) -> steps.Desired:
    daemon = farm.docker.daemon
    return steps.Desired(
        user=farm.ssh.user, package=farm.docker.package, platform=node.platform,
        farm_platforms=tuple(farm.platforms),
        daemon_json=steps.render_daemon_json(daemon.registry_mirrors,
                                             daemon.insecure_registries,
                                             daemon.log_max_size, daemon.log_max_file,
                                             farm.buildx.cache_max_gb),
        emulated=host.emulated, containerd_store=farm.docker.containerd_store,
        idle_stop_minutes=node.idle_stop_minutes)


def farm_key(farm: Farm) -> Any:
    """The farm's private key (already checked by keys.load_public_key), or a clear error
    when there is none yet: `vms` generates it with the VMs that carry its public half."""
    if not farm.key_path.exists():
        raise KeyFileError(str(farm.key_path), "no farm key here yet, so no VM of this farm"
                           " can have it", "run `inv vms` (or `inv provision`), which generates"
                           " it and creates the VMs with it, or set ssh.private_key to the key"
                           " the VMs were created with")
    return load_key(str(farm.key_path))


def gather(conn: Any, user: str, timeout: float = FACTS_TIMEOUT) -> host_facts.Facts:
    out = sudo(conn, host_facts.script(user), timeout=timeout)
    if host_facts.MARK + "os-release" not in out.stdout:
        raise Unreachable(f"could not gather facts as root: {(out.stderr or out.stdout)[-300:]}"
                          " (does the farm user have passwordless sudo?)")
    return host_facts.parse(out.stdout)


def connect(farm: Farm, directory: Directory, node: Node, pkey: Any, progress: Progress,
            wait_seconds: float, timeout: float = CONNECT_TIMEOUT) -> tuple[Any, Host]:
    """A pinned connection. A cached entry gets one quick try; if the host does not answer
    as cached, the API says where it is now and which keys it must present, and those are
    waited for (host keys, then SSH) up to `wait_seconds`. A private node is reached through
    the farm's bastion (its entry's `via`), whose keys are pinned as well."""
    deadline = time.monotonic() + wait_seconds
    cached = directory.cached(node.name)
    gateway = directory.cached(cached.via) if cached is not None and cached.via else None
    if cached is not None and (gateway is not None or not cached.via):
        try:
            return open_connection(cached, farm.ssh.user, pkey, progress.cancel, 0, progress,
                                   timeout, gateway), cached
        except (HostKeyRefused, Unreachable):
            progress("not as cached; asking Compute Engine where it is now")
    host = directory.refresh(node.name, progress.cancel, deadline, progress,
                             fresh=cached is not None)
    gateway = None
    if host.via:  # the bastion may have moved too (a restart gives it a new address)
        try:
            gateway = directory.refresh(host.via, progress.cancel, deadline, progress)
        except NotUp as e:
            raise NotUp(f"{node.name} is reached through bastion {host.via}: {e}") from None
    return open_connection(host, farm.ssh.user, pkey, progress.cancel,
                           max(0.0, deadline - time.monotonic()), progress, timeout,
                           gateway), host


class Configure:
    """Runner jobs for the configure stage, sharing the directory of hosts and the key."""

    def __init__(self, farm: Farm, directory: Directory, check: bool,
                 wait_seconds: float | None = None):
        self.farm, self.directory, self.check = farm, directory, check
        self.wait_seconds = SSH_WAIT_SECONDS if wait_seconds is None else wait_seconds
        self.pkey = farm_key(farm)
        # node -> its engine's "major.minor", where the containerd image store is asked for
        # but the engine predates it: one warning for the run, not one per node.
        self.store_off: dict[str, str] = {}

    def job(self, node: Node) -> Job:
        return lambda progress: self.run(node, progress)

    def run(self, node: Node, progress: Progress) -> Outcome:
        try:
            conn, host = connect(self.farm, self.directory, node, self.pkey, progress,
                                 self.wait_seconds)
        except (NotUp, Unreachable) as e:
            return Outcome(unreachable=True, note=str(e))
        except HostKeyRefused as e:
            return Outcome(failures=["host key"], note=str(e))
        try:
            with conn:
                return self._configure(conn, node, host, progress)
        except Unreachable as e:
            return Outcome(unreachable=True, note=str(e))

    def _configure(self, conn: Any, node: Node, host: Host, progress: Progress) -> Outcome:
        user = self.farm.ssh.user
        facts = gather(conn, user)
        problem = steps.unsupported(facts)
        if problem:
            return Outcome(failures=["facts"], note=problem)
        if facts.booting:
            progress("waiting for first boot to settle (cloud-init, systemd)")
            sudo(conn, SETTLE, timeout=700)
            facts = gather(conn, user)
        want = desired(self.farm, node, host)
        changes = steps.plan(facts, want)
        self._note_store(node, facts, want)
        changed: list[str] = []
        extra: dict[str, Any] = {"details": []}
        if self.check:
            self._record(changes, changed, extra)
            for change in changes:
                progress(f"would {change.step}: {change.detail}")
            note = "would change: " + ", ".join(changed) if changes else "converged"
            return Outcome.of(steps.STEPS, changed, note=note, extra=extra)
        failed = self._apply(conn, changes, changed, extra, progress)
        if failed:
            return failed
        if changes:
            facts = gather(conn, user)
        if "docker engine" in changed:
            # Planned before the engine was there, the plan may not have known its version
            # or whether it brings the CLI (a fresh VM's apt lists can be empty until the
            # first update): plan once more with it installed.
            more = steps.plan(facts, want)
            failed = self._apply(conn, more, changed, extra, progress)
            if failed:
                return failed
            if more:
                facts = gather(conn, user)
        self._note_store(node, facts, want)
        problem = steps.verify(facts, want)
        extra.update(docker=facts.docker_version, emulated=steps.emulated(facts, want),
                     containerd_store=facts.containerd_store)
        if problem:
            return Outcome.of(ITEMS, changed, failed="verify", note=problem, extra=extra)
        arch = f"{facts.docker_arch}{' (emulated arm64 node, lab)' if extra['emulated'] else ''}"
        note = (f"docker {facts.docker_version} on {arch}"
                + (", containerd store" if facts.containerd_store else "")
                + (f"; changed: {', '.join(changed)}" if changed else ""))
        return Outcome.of(ITEMS, changed, note=note, extra=extra)

    @staticmethod
    def _record(changes: list[steps.Change], changed: list[str], extra: dict[str, Any]) -> None:
        extra["details"] += [f"{c.step}: {c.detail}" for c in changes]
        changed += [c.step for c in changes if c.step not in changed]

    def _apply(self, conn: Any, changes: list[steps.Change], changed: list[str],
               extra: dict[str, Any], progress: Progress) -> Outcome | None:
        """Run the changes in order; the outcome of the first that fails, else None."""
        self._record(changes, changed, extra)
        for change in changes:
            progress.cancel.check()
            progress(f"{change.step}: {change.detail}")
            out = sudo(conn, change.script, timeout=STEP_TIMEOUT)
            if out.code != 0:
                tail = (out.stderr.strip() or out.stdout.strip())[-600:]
                return Outcome.of(ITEMS, changed, failed=change.step, extra=extra,
                                  note=f"{change.step} failed (exit {out.code}): {tail}")
        return None

    def _note_store(self, node: Node, facts: host_facts.Facts, want: steps.Desired) -> None:
        old = steps.engine_too_old_for_store(facts, want)
        if old:
            self.store_off[node.name] = old
        else:
            self.store_off.pop(node.name, None)


def live_facts(farm: Farm, directory: Directory, node: Node, progress: Progress,
               timeout: float = 5.0) -> dict:
    """`inv status`'s per-node look: docker version, emulated and builds in flight, or
    unreachable. Nothing is waited for: host keys not yet published or SSH not up yet read
    as unreachable."""
    try:
        conn, host = connect(farm, directory, node, farm_key(farm), progress, 0, timeout)
        with conn:
            found = gather(conn, farm.ssh.user, timeout=timeout + 5)
    except (NotUp, Unreachable, HostKeyRefused, KeyFileError) as e:
        return {"docker": None, "emulated": None, "builds": None, "reachable": False,
                "note": str(e)}
    want = desired(farm, node, host)
    return {"docker": found.docker_version, "emulated": steps.emulated(found, want),
            "builds": found.builds_in_flight, "reachable": True}


def configure_nodes(session: Session, farm: Farm, nodes: set[str] | None, check: bool,
                    make_clients: Callable[[], Any]) -> Recap:
    """The configure stage on the nodes given (None: every node), all at once."""
    from .hosts.directory import Directory

    targets = farm.selected(nodes)
    if not targets:
        return Recap({}, session.cancel.is_set())
    stage = Configure(farm, Directory(farm, make_clients), check)
    session.say(f"farm {farm.farm}: configuring {len(targets)} host(s)"
                f"{' (check mode: nothing will be changed)' if check else ''}")
    recap = run([(n.name, stage.job(n)) for n in targets], session.cancel, say=session.node)
    if stage.store_off:
        off = steps.containerd_store_off(stage.store_off)
        session.reporter.check("warning", "containerd image store", off.problem, off.fix)
    return recap


@task
def configure(session: Session, *, inventory: str | None, check: bool = False,
              limit: str | None = None) -> int:
    from .gce.clients import lazy_clients
    from .inventory import parse_limit

    farm = load(inventory)
    nodes = parse_limit(limit, farm)
    return session.finish(configure_nodes(session, farm, nodes, check,
                                          lazy_clients(farm.gcp.api_endpoint)))
