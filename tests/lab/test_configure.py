"""`inv configure`, `inv provision` and `inv status` on real lab VMs, through the real CLI.

Each farm here is its own project, so the fake's address pool and the hosts cache of one test
never meet another's. Each test destroys what it made.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from google.cloud import compute_v1

from provision.configure import ITEMS
from provision.keys import ensure_keypair

from .conftest import BOTH, KW, inv, write_inventory

pytestmark = pytest.mark.lab


ONE = "  - {name: amd64, platform: linux/amd64, machine_type: n2-standard-2}\n"


def cache_dir(project: str) -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "archfarm" / project / "cfg"


def plain_ssh(project: str, key: Path, node: str, command: str
              ) -> subprocess.CompletedProcess:
    """OpenSSH as a user would run it, trusting only archfarm's pinned known_hosts."""
    hosts = json.loads((cache_dir(project) / "hosts.json").read_text())["nodes"]
    return subprocess.run(
        ["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=yes",
         "-o", f"UserKnownHostsFile={cache_dir(project) / 'known_hosts'}",
         "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
         f"builder@{hosts[node]['address']}", command],
        capture_output=True, text=True, timeout=120)


def container_of(project: str, vm: str, seconds: float = 60) -> str:
    """The VM's container. A lab VM boots once Compute Engine says RUNNING, as a real one
    does, so `inv vms` may return before the container runs."""
    deadline = time.monotonic() + seconds
    while True:
        out = subprocess.run(["docker", "ps", "-q", "--filter",
                              f"label=archfarm.lab.vm={project}/us-central1-a/{vm}"],
                             capture_output=True, text=True, check=True).stdout.split()
        if out or time.monotonic() > deadline:
            assert len(out) == 1, out
            return out[0]
        time.sleep(0.2)


def in_vm(project: str, vm: str, command: str, check: bool = True
          ) -> subprocess.CompletedProcess:
    done = subprocess.run(["docker", "exec", container_of(project, vm), "sh", "-c", command],
                          capture_output=True, text=True, timeout=120)
    assert not check or done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
    return done


def installed(project: str, vm: str, package: str) -> bool:
    out = in_vm(project, vm, f"dpkg-query -W -f='${{db:Status-Status}}' {package}", check=False)
    return out.stdout.strip() == "installed"


@pytest.fixture
def farm(lab, tmp_path, request):
    """A farm in its own project; destroyed afterwards whatever the test did."""
    made: list[Path] = []

    def make(project: str, nodes: str = BOTH, name: str = "cfg") -> Path:
        path = write_inventory(tmp_path / f"{project}.yaml", lab, project, name, nodes)
        made.append(path)
        code, out, err = inv("vms", "-i", str(path))
        assert code == 0, err
        return path

    yield make
    for path in made:
        inv("destroy", "-i", str(path), "--yes")


@pytest.fixture(scope="module")
def configured(lab, tmp_path_factory):
    """Two lab VMs configured once, shared by the tests that only look at the result."""
    tmp = tmp_path_factory.mktemp("configured")
    path = write_inventory(tmp / "archfarm-cfg-main.yaml", lab, "archfarm-cfg-main", "cfg")
    code, first, err = inv("provision", "-i", str(path))
    yield path, tmp / "farm-key", code, first, err
    inv("destroy", "-i", str(path), "--yes")


def test_first_run_converges_both_nodes_and_the_user_runs_docker_over_plain_ssh(configured):
    path, key, code, first, err = configured
    assert code == 0, err
    for node in ("arm64", "amd64"):
        result = first["nodes"][node]
        assert result["failed"] == 0 and not result["unreachable"], result
        assert result["changed"] >= 2, result  # the VM was created, docker installed, ...
        assert result["docker"], result
        # A new connection: the group change applies; the host key is the pinned one.
        info = plain_ssh("archfarm-cfg-main", key, node,
                         "docker info --format '{{.ServerVersion}}'")
        assert info.returncode == 0, info.stderr
        assert info.stdout.strip() == result["docker"]


def test_second_run_changes_nothing_and_needs_no_compute_engine_call(configured):
    path, key, *_ = configured
    # The endpoint points nowhere: a converged farm is configured from the hosts cache alone.
    code, out, err = inv("configure", "-i", str(path),
                         env={"ARCHFARM_GCE_ENDPOINT": "http://127.0.0.1:9"})
    assert code == 0, err
    assert {n: r["changes"] for n, r in out["nodes"].items()} == {"arm64": [], "amd64": []}
    # every step was looked at and found as wanted, and the engine verified
    assert all(r["ok"] == len(ITEMS) for r in out["nodes"].values()), out


def test_status_shows_the_docker_version_and_only_the_arm64_node_emulated(configured):
    path, *_ = configured
    code, out, err = inv("status", "-i", str(path))
    assert code == 0, err
    nodes = {n["name"]: n for n in out["nodes"]}
    assert nodes["arm64"]["emulated"] is True and nodes["amd64"]["emulated"] is False
    assert nodes["arm64"]["docker"] and nodes["amd64"]["docker"]
    assert "unreachable" not in out


def test_qemu_runs_arm64_binaries_on_both_nodes_with_the_fix_binary_flag(configured):
    for vm in ("cfg-arm64", "cfg-amd64"):
        handler = in_vm("archfarm-cfg-main", vm, "cat /proc/sys/fs/binfmt_misc/qemu-aarch64")
        assert "enabled" in handler.stdout and "F" in handler.stdout.split("flags:")[1]
        daemon = in_vm("archfarm-cfg-main", vm, "cat /etc/docker/daemon.json").stdout
        assert json.loads(daemon)["log-opts"] == {"max-size": "10m", "max-file": "3"}


def test_check_on_a_fresh_vm_reports_changes_and_changes_nothing(farm):
    path = farm("archfarm-cfg-check", ONE)
    code, out, err = inv("configure", "-i", str(path), "--check")
    assert code == 0, err
    result = out["nodes"]["amd64"]
    # An amd64-only farm needs no QEMU: every other step is still to do.
    assert result["changes"] == ["daemon.json", "docker engine", "docker service",
                                 "docker group"], result
    assert result["changed"] == 4 and "docker.io" in result["details"][1]
    # The facts afterwards: nothing was installed, written or joined.
    assert not installed("archfarm-cfg-check", "cfg-amd64", "docker.io")
    assert in_vm("archfarm-cfg-check", "cfg-amd64", "test -e /etc/docker/daemon.json",
                 check=False).returncode == 1
    assert "docker" not in in_vm("archfarm-cfg-check", "cfg-amd64", "id -nG builder").stdout


def test_a_changed_host_key_is_refused_with_both_fingerprints(farm):
    path = farm("archfarm-cfg-hostkey", ONE)
    code, out, err = inv("configure", "-i", str(path), "--check")
    assert code == 0, err  # pinned and cached
    # Someone else now answers at that address: new host keys the API never published.
    in_vm("archfarm-cfg-hostkey", "cfg-amd64",
          "rm -f /etc/ssh/ssh_host_* && ssh-keygen -A >/dev/null && systemctl restart ssh")
    code, out, err = inv("configure", "-i", str(path))
    assert code == 1, err
    note = out["nodes"]["amd64"]["note"]
    assert "does not match" in note and note.count("SHA256:") >= 2, note
    assert "Traceback" not in err
    assert not installed("archfarm-cfg-hostkey", "cfg-amd64", "docker.io")  # nothing ran


def test_an_apt_lock_held_by_another_process_is_waited_for(farm):
    path = farm("archfarm-cfg-lock", ONE)
    # Booted (configure waits for SSH and first boot), so that systemd-run below works.
    assert inv("configure", "-i", str(path), "--check")[0] == 0
    # As unattended-upgrades would at first boot: the dpkg and apt lists locks, for 8 s.
    in_vm("archfarm-cfg-lock", "cfg-amd64",
          "systemd-run --unit=hold-apt-locks python3 -c 'import fcntl, time;"
          " a = open(\"/var/lib/apt/lists/lock\", \"w\"); fcntl.lockf(a, fcntl.LOCK_EX);"
          " b = open(\"/var/lib/dpkg/lock-frontend\", \"w\"); fcntl.lockf(b, fcntl.LOCK_EX);"
          " time.sleep(8)'")
    started = time.monotonic()
    code, out, err = inv("configure", "-i", str(path))
    assert code == 0, err
    assert time.monotonic() - started > 6
    assert out["nodes"]["amd64"]["docker"], out


def test_a_node_stopped_midway_is_unreachable_the_other_converges_and_a_rerun_converges(farm):
    # Its own farm name: its rerun registers (provision), and the module's farm `cfg` of
    # another project holds that name's docker contexts and ssh config meanwhile.
    path = farm("archfarm-cfg-stop", name="cfgstop")
    done: dict = {}
    runner = threading.Thread(target=lambda: done.update(
        zip(("code", "out", "err"), inv("configure", "-i", str(path)), strict=True)))
    runner.start()
    # Stop the arm64 VM once configure is installing on it.
    client = compute_v1.InstancesClient(**KW)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status = in_vm("archfarm-cfg-stop", "cfgstop-arm64",
                       "pgrep -f 'apt-get' >/dev/null && echo busy", check=False).stdout
        if "busy" in status:
            break
        time.sleep(0.3)
    client.stop(project="archfarm-cfg-stop", zone="us-central1-a", instance="cfgstop-arm64")
    runner.join(timeout=600)
    assert done["code"] == 1, done.get("err")
    nodes = done["out"]["nodes"]
    assert nodes["arm64"]["unreachable"] is True, nodes["arm64"]
    assert nodes["amd64"]["failed"] == 0 and nodes["amd64"]["docker"], nodes["amd64"]
    # Bring it back and run again: everything converges.
    code, out, err = inv("provision", "-i", str(path))
    assert code == 0, err
    assert all(r["failed"] == 0 and not r["unreachable"] for r in out["nodes"].values())


def test_a_key_the_vms_do_not_know_is_reported_as_authentication_failed(configured, tmp_path):
    path, *_ = configured
    ensure_keypair(tmp_path / "other-key", "other")
    other = tmp_path / "other.yaml"
    other.write_text(path.read_text().replace(str(path.parent / "farm-key"),
                                              str(tmp_path / "other-key")))
    code, out, err = inv("configure", "-i", str(other), "--limit", "amd64",
                         env={"ARCHFARM_SSH_WAIT_SECONDS": "3"})
    assert code == 1, err
    result = out["nodes"]["amd64"]
    assert result["unreachable"] is True and "authentication failed" in result["note"], result


def test_a_vm_re_created_behind_archfarms_back_is_found_again_not_refused(farm, tmp_path):
    path = farm("archfarm-cfg-recreate", ONE)
    code, out, err = inv("configure", "-i", str(path), "--check")
    assert code == 0, err
    # Re-created by another checkout (its own cache): ours still pins the old VM's keys.
    elsewhere = {"XDG_CACHE_HOME": str(tmp_path / "elsewhere")}
    assert inv("destroy", "-i", str(path), "--yes", env=elsewhere)[0] == 0
    assert inv("vms", "-i", str(path), env=elsewhere)[0] == 0
    code, out, err = inv("configure", "-i", str(path), "--check")
    assert code == 0, err
    assert "asking Compute Engine" in err and out["nodes"]["amd64"]["changed"] == 4
