"""The lab's containers, volumes and network on the docker engine: found, and removed, by
label only.

Deliberately free of the fake's imports, so `inv lab.down` works whatever state the fake is in.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from collections.abc import Callable

from ..errors import UserError

LAB_LABEL = "archfarm.lab=1"
# The lab VMs' network, as a VPC subnet: every VM has its networkIP here (the fake's internal
# range); a VM with a natIP also has its sshd published on it. 10.128.0.0/20 is the default
# subnet of us-central1 on Compute Engine; `lab.up` refuses it if a route of this machine
# already covers any of it. Only the bastion's sshd ever connects to a private VM here
# (docs/private-nodes.md): nothing on this machine does.
LAB_NETWORK = "archfarm-lab-net"
LAB_SUBNET = ipaddress.IPv4Network("10.128.0.0/20")
LAB_GATEWAY = str(LAB_SUBNET.network_address + 1)  # the bridge's own address, as on GCE


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


def lab_network(docker: str = "docker") -> str | None:
    """The id of the lab's network (its name and the lab label), or None."""
    if not docker_ready(docker):
        return None
    found = subprocess.run([docker, "network", "ls", "-q", "--filter", f"label={LAB_LABEL}",
                            "--filter", f"name=^{LAB_NETWORK}$"],
                           capture_output=True, text=True).stdout.split()
    return found[0] if found else None


def colliding_routes(routes: str, subnet: ipaddress.IPv4Network = LAB_SUBNET) -> list[str]:
    """The lines of `ip -4 route` output whose destination overlaps `subnet` (the default
    route aside: it covers everything)."""
    out = []
    for line in routes.splitlines():
        dst = line.split(" ", 1)[0]
        if not dst or dst == "default":
            continue
        try:
            net = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network) and net.overlaps(subnet):
            out.append(line.strip())
    return out


def ensure_lab_network(say: Callable[[str], None], docker: str = "docker") -> None:
    """The lab's network, made once (kept while the lab runs; `lab.down` removes it)."""
    if lab_network(docker):
        return
    routes = subprocess.run(["ip", "-4", "route", "show"], capture_output=True,
                            text=True).stdout
    taken = colliding_routes(routes)
    if taken:
        raise UserError(f"the lab's VM network {LAB_SUBNET} overlaps this machine's route"
                        f" `{taken[0]}`. Fix: remove that route or network (or change"
                        " LAB_SUBNET in provision/lab/containers.py).")
    made = subprocess.run([docker, "network", "create", "--driver", "bridge",
                           "--subnet", str(LAB_SUBNET), "--gateway", LAB_GATEWAY,
                           "--label", LAB_LABEL, LAB_NETWORK],
                          capture_output=True, text=True)
    if made.returncode != 0:
        raise UserError(f"could not create the lab's network {LAB_NETWORK} ({LAB_SUBNET}):"
                        f" {made.stderr.strip()}. Fix: remove the docker network that uses"
                        " these addresses.")
    say(f"created network {LAB_NETWORK} ({LAB_SUBNET})")


Run = Callable[[list[str]], subprocess.CompletedProcess]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True)


def remove_lab_network(say: Callable[[str], None], docker: str = "docker") -> None:
    """Remove the lab's network, only if it carries the lab label (after its VMs went)."""
    network = lab_network(docker)
    if network:
        remove_network(network, say, docker)


def remove_network(network: str, say: Callable[[str], None], docker: str = "docker",
                   run: Run = _run) -> bool:
    """`docker network rm` the network (an id of the lab's): say it went, or that it did not,
    with the containers still attached to it (`docker network inspect`), which keep it."""
    removed = run([docker, "network", "rm", network])
    if removed.returncode == 0:
        say(f"removed network {LAB_NETWORK}")
        return True
    why = (removed.stderr or "").strip() or f"docker network rm exited {removed.returncode}"
    inspected = run([docker, "network", "inspect", "--format",
                     "{{range .Containers}}{{.Name}} {{end}}", network])
    attached = sorted(inspected.stdout.split()) if inspected.returncode == 0 else []
    if attached:
        say(f"could not remove network {LAB_NETWORK}: {why}. Still attached:"
            f" {', '.join(attached)}. Fix: `{docker} network disconnect -f {LAB_NETWORK} NAME`"
            " (or remove the container), then `inv lab.down` again.")
    else:
        say(f"could not remove network {LAB_NETWORK}: {why}")
    return False
