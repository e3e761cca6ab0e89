"""The fake's `docker` boot backend: each RUNNING VM is a systemd container of a lab image.

The image follows the VM's boot disk: a Debian 12 image boots the lab's bookworm image, any
other its trixie (Debian 13) image (`image.suite_for`). Every VM is on the lab's network at
its networkIP (the VPC's subnet); a VM with a natIP (a 127.0.0.N address) has its sshd
published there, so archfarm reaches it as it would a cloud VM, and a VM without one (a
private node) only through another VM of the network (the farm's bastion). The
backend plays the GCE guest agent: accounts from `ssh-keys` metadata (passwordless sudo), and
the VM's own host keys published as guest attributes.

A guest that powers itself off (`systemctl poweroff`: systemd as PID 1 exits, so its container
stops) is seen by one `docker events` follower, which tells the fake: the VM goes TERMINATED
with no API call, as on Compute Engine.
"""

from __future__ import annotations

import contextlib
import json
import platform
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from ..fakegce.backends import BootBackend, Publish, VmView
from ..platforms import BY_UNAME
from .containers import LAB_LABEL, LAB_NETWORK, LAB_SUBNET
from .image import suite_for

HOST_ARCH = (BY_UNAME[platform.machine()].gce if platform.machine() in BY_UNAME
             else platform.machine())

# What a systemd container needs on a Debian 12 docker.io host (README, "The lab"):
# `--privileged` fails there (CAP_SYS_MODULE is not in the bounding set), and these suffice
# for systemd as PID 1, sshd and an inner dockerd.
SYSTEMD_FLAGS = [
    "--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--cap-add", "MKNOD",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--security-opt", "systempaths=unconfined", "--device-cgroup-rule", "a *:* rwm",
    "--tmpfs", "/run", "--tmpfs", "/run/lock", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--stop-signal", "SIGRTMIN+3",
]


def container_name(vm: VmView) -> str:
    return f"archfarm-lab-{vm.name}-{vm.id[-6:]}"



BINFMT = Path("/proc/sys/fs/binfmt_misc")


@contextlib.contextmanager
def keeping_qemu_handlers() -> Iterator[None]:
    """The lab's VMs share this machine's kernel, so its binfmt_misc handlers: a VM shutting
    down unregisters every one of them (seen on `docker stop` of a VM, with binfmt-support
    and systemd-binfmt stopped first), which would leave the other emulated arm64 nodes, and
    the host, without QEMU. The handlers registered before are registered again after, as
    `lab.up` did (a real VM's kernel is its own)."""
    before = {p.name for p in BINFMT.glob("qemu-*")}
    yield
    register_again(before)


def qemu_handlers() -> set[str]:
    return {p.name for p in BINFMT.glob("qemu-*")}


def register_again(handlers: set[str]) -> None:
    """Register again those of `handlers` a VM's shutdown unregistered."""
    for name in sorted(handlers - qemu_handlers()):
        subprocess.run(["update-binfmts", "--enable", name], capture_output=True, check=False)

class DockerBackend(BootBackend):
    name = "docker"
    # A container's published port is fixed when it is made: a lab VM keeps its address
    # across a stop (Compute Engine would give it a new one).
    keeps_nat_ip = True
    # networkIPs: the lab network's subnet, past its gateway (.1, the bridge's own address).
    internal_range = (str(LAB_SUBNET.network_address + 2), str(LAB_SUBNET.broadcast_address - 1))

    def __init__(self, images: dict[str, str], registry_socket: str | None = None,
                 docker: str = "docker"):
        self.images = images  # suite -> image (image.suite_tags)
        self.registry_socket = registry_socket
        self.docker = docker
        self._lock = threading.Lock()
        self._booting: dict[str, threading.Thread] = {}
        # Containers the fake itself is stopping or removing: their end is no guest power-off.
        self._leaving: set[str] = set()
        # The die events the fake's own take-downs still owe, by container name: `docker
        # events` delivers them asynchronously, possibly after the take-down returned (and
        # after the same container was started again), so each is counted off when it is read.
        self._expected: dict[str, int] = {}
        self._events: subprocess.Popen | None = None  # `docker events`, from the first boot
        self._follower: threading.Thread | None = None
        self._handlers: set[str] = set()  # the host's QEMU handlers, to keep

    def _run(self, *args: str, input: str | None = None, check: bool = True,
             timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([self.docker, *args], input=input, capture_output=True,
                              text=True, check=check, timeout=timeout)

    def _exists(self, name: str) -> bool:
        return self._run("container", "inspect", name, check=False).returncode == 0

    def _running(self, name: str) -> bool | None:
        """Whether the container is running now; None when docker cannot tell (no such
        container, or docker failed)."""
        try:
            state = self._run("container", "inspect", "--format", "{{.State.Running}}", name,
                              check=False, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        if state.returncode != 0:
            return None
        return state.stdout.strip() == "true"

    def power_on(self, vm: VmView, publish: Publish) -> None:
        self._follow_deaths()
        thread = threading.Thread(target=self._boot, args=(vm, publish), daemon=True,
                                  name=f"lab-boot-{vm.name}")
        with self._lock:
            self._booting[vm.id] = thread
        thread.start()

    def _boot(self, vm: VmView, publish: Publish) -> None:
        name = container_name(vm)
        try:
            if self._exists(name):
                self._run("start", name)
            else:
                self._run("run", *self._run_args(vm, name))
            agent = self._run("exec", "-i", name, "archfarm-guest-agent",
                              input=json.dumps(vm.metadata))
            # Before the host keys, which tell clients the VM is ready: whoever reads the
            # keys can rely on this being there already.
            emulated = vm.architecture != HOST_ARCH
            publish("archfarm-lab", {"container": name, "emulated": str(emulated).upper(),
                                     "host-architecture": HOST_ARCH})
            publish("hostkeys", json.loads(agent.stdout))
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, ValueError) as e:
            # A VM that fails to boot stays RUNNING without host keys, as a broken one would.
            detail = getattr(e, "stderr", "") or str(e)
            print(f"fakegce: lab VM {vm.name} did not boot: {detail.strip()}", file=sys.stderr,
                  flush=True)

    @staticmethod
    def volumes(name: str) -> dict[str, str]:
        """The VM's data directories, each a volume: overlayfs does not mount on overlayfs,
        so neither the classic store (/var/lib/docker) nor the containerd image store
        (/var/lib/containerd) can live on the container's own root file system."""
        return {"/var/lib/docker": name, "/var/lib/containerd": f"{name}-containerd"}

    def _run_args(self, vm: VmView, name: str) -> list[str]:
        args = ["-d", "--name", name, "--hostname", vm.name,
                "--label", LAB_LABEL, "--label", f"archfarm.lab.instance={vm.id}",
                "--label", f"archfarm.lab.vm={vm.project}/{vm.zone}/{vm.name}",
                *SYSTEMD_FLAGS,
                *(arg for target, volume in self.volumes(name).items()
                  for arg in ("--mount", f"type=volume,source={volume},target={target},"
                                         f"volume-label={LAB_LABEL}"))]
        if vm.network_ip:
            args += ["--network", LAB_NETWORK, "--ip", vm.network_ip]
        if vm.nat_ip:
            args += ["-p", f"{vm.nat_ip}:22:22"]
        if self.registry_socket:
            args += ["-v", f"{self.registry_socket}:/run/archfarm-registry.sock"]
        return [*args, self.image_for(vm)]

    def image_for(self, vm: VmView) -> str:
        """The lab image of the VM's boot disk's Debian release."""
        return self.images[suite_for(vm.image_project, vm.image_family)]

    def _settle(self, vm: VmView) -> None:
        """Let a boot still in progress finish before the VM is stopped or removed."""
        with self._lock:
            thread = self._booting.pop(vm.id, None)
        if thread:
            thread.join(timeout=120)

    @contextlib.contextmanager
    def _taking_down(self, vm: VmView) -> Iterator[str]:
        """The fake takes the VM's container down (stop, kill, remove): its death is expected,
        and the host's QEMU handlers are registered again after."""
        self._settle(vm)
        name = container_name(vm)
        with self._lock:
            self._leaving.add(name)
        # A running container's take-down owes one die event, which may be read after this
        # returns: counted here, counted off by the follower. One already stopped owes none
        # (`docker stop` or `rm -f` of it emits no die event).
        owed = self._running(name) is True
        if owed:
            with self._lock:
                self._expected[name] = self._expected.get(name, 0) + 1
        try:
            with keeping_qemu_handlers():
                yield name
        finally:
            # Still running: the take-down failed and no die event comes (a count left
            # behind would swallow the guest's next power-off).
            unowed = owed and self._running(name) is True
            with self._lock:
                self._leaving.discard(name)
                if unowed:
                    self._owed_one(name)

    def _owed_one(self, name: str) -> bool:
        """Count off one die event the fake's take-downs owe for `name`, if any (under the
        lock)."""
        count = self._expected.get(name, 0)
        if count <= 0:
            return False
        if count == 1:
            del self._expected[name]
        else:
            self._expected[name] = count - 1
        return True

    def power_off(self, vm: VmView) -> None:
        with self._taking_down(vm) as name:
            self._run("stop", "-t", "20", name, check=False)

    def lose_power(self, vm: VmView) -> None:
        with self._taking_down(vm) as name:
            self._run("kill", name, check=False)  # SIGKILL: no shutdown, as when power goes

    def guest_poweroff(self, vm: VmView) -> None:
        # The follower reports the halt once the container has stopped.
        self._run("exec", container_name(vm), "systemctl", "poweroff", check=False, timeout=60)

    def destroy(self, vm: VmView) -> None:
        with self._taking_down(vm) as name:
            self._run("rm", "-f", "-v", name, check=False)
        self._run("volume", "rm", "-f", *self.volumes(name).values(), check=False)

    def _follow_deaths(self) -> None:
        """Start following the lab containers' deaths, once (the engine is up by the first
        boot)."""
        with self._lock:
            if self._events is not None:
                return
            self._handlers = qemu_handlers()
            self._events = subprocess.Popen(
                [self.docker, "events", "--filter", f"label={LAB_LABEL}", "--filter",
                 "event=die", "--format", "{{json .Actor.Attributes}}"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self._follower = threading.Thread(target=self._deaths, args=(self._events,),
                                              daemon=True, name="lab-deaths")
            self._follower.start()

    def _deaths(self, events: subprocess.Popen) -> None:
        assert events.stdout is not None
        for line in events.stdout:
            try:
                attributes = json.loads(line)
                name, vm_id = attributes["name"], attributes["archfarm.lab.instance"]
            except (ValueError, KeyError, TypeError):
                continue
            with self._lock:
                expected = self._owed_one(name) or name in self._leaving
            if expected:
                continue
            if self._running(name):
                # A die event of an earlier run, read after the container was started again:
                # the VM is up, no power-off to report.
                continue
            # A guest power-off: its shutdown unregistered the host's QEMU handlers.
            register_again(self._handlers)
            self._handlers |= qemu_handlers()
            try:
                self.halted(vm_id)
            except Exception as e:  # noqa: BLE001 (the follower must outlive a bad event)
                print(f"fakegce: lab VM {name} halted: {e}", file=sys.stderr, flush=True)
        events.wait()
        with self._lock:  # the engine went away (or close): the next boot follows again
            if self._events is events:
                self._events = None

    def close(self) -> None:
        with self._lock:
            events, self._events = self._events, None
        if events is not None:
            events.terminate()
            events.wait(timeout=10)
        if self._follower is not None:
            self._follower.join(timeout=10)

    def metadata_changed(self, vm: VmView) -> None:
        self._settle(vm)
        self._run("exec", "-i", container_name(vm), "archfarm-guest-agent", "--accounts-only",
                  input=json.dumps(vm.metadata), check=False)
