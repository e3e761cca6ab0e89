"""What configure does to a host, as pure functions: facts and the desired state in, the
commands still needed out (none when the host already converged).

Check mode and the real run share this one path: `plan` lists the changes, `--check` shows
them, the real run executes them, and `verify` judges the facts gathered afterwards.
Commands run as root through `connect.sudo`, one change per round trip.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, replace

from ..platforms import BY_PLATFORM
from .facts import DAEMON_JSON, DOCKER_KEYRING, DOCKER_SOURCE, Facts, sha256

STEPS = ("daemon.json", "docker engine", "docker service", "qemu/binfmt", "docker group")


# binfmt_misc registrations with the F flag (the interpreter is opened at registration, so it
# works inside build containers without QEMU in them), used only when the distribution's own
# handler lacks F. Magic and mask are QEMU's own (scripts/qemu-binfmt-conf.sh).
BINFMT = {
    "aarch64": (r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00",
                r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff"
                r"\xff\xff"),
    "x86_64": (r"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00",
               r"\xff\xff\xff\xff\xff\xfe\xfe\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff"
               r"\xff\xff"),
}

DOCKER_CE = ("docker-ce", "docker-ce-cli", "containerd.io", "docker-buildx-plugin")
QEMU = ("qemu-user-static", "binfmt-support")

# The dpkg/apt locks; `apt-get update` does not wait for the lists lock (apt 2.6), and
# unattended-upgrades or the guest agent may hold them at first boot.
LOCKS = ("/var/lib/dpkg/lock", "/var/lib/dpkg/lock-frontend", "/var/lib/apt/lists/lock",
         "/var/cache/apt/archives/lock")
WAIT_LOCKS = ("n=0; while lslocks -n -r -o PATH 2>/dev/null | grep -qxF -e "
              + " -e ".join(LOCKS) + "; do n=$((n+1)); [ $n -gt 600 ] && "
              "{ echo 'apt/dpkg locks still held after 600 s' >&2; exit 1; }; sleep 1; done")
APT = "apt-get -q -o DPkg::Lock::Timeout=600"
# Each a braced group, so that `A && B` chains stop when an apt command fails.
APT_UPDATE = f"{{ {WAIT_LOCKS}; {APT} update || {{ sleep 5; {WAIT_LOCKS}; {APT} update; }}; }}"


def apt_install(packages: tuple[str, ...]) -> str:
    # `dpkg --configure -a` first: an install cut off earlier (a lost connection, Ctrl-C)
    # leaves dpkg half-done, and every later apt-get would refuse until it is finished.
    return (f"{{ {WAIT_LOCKS}; dpkg --configure -a; {APT} install -y --no-install-recommends "
            f"-o Dpkg::Options::=--force-confold {' '.join(packages)}; }}")


@dataclass(frozen=True)
class Desired:
    """What the inventory asks of one node."""

    user: str
    package: str                    # docker-ce | docker.io
    platform: str                   # the node's declared platform
    farm_platforms: tuple[str, ...]
    daemon_json: str                # the exact file content
    emulated: bool = False          # the lab says this node stands in for another arch



def qemu_cpus(f: Facts, d: Desired) -> tuple[str, ...]:
    """CPUs to emulate: the farm's platforms that this host does not run natively (its dpkg
    architecture says what it runs, whatever the node was declared as)."""
    return tuple(sorted(BY_PLATFORM[p].uname for p in set(d.farm_platforms)
                        if p in BY_PLATFORM and BY_PLATFORM[p].dpkg != f.dpkg_arch))


def render_daemon_json(registry_mirrors: list[str], insecure_registries: list[str],
                       log_max_size: str = "10m", log_max_file: int = 3) -> str:
    """/etc/docker/daemon.json: log rotation always, mirrors and insecure registries if set."""
    config: dict = {"log-driver": "json-file",
                    "log-opts": {"max-size": log_max_size, "max-file": str(log_max_file)}}
    if registry_mirrors:
        config["registry-mirrors"] = registry_mirrors
    if insecure_registries:
        config["insecure-registries"] = insecure_registries
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True)
class Change:
    step: str
    detail: str
    script: str  # one shell script, run as root


def _daemon_json(f: Facts, d: Desired) -> Change | None:
    if f.daemon_json_sha256 == sha256(d.daemon_json):
        return None
    write = (f"install -d -m 0755 /etc/docker && printf %s {shlex.quote(d.daemon_json)}"
             f" > {DAEMON_JSON}.archfarm && mv {DAEMON_JSON}.archfarm {DAEMON_JSON}")
    if f.docker_active:  # only a running engine needs the restart; a new one reads the file
        return Change("daemon.json", f"update {DAEMON_JSON}, restart docker",
                      f"{write} && systemctl restart docker")
    return Change("daemon.json", f"write {DAEMON_JSON}", write)


def docker_ce_source(f: Facts) -> str:
    """Docker's apt source line for this host (its dpkg architecture and codename)."""
    distro = "ubuntu" if f.os_id == "ubuntu" else "debian"
    return (f"deb [arch={f.dpkg_arch} signed-by={DOCKER_KEYRING}]"
            f" https://download.docker.com/linux/{distro} {f.codename} stable\n")


def _docker_engine(f: Facts, d: Desired) -> Change | None:
    if d.package == "docker.io":
        if "docker.io" in f.packages:
            return None
        return Change("docker engine", "install docker.io (the distribution's)",
                      f"{APT_UPDATE} && {apt_install(('docker.io',))}")
    missing = tuple(p for p in DOCKER_CE if p not in f.packages)
    source = docker_ce_source(f)
    repo = []
    if not f.docker_keyring or f.docker_source_sha256 != sha256(source):
        distro = "ubuntu" if f.os_id == "ubuntu" else "debian"
        repo = [f"{APT_UPDATE}", apt_install(("ca-certificates", "curl")),
                "install -m 0755 -d /etc/apt/keyrings",
                f"curl -fsSL https://download.docker.com/linux/{distro}/gpg -o {DOCKER_KEYRING}",
                f"chmod a+r {DOCKER_KEYRING}",
                f"printf %s {shlex.quote(source)} > {DOCKER_SOURCE}"]
    if not missing and not repo:
        return None
    replaces = " (replacing docker.io)" if "docker.io" in f.packages else ""
    detail = (f"install {', '.join(missing or DOCKER_CE)} from Docker's apt repository"
              f" ({f.os_id} {f.codename} {f.dpkg_arch}){replaces}")
    return Change("docker engine", detail,
                  " && ".join([*repo, APT_UPDATE, apt_install(missing or DOCKER_CE)]))


def _docker_service(f: Facts, d: Desired) -> Change | None:
    if f.docker_active and f.docker_enabled:
        return None
    return Change("docker service", "enable and start docker",
                  "systemctl enable docker && systemctl start docker")


def _qemu(f: Facts, d: Desired) -> Change | None:
    cpus = qemu_cpus(f, d)
    if not cpus:
        return None
    missing = tuple(p for p in QEMU if p not in f.packages)
    unfixed = [cpu for cpu in cpus if not _has_fix_binary(f, cpu)]
    if not missing and not unfixed:
        return None
    script = ["mountpoint -q /proc/sys/fs/binfmt_misc"
              " || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc"]
    if missing:
        script = [APT_UPDATE, apt_install(QEMU), *script]
    for cpu in unfixed:
        script.append(_register_fixed(cpu))
    what = ", ".join(cpus)
    detail = (f"install {' and '.join(missing)}, " if missing else "") + f"binfmt {what} (F)"
    return Change("qemu/binfmt", detail, " && ".join(script))


def _has_fix_binary(f: Facts, cpu: str) -> bool:
    handler = f.binfmt.get(f"qemu-{cpu}")
    return bool(handler and handler.enabled and "F" in handler.flags)


def _register_fixed(cpu: str) -> str:
    """Register `qemu-CPU` with the F flag (replacing a registration without it), and keep it
    across reboots with a systemd-binfmt file. Skipped when the distribution's own package
    registered it with F already (re-checked on the host, after the package install)."""
    magic, mask = BINFMT[cpu]
    entry = f":qemu-{cpu}:M::{magic}:{mask}:/usr/bin/qemu-{cpu}-static:F"
    handler = f"/proc/sys/fs/binfmt_misc/qemu-{cpu}"
    return (f"{{ grep -qsx enabled {handler} && grep -qs '^flags: .*F' {handler} || {{"
            f" [ ! -e {handler} ] || echo -1 > {handler};"
            f" printf '%s\\n' {shlex.quote(entry)} > /etc/binfmt.d/archfarm-qemu-{cpu}.conf;"
            f" printf '%s' {shlex.quote(entry)} > /proc/sys/fs/binfmt_misc/register; }}; }}")


def _docker_group(f: Facts, d: Desired) -> Change | None:
    if "docker" in f.groups:
        return None
    return Change("docker group", f"add {d.user} to the docker group",
                  f"usermod -aG docker {shlex.quote(d.user)}")


PLANNERS = (_daemon_json, _docker_engine, _docker_service, _qemu, _docker_group)


def plan(f: Facts, d: Desired) -> list[Change]:
    """The changes this host still needs, in order; [] when it has converged. The package
    lists are refreshed once per run: by the first change that installs anything."""
    changes, updated = [], False
    for planner in PLANNERS:
        change = planner(f, d)
        if change is None:
            continue
        if updated:
            change = replace(change, script=change.script.replace(f"{APT_UPDATE} && ", ""))
        updated = updated or APT_UPDATE in change.script
        changes.append(change)
    return changes


def unsupported(f: Facts) -> str | None:
    """Why configure cannot manage this host at all, or None."""
    if not f.debian_like:
        name = f"{f.os_id} {f.version_id}".strip() or "an unknown OS (no /etc/os-release)"
        return (f"{name} is not supported: configure"
                " manages Debian and Ubuntu hosts (apt, dpkg, systemd)")
    return None


def verify(f: Facts, d: Desired) -> str | None:
    """The host's problem after configure, or None: docker answers, its architecture is the
    declared platform's (unless the lab says the node is emulated), nothing left to change."""
    left = plan(f, d)
    if left:
        return "did not converge: still to do: " + "; ".join(c.detail for c in left)
    if not f.docker_active or not f.docker_version:
        return "docker is installed but the engine does not answer (see `journalctl -u docker`)"
    wanted = BY_PLATFORM[d.platform].dpkg if d.platform in BY_PLATFORM else ""
    if f.docker_arch != wanted and not d.emulated:
        return (f"the engine runs {f.docker_arch} but the node is declared {d.platform}:"
                f" check the node's machine_type and image")
    return None


def emulated(f: Facts, d: Desired) -> bool:
    """The engine's architecture is not the node's platform (only ever true in the lab)."""
    wanted = BY_PLATFORM[d.platform].dpkg if d.platform in BY_PLATFORM else ""
    return f.docker_arch is not None and f.docker_arch != wanted
