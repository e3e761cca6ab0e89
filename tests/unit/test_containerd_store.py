"""docker.containerd_store end to end without a VM: the inventory key, a configure run on a
simulated Debian 13 host (the second plan once the engine is installed, idempotence), and the
one warning a run for engines too old for the store."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest

from provision import configure
from provision.cli import Session
from provision.errors import InventoryError
from provision.hosts import facts, steps
from provision.hosts.cache import Host
from provision.hosts.facts import Binfmt, Facts
from provision.inventory import parse
from provision.report import Reporter
from provision.runner import Cancel

RECORDED = Path(__file__).parent / "recorded"

FARM = """\
farm: demo
gcp:
  project: my-project
  zones: [us-central1-a]
docker:
  package: docker.io
nodes:
  - name: x86
    platform: linux/amd64
    machine_type: n2-standard-2
    count: 2
"""


def recorded(name: str) -> Facts:
    return facts.parse((RECORDED / name).read_text())


def with_docker(lines: str, text: str = FARM) -> str:
    """The farm with `lines` added under docker:."""
    return text.replace("  package: docker.io\n", f"  package: docker.io\n{lines}")


# -- the inventory key --------------------------------------------------------------------------

def test_the_store_is_asked_for_unless_switched_off():
    assert parse(FARM, "farm.yaml").docker.containerd_store is True
    off = with_docker("  containerd_store: false\n")
    assert parse(off, "farm.yaml").docker.containerd_store is False


@pytest.mark.parametrize("value, problem, fix", [
    ('"yes"', "expected true or false, got the quoted string 'yes'",
     "use true or false, without quotes"),
    ("1", "expected true or false, got 1", "use true or false"),
    ("containerd", "expected true or false, got 'containerd'", "use true or false"),
])
def test_containerd_store_is_a_strict_bool(value, problem, fix):
    text = with_docker(f"  containerd_store: {value}\n")
    with pytest.raises(InventoryError) as e:
        parse(text, "farm.yaml")
    assert (e.value.line, e.value.key, e.value.problem, e.value.fix) == (
        7, "docker.containerd_store", problem, fix)
    assert e.value.exit_code == 2
    assert str(e.value).startswith("farm.yaml:7: docker.containerd_store: ")


def test_a_bad_containerd_store_ends_configure_with_exit_2_and_no_traceback(tmp_path, capsys):
    path = tmp_path / "farm.yaml"
    path.write_text(with_docker('  containerd_store: "yes"\n'))
    assert configure.configure(inventory=str(path)) == 2
    err = capsys.readouterr().err
    assert "docker.containerd_store" in err and "Fix: use true or false" in err
    assert "Traceback" not in err


# -- a configure run on a simulated host ----------------------------------------------------------

TRIXIE = "26.1.5+dfsg1-9+deb13u1"
LISTS = {"docker.io": TRIXIE, "docker-cli": TRIXIE}   # what `apt-get update` brings
HANDLER = Binfmt(True, "/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "PF")


class FakeHost:
    """A Debian 13 VM as configure's scripts change it: just enough of apt, dpkg, systemd and
    docker. The engine reads daemon.json when it starts; docker.io brings no CLI."""

    def __init__(self, start: Facts):
        # (outputs recorded before the docker-cli fact: an engine that answered had a CLI)
        self.f = dataclasses.replace(start,
                                     docker_cli=start.docker_cli or bool(start.docker_version))
        self.version = start.docker_version or "26.1.5+dfsg1"
        self.engine_store = bool(start.containerd_store)
        self.scripts: list[str] = []

    def __enter__(self) -> FakeHost:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def facts(self) -> Facts:
        answers = self.f.docker_active and self.f.docker_cli
        return dataclasses.replace(
            self.f, docker_version=self.version if answers else None,
            docker_arch="amd64" if answers else None,
            containerd_store=self.engine_store if answers else None)

    def _start(self) -> None:
        self.f = dataclasses.replace(self.f, docker_active=True, docker_enabled=True)
        self.engine_store = self.f.daemon_json_sha256 == facts.sha256(
            steps.with_containerd_store(steps.render_daemon_json([], [])))

    def run(self, script: str) -> SimpleNamespace:
        self.scripts.append(script)
        if "/etc/docker/daemon.json.archfarm" in script:
            words = shlex.split(script)
            content = words[words.index("%s") + 1]
            self.f = dataclasses.replace(self.f, daemon_json_sha256=facts.sha256(content))
        if " update" in script:
            self.f = dataclasses.replace(self.f, candidates=LISTS)
        for packages in re.findall(r"--force-confold ([^;]+);", script):
            for package in packages.split():
                self.f = dataclasses.replace(self.f, packages={**self.f.packages,
                                                               package: TRIXIE})
                if package == "docker.io":
                    self._start()                  # its postinst starts the engine
                if package == "docker-cli":
                    self.f = dataclasses.replace(self.f, docker_cli=True)
                if package == "qemu-user-static":
                    self.f = dataclasses.replace(self.f, binfmt={"qemu-aarch64": HANDLER})
        if "systemctl restart docker" in script or "systemctl start docker" in script:
            self._start()
        if "usermod -aG docker" in script:
            self.f = dataclasses.replace(self.f, groups=self.f.groups | {"docker"})
        return SimpleNamespace(code=0, stdout="", stderr="")


@pytest.fixture
def hosts(monkeypatch, tmp_path) -> dict[str, FakeHost]:
    """Node name -> its simulated host; configure reaches them instead of SSH."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    found: dict[str, FakeHost] = {}

    def connect(farm, directory, node, pkey, progress, wait_seconds, timeout=0):
        return found[node.name], Host(node.name, node.vm_name, "us-central1-a", "1", "127.0.0.2")

    monkeypatch.setattr(configure, "farm_key", lambda farm: None)
    monkeypatch.setattr(configure, "connect", connect)
    monkeypatch.setattr(configure, "gather", lambda conn, user, timeout=0: conn.facts())
    monkeypatch.setattr(configure, "sudo", lambda conn, script, timeout=0: conn.run(script))
    return found


def run(text: str, check: bool = False):
    session = Session(Reporter(), Cancel(), json_mode=False)
    farm = parse(text, "farm.yaml")
    return configure.configure_nodes(session, farm, None, check, lambda: None).results


def test_a_fresh_trixie_vm_with_empty_apt_lists_ends_with_the_cli_and_the_store(hosts):
    # before its first `apt-get update` apt knows no candidate: the first plan cannot tell
    # docker.io's version nor that the CLI is a package of its own; the second plan, made with
    # the engine installed, can
    fresh = dataclasses.replace(recorded("debian13-amd64-none-fresh.txt"), candidates={})
    hosts.update({"x86-1": FakeHost(fresh), "x86-2": FakeHost(fresh)})
    results = run(FARM)
    for name, host in hosts.items():
        result = results[name]
        assert not result.bad, result.note
        assert result.note == ("docker 26.1.5+dfsg1 on amd64, containerd store; changed:"
                               " daemon.json, docker engine, docker service, docker group")
        assert result.extra["containerd_store"] is True
        assert [d.split(":")[0] for d in result.extra["details"]] == [
            "daemon.json", "docker engine", "docker service", "docker group",
            "daemon.json", "docker engine"]
        assert result.extra["details"][-1] == (
            "docker engine: install docker-cli (Debian 13 moved the docker CLI out of docker.io)")
        # converged: a second run changes nothing
        ran = len(host.scripts)
        again = run(FARM)[name]
        assert again.changes == [] and not again.bad
        assert again.note == "docker 26.1.5+dfsg1 on amd64, containerd store"
        assert len(host.scripts) == ran


def test_a_fresh_trixie_vm_with_apt_lists_needs_one_plan(hosts):
    hosts["x86-1"] = host = FakeHost(recorded("debian13-amd64-none-fresh.txt"))
    results = run(FARM.replace("count: 2", "count: 1").replace("name: x86", "name: x86-1"))
    assert not results["x86-1"].bad, results["x86-1"].note
    assert [d.split(":")[0] for d in results["x86-1"].extra["details"]] == [
        "daemon.json", "docker engine", "docker service", "docker group"]
    assert "docker.io docker-cli;" in host.scripts[1]


def test_engines_too_old_for_the_store_get_one_warning_a_run(hosts, capsys):
    old = recorded("debian12-amd64-docker.io-converged.txt")
    hosts.update({"x86-1": FakeHost(old), "x86-2": FakeHost(old)})
    for check in (True, False):
        capsys.readouterr()
        results = run(FARM, check=check)
        assert not any(r.bad or r.changes for r in results.values())
        out = capsys.readouterr().out
        lines = [line for line in out.splitlines() if "containerd image store" in line]
        assert lines == [
            "warning  containerd image store: docker 20.10 on nodes x86-1, x86-2 has no"
            " containerd image store (Docker 24+ needed): attestations (--provenance, --sbom)"
            " and registry cache export are off on them. Fix: use docker.package: docker-ce,"
            " or Debian 13 nodes (or set docker.containerd_store: false to do without it)."]


def test_no_warning_where_the_store_is_not_asked_for(hosts, capsys):
    old = recorded("debian12-amd64-docker.io-converged.txt")
    hosts.update({"x86-1": FakeHost(old), "x86-2": FakeHost(old)})
    run(with_docker("  containerd_store: false\n"))
    assert "containerd image store" not in capsys.readouterr().out


def test_check_mode_shows_the_switch_and_changes_nothing(hosts):
    hosts.update({"x86-1": FakeHost(recorded("debian13-amd64-docker.io-converged.txt")),
                  "x86-2": FakeHost(recorded("debian13-amd64-docker.io-nocli.txt"))})
    results = run(with_docker("  containerd_store: false\n"), check=True)
    assert results["x86-1"].extra["details"] == [
        "daemon.json: turn off the containerd image store (restart docker); the node's local"
        " images stay in the containerd store, on a build node they are only cache"]
    assert results["x86-2"].extra["details"] == [
        "docker engine: install docker-cli (Debian 13 moved the docker CLI out of docker.io)"]
    assert all(not h.scripts for h in hosts.values())


def test_the_store_turned_off_is_said_in_daemon_json_where_it_is_the_default():
    """Docker 29 runs the containerd image store by default on a fresh install: false has to
    be written to mean it there; older engines get no such key."""
    farm = parse(with_docker("  containerd_store: false\n"), "farm.yaml")
    node = farm.expanded()[0]
    off = configure.desired(farm, node, SimpleNamespace(emulated=False))
    docker_26 = recorded("debian13-amd64-docker.io-converged.txt")
    docker_29 = dataclasses.replace(docker_26, docker_version="29.0.1")
    assert json.loads(steps.daemon_json(docker_29, off))["features"] == {
        "containerd-snapshotter": False}
    assert "features" not in json.loads(steps.daemon_json(docker_26, off))
    assert "features" not in json.loads(steps.daemon_json(
        recorded("debian12-amd64-docker.io-converged.txt"), off))
