"""The docker CLI runner with a stand-in `docker` on PATH: its exit code, its timeout, and a
cancelled run that stops its child at once (a signal sent to archfarm's pid alone never
reaches the child)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from provision.buildx import docker_cli
from provision.errors import DockerError
from provision.runner import Cancel, Interrupted


@pytest.fixture
def fake_docker(tmp_path, monkeypatch):
    def make(script: str) -> None:
        path = tmp_path / "docker"
        path.write_text(f"#!/bin/sh\n{script}\n")
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")  # the stand-in first
    return make


def test_output_and_a_failure_with_what_docker_said(fake_docker):
    fake_docker('echo "out $*"; [ "$1" = ok ] || { echo "no such thing" >&2; exit 3; }')
    assert docker_cli.run("ok", "x").stdout == "out ok x\n"
    with pytest.raises(DockerError, match=r"exit 3\): no such thing"):
        docker_cli.run("bad")
    assert docker_cli.run("bad", check=False).code == 3


def test_a_run_past_its_timeout_is_killed(fake_docker):
    fake_docker("exec sleep 30")
    started = time.monotonic()
    with pytest.raises(DockerError, match="no answer within 1 s"):
        docker_cli.run("x", timeout=1)
    assert time.monotonic() - started < 5


def test_a_cancelled_run_stops_its_child_and_raises_interrupted(fake_docker, tmp_path):
    fake_docker(f"echo $$ > {tmp_path}/pid; exec sleep 30")
    cancel = Cancel()
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Interrupted):
        docker_cli.run("x", cancel=cancel)
    assert time.monotonic() - started < 3
    pid = (tmp_path / "pid").read_text().strip()
    assert not Path(f"/proc/{pid}").exists()  # killed and reaped, not left running
