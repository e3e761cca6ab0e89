"""`inv register`, `inv status` and `inv destroy` when the world gets in the way, on a real
lab farm: two runs at once, Ctrl-C midway, a stopped engine, a deleted context.

One arm64 node (in the lab, an amd64 container standing in for arm64: "emulated") is
provisioned once for the module. Its docker contexts and builder live in a DOCKER_CONFIG of
the module's own, so nothing here touches another test's contexts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import REPO, inv, write_inventory
from .test_configure import in_vm

pytestmark = pytest.mark.lab

PROJECT = "archfarm-rgf"
ONE = "  - {name: arm64, platform: linux/arm64, machine_type: t2a-standard-2}\n"


@pytest.fixture(scope="module")
def farm(lab, tmp_path_factory):
    """(inventory, env): the farm provisioned once; `env` carries its DOCKER_CONFIG."""
    tmp = tmp_path_factory.mktemp("rgf")
    env = {"DOCKER_CONFIG": str(tmp / "docker")}
    path = write_inventory(tmp / "rgf.yaml", lab, PROJECT, "rgf", ONE)
    code, out, err = inv("provision", "-i", str(path), env=env)
    assert code == 0, err
    yield path, env
    inv("destroy", "-i", str(path), "--yes", env=env)


def docker(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_status_says_emulated_unknown_when_the_engine_is_down(farm):
    path, env = farm
    in_vm(PROJECT, "rgf-arm64", "systemctl stop docker.socket docker")
    try:
        code, out, err = inv("status", "-i", str(path), env=env)
    finally:
        in_vm(PROJECT, "rgf-arm64", "systemctl start docker")
    assert code == 0, err
    [node] = out["nodes"]
    assert node["docker"] is None and node["emulated"] is None, node
    row = next(line for line in err.splitlines() if line.startswith("arm64 "))
    assert "unknown" in row and "False" not in row, err
    assert "inv configure" in err, err  # what repairs it
