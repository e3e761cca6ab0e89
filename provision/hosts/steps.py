"""What configure does to a host, as pure functions: facts and the desired state in, the
commands still needed out (none when the host already converged).

Check mode and the real run share this one path: `plan` lists the changes, `--check` shows
them, the real run executes them, and `verify` judges the facts gathered afterwards.
Commands run as root through `connect.sudo`, one change per round trip.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import NamedTuple

from ..platforms import BY_PLATFORM
from . import idle_stop
from .facts import DAEMON_JSON, DOCKER_KEYRING, DOCKER_SOURCE, Facts, parse_release, sha256

STEPS = ("daemon.json", "docker engine", "docker service", "qemu/binfmt", "docker group",
         "idle stop")


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
# Docker 24 is the first engine with the containerd image store (a daemon.json feature).
CONTAINERD_STORE_SINCE = (24, 0)
# Docker 29 runs the containerd image store by default on a fresh install.
CONTAINERD_STORE_DEFAULT_SINCE = (29, 0)
# apt installs the newest engine of Docker's repository, and that has been 24 or later since
# mid-2023.
DOCKER_CE_AT_LEAST = (24, 0)
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
    daemon_json: str                # the file's content, without the containerd image store
    emulated: bool = False          # the lab says this node stands in for another arch
    containerd_store: bool = False  # the inventory's docker.containerd_store
    idle_stop_minutes: float | None = None  # None: no idle stop on the node


def qemu_cpus(f: Facts, d: Desired) -> tuple[str, ...]:
    """CPUs to emulate: the farm's platforms that this host does not run natively (its dpkg
    architecture says what it runs, whatever the node was declared as)."""
    return tuple(sorted(BY_PLATFORM[p].uname for p in set(d.farm_platforms)
                        if p in BY_PLATFORM and BY_PLATFORM[p].dpkg != f.dpkg_arch))


def render_daemon_json(registry_mirrors: list[str], insecure_registries: list[str],
                       log_max_size: str = "10m", log_max_file: int = 3,
                       cache_max_gb: int | None = None) -> str:
    """/etc/docker/daemon.json: log rotation always, mirrors and insecure registries if set,
    and the build cache's ceiling (buildx.cache_max_gb) if set."""
    config: dict = {"log-driver": "json-file",
                    "log-opts": {"max-size": log_max_size, "max-file": str(log_max_file)}}
    if registry_mirrors:
        config["registry-mirrors"] = registry_mirrors
    if insecure_registries:
        config["insecure-registries"] = insecure_registries
    if cache_max_gb is not None:
        config["builder"] = builder_gc(cache_max_gb)
    return _json(config)


def builder_gc(max_gb: int) -> dict:
    """The engine's BuildKit (buildx's docker driver) collects build cache beyond `max_gb`.
    Engines up to Docker 27 read `defaultKeepStorage` as that ceiling; Docker 28 on read it
    as the space kept at least (reservedSpace) and `defaultMaxUsedSpace` as the ceiling
    (moby daemon/config/builder.go, builder-next/worker/gc.go). With both set to the same
    size, every engine keeps its cache under it; an older engine ignores the newer key (Go's
    JSON decoding of the `builder` section skips unknown keys). `enabled` is written: up to
    Docker 27 a `gc` section without it means no collection at all."""
    size = f"{max_gb}GB"
    return {"gc": {"enabled": True, "defaultKeepStorage": size, "defaultMaxUsedSpace": size}}


def _json(config: dict) -> str:
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def with_containerd_store(daemon_json: str, on: bool = True) -> str:
    """daemon.json with the containerd image store turned on, or explicitly off."""
    config = json.loads(daemon_json)
    config.setdefault("features", {})["containerd-snapshotter"] = on
    return _json(config)


# -- the containerd image store -------------------------------------------------------------------

def engine_release(f: Facts, d: Desired) -> tuple[int, int] | None:
    """The engine's (major, minor) as configure leaves it: the running engine's, else the
    installed package's, else the version its install will give; None when not known yet
    (a fresh VM's apt lists can be empty until the first `apt-get update`: configure plans
    once more after installing the engine)."""
    if d.package in f.packages:
        return parse_release(f.docker_version or "") or parse_release(f.packages[d.package])
    if d.package == "docker-ce":
        return DOCKER_CE_AT_LEAST
    return parse_release(f.candidates.get("docker.io", ""))


def writes_containerd_store(f: Facts, d: Desired) -> bool:
    """daemon.json turns the containerd image store on: asked for, and the engine has it."""
    release = engine_release(f, d)
    return d.containerd_store and release is not None and release >= CONTAINERD_STORE_SINCE


def engine_too_old_for_store(f: Facts, d: Desired) -> str | None:
    """The engine's "major.minor" when the store is asked for but the engine predates it."""
    release = engine_release(f, d)
    if d.containerd_store and release is not None and release < CONTAINERD_STORE_SINCE:
        return f"{release[0]}.{release[1]}"
    return None


class StoreOff(NamedTuple):
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.problem}. Fix: {self.fix}"


def containerd_store_off(engines: Mapping[str, str]) -> StoreOff:
    """Why the containerd image store is off on these nodes, and the fix; `engines` maps each
    node to its engine's "major.minor". The one text for configure's warning, doctor's line
    and whatever a build cannot do on such a node."""
    by_version: dict[str, list[str]] = {}
    for node, version in sorted(engines.items()):
        by_version.setdefault(version, []).append(node)
    who = " and ".join(f"docker {version} on node{'s' if len(nodes) > 1 else ''}"
                       f" {', '.join(nodes)}" for version, nodes in sorted(by_version.items()))
    return StoreOff(
        f"{who} {'has' if len(by_version) == 1 else 'have'} no containerd image store"
        " (Docker 24+ needed): attestations (--provenance, --sbom) and registry cache export"
        f" are off on {'it' if len(engines) == 1 else 'them'}",
        "use docker.package: docker-ce, or Debian 13 nodes (or set docker.containerd_store:"
        " false to do without it)")


def daemon_json(f: Facts, d: Desired) -> str:
    """The host's daemon.json: the inventory's settings, plus the containerd image store where
    the engine has it."""
    if writes_containerd_store(f, d):
        return with_containerd_store(d.daemon_json)
    release = engine_release(f, d)
    if release is not None and release >= CONTAINERD_STORE_DEFAULT_SINCE:
        return with_containerd_store(d.daemon_json, False)  # off has to be said there
    return d.daemon_json


def _store_now(f: Facts, d: Desired) -> bool | None:
    """Whether the host runs the containerd image store now: as its engine says, else as its
    daemon.json says when that is one of archfarm's two renderings of the inventory."""
    if f.containerd_store is not None:
        return f.containerd_store
    if f.daemon_json_sha256 == sha256(with_containerd_store(d.daemon_json)):
        return True
    if f.daemon_json_sha256 in (sha256(d.daemon_json),
                                sha256(with_containerd_store(d.daemon_json, False))):
        return False
    return None


@dataclass(frozen=True)
class Change:
    step: str
    detail: str
    script: str  # one shell script, run as root


def _daemon_json(f: Facts, d: Desired) -> Change | None:
    content = daemon_json(f, d)
    if f.daemon_json_sha256 == sha256(content):
        return None
    write = (f"install -d -m 0755 /etc/docker && printf %s {shlex.quote(content)}"
             f" > {DAEMON_JSON}.archfarm && mv {DAEMON_JSON}.archfarm {DAEMON_JSON}")
    # Only a running engine needs the restart; a new one reads the file.
    restart = " && systemctl restart docker" if f.docker_active else ""
    store, before = writes_containerd_store(f, d), _store_now(f, d)
    if before is not None and before != store:
        # Each store keeps its own images: a switch leaves the old ones behind, unused.
        detail = (f"turn {'on' if store else 'off'} the containerd image store"
                  f"{' (restart docker)' if restart else ''}; the node's local images stay in"
                  f" the {'old' if store else 'containerd'} store, on a build node they are"
                  " only cache")
    elif restart:
        detail = f"update {DAEMON_JSON}, restart docker"
    else:
        detail = f"write {DAEMON_JSON}{', containerd image store on' if store else ''}"
    return Change("daemon.json", detail, write + restart)


def docker_ce_source(f: Facts) -> str:
    """Docker's apt source line for this host (its dpkg architecture and codename)."""
    distro = "ubuntu" if f.os_id == "ubuntu" else "debian"
    return (f"deb [arch={f.dpkg_arch} signed-by={DOCKER_KEYRING}]"
            f" https://download.docker.com/linux/{distro} {f.codename} stable\n")


def _docker_engine(f: Facts, d: Desired) -> Change | None:
    if d.package == "docker.io":
        return _docker_io(f)
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


def _docker_io(f: Facts) -> Change | None:
    """The distribution's engine and its CLI. Debian 13 moved the CLI out of docker.io into
    docker-cli, which docker.io only Recommends (and installs here skip recommends)."""
    if "docker.io" not in f.packages:
        packages = ("docker.io", "docker-cli") if "docker-cli" in f.candidates else ("docker.io",)
        return Change("docker engine", f"install {' and '.join(packages)} (the distribution's)",
                      f"{APT_UPDATE} && {apt_install(packages)}")
    # An engine that answered was asked through the CLI (outputs recorded before the docker-cli
    # fact have only that to go on).
    if f.docker_cli or f.docker_version:
        return None
    return Change("docker engine", "install docker-cli (Debian 13 moved the docker CLI out of"
                  " docker.io)", f"{APT_UPDATE} && {apt_install(('docker-cli',))}")


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


def _idle_stop(f: Facts, d: Desired) -> Change | None:
    """The idle-stop timer (hosts/idle_stop.py) as the inventory sets it, or none at all."""
    found, minutes = f.idle_stop, d.idle_stop_minutes
    if minutes is None:
        if not found.present:
            return None
        return Change("idle stop", "remove the idle-stop timer", idle_stop.remove_script())
    wanted = sha256("".join(idle_stop.render(minutes).values()))
    if found.sha256 == wanted and found.timer_active:
        return None
    if not found.present:
        detail = f"install the idle-stop timer: power off after {minutes:g} min with no build"
    elif found.minutes != minutes:
        was = "?" if found.minutes is None else f"{found.minutes:g}"
        detail = f"idle stop after {minutes:g} min (was {was})"
    elif found.sha256 != wanted:
        detail = "update the idle-stop timer"
    else:
        detail = "start the idle-stop timer"
    return Change("idle stop", detail, idle_stop.install_script(minutes))


PLANNERS = (_daemon_json, _docker_engine, _docker_service, _qemu, _docker_group, _idle_stop)


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
    declared platform's (unless the lab says the node is emulated), it runs the containerd
    image store where daemon.json turns it on, nothing left to change (an idle-stop timer
    that is not active is a change left)."""
    left = plan(f, d)
    if left:
        return "did not converge: still to do: " + "; ".join(c.detail for c in left)
    if not f.docker_active or not f.docker_version:
        return "docker is installed but the engine does not answer (see `journalctl -u docker`)"
    wanted = BY_PLATFORM[d.platform].dpkg if d.platform in BY_PLATFORM else ""
    if f.docker_arch != wanted and not d.emulated:
        return (f"the engine runs {f.docker_arch} but the node is declared {d.platform}:"
                f" check the node's machine_type and image")
    if writes_containerd_store(f, d) and not f.containerd_store:
        return (f"docker {f.docker_version} does not run the containerd image store that"
                f" {DAEMON_JSON} turns on (`docker info` reports no driver-type"
                " io.containerd.snapshotter.v1): restart docker on the node (`sudo systemctl"
                " restart docker`) and run `inv configure` again; if it stays off, `journalctl"
                " -u docker` says why")
    return None


def emulated(f: Facts, d: Desired) -> bool:
    """The engine's architecture is not the node's platform (only ever true in the lab)."""
    wanted = BY_PLATFORM[d.platform].dpkg if d.platform in BY_PLATFORM else ""
    return f.docker_arch is not None and f.docker_arch != wanted
