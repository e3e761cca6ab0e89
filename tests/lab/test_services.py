"""The lab's service machinery on its own: no root, no docker, a temporary state directory.

A service is a record; up/down/status iterate the list without knowing any service by name,
and a pid file only ever names the very process the lab started.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from provision.errors import UserError
from provision.lab import control, services
from provision.lab.services import Service


@pytest.fixture(autouse=True)
def state(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHFARM_LAB_STATE", str(tmp_path / "state"))
    return tmp_path / "state"


def sleeper(name: str, **kw) -> Service:
    return Service(name, lambda: ["sleep", "60"], ready=lambda: True, **kw)


def test_a_started_service_is_known_by_its_pid_file_and_stopped_by_it(state):
    svc = sleeper("nap")
    pid = svc.start()
    try:
        assert svc.pid() == pid
        assert (state / "nap.pid").read_text().split()[0] == str(pid)
        assert svc.stop(grace=5) is True
        assert svc.pid() is None and not (state / "nap.pid").exists()
        assert not os.path.exists(f"/proc/{pid}")
        assert svc.stop() is False  # nothing left to stop
    finally:
        if svc.pid():
            os.kill(pid, 9)


def test_a_reused_pid_is_never_taken_for_the_service(state):
    """A pid file naming a live process that started at another time is stale: lab.down must
    not signal whatever process now has that pid."""
    other = subprocess.Popen(["sleep", "60"])
    try:
        svc = sleeper("old")
        state.mkdir(parents=True, exist_ok=True)
        (state / "old.pid").write_text(f"{other.pid} 1\n")
        assert svc.pid() is None
        assert svc.stop() is False
        assert other.poll() is None  # untouched
        (state / "old.pid").write_text(f"{other.pid}\n")  # no start time: not trusted either
        assert svc.pid() is None
    finally:
        other.kill()
        other.wait()


def test_a_service_that_dies_at_start_is_reported_with_its_log(state):
    svc = Service("broken", lambda: [sys.executable, "-c", "print('no config'); exit(3)"],
                  ready=lambda: False)
    with pytest.raises(UserError, match=r"broken did not start.*no config.*broken\.log"):
        svc.start()
    assert svc.pid() is None


def test_ensure_uses_what_the_host_provides_and_refuses_a_taken_address(state):
    said: list[str] = []
    provided = sleeper("engine", provided=lambda: True,
                       prepare=lambda say: pytest.fail("nothing to prepare"))
    assert provided.ensure(said.append) is None
    assert said == ["engine: provided by this host (not started by the lab)"]
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = sleeper("server", address=listener.getsockname())
        with pytest.raises(UserError, match=r"something else listens on 127\.0\.0\.1:\d+"):
            taken.ensure(said.append)
    assert taken.pid() is None


def test_up_and_down_iterate_the_services_in_order_and_reverse(monkeypatch):
    events: list[str] = []
    fleet = [sleeper(n, prepare=lambda say, n=n: events.append(f"prepare {n}"),
                     cleanup=lambda say, n=n: events.append(f"cleanup {n}"))
             for n in ("first", "second", "third")]
    monkeypatch.setattr(control, "SERVICES", fleet)
    monkeypatch.setattr(control, "host_setup", lambda say: None)
    monkeypatch.setattr(control, "lab_containers", lambda all_=True: [])
    monkeypatch.setattr(control, "docker_ready", lambda: False)
    try:
        info = control.up(events.append)
        assert {"compute_endpoint", "registry", "state_dir", "seconds"} <= info.keys()
        pids = control.status()["services"]
        assert list(pids) == ["first", "second", "third"] and all(pids.values())
        control.up(events.append)  # warm: nothing restarted
        assert control.status()["services"] == pids
        events.clear()
        control.down(events.append)
    finally:
        for svc in fleet:
            svc.stop(grace=1)
    assert events == ["third: stopped", "cleanup third", "second: stopped", "cleanup second",
                      "first: stopped", "cleanup first"]
    assert all(pid is None for pid in control.status()["services"].values())


def test_the_lab_services_are_distinct_records():
    names = [svc.name for svc in services.SERVICES]
    assert len(set(names)) == len(names)
    assert names[-1] == "fake-gce"  # started last, stopped first: its VMs go before the rest


def test_the_state_directory_is_root_only_when_the_lab_makes_it(state):
    assert oct(services.state_dir().stat().st_mode & 0o777) == oct(0o700)


def test_the_lab_server_runs_the_fake_with_the_docker_backend():
    command = services.SERVICES[-1].command()
    assert command[1:3] == ["-m", "provision.lab.gce"]
    refused = subprocess.run([sys.executable, "-m", "provision.lab.gce", "--lab-image", "x",
                              "--host", "10.0.0.1"], capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2 and "loopback" in refused.stderr


def test_a_running_service_started_with_another_command_line_is_named_with_the_fix(state):
    """The fake started by an older checkout boots that checkout's lab image: lab.up says so
    rather than leaving new VMs on an image whose recipe has changed."""
    svc = sleeper("nap")
    pid = svc.start()
    try:
        said: list[str] = []
        assert svc.ensure(said.append) == pid and said == [f"nap: running (pid {pid})"]
        changed = Service("nap", lambda: ["sleep", "61"], ready=lambda: True)
        said.clear()
        assert changed.ensure(said.append) == pid
        assert "with an older command line" in said[0] and "`inv lab.down`" in said[0]
    finally:
        svc.stop(grace=5)
