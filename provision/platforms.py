"""The platforms archfarm builds for, and what each is called by every party that names it:
docker/OCI, Debian (dpkg), the kernel (`uname -m`, QEMU's binfmt handler names) and Compute
Engine (the architecture of images and machine types). The one table; everything else asks it.
"""

from __future__ import annotations

from dataclasses import dataclass

ARM64 = "linux/arm64"
AMD64 = "linux/amd64"


@dataclass(frozen=True)
class Arch:
    platform: str  # docker/OCI: linux/arm64
    dpkg: str      # Debian's architecture: arm64
    uname: str     # the kernel's machine, and QEMU's CPU name: aarch64
    gce: str       # Compute Engine's architecture: ARM64


ARCHES = (Arch(AMD64, "amd64", "x86_64", "X86_64"), Arch(ARM64, "arm64", "aarch64", "ARM64"))
BY_PLATFORM = {a.platform: a for a in ARCHES}
BY_UNAME = {a.uname: a for a in ARCHES}
BY_GCE = {a.gce: a for a in ARCHES}


def of_platform(platform: str) -> Arch:
    return BY_PLATFORM[platform]
