"""What register writes into the user's ssh configuration, and what destroy takes back out:
checked with OpenSSH's own parser (`ssh -G`)."""

from __future__ import annotations

import stat
import subprocess

import pytest

from provision.buildx import register
from provision.hosts.cache import Host
from provision.inventory import parse

FARM = parse("""
farm: demo
gcp: {project: my-project, zones: [us-central1-a], ssh_source_ranges: [10.0.0.0/8]}
ssh: {user: builder, private_key: /keys/demo key}
buildx: {buildkit_image: mirror.gcr.io/moby/buildkit:v0.16.0}
nodes:
  - {name: arm64, platform: linux/arm64, machine_type: t2a-standard-4}
""", "demo.yaml")
HOST = Host(node="arm64", vm="demo-arm64", zone="us-central1-a", vm_id="1",
            address="203.0.113.9", host_keys={"ssh-ed25519": "AAAA"})


@pytest.fixture
def home(tmp_path, monkeypatch):
    ssh = tmp_path / ".ssh"
    monkeypatch.setattr(register, "ssh_dir", lambda: ssh)
    return ssh


USER_CONFIG = "Host *\n  ServerAliveInterval 60\n\nHost work\n  HostName 198.51.100.1\n"


def test_the_include_is_added_once_at_the_top_and_the_users_lines_kept(home):
    home.mkdir()
    (home / "config").write_text(USER_CONFIG)
    (home / "config").chmod(0o644)
    assert register.ensure_include(check=False) is True
    assert register.ensure_include(check=False) is False
    text = (home / "config").read_text()
    assert text.splitlines()[1] == register.include_line() and text.endswith(USER_CONFIG)
    assert text.count("Include") == 1
    assert stat.S_IMODE((home / "config").stat().st_mode) == 0o644  # the user's mode kept


def test_check_mode_writes_nothing(home):
    assert register.ensure_include(check=True) is True
    assert not (home / "config").exists()


def test_remove_include_restores_the_users_file_exactly(home):
    home.mkdir()
    (home / "config").write_text(USER_CONFIG)
    register.ensure_include(check=False)
    assert register.remove_include() is True
    assert (home / "config").read_text() == USER_CONFIG


def test_an_include_only_file_archfarm_made_is_removed(home):
    register.ensure_include(check=False)
    assert stat.S_IMODE((home / "config").stat().st_mode) == 0o600
    assert register.remove_include() is True
    assert not (home / "config").exists()


def test_the_include_stays_while_another_farm_is_registered(home):
    register.ensure_include(check=False)
    (home / "archfarm").mkdir()
    (home / "archfarm" / "other.conf").write_text("Host x\n")
    assert register.remove_include() is False
    assert register.include_line() in (home / "config").read_text()


def test_openssh_reads_the_host_entry_with_strict_pinned_keys(home, tmp_path):
    config = tmp_path / "farm.conf"
    config.write_text(register.render(FARM, {"arm64": HOST}))
    seen = dict(line.split(" ", 1) for line in subprocess.run(
        ["ssh", "-G", "-F", str(config), "archfarm-demo-arm64"], capture_output=True,
        text=True, check=True).stdout.splitlines() if " " in line)
    assert seen["hostname"] == "203.0.113.9" and seen["user"] == "builder"
    assert seen["stricthostkeychecking"] == "true" and seen["identitiesonly"] == "yes"
    assert seen["hostkeyalias"] == "archfarm-demo-arm64"
    assert seen["identityfile"] == "/keys/demo key"  # a path with a space survives
    assert seen["userknownhostsfile"].endswith("my-project/demo/known_hosts")
    assert seen["controlmaster"] == "auto" and seen["batchmode"] == "yes"


def test_the_builder_node_is_pinned_and_takes_the_buildkit_mirror():
    node = FARM.expanded()[0]
    args = register.builder_create_args(FARM, register.wanted(FARM, node), append=True)
    assert args[:4] == ["buildx", "create", "--name", "demo"]
    assert args[args.index("--platform"):][:2] == ["--platform", "linux/arm64"]
    assert "image=mirror.gcr.io/moby/buildkit:v0.16.0" in args
    assert args[-2:] == ["--append", "archfarm-demo-arm64"]
