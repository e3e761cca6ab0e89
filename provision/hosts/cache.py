"""The hosts cache: each node's address and pinned host keys, per project and farm.

A no-op `configure` reads it instead of asking Compute Engine (and so never imports the
client library). It is only a cache: every entry came from the API (host keys from the VM's
`hostkeys/` guest attributes), and an entry that no longer matches the host is refreshed from
the API, never trusted over it. Losing it costs time, never correctness.

Next to it, the farm's own known_hosts file, rewritten from the cache on every save, for
plain `ssh -o StrictHostKeyChecking=yes -o UserKnownHostsFile=...` and for docker contexts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import names

# Preferred first: paramiko offers the first pinned type to the server.
KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa")


@dataclass(frozen=True)
class Host:
    node: str
    vm: str
    zone: str
    vm_id: str
    address: str  # the external address; a private node's internal one (networkIP)
    host_keys: dict[str, str] = field(default_factory=dict)  # type -> base64 blob
    emulated: bool = False  # docs/configure.md, "The lab: how an emulated node is recognised"
    # The bastion node a private node is reached through ("": reached directly). Only the
    # bastion's sshd ever connects to `address` then (docs/private-nodes.md).
    via: str = ""

    def ordered_keys(self) -> list[tuple[str, str]]:
        known = [(t, self.host_keys[t]) for t in KEY_TYPES if t in self.host_keys]
        return known + sorted((t, b) for t, b in self.host_keys.items() if t not in KEY_TYPES)


def fingerprint(blob: str) -> str:
    """SHA256 fingerprint of a public key blob, as `ssh-keygen -l` prints it."""
    digest = hashlib.sha256(base64.b64decode(blob)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def cache_dir(project: str, farm: str) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "archfarm" / project / farm


def known_hosts_path(project: str, farm: str) -> Path:
    return cache_dir(project, farm) / "known_hosts"


def load(project: str, farm: str) -> dict[str, Host]:
    """The cached hosts by node name; anything unreadable reads as an empty cache."""
    try:
        raw = json.loads((cache_dir(project, farm) / "hosts.json").read_text())
        return {name: Host(**entry) for name, entry in raw["nodes"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def save(project: str, farm: str, hosts: dict[str, Host]) -> None:
    """Write the cache and the farm's known_hosts, each atomically, both 0600 in a 0700 dir."""
    directory = cache_dir(project, farm)
    nodes = {name: asdict(host) for name, host in sorted(hosts.items())}
    write_private(directory / "hosts.json", json.dumps({"nodes": nodes}, indent=1, sort_keys=True))
    lines = [f"{names.alias(farm, host.node)},{host.address} {kind} {blob}"
             for _, host in sorted(hosts.items()) if host.address
             for kind, blob in host.ordered_keys()]
    write_private(directory / "known_hosts", "".join(line + "\n" for line in lines))


def forget(project: str, farm: str, nodes: set[str] | None = None) -> None:
    """Drop some nodes (VMs re-created, started or deleted), or the whole farm (None)."""
    hosts = load(project, farm)
    if not hosts:
        return
    save(project, farm, {} if nodes is None else
         {n: h for n, h in hosts.items() if n not in nodes})


def write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with a 0600 file (its directory made 0700 if missing); the
    temporary file is never opened through a symlink."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
