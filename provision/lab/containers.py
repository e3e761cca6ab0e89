"""The lab's containers and volumes on the docker engine: found, and removed, by label only.

Deliberately free of the fake's imports, so `inv lab.down` works whatever state the fake is in.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable

LAB_LABEL = "archfarm.lab=1"


def docker_ready(docker: str = "docker") -> bool:
    """A docker engine answers (the `docker` client is installed and reaches a daemon)."""
    return bool(shutil.which(docker)) and subprocess.run(
        [docker, "info"], capture_output=True).returncode == 0


def _labelled(kind: list[str], docker: str) -> list[str]:
    if not docker_ready(docker):
        return []
    return subprocess.run([docker, *kind, "-q", "--filter", f"label={LAB_LABEL}"],
                          capture_output=True, text=True).stdout.split()


def lab_containers(all_: bool = True, docker: str = "docker") -> list[str]:
    """Ids of the lab's VM containers (with the lab label), running ones only unless all_."""
    return _labelled(["ps", *(["-a"] if all_ else [])], docker)


def lab_volumes(docker: str = "docker") -> list[str]:
    """Names of the lab's volumes (with the lab label)."""
    return _labelled(["volume", "ls"], docker)


def remove_lab_vms(say: Callable[[str], None], docker: str = "docker") -> None:
    """Remove every lab container and volume; nothing else (only the lab label is matched)."""
    containers = lab_containers(docker=docker)
    if containers:
        subprocess.run([docker, "rm", "-f", "-v", *containers], capture_output=True)
        say(f"removed {len(containers)} lab VM container(s)")
    volumes = lab_volumes(docker)
    if volumes:
        subprocess.run([docker, "volume", "rm", "-f", *volumes], capture_output=True)
        say(f"removed {len(volumes)} lab volume(s)")
