"""Waking the nodes a build chose while they were asleep (stopped by idle stop, preempted,
suspended): start the VM, read its address and host keys again, wait for its engine.

An ephemeral external address changes across a stop on Compute Engine, so the node's
address is read from the API again and the farm's ssh config rewritten when it moved; its
host keys are pinned under the node's alias (`register.host_block`), so the pin still holds.
The build then waits until the node's docker engine answers over ssh: the same probe, alias
and pinned key every build uses. Each node is woken once per run, by whichever job needs it
first; the other jobs for it wait for that wake.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable

from .. import names
from ..hosts.cache import write_private
from ..hosts.directory import Directory
from ..inventory import Farm
from ..runner import Cancel, Interrupted
from . import observe
from .dispatch import WakeFailed  # the node did not come back (start, keys or engine)
from .register import farm_config, render

WAKE_DEADLINE = 300.0      # start, boot, host keys and engine: a T2A VM takes about a minute
ENGINE_POLL_SECONDS = 0.5
_config_lock = threading.Lock()  # wakes in parallel rewrite one ssh config


class Waker:
    """The run's wakes. `asleep` are the nodes to start before building on them (the
    schedule's choice, and a preempted spot node that is to be retried)."""

    def __init__(self, farm: Farm, cancel: Cancel, asleep: set[str]):
        self.farm, self.cancel = farm, cancel
        self.asleep = set(asleep)
        self.seconds: dict[str, float] = {}   # node -> how long its (last) wake took
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._known: Directory | None = None

    @property
    def _directory(self) -> Directory:
        """The API and the hosts cache, only once a node is to be woken (a build with no
        wake never imports the client library)."""
        from ..gce.clients import lazy_clients

        with self._guard:
            if self._known is None:
                self._known = Directory(self.farm, lazy_clients(self.farm.gcp.api_endpoint))
            return self._known

    def again(self, node: str) -> None:
        """The node went to sleep under a build (preempted): wake it before the next one."""
        with self._guard:
            self.asleep.add(node)

    def ensure(self, node: str, progress: Callable[[str], None]) -> float | None:
        """Wake `node` if it is asleep; the seconds the wake took (None: it was up)."""
        with self._guard:
            lock = self._locks.setdefault(node, threading.Lock())
        with lock:
            if node not in self.asleep:
                return self.seconds.get(node)
            began = time.monotonic()
            try:
                self.start(node, progress, began + WAKE_DEADLINE)
                self._wait_for_engine(node, progress, began + WAKE_DEADLINE)
            except (Interrupted, WakeFailed):
                raise
            except Exception as e:  # noqa: BLE001 (the API's or ssh's words, for the recap)
                raise WakeFailed(str(e).strip().splitlines()[0] if str(e).strip()
                                 else type(e).__name__) from None
            with self._guard:
                self.asleep.discard(node)
                self.seconds[node] = round(time.monotonic() - began, 1)
            return self.seconds[node]

    def start(self, node: str, progress: Callable[[str], None], deadline: float) -> None:
        """The node's VM started (resumed), its address and host keys read again, the ssh
        config rewritten if the address moved."""
        from ..gce import instances

        vm = self._directory.vm(node, self.cancel, fresh=True)
        if vm is None:
            raise WakeFailed("its VM is gone; `inv vms` creates it")
        clients = self._directory.clients
        project, cancel = self.farm.gcp.project, self.cancel
        self._bastion_up(node, progress)
        if vm.status in ("STOPPING", "SUSPENDING"):
            progress(f"waiting for its VM to finish {vm.status.lower()}")
            vm = instances.wait_status(clients, project, vm.zone, vm.name,
                                       {"TERMINATED", "STOPPED", "SUSPENDED"}, cancel)
        if vm.status == "SUSPENDED":
            progress("resuming its VM")
            instances.resume(clients, project, vm.zone, vm.name, cancel)
        elif vm.status != "RUNNING":
            progress(f"starting its VM ({vm.status})")
            instances.start(clients, project, vm.zone, vm.name, cancel)
        vm = instances.wait_running(clients, project, vm.zone, vm.name, cancel)
        self._directory.refresh(node, cancel, deadline, progress, vm=vm)
        self._rewrite_config()

    def _wait_for_engine(self, node: str, progress: Callable[[str], None],
                         deadline: float) -> None:
        cancel = self.cancel
        self._close_stale_connection(node)
        progress("waiting for its docker engine over ssh")
        while True:
            seen = observe.probe(self.farm, node)
            if seen.engine:
                return
            if time.monotonic() > deadline:
                raise WakeFailed(f"its engine did not answer within {WAKE_DEADLINE:.0f} s of"
                                 f" the start ({seen.why or 'no answer'})")
            cancel.sleep(ENGINE_POLL_SECONDS)

    def _bastion_up(self, node: str, progress: Callable[[str], None]) -> None:
        """A private node is reached through the bastion: wake that first if it is down (it
        never stops for idleness, but a stop by hand does not ask)."""
        bastion = self.farm.bastion
        private = any(n.private for n in self.farm.expanded() if n.name == node)
        if not private or bastion is None:
            return
        vm = self._directory.vm(bastion.name, self.cancel)
        if vm is not None and vm.status != "RUNNING":
            progress(f"its bastion {bastion.name} is {vm.status}: waking it first")
            self.again(bastion.name)
            self.ensure(bastion.name, progress)

    def _rewrite_config(self) -> None:
        """The farm's ssh config with the addresses just read (unchanged: not written)."""
        inventory = {n.name for n in self.farm.expanded()}
        path = farm_config(self.farm.farm)
        with _config_lock:
            text = render(self.farm, {n: h for n, h in self._directory.snapshot().items()
                                      if n in inventory})
            if not path.exists() or path.read_text() != text:
                write_private(path, text)

    def _close_stale_connection(self, node: str) -> None:
        """The shared connection (ControlMaster) opened before the VM stopped is dead but may
        not know it yet: every probe through it would hang until it gives up."""
        subprocess.run(["ssh", "-F", str(farm_config(self.farm.farm)), "-O", "exit",
                        names.alias(self.farm.farm, node)], capture_output=True,
                       stdin=subprocess.DEVNULL, timeout=10, check=False)
