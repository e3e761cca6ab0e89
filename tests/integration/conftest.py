"""An inventory pointed at the in-process fake, and helpers to run tasks as a user would and
to read what the fake holds afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from google.cloud import compute_v1

from provision.cloud.tasks import vms as vms_task
from provision.fakegce import MUTATING

REPO = Path(__file__).resolve().parents[2]
PROJECT = "test-project"


def vms_of(fake) -> dict:
    """The fake's VMs by name (through the real client)."""
    client = fake.client(compute_v1.InstancesClient)
    return {vm.name: vm for _, scope in client.aggregated_list(project=PROJECT)
            for vm in scope.instances}


def mutations(fake) -> list[dict]:
    return [r for r in fake.requests() if r["method"] in MUTATING]


LAB_LIKE = """
farm: t
gcp:
  project: test-project
  zones: [us-central1-a, us-central1-b, us-central1-f]
  api_endpoint: {endpoint}
  ssh_source_ranges: [127.0.0.1/32]
ssh:
  private_key: {key}
nodes:
  - name: arm
    platform: linux/arm64
    machine_type: t2a-standard-2
  - name: x86
    platform: linux/amd64
    machine_type: n2-standard-2
"""

# Six nodes, three of each platform, failing over across three zones.
SIX = LAB_LIKE.replace("-standard-2\n", "-standard-2\n    count: 3\n")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """The hosts cache and docker's config under tmp_path: no test reads another's, or the
    user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))


@pytest.fixture
def write_inventory(tmp_path, fake_gce):
    """Write an inventory (format placeholders: endpoint, key) and return its path."""
    def write(text: str = LAB_LIKE, name: str = "farm.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).format(endpoint=fake_gce.endpoint,
                                                     key=tmp_path / "ssh" / "farm-key"))
        return path
    return write


@pytest.fixture
def inventory(write_inventory) -> Path:
    return write_inventory()


def run_vms(inventory: Path, *, check=False, limit=None, prune=False) -> int:
    return vms_task(inventory=str(inventory), check=check, limit=limit, prune=prune)


def run_json(fn, *, capsys, **flags) -> tuple[int, dict]:
    capsys.readouterr()
    code = fn(**flags, json_mode=True)
    out = capsys.readouterr().out
    return code, json.loads(out.strip().splitlines()[-1])


def count_tracebacks(text: str) -> int:
    return text.count("Traceback (most recent call last)")


def inv(*args: str, env: dict | None = None, home: Path | None = None, timeout: float = 120):
    """The real `inv` command line, as a user types it."""
    full_env = {**os.environ, **(env or {})}
    if home:
        full_env["HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO,
                          capture_output=True, text=True, env=full_env, timeout=timeout)


# -- tallies -------------------------------------------------------------------------------------
