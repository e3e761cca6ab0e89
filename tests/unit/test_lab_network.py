"""`lab.down`'s removal of the lab's network says what happened: removed, or not, with the
containers still attached to it. `docker` is a stand-in runner here."""

from __future__ import annotations

import subprocess

from provision.lab import containers


def runner(rm_code: int, attached: str = "", rm_err: str = "", inspect_code: int = 0):
    calls: list[list[str]] = []

    def run(args: list[str]) -> subprocess.CompletedProcess:
        calls.append(args)
        if args[1:3] == ["network", "rm"]:
            return subprocess.CompletedProcess(args, rm_code, "", rm_err)
        if args[1:3] == ["network", "inspect"]:
            return subprocess.CompletedProcess(args, inspect_code, attached, "")
        raise AssertionError(f"unexpected docker call {args}")

    return run, calls


def remove(run) -> tuple[bool, list[str]]:
    said: list[str] = []
    done = containers.remove_network("abc123", said.append, run=run)
    return done, said


def test_a_removed_network_is_said_removed_and_nothing_is_inspected():
    run, calls = runner(0)
    assert remove(run) == (True, ["removed network archfarm-lab-net"])
    assert calls == [["docker", "network", "rm", "abc123"]]


def test_a_network_that_stays_is_not_said_removed_and_its_containers_are_named():
    err = "Error response from daemon: error while removing network: network archfarm-lab-net" \
          " id abc123 has active endpoints"
    run, calls = runner(1, attached="web-2 archfarm-lab-a-111111 \n", rm_err=err + "\n")
    done, said = remove(run)
    assert not done and len(said) == 1
    assert "removed network" not in said[0]
    assert said[0].startswith(f"could not remove network archfarm-lab-net: {err}.")
    assert "Still attached: archfarm-lab-a-111111, web-2." in said[0]
    assert calls[1][:3] == ["docker", "network", "inspect"] and calls[1][-1] == "abc123"


def test_a_failure_with_nothing_attached_or_no_inspect_says_only_why():
    for attached, code in (("", 0), ("x", 1)):
        run, _ = runner(1, attached=attached, inspect_code=code)
        assert remove(run) == (False, ["could not remove network archfarm-lab-net:"
                                       " docker network rm exited 1"])


def test_lab_down_does_not_say_removed_when_docker_network_rm_fails(monkeypatch):
    """Through `remove_lab_network`, as `lab.down` calls it (docker's subprocess.run a
    stand-in)."""
    run, calls = runner(1, attached="archfarm-lab-a-111111\n", rm_err="has active endpoints")
    monkeypatch.setattr(containers, "lab_network", lambda docker="docker": "abc123")
    monkeypatch.setattr(containers.subprocess, "run", lambda args, **kw: run(args))
    said: list[str] = []
    containers.remove_lab_network(said.append)
    assert len(said) == 1 and "removed network" not in said[0]
    assert "Still attached: archfarm-lab-a-111111." in said[0]
