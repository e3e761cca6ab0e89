"""Idle stop: the script the node's timer runs (run here for real with sh, its docker and
systemctl stand-ins on PATH), and what configure plans from the facts it reads back."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from pathlib import Path

import pytest

from provision.hosts import facts, idle_stop, steps
from provision.hosts.facts import Facts

from .test_steps import host, want

LIMIT = 15  # seconds


class Node:
    """A stand-in node in a directory: the script, its state file, build slots, /proc."""

    def __init__(self, root: Path):
        self.root = root
        self.bin, self.slots, self.proc = root / "bin", root / "slots", root / "proc"
        for d in (self.bin, self.slots, self.proc):
            d.mkdir()
        self.last_busy = root / "last-busy"
        self.powered_off = root / "powered-off"
        self.script = root / "archfarm-idle-stop"
        self.script.write_text(idle_stop.script(str(self.slots), str(self.last_busy),
                                                str(self.proc)))
        self.containers: list[str] = []
        self.engine_exit = 0
        self.stub("systemctl", f'echo "$@" >> {self.powered_off}')

    def stub(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)

    def process(self, pid: int, *argv: str) -> None:
        (self.proc / str(pid)).mkdir()
        (self.proc / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv))

    def idle_for(self, seconds: int) -> None:
        self.last_busy.write_text(f"{int(time.time()) - seconds}\n")

    def check(self) -> bool:
        """Run the timer's check once; whether it powered the node off."""
        names = "".join(f"{c}\n" for c in self.containers)
        self.stub("docker", f"printf %s '{names}'; exit {self.engine_exit}")
        done = subprocess.run(["sh", str(self.script), str(LIMIT)], capture_output=True,
                              text=True, env={**os.environ, "PATH": f"{self.bin}:/usr/bin:/bin"},
                              timeout=30)
        assert done.returncode == 0, done.stderr
        return self.powered_off.exists() and "poweroff" in self.powered_off.read_text()


@pytest.fixture
def node(tmp_path) -> Node:
    return Node(tmp_path)


def test_the_first_look_since_boot_counts_as_busy(node):
    assert not node.check()
    assert abs(int(node.last_busy.read_text()) - time.time()) < 5


def test_idle_past_the_limit_powers_off_and_not_before(node):
    node.idle_for(LIMIT - 5)
    assert not node.check()
    node.idle_for(LIMIT + 1)
    assert node.check()


@pytest.mark.parametrize("busy", ["container", "slot", "session", "engine hung"])
def test_a_build_keeps_the_node_up_and_counts_as_busy_now(node, busy):
    node.process(100, "/usr/sbin/sshd", "-D")
    if busy == "container":
        node.containers = ["buildx_buildkit_farm0", "sharp_turing"]
    elif busy == "slot":
        (node.slots / "build.aaaaaa").touch()
        held = node.slots / "build.bbbbbb"
        holder = subprocess.Popen(["flock", str(held), "sleep", "30"])
        deadline = time.monotonic() + 5
        while subprocess.run(["flock", "-n", str(held), "true"]).returncode == 0:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    elif busy == "session":
        node.process(200, "docker", "system", "dial-stdio")
    else:
        node.engine_exit = 124  # `timeout` gave up on `docker ps`
    node.idle_for(LIMIT + 60)
    try:
        assert not node.check()
    finally:
        if busy == "slot":
            holder.kill()
            holder.wait()
    assert abs(int(node.last_busy.read_text()) - time.time()) < 5
    if busy == "slot":  # testing a slot's lock never makes a file
        assert sorted(p.name for p in node.slots.iterdir()) == ["build.aaaaaa", "build.bbbbbb"]


def test_a_builders_idle_buildkit_a_free_slot_and_no_engine_are_idle(node):
    node.containers = ["buildx_buildkit_farm0"]
    (node.slots / "build.cccccc").touch()  # left by a dropped session, unlocked
    node.engine_exit = 1
    node.idle_for(LIMIT + 1)
    assert node.check()


# -- facts and steps ----------------------------------------------------------------------------

def installed(minutes: float, active: bool = True, content: str | None = None) -> str:
    text = content if content is not None else "".join(idle_stop.render(minutes).values())
    return (f"minutes {minutes:g}\nsha256 {facts.sha256(text)}  -\n"
            f"timer {'active' if active else 'inactive'}\n")


@pytest.mark.parametrize("text, expected", [
    ("", idle_stop.Installed()),
    (installed(0.25), idle_stop.Installed(True, 0.25, facts.sha256(
        "".join(idle_stop.render(0.25).values())), True)),
    ("minutes \nsha256 \ntimer inactive\n", idle_stop.Installed(True, None, None, False)),
])
def test_parse_reads_back_the_installed_minutes(text, expected):
    assert idle_stop.parse(text) == expected


def with_idle(text: str) -> Facts:
    f = host("debian13-amd64-docker.io-converged.txt")
    return dataclasses.replace(f, idle_stop=idle_stop.parse(text))


def plan(text: str, minutes: float | None) -> list[steps.Change]:
    f = with_idle(text)
    return steps.plan(f, want(f, "docker.io", store=True, idle=minutes))


def test_off_and_absent_is_converged():
    assert plan("", None) == []


def test_on_installs_the_timer_then_nothing_is_left():
    [change] = plan("", 0.25)
    assert change.step == "idle stop"
    assert change.detail == ("install the idle-stop timer: power off after 0.25 min with"
                             " no build")
    assert "systemctl enable archfarm-idle-stop.timer" in change.script
    assert "ExecStart=/usr/local/sbin/archfarm-idle-stop 15" in change.script
    assert plan(installed(0.25), 0.25) == []


@pytest.mark.parametrize("text, detail", [
    (installed(5), "idle stop after 0.25 min (was 5)"),
    (installed(0.25, content="an older script"), "update the idle-stop timer"),
    (installed(0.25, active=False), "start the idle-stop timer"),
])
def test_a_different_or_stopped_timer_is_put_right(text, detail):
    [change] = plan(text, 0.25)
    assert change.detail == detail


def test_off_removes_a_timer_installed_before():
    [change] = plan(installed(5), None)
    assert change.detail == "remove the idle-stop timer"
    assert "systemctl disable --now archfarm-idle-stop.timer" in change.script
    assert "rm -f /usr/local/sbin/archfarm-idle-stop" in change.script


def test_verify_wants_the_timer_active():
    f = with_idle(installed(0.25, active=False))
    d = want(f, "docker.io", store=True, idle=0.25)
    assert steps.verify(f, d) == "did not converge: still to do: start the idle-stop timer"
    f = with_idle(installed(0.25))
    assert steps.verify(f, d) is None


@pytest.mark.parametrize("minutes, every, seconds", [
    (0.25, 3750, 15), (1, 15000, 60), (30, 30000, 1800), (0.01, 250, 1)])
def test_the_timer_looks_often_enough(minutes, every, seconds):
    assert idle_stop.interval_ms(minutes) == every
    assert idle_stop.seconds(minutes) == seconds
    assert f"OnUnitActiveSec={every}ms" in idle_stop.timer(minutes)
