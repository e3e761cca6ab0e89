"""The processes the lab starts, each a `Service` record in `SERVICES`, in start order.

`inv lab.up` starts them in order, `inv lab.down` stops them in reverse order, `inv lab.status`
lists them; none of those knows a service by name. A service the lab started is known by its
pid file (pid and kernel start time, so a reused pid is never taken for it); it is the only
kind of process `lab.down` stops. Logs and pid files live in the state directory.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from . import image
from .containers import docker_ready, ensure_lab_network, remove_lab_network, remove_lab_vms

Say = Callable[[str], None]

FAKE_ADDRESS = ("127.0.0.1", 8089)
REGISTRY = ("127.0.0.1", 5000)
CONTAINERD_SOCKET = Path("/run/containerd/containerd.sock")
OPERATION_SECONDS = 1.0  # a lab VM is a container: no reason to make users wait


def state_dir() -> Path:
    """Where the lab keeps pid files, logs, the registry's storage and socket (root-only)."""
    path = Path(os.environ.get("ARCHFARM_LAB_STATE", "~/.cache/archfarm-lab")).expanduser()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def registry_socket() -> Path:
    """The registry as a unix socket, bind-mounted into every VM (owner root, mode 0600)."""
    return state_dir() / "registry.sock"


def tcp_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def unix_open(path: Path) -> bool:
    """Something accepts connections on the unix socket at `path` (a stale file does not)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(0.2)
        return s.connect_ex(str(path)) == 0


def _cmdline(pid: int) -> list[str]:
    """A process's command line ([] when it cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return raw.decode(errors="replace").split("\0")[:-1]


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot; None if it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _nothing(say: Say) -> None:
    pass


@dataclass(frozen=True)
class Service:
    """A background process the lab owns.

    command: its argv. ready: it serves (polled after start). provided: something the lab
    did not start already provides it, so the lab uses that and starts nothing. address: a
    TCP address it must own; taken by another process, `lab.up` refuses. prepare: run before
    starting it. cleanup: run by `lab.down` after stopping it (whether it ran or not).
    """

    name: str
    command: Callable[[], list[str]]
    ready: Callable[[], bool]
    provided: Callable[[], bool] = lambda: False
    address: tuple[str, int] | None = None
    prepare: Callable[[Say], None] = _nothing
    cleanup: Callable[[Say], None] = _nothing
    timeout: float = 30.0

    @property
    def pid_file(self) -> Path:
        return state_dir() / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return state_dir() / f"{self.name}.log"

    def _recorded(self) -> tuple[int, str] | None:
        try:
            pid, started = self.pid_file.read_text().split()
            return int(pid), started
        except (OSError, ValueError):
            return None

    def pid(self) -> int | None:
        """The recorded pid if that very process still runs, else None."""
        recorded = self._recorded()
        return recorded[0] if recorded and _start_time(recorded[0]) == recorded[1] else None

    def ensure(self, say: Say) -> int | None:
        """Start it unless it runs or is provided; its pid (None when provided)."""
        pid = self.pid()
        if pid is not None:
            stale = _cmdline(pid) not in ([], self.command())
            say(f"{self.name}: running (pid {pid})" + (
                " with an older command line than this checkout's (its lab image's recipe,"
                " say, has changed since); `inv lab.down`, then `inv lab.up`, starts this"
                " one" if stale else ""))
            return pid
        if self.provided():
            say(f"{self.name}: provided by this host (not started by the lab)")
            return None
        if self.address and tcp_open(*self.address):
            host, port = self.address
            raise UserError(f"something else listens on {host}:{port}, which the lab's"
                            f" {self.name} needs. Fix: stop it (`inv lab.down` if it is an"
                            " old lab).")
        self.prepare(say)
        pid = self.start()
        say(f"{self.name}: started (pid {pid})")
        return pid

    def start(self) -> int:
        cmd = self.command()
        if self.log_file.exists():
            self.log_file.replace(self.log_file.with_suffix(".log.1"))  # keep the last run's
        with open(self.log_file, "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid_file.write_text(f"{proc.pid} {_start_time(proc.pid)}\n")
        deadline = time.monotonic() + self.timeout
        while not self.ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log_file.read_text(errors="replace").strip().splitlines()[-5:]
                raise UserError(f"{self.name} did not start ({' '.join(cmd[:3])} ...)."
                                f" Last log lines: {' | '.join(tail)}. Fix: see"
                                f" {self.log_file}.")
            time.sleep(0.1)
        return proc.pid

    def stop(self, grace: float = 20.0) -> bool:
        """SIGTERM (SIGKILL after `grace` seconds) the process it started; True if it ran."""
        pid = self.pid()
        if pid is not None:
            started = _start_time(pid)
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                if _gone(pid, started):
                    break
                os.kill(pid, sig)
                deadline = time.monotonic() + wait
                while not _gone(pid, started) and time.monotonic() < deadline:
                    time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return pid is not None


def _gone(pid: int, started: str | None) -> bool:
    """True once that process (pid and start time) has exited, reaping it if it is our child."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:
        pass
    return _start_time(pid) != started


def _log_says(name: str, text: str) -> Callable[[], bool]:
    def check() -> bool:
        log = state_dir() / f"{name}.log"
        return log.exists() and text in log.read_text(errors="replace")
    return check


def _write_registry_config(say: Say) -> None:
    (state_dir() / "registry.yml").write_text(f"""version: 0.1
log: {{level: warn}}
storage:
  filesystem: {{rootdirectory: {state_dir() / 'registry'}}}
  delete: {{enabled: true}}
http:
  addr: {REGISTRY[0]}:{REGISTRY[1]}
""")


def _prepare_fake(say: Say) -> None:
    """What the fake's VMs need before it serves: their images and their network."""
    image.ensure(say, state_dir() / "image-build.log")
    ensure_lab_network(say)


def _remove_vms(say: Say) -> None:
    remove_lab_vms(say)
    remove_lab_network(say)  # once no VM is attached to it


def _fake_command() -> list[str]:
    return [sys.executable, "-m", "provision.lab.gce", "--port", str(FAKE_ADDRESS[1]),
            "--host", FAKE_ADDRESS[0], "--lab-image", image.image_tag(),
            "--registry-socket", str(registry_socket()),
            "--operation-seconds", str(OPERATION_SECONDS)]


SERVICES: list[Service] = [
    # The docker engine, only when none runs; a unix socket only, never TCP.
    Service("containerd", lambda: ["containerd"],
            ready=lambda: unix_open(CONTAINERD_SOCKET),
            provided=lambda: unix_open(CONTAINERD_SOCKET) or docker_ready()),
    Service("dockerd", lambda: ["dockerd", "--host", "unix:///var/run/docker.sock",
                                "--containerd", str(CONTAINERD_SOCKET)],
            ready=docker_ready, provided=docker_ready, timeout=60),
    Service("registry", lambda: ["docker-registry", "serve", str(state_dir() / "registry.yml")],
            ready=lambda: tcp_open(*REGISTRY), address=REGISTRY,
            prepare=_write_registry_config),
    # The registry for the VMs: root-only from the moment it exists (umask, then mode).
    Service("registry-socket",
            lambda: ["socat", f"UNIX-LISTEN:{registry_socket()},fork,unlink-early,"
                              "umask=0177,mode=0600",
                     f"TCP:{REGISTRY[0]}:{REGISTRY[1]}"],
            ready=lambda: unix_open(registry_socket()),
            cleanup=lambda say: registry_socket().unlink(missing_ok=True)),
    # The fake Compute Engine with the docker boot backend; its VMs go when it goes.
    Service("fake-gce", _fake_command,
            ready=_log_says("fake-gce", "listening on http://{}:{}".format(*FAKE_ADDRESS)),
            address=FAKE_ADDRESS, prepare=_prepare_fake, cleanup=_remove_vms),
]
