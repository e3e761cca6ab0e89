"""`inv lab.up / lab.down / lab.status`: the fake Compute Engine with container VMs, locally.

Every process the lab starts is recorded in a pid file under the state directory and is the
only kind of process `lab.down` stops; every container and volume it makes carries the label
`archfarm.lab=1` and is the only kind `lab.down` removes.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .backend import LAB_LABEL

HERE = Path(__file__).resolve().parent
IMAGE_DIR = HERE / "image"
IMAGE_REPO = "archfarm-lab-vm"
FAKE_PORT = 8089
REGISTRY = ("127.0.0.1", 5000)
OPERATION_SECONDS = 1.0  # a lab VM is a container: no reason to make users wait


def state_dir() -> Path:
    path = Path(os.environ.get("ARCHFARM_LAB_STATE", "~/.cache/archfarm-lab")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def registry_socket() -> Path:
    return state_dir() / "registry.sock"


def image_tag() -> str:
    """The lab image's tag: a hash of its recipe, so a changed recipe means a new image."""
    digest = hashlib.sha256()
    for path in sorted(p for p in IMAGE_DIR.rglob("*") if p.is_file()):
        digest.update(path.relative_to(IMAGE_DIR).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return f"{IMAGE_REPO}:{digest.hexdigest()[:12]}"


def debian_mirror() -> str:
    """The Debian mirror this machine's apt already uses for bookworm."""
    texts = []
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
        try:
            texts.append(path.read_text())
        except OSError:
            continue
    for text in texts:
        for uris, suites in re.findall(r"URIs:\s*(\S+).*?\nSuites:\s*([^\n]+)", text, re.S):
            if "bookworm" in suites.split() and "security" not in uris:
                return uris.rstrip("/")
        m = re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", text, re.M)
        if m and "security" not in m.group(1):
            return m.group(1).rstrip("/")
    raise UserError("No Debian bookworm mirror found in /etc/apt/sources.list(.d). Fix: add"
                    " the bookworm 'main' suite of a Debian mirror to apt's sources.")


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def docker_ready() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@dataclass
class Service:
    """A background process the lab owns, known by its pid file."""

    name: str
    program: str  # what /proc/PID/cmdline starts with, to tell our process from a reused pid
    command: Callable[[], list[str]]
    ready: Callable[[], bool]
    timeout: float = 30.0

    @property
    def pid_file(self) -> Path:
        return state_dir() / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return state_dir() / f"{self.name}.log"

    def pid(self) -> int | None:
        """The recorded pid if that process still runs (and is still ours), else None."""
        try:
            pid = int(self.pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except (OSError, ValueError):
            return None
        return pid if os.path.basename(cmdline) == os.path.basename(self.program).encode() \
            else None

    def start(self) -> int:
        cmd = self.command()
        log = open(self.log_file, "ab")  # noqa: SIM115 (handed to the child)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid_file.write_text(str(proc.pid))
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
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                if _reap(pid):
                    break
                time.sleep(0.1)
            else:
                if Path(f"/proc/{pid}").exists():
                    os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return pid is not None


def _reap(pid: int) -> bool:
    """True once the process is gone (reaping it if it is our child)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:
        status = Path(f"/proc/{pid}/stat")
        try:
            return status.read_text().split(")")[1].split()[0] == "Z"
        except (OSError, IndexError):
            return True


def _fake_ready() -> bool:
    log = state_dir() / "fake-gce.log"
    return log.exists() and f"listening on http://127.0.0.1:{FAKE_PORT}" in log.read_text()


def _registry_config() -> Path:
    path = state_dir() / "registry.yml"
    path.write_text(f"""version: 0.1
log: {{level: warn}}
storage:
  filesystem: {{rootdirectory: {state_dir() / 'registry'}}}
  delete: {{enabled: true}}
http:
  addr: {REGISTRY[0]}:{REGISTRY[1]}
""")
    return path


SERVICES = {
    "containerd": Service("containerd", "containerd", lambda: ["containerd"],
                          lambda: Path("/run/containerd/containerd.sock").exists()),
    # A unix socket only: the lab never exposes a Docker daemon over TCP.
    "dockerd": Service("dockerd", "dockerd", lambda: ["dockerd", "--host", "unix:///var/run/docker.sock",
                                           "--containerd", "/run/containerd/containerd.sock"],
                       docker_ready, timeout=60),
    "registry": Service("registry", "docker-registry",
                        lambda: ["docker-registry", "serve", str(_registry_config())],
                        lambda: _port_open(*REGISTRY)),
    "registry-socket": Service(
        "registry-socket", "socat",
        lambda: ["socat", f"UNIX-LISTEN:{registry_socket()},fork,unlink-early,mode=666",
                 f"TCP:{REGISTRY[0]}:{REGISTRY[1]}"],
        lambda: registry_socket().exists()),
    "fake-gce": Service(
        "fake-gce", sys.executable,
        lambda: [sys.executable, "-m", "provision.fakegce", "--port", str(FAKE_PORT),
                 "--backend", "docker", "--lab-image", image_tag(),
                 "--registry-socket", str(registry_socket()),
                 "--operation-seconds", str(OPERATION_SECONDS)],
        _fake_ready),
}


def ensure_image(say: Callable[[str], None]) -> str:
    tag = image_tag()
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0:
        say(f"lab image {tag}: cached")
        return tag
    say(f"lab image {tag}: building from Debian packages (about a minute)")
    log = state_dir() / "image-build.log"
    with open(log, "w") as out:
        built = subprocess.run([str(IMAGE_DIR / "build.sh"), tag, debian_mirror()],
                               stdout=out, stderr=subprocess.STDOUT)
    if built.returncode != 0:
        raise UserError(f"building the lab image failed. Fix: see {log}.")
    # Older images of the recipe are only cache now.
    old = subprocess.run(["docker", "images", "-q", "--filter", f"reference={IMAGE_REPO}",
                          "--format", "{{.Repository}}:{{.Tag}}"],
                         capture_output=True, text=True).stdout.split()
    stale = [t for t in old if t != tag]
    if stale:
        subprocess.run(["docker", "rmi", *stale], capture_output=True)
    return tag


def host_setup(say: Callable[[str], None]) -> None:
    if os.geteuid() != 0:
        raise UserError("the lab installs Debian packages and starts dockerd, so it needs"
                        " root. Fix: run `inv lab.up` as root (or with sudo).")
    if not shutil.which("apt-get") or not Path("/etc/debian_version").exists():
        raise UserError("the lab needs a Debian-like host (Debian 12 is tested)."
                        " Fix: run it on Debian 12, or point the inventory at a real project.")
    result = subprocess.run([str(HERE / "host-setup.sh"), debian_mirror()],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"host setup failed: {result.stderr.strip()[-500:]}")
    for line in result.stdout.splitlines():
        if line.startswith("installing"):
            say(line)


def up(say: Callable[[str], None]) -> dict:
    started = time.monotonic()
    host_setup(say)
    if not docker_ready():
        for name in ("containerd", "dockerd"):
            svc = SERVICES[name]
            if name == "containerd" and Path("/run/containerd/containerd.sock").exists():
                continue
            say(f"{name}: started (pid {svc.start()})")
    else:
        say("docker engine: running")
    image = ensure_image(say)
    for name in ("registry", "registry-socket", "fake-gce"):
        svc = SERVICES[name]
        pid = svc.pid()
        if pid is None and name == "registry" and _port_open(*REGISTRY):
            raise UserError(f"something else listens on {REGISTRY[0]}:{REGISTRY[1]}. Fix:"
                            " stop it; the lab registry needs that address.")
        if pid is None and name == "fake-gce" and _port_open("127.0.0.1", FAKE_PORT):
            raise UserError(f"something else listens on 127.0.0.1:{FAKE_PORT}. Fix: stop it"
                            " (`inv lab.down` if it is an old lab).")
        if name == "fake-gce":
            (state_dir() / "fake-gce.log").unlink(missing_ok=True)  # readiness reads it
        say(f"{name}: running (pid {pid})" if pid else f"{name}: started (pid {svc.start()})")
    return {"compute_endpoint": f"http://127.0.0.1:{FAKE_PORT}",
            "registry": f"{REGISTRY[0]}:{REGISTRY[1]}", "image": image,
            "state_dir": str(state_dir()), "seconds": round(time.monotonic() - started, 1)}


def lab_containers(all_: bool = True) -> list[str]:
    if not shutil.which("docker") or not docker_ready():
        return []
    args = ["docker", "ps", "-q", "--filter", f"label={LAB_LABEL}"]
    return subprocess.run(args + (["-a"] if all_ else []), capture_output=True,
                          text=True).stdout.split()


def lab_volumes() -> list[str]:
    if not shutil.which("docker") or not docker_ready():
        return []
    return subprocess.run(["docker", "volume", "ls", "-q", "--filter", f"label={LAB_LABEL}"],
                          capture_output=True, text=True).stdout.split()


def down(say: Callable[[str], None]) -> None:
    if SERVICES["fake-gce"].stop():
        say("fake-gce: stopped")
    containers = lab_containers()
    if containers:
        subprocess.run(["docker", "rm", "-f", "-v", *containers], capture_output=True)
        say(f"removed {len(containers)} lab VM container(s)")
    volumes = lab_volumes()
    if volumes:
        subprocess.run(["docker", "volume", "rm", "-f", *volumes], capture_output=True)
        say(f"removed {len(volumes)} lab volume(s)")
    for name in ("registry-socket", "registry", "dockerd", "containerd"):
        if SERVICES[name].stop():
            say(f"{name}: stopped")
    registry_socket().unlink(missing_ok=True)


def status() -> dict:
    return {"services": {name: svc.pid() for name, svc in SERVICES.items()},
            "vm_containers": len(lab_containers(all_=False)),
            "compute_endpoint": f"http://127.0.0.1:{FAKE_PORT}",
            "registry": f"{REGISTRY[0]}:{REGISTRY[1]}", "state_dir": str(state_dir()),
            "docker": "running" if docker_ready() else "not running"}
