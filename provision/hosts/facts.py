"""What a host looks like, in one round trip: each fact is a shell command plus a pure parser.

`script(user)` joins every fact's command into one script; its output comes back in sections
(`@@ name`), and `parse(output)` turns them into one `Facts` record. The parsers never run a
command, so they are tested on recorded outputs of real hosts (tests/unit/recorded/).

The script runs as root, save one section: builds in flight, counted as the farm user (see
`_as_user`).
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..buildx import slots
from ..platforms import ARCHES
from . import idle_stop

MARK = "@@ "

# Packages whose installed version configure needs to know (dpkg-query skips unknown names).
PACKAGES = ("docker.io", "docker-cli", "docker-ce", "docker-ce-cli", "containerd.io",
            "docker-buildx-plugin", "qemu-user-static", "binfmt-support")
# Packages whose apt candidate configure needs to know before installing: docker.io's version
# decides the containerd image store, and docker-cli exists only where docker.io lacks the CLI
# (Debian 13 on).
CANDIDATES = ("docker.io", "docker-cli")
# What `docker info` lists in DriverStatus when the engine runs the containerd image store.
CONTAINERD_SNAPSHOTTER = ["driver-type", "io.containerd.snapshotter.v1"]
# The binfmt_misc handlers configure may need (QEMU for the platforms archfarm knows).
HANDLERS = " ".join(f"/proc/sys/fs/binfmt_misc/qemu-{a.uname}" for a in ARCHES)
DAEMON_JSON = "/etc/docker/daemon.json"
DOCKER_KEYRING = "/etc/apt/keyrings/docker.asc"
DOCKER_SOURCE = "/etc/apt/sources.list.d/docker.list"


@dataclass(frozen=True)
class Binfmt:
    """One binfmt_misc handler as the kernel has it registered."""

    enabled: bool
    interpreter: str
    flags: str


@dataclass(frozen=True)
class Facts:
    os_id: str = ""                    # debian, ubuntu
    os_like: tuple[str, ...] = ()
    version_id: str = ""               # 12, 22.04
    codename: str = ""                 # bookworm, jammy, noble
    dpkg_arch: str = ""                # amd64, arm64
    machine: str = ""                  # x86_64, aarch64
    packages: dict[str, str] = field(default_factory=dict)   # installed name -> version
    candidates: dict[str, str] = field(default_factory=dict)  # name -> apt's candidate
    docker_cli: bool = False           # a `docker` command on root's PATH
    docker_active: bool = False
    docker_enabled: bool = False
    docker_version: str | None = None  # the engine's, when it answers
    docker_arch: str | None = None     # the engine's GOARCH: amd64, arm64
    containerd_store: bool | None = None  # the engine's image store is containerd's
    groups: frozenset[str] = frozenset()
    binfmt_mounted: bool = False
    binfmt: dict[str, Binfmt] = field(default_factory=dict)  # qemu-aarch64 -> handler
    daemon_json_sha256: str | None = None
    docker_keyring: bool = False
    docker_source_sha256: str | None = None
    booting: bool = False              # systemd or cloud-init still starting up
    builds_in_flight: int = 0          # build slots held on the node (buildx/slots.py)
    idle_stop: idle_stop.Installed = idle_stop.Installed()  # its timer, as installed

    @property
    def debian_like(self) -> bool:
        return self.os_id in ("debian", "ubuntu") or "debian" in self.os_like


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- parsers: recorded output in, plain values out -----------------------------------------------

def parse_os_release(text: str) -> dict[str, str]:
    """/etc/os-release: KEY=value lines, values optionally quoted (shell syntax)."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            try:
                words = shlex.split(value)
            except ValueError:
                words = [value]
            out[key] = words[0] if words else ""
    return out


def parse_packages(text: str) -> dict[str, str]:
    """`dpkg-query -W -f='${Package} ${Version} ${db:Status-Status}\\n'`: installed ones only."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == "installed":
            out[parts[0]] = parts[1]
    return out


def _json_lines(text: str, opening: str) -> Iterator[Any]:
    """The JSON values of the lines opening with `opening` (`{`, `[`): the docker CLI may
    print a warning first, and a timeout may cut its JSON short."""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(opening):
            try:
                yield json.loads(line)
            except ValueError:
                continue


def parse_docker_version(text: str) -> tuple[str | None, str | None]:
    """`docker version --format '{{json .Server}}'`: (version, arch), or Nones if no engine."""
    for server in _json_lines(text, "{"):
        if isinstance(server, dict) and server.get("Version"):
            return str(server["Version"]), server.get("Arch") or None
    return None, None


def parse_containerd_store(text: str) -> bool | None:
    """`docker info --format '{{json .DriverStatus}}'`: whether the engine runs the containerd
    image store, or None when no engine answered (nothing, or no JSON list)."""
    for status in _json_lines(text, "["):
        if isinstance(status, list):
            return CONTAINERD_SNAPSHOTTER in status
    return None


def parse_apt_candidates(text: str) -> dict[str, str]:
    """`LC_ALL=C apt-cache policy NAME...`: name -> candidate version, for the names apt has a
    candidate for (a name it does not know prints nothing; empty lists print `(none)`)."""
    out, name = {}, ""
    for line in text.splitlines():
        if line and not line[0].isspace() and line.endswith(":"):
            name = line[:-1]
        key, _, value = line.strip().partition(": ")
        if name and key == "Candidate" and value and value != "(none)":
            out[name] = value.strip()
    return out


def parse_release(version: str) -> tuple[int, int] | None:
    """(major, minor) of a Docker version as the engine or dpkg spells it: `26.1.5+dfsg1`,
    `20.10.24+dfsg1-1+deb12u1+b6`, `27.5.1-0ubuntu3~24.04.2`, or docker-ce's epoch form
    `5:28.0.1-1~debian.12~bookworm`; None for anything else."""
    match = re.match(r"(?:[0-9]+:)?([0-9]+)\.([0-9]+)", version.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None


def parse_binfmt(text: str) -> dict[str, Binfmt]:
    """`== /proc/sys/fs/binfmt_misc/NAME` headers, each followed by that handler's file."""
    out: dict[str, Binfmt] = {}
    name, lines = "", list[str]()

    def close() -> None:
        if name:
            fields = dict(line.split(" ", 1) for line in lines[1:] if " " in line)
            out[name] = Binfmt(enabled=bool(lines) and lines[0] == "enabled",
                               interpreter=fields.get("interpreter", ""),
                               flags=fields.get("flags:", "").strip())

    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("== "):
            close()
            name, lines = line[3:].rsplit("/", 1)[-1], []
        elif line:
            lines.append(line)
    close()
    return out


def parse_sha256(text: str) -> str | None:
    """`sha256sum FILE`: the hex digest, or None when the file is missing."""
    match = re.match(r"^([0-9a-f]{64})\s", text.strip() + " ")
    return match.group(1) if match else None


def _first(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else ""


# -- the commands, one section each ----------------------------------------------------------------

def _as_user(quoted_user: str, command: str) -> str:
    """`command` run as the farm user when the script runs as root (as it does, under sudo),
    else as whoever runs it. The build slots are the farm user's files in a sticky directory.
    A count's `flock` that loses the race with a slot's removal makes the file again (it opens
    with O_CREAT): as root, a file the farm user could never remove. runuser (util-linux,
    essential on Debian and Ubuntu) also sets the user's own groups, where setpriv keeps
    root's group unless told."""
    inner = shlex.quote(command)
    return (f'if [ "$(id -u)" = 0 ]; then runuser -u {quoted_user} -- sh -c {inner};'
            f" else sh -c {inner}; fi")


def _sections(user: str, slots_dir: str = slots.DIR) -> list[tuple[str, str]]:
    quoted_user = shlex.quote(user)
    return [
        ("os-release", "cat /etc/os-release"),
        ("dpkg-arch", "dpkg --print-architecture"),
        ("machine", "uname -m"),
        ("packages", "dpkg-query -W -f='${Package} ${Version} ${db:Status-Status}\\n' "
                     + " ".join(PACKAGES)),
        ("docker-cli", "command -v docker"),
        # Only before docker.io is installed (what its install would give): apt-cache loads
        # every package list, the slowest section on a converged host.
        ("apt-candidates", "dpkg-query -W -f='${db:Status-Status}' docker.io 2>/dev/null |"
                           " grep -qx installed || LC_ALL=C apt-cache policy "
                           + " ".join(CANDIDATES)),
        ("docker-active", "systemctl is-active docker"),
        ("docker-enabled", "systemctl is-enabled docker"),
        # Only when the service runs: a CLI without an engine would wait for the socket.
        ("docker-version", "systemctl -q is-active docker && "
                           "timeout 10 docker version --format '{{json .Server}}'"),
        ("docker-store", "systemctl -q is-active docker && "
                         "timeout 10 docker info --format '{{json .DriverStatus}}'"),
        ("groups", f"id -nG {quoted_user}"),
        ("binfmt-mounted", "test -e /proc/sys/fs/binfmt_misc/status && echo yes"),
        ("binfmt", f"for f in {HANDLERS}; do [ -e \"$f\" ] || continue;"
                   " echo \"== $f\"; cat \"$f\"; done"),
        ("daemon-json", f"sha256sum {DAEMON_JSON}"),
        ("docker-keyring", f"test -s {DOCKER_KEYRING} && echo yes"),
        ("docker-source", f"sha256sum {DOCKER_SOURCE}"),
        ("booting", "systemctl is-system-running; "
                    "command -v cloud-init >/dev/null && cloud-init status"),
        # No lock directory (no build yet since boot) counts 0.
        ("builds", _as_user(quoted_user, slots.count_script(slots_dir))),
        ("idle-stop", idle_stop.SECTION),
    ]


def script(user: str, slots_dir: str = slots.DIR) -> str:
    """One shell script printing every fact in its own section; meant to run under sudo.
    `slots_dir` is where builds hold their slots (another one only in tests)."""
    # Each marker on a line of its own, even after output without a final newline.
    return "; ".join(f"printf '\\n{MARK}{name}\\n'; {{ {command}; }} 2>/dev/null"
                     for name, command in _sections(user, slots_dir)) + "; true"


def split(output: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        if line.startswith(MARK):
            current = sections.setdefault(line[len(MARK):].strip(), [])
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines) for name, lines in sections.items()}


def _booting(text: str) -> bool:
    state = _first(text)
    return state in ("initializing", "starting") or "status: running" in text


def parse(output: str) -> Facts:
    """The facts script's whole output -> Facts. A missing section reads as "absent"."""
    s = split(output)
    get: Callable[[str], str] = lambda name: s.get(name, "")  # noqa: E731
    os_release = parse_os_release(get("os-release"))
    version, arch = parse_docker_version(get("docker-version"))
    return Facts(
        os_id=os_release.get("ID", ""),
        os_like=tuple(os_release.get("ID_LIKE", "").split()),
        version_id=os_release.get("VERSION_ID", ""),
        codename=(os_release.get("VERSION_CODENAME") or os_release.get("UBUNTU_CODENAME", "")),
        dpkg_arch=_first(get("dpkg-arch")),
        machine=_first(get("machine")),
        packages=parse_packages(get("packages")),
        candidates=parse_apt_candidates(get("apt-candidates")),
        docker_cli=bool(_first(get("docker-cli"))),
        docker_active=_first(get("docker-active")) == "active",
        docker_enabled=_first(get("docker-enabled")) == "enabled",
        docker_version=version,
        docker_arch=arch,
        containerd_store=parse_containerd_store(get("docker-store")),
        groups=frozenset(_first(get("groups")).split()),
        binfmt_mounted=_first(get("binfmt-mounted")) == "yes",
        binfmt=parse_binfmt(get("binfmt")),
        daemon_json_sha256=parse_sha256(get("daemon-json")),
        docker_keyring=_first(get("docker-keyring")) == "yes",
        docker_source_sha256=parse_sha256(get("docker-source")),
        booting=_booting(get("booting")),
        builds_in_flight=slots.parse_count(get("builds")),
        idle_stop=idle_stop.parse(get("idle-stop")),
    )
