"""What counts as this machine: the only place archfarm speaks plain http to (a fake Compute
Engine, a registry on loopback, as docker reads those as insecure registries)."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """`localhost`, or an address of 127.0.0.0/8 or ::1 (a bare host: no port, no brackets)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
