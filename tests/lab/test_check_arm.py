"""`inv check-arm` on a real lab farm, driven as a user would: what `-- CMD` runs, what a
lost node, docker context or registry says, and that an interrupt leaves no container on the
node."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from google.cloud import compute_v1

from .conftest import KW, REPO, inv, write_inventory
from .test_build import REGISTRY, build_hello, docker
from .workload_images import NO_COMMAND, READY_IMAGE, push_test_images
from .workload_images import pod as workload_pod

pytestmark = pytest.mark.lab

PROJECT = "archfarm-checkarm"
FARM = "checkarm"
CONTEXT = f"archfarm-{FARM}-arm64"
IMAGE = f"{REGISTRY}/{FARM}/hello:test"
INV = [sys.executable, "-m", "invoke", "--search-root", str(REPO)]
ARM64_ONLY = "  - {name: arm64, platform: linux/arm64, machine_type: t2a-standard-2}\n"


@pytest.fixture(scope="module")
def farm(lab, tmp_path_factory):
    """A one-node arm64 farm, provisioned once for the module, with examples/hello built on it
    and pushed to the lab registry."""
    tmp = tmp_path_factory.mktemp("checkarm")
    path = write_inventory(tmp / "checkarm.yaml", lab, PROJECT, FARM, nodes=ARM64_ONLY)
    code, _, err = inv("provision", "-i", str(path))
    assert code == 0, err
    code, _, err = build_hello(path, IMAGE)
    assert code == 0, err
    yield path
    inv("destroy", "-i", str(path), "--yes")


def check_arm(farm, image: str, *command: str) -> tuple[int, dict, str]:
    """`inv check-arm --json -i FARM IMAGE [-- COMMAND]` (`inv` puts --json last, into CMD)."""
    done = subprocess.run([*INV, "check-arm", "--json", "-i", str(farm), image,
                           *(["--", *command] if command else [])],
                          capture_output=True, text=True, timeout=600)
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def containers_of_the_check(all_: bool = True) -> list[str]:
    """The check's containers on the arm64 node (running ones, or all)."""
    return docker("--context", CONTEXT, "ps", *(["-a"] if all_ else []), "-q", "--filter",
                  f"ancestor={IMAGE}").stdout.split()


@pytest.mark.parametrize("command, code, reason, output", [
    (["uname", "-m"], 0, "`uname -m` ran on arm64 node arm64", "aarch64"),
    (["false"], 1, "`false` failed on arm64 node arm64 (exit 1)", ""),
    (["/no/such/binary"], 1, "(exit 127", "/no/such/binary"),
], ids=["uname", "false", "not-found"])
def test_cmd_runs_in_place_of_the_entrypoint_and_its_failure_is_not_ready(
        farm, command, code, reason, output):
    got, out, err = check_arm(farm, IMAGE, *command)
    assert got == code, err
    assert out["ready"] is (code == 0) and reason in out["reason"], out
    assert out["command"] == command, out
    assert output in out["output"] and "hello from" not in out["output"], out
    assert "entrypoint" in err  # it says the image's entrypoint was replaced


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_exits_130_and_removes_the_checks_container(farm, signum):
    """Sent to the pid alone (not the process group): the docker CLI child never sees it."""
    assert not containers_of_the_check()
    check = subprocess.Popen([*INV, "check-arm", "-i", str(farm), IMAGE, "--", "sleep", "30"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not containers_of_the_check(all_=False):
            assert check.poll() is None, check.communicate()
            assert time.monotonic() < deadline, "the check's container never ran"
            time.sleep(0.5)
        os.kill(check.pid, signum)
        out, err = check.communicate(timeout=60)
    finally:
        if check.poll() is None:
            check.kill()
    assert check.returncode == 130, err
    assert "interrupted" in err and "removed" in err and "arm64" in err, err
    deadline = time.monotonic() + 5
    while containers_of_the_check():
        assert time.monotonic() < deadline, "the check's container was left on the node"
        time.sleep(0.5)


def test_an_unreachable_registry_exits_1_with_the_cause(farm):
    code, out, err = check_arm(farm, "127.0.0.1:9/x:y")
    assert code == 1, err
    assert "registry 127.0.0.1:9" in out["error"] and "connection refused" in out["error"]
    assert "Traceback" not in err


@pytest.mark.parametrize("image, words", [("127.0.0.1:5000/Bad Ref:x", "not an image reference"),
                                          (f"{REGISTRY}/{FARM}/no-such:x", "not found")])
def test_a_malformed_or_unknown_reference_is_bad_input(farm, image, words):
    code, out, err = check_arm(farm, image)
    assert code == 2, err
    assert words in out["error"], out


def test_a_deleted_docker_context_points_to_register(farm):
    assert docker("context", "rm", "-f", CONTEXT).returncode == 0
    try:
        code, out, err = check_arm(farm, IMAGE)
        assert code == 1, err
        assert CONTEXT in out["error"] and "arm64" in out["error"], out
        assert f"inv register -i {farm}" in out["error"], out
    finally:
        assert inv("register", "-i", str(farm))[0] == 0
    assert check_arm(farm, IMAGE)[0] == 0  # the fix it named repaired it


def test_a_stopped_arm64_node_exits_1_naming_the_node_and_the_repair(farm):
    client = compute_v1.InstancesClient(**KW)
    # Never `.result()`: it polls through a client that ignores api_endpoint (the real cloud).
    client.stop(project=PROJECT, zone="us-central1-a", instance=f"{FARM}-arm64")
    deadline = time.monotonic() + 120
    while client.get(project=PROJECT, zone="us-central1-a",
                     instance=f"{FARM}-arm64").status != "TERMINATED":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    try:
        code, out, err = check_arm(farm, IMAGE)
        assert code == 1, err
        message = out["error"]
        assert "arm64 node arm64" in message and CONTEXT in message, message
        assert f"inv provision -i {farm}" in message, message
        assert "Traceback" not in err
    finally:
        assert inv("provision", "-i", str(farm))[0] == 0
    assert check_arm(farm, IMAGE)[0] == 0  # the fix it named repaired it


def test_run_starts_a_manifests_ready_image_on_the_arm64_node(farm, tmp_path):
    """The workload form with --run: the image the registry found READY is started on the
    farm's arm64 node, with the command given; so is the one the registry could not decide
    about (it names no command of its own), and the run decides it."""
    push_test_images()
    pod = tmp_path / "pod.yaml"
    pod.write_text(workload_pod("ready", app=READY_IMAGE, bare=NO_COMMAND))
    done = subprocess.run([*INV, "check-arm", "--json", "-i", str(farm), "--manifests", str(pod),
                           "--run", "--", "uname", "-m"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    ready, bare = out["images"]
    for image in (ready, bare):
        assert image["verdict"] == "READY", image
        ran = image["ran"]
        assert ran and "ran on arm64 node arm64" in ran["reason"], image
        assert "aarch64" in ran["output"], image
    assert ready["image"] == READY_IMAGE and "AArch64" in ready["why"]
    assert bare["image"] == NO_COMMAND and bare["why"].startswith("--run: "), bare
    assert bare["entrypoint"]["path"] is None  # the registry alone could not settle it


def test_a_failed_run_turns_ready_to_not_ready_with_a_fix(farm, tmp_path):
    """--run decides over the registry: the READY image whose command fails on the arm64
    node is NOT READY, and the fix says what to look at and what to do."""
    push_test_images()
    pod = tmp_path / "pod.yaml"
    pod.write_text(workload_pod("p", app=READY_IMAGE))
    done = subprocess.run([*INV, "check-arm", "--json", "-i", str(farm), "--manifests", str(pod),
                           "--manifest-only", "--run", "--", "false"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr
    [image] = json.loads(done.stdout.strip().splitlines()[-1])["images"]
    assert image["verdict"] == "NOT READY", image
    assert image["why"] == "--run: `false` failed on arm64 node arm64 (exit 1)", image
    assert "what the run said" in image["fix"] and "inv build" in image["fix"], image
