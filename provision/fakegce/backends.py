"""Boot backends: what stands behind a fake VM once it is RUNNING.

The state models call a backend at power transitions; the backend plays the guest agent and
publishes guest attributes (the sshd host keys) through the callback it is given. `memory` has
no host behind the VM; the lab's container backend implements the same interface.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

Publish = Callable[[str, dict[str, str]], None]  # (namespace, {key: value})
OnHalt = Callable[[str], None]  # (VM id): its host powered off by itself


@dataclass(frozen=True)
class VmView:
    """What a backend may know of a VM: a snapshot taken under the state lock."""

    project: str
    zone: str
    name: str
    id: str
    nat_ip: str | None
    architecture: str
    metadata: dict[str, str]
    # The boot disk's source image, resolved (a family names its newest image): its project,
    # family and name, e.g. ("debian-cloud", "debian-13-arm64", "debian-13-trixie-arm64-v...").
    image_project: str
    image_family: str
    image_name: str
    # The VM's internal address (networkIP), from the backend's `internal_range`: a VM
    # without an access config (a private node) is reached only at this address, from
    # another VM of its network (the farm's bastion).
    network_ip: str | None = None


class BootBackend:
    name = "abstract"
    # natIPs handed out: 127.0.0.0/8, where a backend with real hosts publishes their sshd.
    nat_range = ("127.0.0.2", "127.0.63.254")
    # networkIPs handed out. Loopback by default, where nothing listens (the memory backend
    # has no hosts); a backend with real hosts sets the subnet its VMs share (the lab's
    # docker network), so one VM reaches another at its networkIP as on a VPC.
    internal_range = ("127.128.0.2", "127.128.255.254")
    # Compute Engine releases a VM's ephemeral external address when it stops: a start gets
    # a new one. A backend whose hosts are reached at an address fixed when they were made
    # (the lab publishes each VM's sshd on its address) keeps it instead.
    keeps_nat_ip = False
    _on_halt: OnHalt | None = None

    def attach(self, on_halt: OnHalt) -> None:
        """The state's hook for a host that powers off by itself (the guest ran `poweroff`):
        its VM goes TERMINATED with no API call. Set before any VM boots."""
        self._on_halt = on_halt

    def halted(self, vm_id: str) -> None:
        """Tell the state that this VM's host powered off by itself."""
        if self._on_halt:
            self._on_halt(vm_id)

    def power_on(self, vm: VmView, publish: Publish) -> None:
        """The VM reached RUNNING. Must not block: boot work happens in the background."""

    def power_off(self, vm: VmView) -> None:
        """The VM stopped (TERMINATED); its disk survives."""

    def lose_power(self, vm: VmView) -> None:
        """The VM was preempted: its host goes off at once, no shutdown (disk kept)."""
        self.power_off(vm)

    def guest_poweroff(self, vm: VmView) -> None:
        """Make the guest power itself off (`POST /_fake/guest-poweroff`). With no host
        behind the VM, that is reported at once; a backend with hosts runs `poweroff` in
        one and reports the halt when it sees the host stop."""
        self.halted(vm.id)

    def destroy(self, vm: VmView) -> None:
        """The VM was deleted."""

    def metadata_changed(self, vm: VmView) -> None:
        """setMetadata changed the VM's metadata while it may be running."""

    def close(self) -> None:
        """The fake is shutting down."""


def _public_blob(key) -> str:
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                         serialization.PublicFormat.OpenSSH).decode()
    return line.split()[1]


def generate_host_keys() -> dict[str, str]:
    """Fresh host keys as the guest agent publishes them: algorithm -> base64 blob."""
    return {
        "ssh-ed25519": _public_blob(ed25519.Ed25519PrivateKey.generate()),
        "ecdsa-sha2-nistp256": _public_blob(ec.generate_private_key(ec.SECP256R1())),
    }


class MemoryBackend(BootBackend):
    """No host behind the VM: after `boot_seconds` the 'guest agent' publishes host keys.

    Host keys are made once per VM id and survive stop/start, like keys on a persistent disk.
    """

    name = "memory"
    # No host listens behind these VMs: their addresses never meet a lab VM's on the machine.
    nat_range = ("127.0.64.2", "127.0.127.254")

    def __init__(self, boot_seconds: Callable[[], float] = lambda: 0.0):
        self._boot_seconds = boot_seconds
        self._keys: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def host_keys(self, vm_id: str) -> dict[str, str]:
        with self._lock:
            if vm_id not in self._keys:
                self._keys[vm_id] = generate_host_keys()
            return self._keys[vm_id]

    def power_on(self, vm: VmView, publish: Publish) -> None:
        keys = self.host_keys(vm.id)
        timer = threading.Timer(self._boot_seconds(), publish, ("hostkeys", keys))
        timer.daemon = True
        timer.start()

    def destroy(self, vm: VmView) -> None:
        with self._lock:
            self._keys.pop(vm.id, None)

