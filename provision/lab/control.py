"""`inv lab.up / lab.down / lab.status`: the fake Compute Engine with container VMs, locally.

Host setup (Debian packages, binfmt), then the services of `services.SERVICES` in order, then
the base images in the registry (`base_images`); down stops the services in reverse order (the
registry's storage, base images included, stays in the state directory). Every process the lab
starts is recorded in a pid file under the state directory and is the only kind of process
`lab.down` stops; every container and volume it makes carries the label `archfarm.lab=1` and
is the only kind `lab.down` removes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import UserError
from . import base_images
from .containers import docker_ready, lab_containers, lab_volumes
from .image import debian_mirror, image_tag, suite_tags
from .services import FAKE_ADDRESS, REGISTRY, SERVICES, registry_socket, state_dir

__all__ = ["up", "down", "status", "host_setup", "HOST_SETUP", "SERVICES", "FAKE_PORT",
           "COMPUTE_ENDPOINT", "REGISTRY_ADDRESS", "lab_containers", "lab_volumes",
           "registry_socket", "state_dir"]

HOST_SETUP = Path(__file__).resolve().with_name("host-setup.sh")
FAKE_PORT = FAKE_ADDRESS[1]
COMPUTE_ENDPOINT = "http://{}:{}".format(*FAKE_ADDRESS)
REGISTRY_ADDRESS = "{}:{}".format(*REGISTRY)


def host_setup(say: Callable[[str], None]) -> None:
    if os.geteuid() != 0:
        raise UserError("the lab installs Debian packages and starts dockerd, so it needs"
                        " root. Fix: run `inv lab.up` as root (or with sudo).")
    if not shutil.which("apt-get") or not Path("/etc/debian_version").exists():
        raise UserError("the lab needs a Debian-like host (Debian 12 is tested)."
                        " Fix: run it on Debian 12, or point the inventory at a real project.")
    result = subprocess.run([str(HOST_SETUP), debian_mirror()], capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"host setup failed: {result.stderr.strip()[-500:]}")
    for line in result.stdout.splitlines():
        if line.startswith("installing"):
            say(line)


def up(say: Callable[[str], None]) -> dict:
    started = time.monotonic()
    host_setup(say)
    for service in SERVICES:
        service.ensure(say)
    bases = base_images.ensure(say, state_dir() / "base-images.log")  # needs the registry
    return {"compute_endpoint": COMPUTE_ENDPOINT, "registry": REGISTRY_ADDRESS,
            "images": suite_tags(image_tag()), "base_images": bases,
            "state_dir": str(state_dir()), "seconds": round(time.monotonic() - started, 1)}


def down(say: Callable[[str], None]) -> None:
    for service in reversed(SERVICES):
        if service.stop():
            say(f"{service.name}: stopped")
        service.cleanup(say)


def status() -> dict:
    return {"services": {service.name: service.pid() for service in SERVICES},
            "vm_containers": len(lab_containers(all_=False)),
            "compute_endpoint": COMPUTE_ENDPOINT, "registry": REGISTRY_ADDRESS,
            "base_images": base_images.published(), "state_dir": str(state_dir()),
            "docker": "running" if docker_ready() else "not running"}
