"""The lab backend's follower of container deaths (`docker events` lines): a lab VM whose
container stopped on its own is reported to the fake as halted; one the fake itself is taking
down, or a line that is no lab VM's, is not."""

from __future__ import annotations

import json
import subprocess

from provision.lab import backend


def follow(lines: list[str], leaving: set[str]) -> list[str]:
    lab = backend.DockerBackend({})
    halted: list[str] = []
    lab.attach(halted.append)
    lab._leaving = set(leaving)
    events = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    assert events.stdin is not None
    events.stdin.write("".join(f"{line}\n" for line in lines))
    events.stdin.close()
    lab._deaths(events)
    return halted


def death(name: str, vm_id: str) -> str:
    return json.dumps({"name": name, "archfarm.lab.instance": vm_id, "exitCode": "0",
                       "archfarm.lab": "1"})


def test_only_a_container_that_stopped_on_its_own_is_a_guest_power_off(monkeypatch):
    monkeypatch.setattr(backend, "register_again", lambda handlers: None)
    lines = [death("archfarm-lab-a-111111", "111111"), death("archfarm-lab-b-222222", "222222"),
             "not json", json.dumps({"name": "other"})]
    assert follow(lines, leaving={"archfarm-lab-b-222222"}) == ["111111"]

