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


def named(spec: dict) -> str:
    """`os/arch[/variant]` of an OCI platform object: an index entry's `platform`, or an image
    config (which carries the same three keys); `?` for a part it lacks."""
    text = f"{spec.get('os', '?')}/{spec.get('architecture', '?')}"
    return f"{text}/{spec['variant']}" if spec.get("variant") else text


# What docker and containerd accept for an architecture, as the OCI name (containerd's
# platforms.Normalize): `platform: arm64` and `linux/aarch64` are linux/arm64.
ARCH_ALIASES = {"aarch64": "arm64", "x86_64": "amd64", "x86-64": "amd64", "i386": "386",
                "armhf": "arm", "armel": "arm"}


def normalized(platform: str) -> str:
    """`os/arch[/variant]` as docker reads a platform a user wrote: the OS defaults to linux,
    aliases become OCI names, and arm64's default variant (v8) goes."""
    parts = platform.strip().lower().split("/")
    if len(parts) == 1 or parts[0] not in ("linux", "windows", "darwin", "freebsd"):
        parts = ["linux", *parts]
    parts[1] = ARCH_ALIASES.get(parts[1], parts[1])
    if parts[1:] == ["arm64", "v8"]:
        parts = parts[:2]
    return "/".join(parts)


def is_arm64(platform: str) -> bool:
    return normalized(platform) == ARM64
