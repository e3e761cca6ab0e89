"""The lab backend's follower of container deaths (`docker events` lines): a lab VM whose
container stopped on its own is reported to the fake as halted; one the fake itself is taking
down, or a line that is no lab VM's, is not. `docker` itself is a stand-in here: the die events
the fake's own take-downs cause are collected and fed to the follower when a test says, as
`docker events` may deliver them late."""

from __future__ import annotations

import json
import subprocess

import pytest

from provision.fakegce.backends import VmView
from provision.lab import backend


def death(name: str, vm_id: str) -> str:
    return json.dumps({"name": name, "archfarm.lab.instance": vm_id, "exitCode": "0",
                       "archfarm.lab": "1"})


class Docker:
    """A stand-in for the `docker` CLI (`DockerBackend._run`): containers running or not,
    and the die events not yet read by the follower."""

    def __init__(self, running: dict[str, bool] | None = None, fail: tuple[str, ...] = ()):
        self.running = dict(running or {})
        self.fail = fail  # commands that fail, leaving the container as it was
        self.events: list[str] = []

    def __call__(self, *args: str, input: str | None = None, check: bool = True,
                 timeout: float = 120) -> subprocess.CompletedProcess:
        name = args[-1]
        if args[:2] == ("container", "inspect"):
            if name not in self.running:
                return subprocess.CompletedProcess(args, 1, "", "No such container")
            out = "true" if self.running[name] else "false"
            return subprocess.CompletedProcess(args, 0, f"{out}\n", "")
        if args[0] in self.fail:
            return subprocess.CompletedProcess(args, 1, "", "failed")
        if args[0] in ("stop", "kill", "rm") and self.running.get(name):
            self.die(name)
        if args[0] == "rm":
            self.running.pop(name, None)
        elif args[0] in ("stop", "kill") and name in self.running:
            self.running[name] = False
        elif args[0] == "start":
            self.running[name] = True
        return subprocess.CompletedProcess(args, 0, "", "")

    def die(self, name: str) -> None:
        """The container stops: a die event, not yet read."""
        self.running[name] = False
        self.events.append(death(name, name.rsplit("-", 1)[1]))


@pytest.fixture(autouse=True)
def _no_binfmt(monkeypatch):
    monkeypatch.setattr(backend, "register_again", lambda handlers: None)
    monkeypatch.setattr(backend, "qemu_handlers", lambda: set())


def lab_with(docker: Docker) -> tuple[backend.DockerBackend, list[str]]:
    lab = backend.DockerBackend({})
    lab._run = docker  # type: ignore[method-assign]
    halted: list[str] = []
    lab.attach(halted.append)
    return lab, halted


def read(lab: backend.DockerBackend, lines: list[str]) -> None:
    """The follower reads these `docker events` lines."""
    events = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert events.stdin is not None
    events.stdin.write("".join(f"{line}\n" for line in lines))
    events.stdin.close()
    lab._deaths(events)


def read_late(lab: backend.DockerBackend, docker: Docker) -> None:
    lines, docker.events = docker.events, []
    read(lab, lines)


def vm(vm_id: str = "111111") -> VmView:
    return VmView(project="p", zone="z", name="a", id=vm_id, nat_ip=None,
                  architecture=backend.HOST_ARCH, metadata={}, image_project="debian-cloud",
                  image_family="debian-12", image_name="debian-12-bookworm-v1")


A = backend.container_name(vm())


def test_only_a_container_that_stopped_on_its_own_is_a_guest_power_off():
    docker = Docker({"archfarm-lab-a-111111": False, "archfarm-lab-b-222222": False})
    lab, halted = lab_with(docker)
    lab._leaving = {"archfarm-lab-b-222222"}
    read(lab, [death("archfarm-lab-a-111111", "111111"), death("archfarm-lab-b-222222", "222222"),
               "not json", json.dumps({"name": "other"})])
    assert halted == ["111111"]


def test_the_fakes_own_stop_read_after_the_vm_started_again_is_no_power_off():
    """`docker stop` returned, the VM was started again (the same container), and only then
    is the stop's die event read: the VM is RUNNING, nothing to report."""
    docker = Docker({A: True})
    lab, halted = lab_with(docker)
    lab.power_off(vm())
    docker("start", A)
    read_late(lab, docker)
    assert halted == []
    # The guest's own power-off after that is reported, once.
    docker.die(A)
    read_late(lab, docker)
    assert halted == ["111111"]


def test_the_fakes_own_stop_read_before_the_vm_is_up_again_is_no_power_off():
    """Read after `docker stop` returned but before `docker start` ran (the VM already
    RUNNING in the fake, its boot under way): the container is not running, yet the event is
    the fake's own."""
    docker = Docker({A: True})
    lab, halted = lab_with(docker)
    lab.lose_power(vm())
    read_late(lab, docker)
    docker("start", A)
    assert halted == []


def test_several_take_downs_each_owe_one_death():
    docker = Docker({A: True})
    lab, halted = lab_with(docker)
    for _ in range(2):
        lab.power_off(vm())
        docker("start", A)
    read_late(lab, docker)
    assert halted == []
    docker.die(A)
    read_late(lab, docker)
    assert halted == ["111111"]


def test_a_take_down_of_a_stopped_container_owes_nothing():
    """`docker stop` of a stopped container emits no die event: the guest's next power-off
    is still reported."""
    docker = Docker({A: False})
    lab, halted = lab_with(docker)
    lab.power_off(vm())
    docker("start", A)
    docker.die(A)
    read_late(lab, docker)
    assert halted == ["111111"]


def test_a_failed_take_down_owes_nothing():
    docker = Docker({A: True}, fail=("kill",))
    lab, halted = lab_with(docker)
    lab.lose_power(vm())
    assert docker.events == [] and lab._expected == {}
    docker.die(A)
    read_late(lab, docker)
    assert halted == ["111111"]


def test_a_death_of_a_container_running_again_is_no_power_off():
    """A die event nobody owes, read when the container is running (again): stale, ignored;
    one whose container is gone or cannot be inspected is still a power-off."""
    docker = Docker({A: True})
    lab, halted = lab_with(docker)
    read(lab, [death(A, "111111"), death("archfarm-lab-gone-333333", "333333")])
    assert halted == ["333333"]
