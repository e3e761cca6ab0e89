"""The hosts cache and the farm's known_hosts file, checked with the real OpenSSH tools."""

from __future__ import annotations

import json
import os
import stat
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from provision.hosts import cache
from provision.hosts.cache import Host


def public_blob() -> str:
    line = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return line.split()[1]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def host(node: str = "arm64", address: str = "127.0.0.9") -> Host:
    return Host(node=node, vm=f"demo-{node}", zone="us-central1-a", vm_id="42",
                address=address, host_keys={"ssh-ed25519": public_blob()}, emulated=True)


def test_fingerprint_is_what_ssh_keygen_prints(tmp_path):
    blob = public_blob()
    path = tmp_path / "k.pub"
    path.write_text(f"ssh-ed25519 {blob} test\n")
    printed = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(path)],
                             capture_output=True, text=True, check=True).stdout.split()[1]
    assert cache.fingerprint(blob) == printed


def test_save_then_load_round_trips_and_files_are_private():
    saved = {"arm64": host()}
    cache.save("p-1", "demo", saved)
    assert cache.load("p-1", "demo") == saved
    directory = cache.cache_dir("p-1", "demo")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in ("hosts.json", "known_hosts"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600


def test_known_hosts_is_found_by_ssh_keygen_under_address_and_alias():
    h = host()
    cache.save("p-1", "demo", {"arm64": h})
    path = cache.known_hosts_path("p-1", "demo")
    for name in (h.address, "archfarm-demo-arm64"):  # the ssh Host alias of node arm64
        found = subprocess.run(["ssh-keygen", "-F", name, "-f", str(path)],
                               capture_output=True, text=True)
        assert found.returncode == 0 and h.host_keys["ssh-ed25519"] in found.stdout


@pytest.mark.parametrize("content", ["", "{", "[]", '{"nodes": {"a": {"node": 1}}}',
                                     '{"nodes": 3}'])
def test_an_unreadable_cache_reads_as_empty(content):
    directory = cache.cache_dir("p-1", "demo")
    directory.mkdir(parents=True)
    (directory / "hosts.json").write_text(content)
    assert cache.load("p-1", "demo") == {}


def test_forget_drops_some_nodes_or_the_whole_farm():
    cache.save("p-1", "demo", {"a": host("a", "127.0.0.2"), "b": host("b", "127.0.0.3")})
    cache.forget("p-1", "demo", {"a"})
    assert set(cache.load("p-1", "demo")) == {"b"}
    assert "127.0.0.2" not in cache.known_hosts_path("p-1", "demo").read_text()
    cache.forget("p-1", "demo")
    assert cache.load("p-1", "demo") == {}
    assert json.loads((cache.cache_dir("p-1", "demo") / "hosts.json").read_text()) == {
        "nodes": {}}


def test_projects_and_farms_never_share_a_cache():
    cache.save("p-1", "demo", {"a": host("a")})
    assert cache.load("p-2", "demo") == {} and cache.load("p-1", "other") == {}


def test_a_planted_symlink_is_not_followed(tmp_path):
    directory = cache.cache_dir("p-1", "demo")
    directory.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    (directory / f".hosts.json.{os.getpid()}").symlink_to(victim)
    with pytest.raises(OSError):
        cache.save("p-1", "demo", {"a": host("a")})
    assert victim.read_text() == "keep me"
