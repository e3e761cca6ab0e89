"""The real lab: `inv lab.up` (host packages, docker engine, image, registry, fake in docker
mode), VMs as containers, and the real OpenSSH client with strict host-key checking.

Runs as root on Debian (as CI does); elsewhere skipped with the reason. If the lab was already
up, it is left up; otherwise the session brings it down at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import compute_v1

from provision.cloud.tasks import destroy as destroy_task
from provision.lab import control

ENDPOINT = f"http://127.0.0.1:{control.FAKE_PORT}"
PROJECT = "archfarm-labtest"
KW = {"credentials": AnonymousCredentials(), "transport": "rest",
      "client_options": {"api_endpoint": ENDPOINT}}

CAN_RUN = os.geteuid() == 0 and Path("/etc/debian_version").exists()
pytestmark = pytest.mark.skipif(not CAN_RUN, reason="the lab needs root on a Debian host")


@pytest.fixture(scope="session")
def lab():
    if not CAN_RUN:
        pytest.skip("the lab needs root on a Debian host (CI runs it)")
    was_up = control.status()["services"]["fake-gce"] is not None
    control.up(print)
    yield ENDPOINT
    if not was_up:
        control.down(print)


BOTH = ("  - {name: arm64, platform: linux/arm64, machine_type: t2a-standard-2}\n"
        "  - {name: amd64, platform: linux/amd64, machine_type: n2-standard-2}\n")


def write_inventory(path: Path, lab: str, project: str, farm: str, nodes: str = BOTH,
                    zones: str = "us-central1-a", extra: str = "") -> Path:
    """A lab farm's inventory at `path`: docker.io, SSH from loopback as `builder`, and the
    farm key beside the file. `extra` is more YAML before `nodes:`."""
    path.write_text(f"""
farm: {farm}
gcp:
  project: {project}
  zones: [{zones}]
  api_endpoint: {lab}
  ssh_source_ranges: [127.0.0.1/32]
ssh: {{user: builder, private_key: {path.parent}/farm-key}}
docker: {{package: docker.io}}
{extra}nodes:
{nodes}""")
    return path


@pytest.fixture
def lab_inventory(lab, tmp_path) -> Path:
    path = write_inventory(tmp_path / "lab.yaml", lab, PROJECT, "labtest",
                           zones="us-central1-a, us-central1-b")
    yield path
    destroy_task(inventory=str(path), yes=True)


class Vm:
    """A lab VM as a user reaches it: its natIP and the host keys Compute Engine published."""

    def __init__(self, name: str, key: Path, workdir: Path, user: str = "builder"):
        self.name, self.key, self.user = name, key, user
        self.client = compute_v1.InstancesClient(**KW)
        self.ip = self.instance().network_interfaces[0].access_configs[0].nat_i_p
        self.known_hosts = workdir / f"known_hosts-{name}"
        self.known_hosts.write_text("".join(f"{self.ip} {k} {v}\n"
                                            for k, v in self.wait_for("hostkeys/").items()))

    def instance(self) -> compute_v1.Instance:
        return self.client.get(project=PROJECT, zone="us-central1-a", instance=self.name)

    def wait_for(self, query_path: str, timeout: float = 90) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                attrs = self.client.get_guest_attributes(
                    compute_v1.GetGuestAttributesInstanceRequest(
                        project=PROJECT, zone="us-central1-a", instance=self.name,
                        query_path=query_path))
                return {i.key: i.value for i in attrs.query_value.items}
            except exceptions.NotFound:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def ssh(self, command: str, user: str | None = None, known_hosts: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ssh", "-i", str(self.key), "-o", "StrictHostKeyChecking=yes",
             "-o", f"UserKnownHostsFile={known_hosts or self.known_hosts}",
             "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
             f"{user or self.user}@{self.ip}", command],
            capture_output=True, text=True, timeout=timeout)


REPO = Path(__file__).resolve().parents[2]


def inv(*args: str, env: dict | None = None, timeout: float = 900
        ) -> tuple[int, dict, str]:
    """Run a task as a user would, with --json; (exit code, the JSON object, stderr)."""
    done = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(REPO), *args,
                           "--json"], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    lines = done.stdout.strip().splitlines()
    return done.returncode, json.loads(lines[-1]) if lines else {}, done.stderr


def lab_containers(all_: bool = True) -> list[str]:
    return control.lab_containers(all_)
