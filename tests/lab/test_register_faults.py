"""`inv register`, `inv status` and `inv destroy` when the world gets in the way, on a real
lab farm: two runs at once, Ctrl-C midway, a stopped engine, a deleted context.

One arm64 node (in the lab, an amd64 container standing in for arm64: "emulated") is
provisioned once for the module. Its docker contexts and builder live in a DOCKER_CONFIG of
the module's own, so nothing here touches another test's contexts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from provision.buildx import register

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


def unregister_by_hand(env: dict) -> None:
    """The farm as if never registered: no builder, no context, no ssh entry."""
    docker(env, "buildx", "rm", "--force", "rgf")
    docker(env, "context", "rm", "--force", "archfarm-rgf-arm64")
    register.farm_config("rgf").unlink(missing_ok=True)


def contexts(env: dict) -> set[str]:
    return set(docker(env, "context", "ls", "--format", "{{.Name}}").stdout.split())


def in_group(group: int, argv_part: bytes) -> bool:
    """Whether a process of the process group runs a command line containing `argv_part`."""
    for proc in Path("/proc").iterdir():
        try:
            stat = (proc / "stat").read_text()
            if (int(stat.rsplit(")", 1)[1].split()[2]) == group
                    and argv_part in (proc / "cmdline").read_bytes()):
                return True
        except (OSError, ValueError, IndexError):
            continue  # not a process, or gone meanwhile
    return False


def start_register(path: Path, env: dict) -> subprocess.Popen:
    """`inv register --json` in a session of its own, as a terminal's foreground job."""
    return subprocess.Popen([sys.executable, "-m", "invoke", "--search-root", str(REPO),
                             "register", "-i", str(path), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env}, start_new_session=True)


def test_ctrl_c_after_the_context_is_made_keeps_the_recap_of_what_was_done(farm):
    path, env = farm
    unregister_by_hand(env)
    run = start_register(path, env)
    deadline = time.monotonic() + 120
    while not in_group(run.pid, b"buildx\0create"):  # the context is made, the builder next
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.02)
    os.killpg(run.pid, signal.SIGINT)  # Ctrl-C: the whole foreground job, docker included
    out, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result.get("interrupted") is True and "error" not in result, result
    node = result["nodes"]["arm64"]
    assert {"ssh config", "docker context"} <= set(node["changes"]), node
    assert not node["failed"], node  # interrupted, not failed
    assert "before any change" not in err, err
    row = next(line for line in err.splitlines() if line.startswith("arm64 "))
    assert "ssh config" in row or "docker context" in row or "interrupted" in row, err
    code, again, err = inv("register", "-i", str(path), env=env)  # converges
    assert code == 0, err
    assert again["nodes"]["arm64"]["failed"] == 0


def registered_fine(code: int, out: str, err: str) -> dict:
    """The node's recap of a register that converged: every item ok or changed, none failed."""
    assert code == 0, err
    node = json.loads(out.strip().splitlines()[-1])["nodes"]["arm64"]
    assert node["failed"] == 0 and node["ok"] + node["changed"] == 3, node
    return node


def test_two_registers_at_once_both_succeed(farm):
    path, env = farm
    unregister_by_hand(env)
    runs = [start_register(path, env) for _ in range(2)]
    for run in runs:
        out, err = run.communicate(timeout=300)
        registered_fine(run.returncode, out, err)
    code, again, err = inv("register", "-i", str(path), env=env)
    assert code == 0 and again["nodes"]["arm64"]["changed"] == 0, (again, err)


GATED_DOCKER = """#!/bin/sh
# docker, except that `context create` waits for the file $GATE: this run has looked at what
# exists and stops before acting until the test lets it go on.
if [ "$1 $2" = "context create" ]; then
  while [ ! -e "$GATE" ]; do sleep 0.05; done
fi
exec {docker} "$@"
"""


def test_a_register_that_finds_the_other_runs_context_made_counts_it_ok(farm, tmp_path):
    """The race of two `inv register` made certain: the first looks (no context), then waits
    while the second makes everything; the first's `context create` then fails with
    "already exists", and a fresh look finds the context as wanted: ok, not failed."""
    path, env = farm
    unregister_by_hand(env)
    shim = tmp_path / "bin" / "docker"
    shim.parent.mkdir()
    shim.write_text(GATED_DOCKER.format(docker=shutil.which("docker")))
    shim.chmod(0o755)
    gate = tmp_path / "gate"
    first = start_register(path, {**env, "GATE": str(gate),
                                  "PATH": f"{shim.parent}:{os.environ['PATH']}"})
    try:
        deadline = time.monotonic() + 120
        while not in_group(first.pid, b"context\0create"):
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        code, second, err = inv("register", "-i", str(path), env=env)
        assert code == 0 and second["nodes"]["arm64"]["failed"] == 0, err
    finally:
        gate.touch()
    out, err = first.communicate(timeout=300)
    node = registered_fine(first.returncode, out, err)
    assert "docker context" not in node["changes"], node
    assert "made meanwhile by another run: docker context" in node["note"], node


def test_status_names_a_deleted_context_and_inv_register_repairs_it(farm):
    path, env = farm
    docker(env, "context", "rm", "--force", "archfarm-rgf-arm64")
    code, out, err = inv("status", "-i", str(path), env=env)
    assert code == 0, err
    line = next((ln for ln in err.splitlines() if ln.startswith("arm64 ")
                 and "archfarm-rgf-arm64" in ln), err)
    assert "inv register" in line, err
    assert "inv register" in out["context_missing"]["arm64"], out
    code, out, err = inv("register", "-i", str(path), env=env)
    assert code == 0 and out["nodes"]["arm64"]["changes"] == ["docker context"], err
    code, out, err = inv("status", "-i", str(path), env=env)
    assert code == 0 and "context_missing" not in out, out
