"""Where each node is and which host keys it must present: the cache first, the API when needed.

The API is asked (and the client library imported) only when a node has no cache entry or its
entry no longer matches the host. Host keys come from the VM's `hostkeys/` guest attributes,
published by the guest agent shortly after boot, so a VM just created is polled for them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..inventory import Farm
from ..runner import Cancel
from . import cache
from .cache import Host

KEY_POLL_SECONDS = 1.0


class NotUp(Exception):
    """The node's VM is missing or not running: nothing to connect to."""


def reach(farm: Farm, vm: Any) -> tuple[str | None, str]:
    """How a running VM of the farm is reached: (address, bastion node or ""). Its external
    address when it has one (a VM made before its node went private too); a private node's
    VM without one, at its internal address through the bastion; else no address (a public
    node whose address is not assigned yet)."""
    if vm.external_ip:
        return vm.external_ip, ""
    bastion = farm.bastion
    node = next((n for n in farm.expanded() if n.vm_name == vm.name), None)
    if bastion is None or node is None or not node.private:
        return None, ""
    return vm.internal_ip, bastion.name


class Directory:
    """The farm's hosts for one run, shared by every host job (thread-safe)."""

    def __init__(self, farm: Farm, make_clients: Callable[[], Any]):
        self.farm, self.project = farm, farm.gcp.project
        self._make_clients = make_clients
        self._clients: Any = None
        self._listed: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self.hosts = cache.load(self.project, farm.farm)
        self.api_calls = 0

    def cached(self, node: str) -> Host | None:
        host = self.hosts.get(node)
        return host if host and host.address and host.host_keys else None

    def vm(self, node: str, cancel: Cancel, fresh: bool = False) -> Any:
        """The node's VM as Compute Engine lists it (None: it has none)."""
        return self._vms(cancel, fresh).get(node)

    def snapshot(self) -> dict[str, Host]:
        """The hosts known now, copied (refreshes may add to them meanwhile)."""
        with self._lock:
            return dict(self.hosts)

    @property
    def clients(self) -> Any:
        """The run's API clients, made on first use."""
        return self._clients_now()

    def _clients_now(self) -> Any:
        with self._lock:
            if self._clients is None:
                self._clients = self._make_clients()
            return self._clients

    def _vms(self, cancel: Cancel, fresh: bool) -> dict[str, Any]:
        """The farm's VMs by node name, from one aggregated list per run (or a fresh one)."""
        from ..gce import instances, labels

        clients = self._clients_now()
        with self._lock:
            if self._listed is None or fresh:
                found = instances.find(clients, self.project, labels.farm_filter(self.farm.farm),
                                       cancel)
                self.api_calls += 1
                self._listed = {labels.node_of(vm) or vm.name: vm for vm in found}
            return self._listed

    def refresh(self, node: str, cancel: Cancel, deadline: float,
                progress: Callable[[str], None], fresh: bool = False, vm: Any = None) -> Host:
        """The node's host from the API: its VM (listed, unless the caller has just seen it),
        then its host keys (waited for until `deadline`)."""
        from ..gce import instances

        vm = vm or self._vms(cancel, fresh).get(node)
        if vm is None:
            raise NotUp(f"no VM for node {node}; create it with `inv vms`")
        address, via = reach(self.farm, vm)
        if vm.status != "RUNNING" or not address:
            raise NotUp(f"VM {vm.name} is {vm.status}"
                        f"{'' if address else ' without an external IP and no bastion'};"
                        " bring it up with `inv vms`")
        clients, waited = self._clients_now(), False
        while True:
            keys = instances.guest_attributes(clients, self.project, vm.zone, vm.name,
                                              "hostkeys/", cancel)
            self.api_calls += 1
            keys = {k: v for k, v in keys.items() if k in cache.KEY_TYPES}
            if keys:
                break
            if time.monotonic() > deadline:
                raise NotUp(f"VM {vm.name} published no SSH host keys (guest attributes"
                            " `hostkeys/`); is `enable-guest-attributes` set and the guest"
                            " agent running?")
            if not waited:
                progress("waiting for the VM's host keys (guest attributes)")
                waited = True
            cancel.sleep(KEY_POLL_SECONDS)
        lab = instances.guest_attributes(clients, self.project, vm.zone, vm.name,
                                         "archfarm-lab/", cancel)
        self.api_calls += 1
        host = Host(node=node, vm=vm.name, zone=vm.zone, vm_id=vm.id, address=address,
                    host_keys=keys, emulated=lab.get("emulated", "").upper() == "TRUE",
                    via=via)
        with self._lock:
            self.hosts[node] = host
            cache.save(self.project, self.farm.farm, self.hosts)
        return host

    def forget(self, node: str) -> None:
        with self._lock:
            if self.hosts.pop(node, None) is not None:
                cache.save(self.project, self.farm.farm, self.hosts)
