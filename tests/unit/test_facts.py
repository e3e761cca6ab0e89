"""The facts parsers on recorded outputs of the facts script (tests/unit/recorded/, where each
came from is in its README.md) and on the edge cases a real host produces."""

from __future__ import annotations

import getpass
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from provision.buildx import slots
from provision.hosts import facts
from provision.hosts.facts import Binfmt, Facts

RECORDED = Path(__file__).parent / "recorded"


# The builds section, recorded through `sh` on a local machine (so not a host of the table).
WITH_BUILDS = "builds/debian12-amd64-local-sh-one-held.txt"
# Every section of today's script: the docker CLI, apt's candidates and the image store too.
EVERY_SECTION = "debian13-amd64-docker.io-converged.txt"
# Configured by archfarm before Debian 13 moved the CLI out of docker.io: an engine runs, no
# `docker` asks it anything.
ENGINE_WITHOUT_CLI = "debian13-amd64-docker.io-nocli.txt"


def recorded(name: str) -> str:
    return (RECORDED / name).read_text()


# file -> what a user cares about: (os id, version, codename, dpkg arch, uname -m,
#         docker version, engine arch, in the docker group, {handler: flags}, booting)
HOSTS = {
    "debian12-amd64-docker.io-converged.txt":
        ("debian", "12", "bookworm", "amd64", "x86_64", "20.10.24+dfsg1", "amd64", True,
         {"qemu-aarch64": "PF"}, False),
    "debian12-amd64-docker.io-partial.txt":
        ("debian", "12", "bookworm", "amd64", "x86_64", "20.10.24+dfsg1", "amd64", False,
         {"qemu-aarch64": "PF"}, False),
    "debian12-amd64-none-fresh.txt":
        ("debian", "12", "bookworm", "amd64", "x86_64", None, None, False, {}, False),
    "debian12-amd64-docker-ce-converged.txt":
        ("debian", "12", "bookworm", "amd64", "x86_64", "28.3.3", "amd64", True,
         {"qemu-aarch64": "PF"}, False),
    "debian12-arm64-docker-ce-converged.txt":
        ("debian", "12", "bookworm", "arm64", "aarch64", "28.3.3", "arm64", True,
         {"qemu-x86_64": "PF"}, False),
    "ubuntu22.04-amd64-docker-ce-converged.txt":
        ("ubuntu", "22.04", "jammy", "amd64", "x86_64", "28.3.3", "amd64", True,
         {"qemu-aarch64": "POCF"}, False),
    "ubuntu22.04-arm64-none-fresh.txt":
        ("ubuntu", "22.04", "jammy", "arm64", "aarch64", None, None, False, {}, False),
    "ubuntu24.04-arm64-docker-ce-converged.txt":
        ("ubuntu", "24.04", "noble", "arm64", "aarch64", "28.3.3", "arm64", True,
         {"qemu-x86_64": "POCF"}, False),
    "ubuntu24.04-arm64-docker.io-converged.txt":
        ("ubuntu", "24.04", "noble", "arm64", "aarch64", "27.5.1", "arm64", True,
         {"qemu-x86_64": "POCF"}, False),
    "ubuntu24.04-amd64-none-fresh.txt":
        ("ubuntu", "24.04", "noble", "amd64", "x86_64", None, None, False, {}, True),
    "debian13-amd64-none-fresh.txt":
        ("debian", "13", "trixie", "amd64", "x86_64", None, None, False, {}, False),
    "debian13-amd64-docker.io-converged.txt":
        ("debian", "13", "trixie", "amd64", "x86_64", "26.1.5+dfsg1", "amd64", True,
         {"qemu-aarch64": "PF"}, False),
    ENGINE_WITHOUT_CLI:
        ("debian", "13", "trixie", "amd64", "x86_64", None, None, True,
         {"qemu-aarch64": "PF"}, False),
}


def test_every_recorded_output_is_in_the_table():
    assert sorted(p.name for p in RECORDED.glob("*.txt")) == sorted(HOSTS)


@pytest.mark.parametrize("name", sorted(HOSTS))
def test_recorded_output_parses_to_what_the_host_is(name):
    (os_id, version_id, codename, dpkg_arch, machine, docker_version, docker_arch, in_group,
     handlers, booting) = HOSTS[name]
    f = facts.parse(recorded(name))
    assert (f.os_id, f.version_id, f.codename) == (os_id, version_id, codename)
    assert f.debian_like
    assert (f.dpkg_arch, f.machine) == (dpkg_arch, machine)
    assert (f.docker_version, f.docker_arch) == (docker_version, docker_arch)
    assert f.docker_active == (docker_version is not None or name == ENGINE_WITHOUT_CLI)
    assert f.docker_enabled == f.docker_active
    assert ("docker" in f.groups) == in_group
    assert "builder" in f.groups and "google-sudoers" in f.groups
    assert {n: h.flags for n, h in f.binfmt.items()} == handlers
    assert all(h.enabled and h.interpreter.startswith("/usr/libexec/qemu-binfmt/")
               for h in f.binfmt.values())
    assert f.binfmt_mounted
    assert f.booting == booting


@pytest.mark.parametrize("name, packages", [
    ("debian12-amd64-docker.io-converged.txt",
     {"docker.io": "20.10.24+dfsg1-1+deb12u1+b6", "qemu-user-static": "1:7.2+dfsg-7+deb12u18+b3",
      "binfmt-support": "2.2.2-2"}),
    ("debian12-amd64-docker.io-partial.txt", {"docker.io": "20.10.24+dfsg1-1+deb12u1+b6"}),
    ("debian12-amd64-docker-ce-converged.txt",
     {"docker-ce": "5:28.3.3-1~debian.12~bookworm",
      "docker-ce-cli": "5:28.3.3-1~debian.12~bookworm",
      "containerd.io": "1.7.27-1", "docker-buildx-plugin": "0.26.1-1~debian.12~bookworm",
      "qemu-user-static": "1:7.2+dfsg-7+deb12u18+b3", "binfmt-support": "2.2.2-2"}),
    ("ubuntu24.04-arm64-docker.io-converged.txt",
     {"docker.io": "27.5.1-0ubuntu3~24.04.2", "qemu-user-static": "1:8.2.2+ds-0ubuntu1.7",
      "binfmt-support": "2.2.2-7"}),
    ("debian12-amd64-none-fresh.txt", {}),
    ("ubuntu22.04-arm64-none-fresh.txt", {}),
    ("debian13-amd64-docker.io-converged.txt",
     {"docker.io": "26.1.5+dfsg1-9+deb13u1", "docker-cli": "26.1.5+dfsg1-9+deb13u1",
      "qemu-user-static": "1:10.0.11+ds-0+deb13u1", "binfmt-support": "2.2.2-7"}),
    (ENGINE_WITHOUT_CLI,
     {"docker.io": "26.1.5+dfsg1-9+deb13u1", "qemu-user-static": "1:10.0.11+ds-0+deb13u1",
      "binfmt-support": "2.2.2-7"}),
    ("debian13-amd64-none-fresh.txt", {}),
])
def test_recorded_packages_are_the_installed_ones_only(name, packages):
    assert facts.parse(recorded(name)).packages == packages


# -- the docker CLI, apt's candidates, the image store ----------------------------------------

TRIXIE = "26.1.5+dfsg1-9+deb13u1"


@pytest.mark.parametrize("name, cli, candidates, store", [
    ("debian13-amd64-none-fresh.txt", False, {"docker.io": TRIXIE, "docker-cli": TRIXIE}, None),
    ("debian13-amd64-docker.io-converged.txt", True,
     {"docker.io": TRIXIE, "docker-cli": TRIXIE}, True),
    (ENGINE_WITHOUT_CLI, False, {"docker.io": TRIXIE, "docker-cli": TRIXIE}, None),
    # recorded before these sections: read as absent
    ("debian12-amd64-docker.io-converged.txt", False, {}, None),
])
def test_recorded_cli_candidates_and_store(name, cli, candidates, store):
    f = facts.parse(recorded(name))
    assert (f.docker_cli, f.candidates, f.containerd_store) == (cli, candidates, store)


BOOKWORM_POLICY = """docker.io:
  Installed: 20.10.24+dfsg1-1+deb12u1+b6
  Candidate: 20.10.24+dfsg1-1+deb12u1+b6
  Version table:
 *** 20.10.24+dfsg1-1+deb12u1+b6 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
        100 /var/lib/dpkg/status
"""


@pytest.mark.parametrize("text, expected", [
    # bookworm has no docker-cli: apt prints nothing for it (a notice on stderr)
    (BOOKWORM_POLICY, {"docker.io": "20.10.24+dfsg1-1+deb12u1+b6"}),
    # empty lists, as on a fresh VM before its first `apt-get update`
    ("docker.io:\n  Installed: (none)\n  Candidate: (none)\n  Version table:\n", {}),
    # installed, but its archive gone from the lists: no candidate but the installed one
    ("docker.io:\n  Installed: 26.1.5+dfsg1-9+b13\n  Candidate: 26.1.5+dfsg1-9+b13\n"
     "  Version table:\n *** 26.1.5+dfsg1-9+b13 100\n        100 /var/lib/dpkg/status\n",
     {"docker.io": "26.1.5+dfsg1-9+b13"}),
    ("  Candidate: 1.0\n", {}),                # no package line before it
    ("", {}),
])
def test_parse_apt_candidates(text, expected):
    assert facts.parse_apt_candidates(text) == expected


CLASSIC = ('[["Backing Filesystem","extfs"],["Supports d_type","true"],'
           '["Using metacopy","false"],["Native Overlay Diff","true"],["userxattr","false"]]')


@pytest.mark.parametrize("text, expected", [
    ('[["driver-type","io.containerd.snapshotter.v1"]]', True),
    (CLASSIC, False),                           # overlay2, the classic store
    ("[]", False),
    ("WARNING: bridge-nf-call-iptables is disabled\n"
     '[["driver-type","io.containerd.snapshotter.v1"]]', True),
    ("", None),                                 # docker not running: the command is skipped
    ("null", None),
    ('[["driver-type",', None),                 # cut off by the timeout
    ("Cannot connect to the Docker daemon at unix:///var/run/docker.sock.", None),
])
def test_parse_containerd_store(text, expected):
    assert facts.parse_containerd_store(text) == expected


@pytest.mark.parametrize("version, release", [
    ("26.1.5+dfsg1", (26, 1)),
    ("20.10.24+dfsg1", (20, 10)),
    ("20.10.24+dfsg1-1+deb12u1+b6", (20, 10)),
    ("26.1.5+dfsg1-9+deb13u1", (26, 1)),
    ("5:28.0.1-1~debian.12~bookworm", (28, 0)),   # docker-ce's epoch
    ("5:28.3.3-1~ubuntu.24.04~noble", (28, 3)),
    ("27.5.1-0ubuntu3~24.04.2", (27, 5)),
    ("28.3.3", (28, 3)),
    (" 24.0.7 ", (24, 0)),
    ("", None),
    ("28", None),
    ("v28.0.1", None),
    ("5:", None),
    ("\u0663.1", None),                           # an Arabic-Indic three is no version digit
])
def test_parse_release(version, release):
    assert facts.parse_release(version) == release


@pytest.mark.parametrize("name, daemon_json, keyring, source", [
    ("debian12-amd64-docker.io-converged.txt", True, False, False),
    ("debian12-amd64-docker-ce-converged.txt", True, True, True),
    ("ubuntu24.04-arm64-docker-ce-converged.txt", True, True, True),
    ("ubuntu24.04-amd64-none-fresh.txt", False, False, False),
])
def test_recorded_file_digests(name, daemon_json, keyring, source):
    f = facts.parse(recorded(name))
    assert (f.daemon_json_sha256 is not None) == daemon_json
    assert f.docker_keyring == keyring
    assert (f.docker_source_sha256 is not None) == source


# -- parse_os_release ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ('ID=debian\nVERSION_ID="12"\n', {"ID": "debian", "VERSION_ID": "12"}),
    ("ID='ubuntu'\nVERSION_CODENAME=noble", {"ID": "ubuntu", "VERSION_CODENAME": "noble"}),
    ('PRETTY_NAME="Ubuntu 22.04.5 LTS"', {"PRETTY_NAME": "Ubuntu 22.04.5 LTS"}),
    ('ID_LIKE="rhel centos fedora"', {"ID_LIKE": "rhel centos fedora"}),
    ('NAME="A \\"quoted\\" name"', {"NAME": 'A "quoted" name'}),
    ('# a comment\n\n  ID=debian  \nnot an assignment\n', {"ID": "debian"}),
    ('VARIANT=""\nVARIANT_ID=', {"VARIANT": "", "VARIANT_ID": ""}),
    ('NAME="unbalanced', {"NAME": '"unbalanced'}),
    ("", {}),
])
def test_parse_os_release(text, expected):
    assert facts.parse_os_release(text) == expected


def test_parse_os_release_recorded_ubuntu_keeps_both_codenames():
    section = facts.split(recorded("ubuntu22.04-amd64-docker-ce-converged.txt"))["os-release"]
    parsed = facts.parse_os_release(section)
    assert parsed["VERSION_CODENAME"] == parsed["UBUNTU_CODENAME"] == "jammy"
    assert parsed["ID_LIKE"] == "debian"
    assert parsed["VERSION"] == "22.04.5 LTS (Jammy Jellyfish)"


@pytest.mark.parametrize("os_release, codename", [
    ("ID=ubuntu\nUBUNTU_CODENAME=jammy\n", "jammy"),          # only Ubuntu's key
    ("ID=debian\nVERSION_CODENAME=bookworm\n", "bookworm"),
    ("ID=ubuntu\nVERSION_CODENAME=noble\nUBUNTU_CODENAME=noble\n", "noble"),
    ("ID=debian\n", ""),                                      # sid has no codename line
])
def test_codename_comes_from_either_key(os_release, codename):
    assert facts.parse(f"@@ os-release\n{os_release}").codename == codename


# -- parse_packages ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("docker.io 20.10.24+dfsg1-1+deb12u1+b6 installed",
     {"docker.io": "20.10.24+dfsg1-1+deb12u1+b6"}),
    ("docker-ce  not-installed", {}),                          # dpkg knows it, no version
    ("docker.io 20.10.24+dfsg1-1+deb12u1+b6 config-files", {}),  # removed, conffiles left
    ("docker-ce 5:28.3.3-1~debian.12~bookworm half-configured", {}),
    ("containerd.io 1.7.27-1 unpacked", {}),
    ("binfmt-support 2.2.2-2 installed\ndocker-ce  not-installed\n"
     "qemu-user-static 1:7.2+dfsg-7+deb12u18+b3 installed\n",
     {"binfmt-support": "2.2.2-2", "qemu-user-static": "1:7.2+dfsg-7+deb12u18+b3"}),
    ("", {}),
])
def test_parse_packages(text, expected):
    assert facts.parse_packages(text) == expected


# -- parse_docker_version ------------------------------------------------------------------------

@pytest.mark.parametrize("name, version, arch", [
    ("debian12-amd64-docker.io-converged.txt", "20.10.24+dfsg1", "amd64"),
    ("debian12-arm64-docker-ce-converged.txt", "28.3.3", "arm64"),
    ("ubuntu22.04-amd64-docker-ce-converged.txt", "28.3.3", "amd64"),
    ("ubuntu24.04-arm64-docker.io-converged.txt", "27.5.1", "arm64"),
])
def test_parse_docker_version_recorded(name, version, arch):
    section = facts.split(recorded(name))["docker-version"]
    assert facts.parse_docker_version(section) == (version, arch)


@pytest.mark.parametrize("text", [
    "",                                        # docker not running: the command is skipped
    "null",                                    # the CLI without an engine
    "Cannot connect to the Docker daemon at unix:///var/run/docker.sock.",
    '{"Platform":{"Name":""},"Version":""}',   # no version: not an engine that answered
    '{"Version": "28.3.3", "Arch": ',          # cut off by the timeout
    '["28.3.3"]',
])
def test_parse_docker_version_without_an_engine(text):
    assert facts.parse_docker_version(text) == (None, None)


def test_parse_docker_version_skips_noise_before_the_json():
    text = 'WARNING: bridge-nf-call-iptables is disabled\n{"Version":"28.3.3","Arch":"arm64"}\n'
    assert facts.parse_docker_version(text) == ("28.3.3", "arm64")


def test_parse_docker_version_without_arch():
    assert facts.parse_docker_version('{"Version":"28.3.3"}') == ("28.3.3", None)


# -- parse_binfmt --------------------------------------------------------------------------------

AARCH64_PF = """== /proc/sys/fs/binfmt_misc/qemu-aarch64
enabled
interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
flags: PF
offset 0
magic 7f454c460201010000000000000000000200b700
mask ffffffffffffff00fffffffffffffffffeffffff
"""


@pytest.mark.parametrize("text, expected", [
    (AARCH64_PF,
     {"qemu-aarch64": Binfmt(True, "/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "PF")}),
    (AARCH64_PF.replace("enabled", "disabled"),
     {"qemu-aarch64": Binfmt(False, "/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "PF")}),
    (AARCH64_PF.replace("PF", "POCF").replace("aarch64", "x86_64"),
     {"qemu-x86_64": Binfmt(True, "/usr/libexec/qemu-binfmt/x86_64-binfmt-P", "POCF")}),
    # registered without flags: the kernel prints "flags: " with nothing after it
    (AARCH64_PF.replace("flags: PF", "flags: ").replace(
        "/usr/libexec/qemu-binfmt/aarch64-binfmt-P", "/usr/bin/qemu-aarch64"),
     {"qemu-aarch64": Binfmt(True, "/usr/bin/qemu-aarch64", "")}),
    # the header printed but the file unreadable (not root)
    ("== /proc/sys/fs/binfmt_misc/qemu-x86_64\n", {"qemu-x86_64": Binfmt(False, "", "")}),
    ("", {}),
])
def test_parse_binfmt(text, expected):
    assert facts.parse_binfmt(text) == expected


def test_parse_binfmt_two_handlers():
    text = AARCH64_PF + AARCH64_PF.replace("aarch64", "x86_64").replace("PF", "F")
    parsed = facts.parse_binfmt(text)
    assert {n: h.flags for n, h in parsed.items()} == {"qemu-aarch64": "PF", "qemu-x86_64": "F"}


# -- parse_sha256 --------------------------------------------------------------------------------

DIGEST = "5d2890578f266557d48f101447936eb9994531adfb6f91d13af21c1a83720132"


@pytest.mark.parametrize("text, expected", [
    (f"{DIGEST}  /etc/docker/daemon.json", DIGEST),
    (f"{DIGEST}  /etc/docker/daemon.json\n", DIGEST),
    ("", None),
    ("sha256sum: /etc/docker/daemon.json: No such file or directory", None),
    (DIGEST[:-1] + "  /etc/docker/daemon.json", None),
    (DIGEST.upper() + "  /etc/docker/daemon.json", None),
])
def test_parse_sha256(text, expected):
    assert facts.parse_sha256(text) == expected


def test_sha256_is_the_digest_sha256sum_prints():
    assert facts.sha256("") == ("e3b0c44298fc1c149afbf4c8996fb924"
                                "27ae41e4649b934ca495991b7852b855")


# -- split / parse -------------------------------------------------------------------------------

def test_split_names_every_section_of_a_recorded_output():
    # recorded before the idle-stop section (read as "none installed")
    names = [name for name, _ in facts._sections("builder") if name != "idle-stop"]
    assert list(facts.split(recorded(EVERY_SECTION))) == names
    # recorded before the docker CLI, apt's candidates and the image store were asked
    older = [n for n in names if n not in ("docker-cli", "apt-candidates", "docker-store")]
    assert list(facts.split(recorded(WITH_BUILDS))) == older
    # recorded before the builds section was added too: every other one, in order
    sections = facts.split(recorded("debian12-amd64-none-fresh.txt"))
    assert list(sections) == [name for name in older if name != "builds"]
    assert sections["binfmt"] == "" and sections["dpkg-arch"] == "amd64"


def test_split_ignores_lines_before_the_first_section():
    assert facts.split("Warning: Permanently added host\n@@ machine\naarch64\n") == {
        "machine": "aarch64"}


def test_split_keeps_an_empty_section_and_its_blank_lines():
    assert facts.split("@@ a\n@@ b\nx\n\ny\n") == {"a": "", "b": "x\n\ny"}


def test_parse_empty_output_is_an_unknown_host():
    f = facts.parse("")
    assert f == Facts()
    assert not f.debian_like and f.docker_version is None


FEEDS = {"os-release": ("os_id", "os_like", "version_id", "codename"),
         "dpkg-arch": ("dpkg_arch",), "machine": ("machine",), "packages": ("packages",),
         "docker-cli": ("docker_cli",), "apt-candidates": ("candidates",),
         "docker-store": ("containerd_store",),
         "docker-active": ("docker_active",), "docker-enabled": ("docker_enabled",),
         "docker-version": ("docker_version", "docker_arch"), "groups": ("groups",),
         "binfmt-mounted": ("binfmt_mounted",), "binfmt": ("binfmt",),
         "daemon-json": ("daemon_json_sha256",), "docker-keyring": ("docker_keyring",),
         "docker-source": ("docker_source_sha256",), "booting": ("booting",),
         "builds": ("builds_in_flight",), "idle-stop": ("idle_stop",)}


def test_every_section_feeds_a_field():
    assert sorted(FEEDS) == sorted(name for name, _ in facts._sections("builder"))


@pytest.mark.parametrize("name", ["ubuntu22.04-amd64-docker-ce-converged.txt", WITH_BUILDS,
                                  EVERY_SECTION])
@pytest.mark.parametrize("section", sorted(FEEDS))
def test_a_missing_section_reads_as_absent_and_leaves_the_others(section, name):
    text = recorded(name)
    kept = {name: body for name, body in facts.split(text).items() if name != section}
    f = facts.parse("".join(f"@@ {name}\n{body}\n" for name, body in kept.items()))
    full, absent = facts.parse(text), Facts()
    for name in Facts.__dataclass_fields__:
        assert getattr(f, name) == getattr(absent if name in FEEDS[section] else full, name)


def test_docker_not_running_has_no_version_even_if_the_cli_printed_one():
    text = recorded("debian12-amd64-docker.io-converged.txt").replace(
        "@@ docker-active\nactive", "@@ docker-active\ninactive")
    f = facts.parse(text)
    assert not f.docker_active
    # the section is the script's only evidence: it is skipped when docker is not active
    text = text.split("@@ docker-version")[0] + "@@ docker-version\n@@ groups\nbuilder\n"
    assert facts.parse(text).docker_version is None


@pytest.mark.parametrize("booting, expected", [
    ("running", False),
    ("degraded", False),
    ("starting", True),
    ("initializing", True),
    ("running\nstatus: running", True),       # cloud-init still at work
    ("running\nstatus: done", False),
    ("", False),
])
def test_booting(booting, expected):
    assert facts.parse(f"@@ booting\n{booting}\n").booting == expected


@pytest.mark.parametrize("os_release, debian_like", [
    ("ID=debian", True),
    ("ID=ubuntu\nID_LIKE=debian", True),
    ('ID=linuxmint\nID_LIKE="ubuntu debian"', True),
    ('ID=fedora', False),
    ('ID="rocky"\nID_LIKE="rhel centos fedora"', False),
    ("", False),
])
def test_debian_like(os_release, debian_like):
    assert facts.parse(f"@@ os-release\n{os_release}\n").debian_like == debian_like


# -- the script ----------------------------------------------------------------------------------

def test_script_prints_each_section_once_and_quotes_the_user():
    script = facts.script("o'brien")
    for name, _ in facts._sections("x"):
        assert len(re.findall(re.escape(facts.MARK + name) + r"(?![\w-])", script)) == 1
    assert "id -nG 'o'\"'\"'brien'" in script
    assert script.endswith("; true")


def test_the_engine_is_asked_only_when_it_runs_and_apt_in_english():
    sections = dict(facts._sections("builder"))
    for name in ("docker-version", "docker-store"):
        assert sections[name].startswith("systemctl -q is-active docker && timeout 10 docker ")
    assert sections["docker-store"].endswith("docker info --format '{{json .DriverStatus}}'")
    # apt translates "Candidate:"; asked only while docker.io is not installed
    assert sections["apt-candidates"].endswith(
        "| grep -qx installed || LC_ALL=C apt-cache policy docker.io docker-cli")
    assert "docker-cli" in facts.PACKAGES


def _run(script: str) -> str:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30,
                          check=True).stdout


def test_script_output_splits_into_its_sections(monkeypatch):
    monkeypatch.setattr(facts, "_sections", lambda user, slots_dir: [
        ("os-release", "printf 'ID=debian\\nVERSION_CODENAME=bookworm\\n'"),
        ("dpkg-arch", "echo arm64"),
        ("docker-version", "false && echo never"),
        ("groups", f"echo {user} adm google-sudoers"),
    ])
    f = facts.parse(_run(facts.script("builder")))
    assert (f.os_id, f.codename, f.dpkg_arch) == ("debian", "bookworm", "arm64")
    assert f.docker_version is None and f.groups == {"builder", "adm", "google-sudoers"}


def test_script_output_survives_a_file_without_final_newline(monkeypatch):
    monkeypatch.setattr(facts, "_sections", lambda user, slots_dir: [
        ("os-release", "printf 'ID=debian\\nVERSION_CODENAME=bookworm'"),
        ("dpkg-arch", "echo arm64"),
    ])
    f = facts.parse(_run(facts.script("builder")))
    assert (f.codename, f.dpkg_arch) == ("bookworm", "arm64")


# -- builds in flight ----------------------------------------------------------------------------

def test_recorded_builds_in_flight():
    # one slot held, one left unlocked by a dropped session (removed by the count)
    f = facts.parse(recorded(WITH_BUILDS))
    assert f.builds_in_flight == 1
    assert (f.os_id, f.dpkg_arch) == ("debian", "amd64")


@pytest.mark.parametrize("name", sorted(HOSTS))
def test_output_without_the_builds_section_has_none_in_flight(name):
    # the Debian 13 outputs were assembled with it, counting 0
    assert ("@@ builds" in recorded(name)) == name.startswith("debian13-")
    assert facts.parse(recorded(name)).builds_in_flight == 0


@pytest.mark.parametrize("text, n", [
    ("2\n", 2),
    ("\n 12 \n", 12),
    ("", 0),                    # no count printed (runuser missing, say)
    ("garbled", 0),
    ("-1", 0),
    ("1 2", 0),
    ("3abc", 0),
    ("\u00b2", 0),               # a digit to str.isdigit, not to int()
    ("\u0663", 0),               # an Arabic-Indic three
])
def test_a_garbled_builds_section_reads_as_none(text, n):
    assert facts.parse(f"@@ booting\nrunning\n@@ builds\n{text}\n").builds_in_flight == n


def test_the_builds_section_runs_as_the_farm_user():
    section = dict(facts._sections("o'brien", "/run/lock/x"))["builds"]
    assert "runuser -u 'o'\"'\"'brien' -- sh -c" in section
    assert "/run/lock/x/build.*" in section and "sudo" not in section


@pytest.mark.skipif(os.geteuid() != 0, reason="runuser needs root")
def test_as_user_drops_root(tmp_path):
    out = _run(facts._as_user("nobody", "id -un"))
    assert out.strip() == "nobody"


def _builds_only(user: str, directory: str) -> str:
    section = dict(facts._sections(user, directory))["builds"]
    return _run(f"printf '\\n{facts.MARK}builds\\n'; {{ {section}; }} 2>/dev/null")


def test_the_builds_section_counts_held_slots_live(tmp_path):
    """The real section through `sh`, as the user running the tests (the farm user's part)."""
    directory, user = str(tmp_path / "slots"), getpass.getuser()
    assert facts.parse(_builds_only(user, directory)).builds_in_flight == 0  # no directory
    assert not (tmp_path / "slots").exists()
    with slots.Slot(["sh", "-c"], directory=directory):
        stale = subprocess.run(["sh", "-c", f"mktemp {shlex.quote(directory)}/build.XXXXXX"],
                               capture_output=True, text=True, check=True).stdout.strip()
        os.utime(stale, (0, 0))  # left by a dropped session long ago
        assert facts.parse(_builds_only(user, directory)).builds_in_flight == 1
        assert not os.path.exists(stale)
    assert facts.parse(_builds_only(user, directory)).builds_in_flight == 0
