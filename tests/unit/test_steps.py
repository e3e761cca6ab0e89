"""The configure planner on recorded hosts (tests/unit/recorded/): what each host still needs
for a docker.io and a docker-ce farm of linux/amd64 + linux/arm64, the shell it would run, and
how `verify` judges the result."""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from provision.hosts import facts, steps
from provision.hosts.facts import Binfmt, Facts
from provision.hosts.steps import APT, STEPS, WAIT_LOCKS, Desired

RECORDED = Path(__file__).parent / "recorded"
FARM = ("linux/amd64", "linux/arm64")
DAEMON = steps.render_daemon_json([], [])

FRESH = ["debian12-amd64-none-fresh.txt", "ubuntu22.04-arm64-none-fresh.txt",
         "ubuntu24.04-amd64-none-fresh.txt", "debian13-amd64-none-fresh.txt"]
# Converged before docker.containerd_store existed, so with the store off: file -> the package
# its farm asked for.
CONVERGED = {
    "debian12-amd64-docker.io-converged.txt": "docker.io",
    "debian12-amd64-docker-ce-converged.txt": "docker-ce",
    "debian12-arm64-docker-ce-converged.txt": "docker-ce",
    "ubuntu22.04-amd64-docker-ce-converged.txt": "docker-ce",
    "ubuntu24.04-arm64-docker-ce-converged.txt": "docker-ce",
    "ubuntu24.04-arm64-docker.io-converged.txt": "docker.io",
}
# Converged with the containerd image store on.
TRIXIE = "debian13-amd64-docker.io-converged.txt"
# A Debian 13 node configured before configure knew of docker-cli: docker.io's engine runs,
# no `docker` command.
NO_CLI = "debian13-amd64-docker.io-nocli.txt"
ALL = sorted(p.name for p in RECORDED.glob("*.txt"))


def host(name: str) -> Facts:
    return facts.parse((RECORDED / name).read_text())


def want(f: Facts, package: str = "docker.io", platform: str | None = None,
         farm: tuple[str, ...] = FARM, daemon_json: str = DAEMON, user: str = "builder",
         emulated: bool = False, store: bool = False, idle: float | None = None) -> Desired:
    native = {"amd64": "linux/amd64", "arm64": "linux/arm64"}.get(f.dpkg_arch, "linux/amd64")
    return Desired(user=user, package=package, platform=platform or native,
                   farm_platforms=farm, daemon_json=daemon_json, emulated=emulated,
                   containerd_store=store, idle_stop_minutes=idle)


def by_step(changes: list[steps.Change]) -> dict[str, steps.Change]:
    return {c.step: c for c in changes}


def test_the_recorded_hosts_are_all_classified():
    partial = {"debian12-amd64-docker.io-partial.txt", NO_CLI}
    assert sorted([*FRESH, *CONVERGED, TRIXIE, *partial]) == ALL


# -- fresh and converged hosts --------------------------------------------------------------------

@pytest.mark.parametrize("package", ["docker.io", "docker-ce"])
@pytest.mark.parametrize("name", FRESH)
def test_a_fresh_host_needs_every_step_in_order(name, package):
    changes = steps.plan(host(name), want(host(name), package, idle=30))
    assert tuple(c.step for c in changes) == STEPS
    assert all(c.script and c.detail for c in changes)


@pytest.mark.parametrize("name", sorted(CONVERGED))
def test_a_converged_host_needs_nothing_and_verifies(name):
    f = host(name)
    d = want(f, CONVERGED[name])
    assert steps.plan(f, d) == []
    assert steps.verify(f, d) is None
    assert not steps.emulated(f, d)


def test_the_recorded_lab_node_mid_configure_needs_qemu_and_the_group():
    f = host("debian12-amd64-docker.io-partial.txt")
    changes = by_step(steps.plan(f, want(f, "docker.io")))
    assert list(changes) == ["qemu/binfmt", "docker group"]
    # the kernel already has qemu-aarch64 with F (binfmt_misc is the host's): packages only
    assert changes["qemu/binfmt"].detail == ("install qemu-user-static and binfmt-support,"
                                             " binfmt aarch64 (F)")
    assert "binfmt_misc/register" not in changes["qemu/binfmt"].script
    assert changes["docker group"].script == "usermod -aG docker builder"


@pytest.mark.parametrize("name", ["debian12-amd64-docker.io-converged.txt",
                                  "ubuntu24.04-arm64-docker.io-converged.txt"])
def test_a_docker_io_host_asked_for_docker_ce_replaces_it(name):
    f = host(name)
    changes = steps.plan(f, want(f, "docker-ce"))
    assert [c.step for c in changes] == ["docker engine"]
    engine = changes[0]
    assert engine.detail == (
        "install docker-ce, docker-ce-cli, containerd.io, docker-buildx-plugin from Docker's"
        f" apt repository ({f.os_id} {f.codename} {f.dpkg_arch}) (replacing docker.io)")
    assert f"https://download.docker.com/linux/{f.os_id}/gpg" in engine.script
    assert shlex.quote(steps.docker_ce_source(f)) in engine.script
    last = engine.script[engine.script.rindex(APT):]   # the last apt-get: the install
    assert "install -y" in last
    assert "--force-confold docker-ce docker-ce-cli containerd.io docker-buildx-plugin" in last


def test_a_docker_ce_host_that_replaced_docker_io_is_not_replacing_it_again():
    # docker.io is left in config-files state by the switch
    f = host("debian12-amd64-docker-ce-converged.txt")
    assert "docker.io" not in f.packages
    assert steps.plan(f, want(f, "docker-ce")) == []


def test_a_docker_ce_host_missing_one_package_installs_only_that_one():
    f = host("ubuntu22.04-amd64-docker-ce-converged.txt")
    f = dataclasses.replace(f, packages={k: v for k, v in f.packages.items()
                                         if k != "docker-buildx-plugin"})
    changes = steps.plan(f, want(f, "docker-ce"))
    assert [c.step for c in changes] == ["docker engine"]
    assert changes[0].detail.startswith("install docker-buildx-plugin from")
    assert "download.docker.com" not in changes[0].script   # the repository is in place
    last = changes[0].script[changes[0].script.rindex(APT):]
    assert "--force-confold docker-buildx-plugin" in last


# -- Docker's apt source --------------------------------------------------------------------------

@pytest.mark.parametrize("name, line", [
    ("debian12-amd64-none-fresh.txt",
     "deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.asc]"
     " https://download.docker.com/linux/debian bookworm stable\n"),
    ("debian12-arm64-docker-ce-converged.txt",
     "deb [arch=arm64 signed-by=/etc/apt/keyrings/docker.asc]"
     " https://download.docker.com/linux/debian bookworm stable\n"),
    ("ubuntu22.04-arm64-none-fresh.txt",
     "deb [arch=arm64 signed-by=/etc/apt/keyrings/docker.asc]"
     " https://download.docker.com/linux/ubuntu jammy stable\n"),
    ("ubuntu22.04-amd64-docker-ce-converged.txt",
     "deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.asc]"
     " https://download.docker.com/linux/ubuntu jammy stable\n"),
    ("ubuntu24.04-amd64-none-fresh.txt",
     "deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.asc]"
     " https://download.docker.com/linux/ubuntu noble stable\n"),
    ("ubuntu24.04-arm64-docker-ce-converged.txt",
     "deb [arch=arm64 signed-by=/etc/apt/keyrings/docker.asc]"
     " https://download.docker.com/linux/ubuntu noble stable\n"),
])
def test_docker_ce_source_line(name, line):
    f = host(name)
    assert steps.docker_ce_source(f) == line
    if f.docker_source_sha256:  # a converged host carries exactly this file
        assert f.docker_source_sha256 == facts.sha256(line)


@pytest.mark.parametrize("name", FRESH)
def test_a_fresh_host_writes_its_own_source_line(name):
    f = host(name)
    engine = by_step(steps.plan(f, want(f, "docker-ce")))["docker engine"]
    assert f"printf %s {shlex.quote(steps.docker_ce_source(f))} > " \
           "/etc/apt/sources.list.d/docker.list" in engine.script
    assert f"({f.os_id} {f.codename} {f.dpkg_arch})" in engine.detail


@pytest.mark.parametrize("change", [
    {"docker_keyring": False},
    {"docker_source_sha256": None},
    {"docker_source_sha256": facts.sha256("deb [arch=amd64] https://download.docker.com/linux/"
                                          "ubuntu noble stable\n")},
])
def test_a_missing_keyring_or_other_source_rewrites_the_repository(change):
    f = dataclasses.replace(host("ubuntu24.04-arm64-docker-ce-converged.txt"), **change)
    engine = by_step(steps.plan(f, want(f, "docker-ce")))["docker engine"]
    assert "curl -fsSL https://download.docker.com/linux/ubuntu/gpg" in engine.script
    assert "[arch=arm64 " in engine.script and " noble stable" in engine.script


# -- daemon.json ----------------------------------------------------------------------------------

MIRRORED = steps.render_daemon_json(["https://mirror.gcr.io"], [])


@pytest.mark.parametrize("name, restart", [
    ("debian12-amd64-docker.io-converged.txt", True),
    ("ubuntu24.04-arm64-docker-ce-converged.txt", True),
    ("debian12-amd64-none-fresh.txt", False),
    ("ubuntu22.04-arm64-none-fresh.txt", False),
])
def test_a_changed_daemon_json_restarts_only_a_running_docker(name, restart):
    f = host(name)
    change = by_step(steps.plan(f, want(f, CONVERGED.get(name, "docker.io"),
                                        daemon_json=MIRRORED)))["daemon.json"]
    assert shlex.quote(MIRRORED) in change.script
    assert change.script.endswith("systemctl restart docker") == restart
    assert change.detail == ("update /etc/docker/daemon.json, restart docker" if restart
                             else "write /etc/docker/daemon.json")
    # written whole, then moved into place
    assert "> /etc/docker/daemon.json.archfarm && mv /etc/docker/daemon.json.archfarm " \
           "/etc/docker/daemon.json" in change.script


def test_a_stopped_docker_gets_the_file_and_a_start_not_a_restart():
    # (docker_cli: the CLI stays when the engine stops; this output predates that fact)
    f = dataclasses.replace(host("debian12-amd64-docker.io-converged.txt"), docker_cli=True,
                            docker_active=False, docker_version=None, docker_arch=None)
    changes = by_step(steps.plan(f, want(f, daemon_json=MIRRORED)))
    assert list(changes) == ["daemon.json", "docker service"]
    assert "restart" not in changes["daemon.json"].script
    assert changes["docker service"].script == "systemctl enable docker && systemctl start docker"


@pytest.mark.parametrize("mirrors, insecure, expected", [
    ([], [], {"log-driver": "json-file", "log-opts": {"max-file": "3", "max-size": "10m"}}),
    (["https://mirror.gcr.io"], [],
     {"log-driver": "json-file", "log-opts": {"max-file": "3", "max-size": "10m"},
      "registry-mirrors": ["https://mirror.gcr.io"]}),
    ([], ["10.0.0.5:5000", "registry.lab:5000"],
     {"log-driver": "json-file", "log-opts": {"max-file": "3", "max-size": "10m"},
      "insecure-registries": ["10.0.0.5:5000", "registry.lab:5000"]}),
    (["https://a.example", "https://b.example"], ["127.0.0.1:5000"],
     {"log-driver": "json-file", "log-opts": {"max-file": "3", "max-size": "10m"},
      "registry-mirrors": ["https://a.example", "https://b.example"],
      "insecure-registries": ["127.0.0.1:5000"]}),
])
def test_render_daemon_json(mirrors, insecure, expected):
    import json

    text = steps.render_daemon_json(mirrors, insecure)
    assert json.loads(text) == expected
    assert text.endswith("}\n")
    assert text == steps.render_daemon_json(list(mirrors), list(insecure))  # stable digest


def test_render_daemon_json_log_rotation_and_the_recorded_digest():
    assert '"max-size": "50m"' in steps.render_daemon_json([], [], "50m", 5)
    assert '"max-file": "5"' in steps.render_daemon_json([], [], "50m", 5)
    # the lab's file, recorded, is byte for byte the default rendering
    assert host("debian12-amd64-docker.io-converged.txt").daemon_json_sha256 == \
        facts.sha256(DAEMON)


def test_cache_max_gb_is_the_build_caches_ceiling_for_every_engine():
    import json

    config = json.loads(steps.render_daemon_json([], [], cache_max_gb=20))
    # Docker <= 27 reads defaultKeepStorage as the ceiling, Docker 28+ defaultMaxUsedSpace;
    # enabled is written out (Docker <= 27 collects nothing without it)
    assert config["builder"] == {"gc": {"enabled": True, "defaultKeepStorage": "20GB",
                                        "defaultMaxUsedSpace": "20GB"}}
    assert "builder" not in json.loads(DAEMON)  # unset: the engine's own default


@pytest.mark.parametrize("name", sorted(CONVERGED) + [TRIXIE])
def test_setting_cache_max_gb_rewrites_daemon_json_once_then_nothing(name):
    f = host(name)
    store = name == TRIXIE
    package = CONVERGED.get(name, "docker.io")
    capped = steps.render_daemon_json([], [], cache_max_gb=10)
    change = by_step(steps.plan(f, want(f, package, daemon_json=capped, store=store)))
    assert change["daemon.json"].detail == "update /etc/docker/daemon.json, restart docker"
    written = steps.daemon_json(f, want(f, package, daemon_json=capped, store=store))
    assert '"defaultMaxUsedSpace": "10GB"' in written
    # the node as the write leaves it: nothing more to do
    after = dataclasses.replace(f, daemon_json_sha256=facts.sha256(written))
    assert "daemon.json" not in by_step(steps.plan(after, want(f, package, daemon_json=capped,
                                                               store=store)))


# -- qemu / binfmt --------------------------------------------------------------------------------

@pytest.mark.parametrize("dpkg_arch, farm, cpus", [
    ("amd64", FARM, ("aarch64",)),
    ("arm64", FARM, ("x86_64",)),
    ("amd64", ("linux/amd64",), ()),
    ("arm64", ("linux/arm64", "linux/arm64"), ()),
    ("arm64", ("linux/amd64",), ("x86_64",)),
    ("amd64", ("linux/amd64", "linux/arm64", "linux/riscv64"), ("aarch64",)),
    ("", FARM, ("aarch64", "x86_64")),   # unknown host: emulate everything
])
def test_qemu_cpus(dpkg_arch, farm, cpus):
    f = Facts(dpkg_arch=dpkg_arch)
    assert steps.qemu_cpus(f, want(f, farm=farm)) == cpus


@pytest.mark.parametrize("name, cpu", [(n, "x86_64" if "arm64" in n else "aarch64")
                                       for n in FRESH])
def test_a_fresh_host_registers_only_the_foreign_cpu(name, cpu):
    f = host(name)
    qemu = by_step(steps.plan(f, want(f)))["qemu/binfmt"]
    assert qemu.detail == f"install qemu-user-static and binfmt-support, binfmt {cpu} (F)"
    other = {"aarch64": "x86_64", "x86_64": "aarch64"}[cpu]
    assert f":qemu-{cpu}:M::" in qemu.script and f"/usr/bin/qemu-{cpu}-static:F" in qemu.script
    assert f"qemu-{other}" not in qemu.script


@pytest.mark.parametrize("name", FRESH)
def test_a_single_platform_farm_needs_no_qemu(name):
    f = host(name)
    native = f"linux/{f.dpkg_arch}"
    assert "qemu/binfmt" not in by_step(steps.plan(f, want(f, farm=(native,))))


def _with_handler(name: str, **change) -> Facts:
    f = host(name)
    (handler_name, handler), = f.binfmt.items()
    return dataclasses.replace(f, binfmt={handler_name: dataclasses.replace(handler, **change)})


@pytest.mark.parametrize("name, change", [
    ("debian12-amd64-docker.io-converged.txt", {"flags": "P"}),
    ("ubuntu22.04-amd64-docker-ce-converged.txt", {"flags": "POC"}),
    ("ubuntu24.04-arm64-docker-ce-converged.txt", {"flags": ""}),
    ("debian12-arm64-docker-ce-converged.txt", {"enabled": False}),
])
def test_a_handler_without_a_working_F_flag_is_registered_again(name, change):
    f = _with_handler(name, **change)
    cpu = steps.qemu_cpus(f, want(f))[0]
    changes = steps.plan(f, want(f, CONVERGED[name]))
    assert [c.step for c in changes] == ["qemu/binfmt"]
    assert changes[0].detail == f"binfmt {cpu} (F)"   # packages are there: nothing to install
    assert "apt-get" not in changes[0].script
    assert "printf '%s' ':qemu-" + cpu + ":M::" in changes[0].script
    assert f"/etc/binfmt.d/archfarm-qemu-{cpu}.conf" in changes[0].script
    assert steps.verify(f, want(f, CONVERGED[name])).startswith(
        f"did not converge: still to do: binfmt {cpu} (F)")


def _run_qemu_step(tmp_path: Path, handler_text: str | None, cpu: str = "aarch64") -> Path:
    """Run the planned qemu/binfmt script for real, with binfmt_misc and /etc/binfmt.d moved
    into tmp_path (plain files stand in for the kernel's)."""
    f = _with_handler("debian12-amd64-docker.io-converged.txt", flags="P")
    script = by_step(steps.plan(f, want(f)))["qemu/binfmt"].script
    binfmt, etc = tmp_path / "binfmt_misc", tmp_path / "binfmt.d"
    binfmt.mkdir()
    etc.mkdir()
    if handler_text is not None:
        (binfmt / f"qemu-{cpu}").write_text(handler_text)
    script = script.replace("/proc/sys/fs/binfmt_misc", str(binfmt)).replace(
        "/etc/binfmt.d", str(etc))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for stub in ("mountpoint", "mount"):
        (bin_dir / stub).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / stub).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    subprocess.run(["sh", "-c", script], check=True, env=env, timeout=30)
    return binfmt


HANDLER = ("{state}\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: {flags}\n"
           "offset 0\nmagic 7f454c460201010000000000000000000200b700\n"
           "mask ffffffffffffff00fffffffffffffffffeffffff\n")
ENTRY = (":qemu-aarch64:M::" + steps.BINFMT["aarch64"][0] + ":" + steps.BINFMT["aarch64"][1]
         + ":/usr/bin/qemu-aarch64-static:F")


@pytest.mark.parametrize("handler_text", [HANDLER.format(state="enabled", flags="P"), None])
def test_the_F_registration_replaces_a_handler_without_F(tmp_path, handler_text):
    binfmt = _run_qemu_step(tmp_path, handler_text)
    assert (binfmt / "register").read_text() == ENTRY
    assert (tmp_path / "binfmt.d" / "archfarm-qemu-aarch64.conf").read_text() == ENTRY + "\n"
    if handler_text is not None:
        assert (binfmt / "qemu-aarch64").read_text().strip() == "-1"   # unregistered first


def test_the_F_registration_keeps_the_distributions_handler_with_F(tmp_path):
    binfmt = _run_qemu_step(tmp_path, HANDLER.format(state="enabled", flags="POCF"))
    assert not (binfmt / "register").exists()
    assert not (tmp_path / "binfmt.d" / "archfarm-qemu-aarch64.conf").exists()


def test_the_F_registration_enables_a_disabled_handler_with_F(tmp_path):
    binfmt = _run_qemu_step(tmp_path, HANDLER.format(state="disabled", flags="PF"))
    handler = (binfmt / "qemu-aarch64").read_text().strip()
    registered = (binfmt / "register").read_text() if (binfmt / "register").exists() else ""
    assert handler == "1" or registered == ENTRY


# -- apt: locks and retries -----------------------------------------------------------------------

APT_SCRIPTS = [(name, package, change.step)
               for name in FRESH for package in ("docker.io", "docker-ce")
               for change in steps.plan(host(name), want(host(name), package))
               if "apt-get" in change.script]


def test_fresh_hosts_use_apt_in_the_engine_and_qemu_steps():
    assert {(n, p, s) for n, p, s in APT_SCRIPTS} == {
        (n, p, s) for n in FRESH for p in ("docker.io", "docker-ce")
        for s in ("docker engine", "qemu/binfmt")}


def _script(name: str, package: str, step: str) -> str:
    return by_step(steps.plan(host(name), want(host(name), package)))[step].script


@pytest.mark.parametrize("name, package, step", APT_SCRIPTS)
def test_every_apt_get_waits_for_the_locks_first(name, package, step):
    script = _script(name, package, step)
    pieces = script.split(WAIT_LOCKS)
    assert "apt-get" not in pieces[0]
    assert all(piece.count("apt-get") == 1 for piece in pieces[1:])
    assert script.count("apt-get") == script.count(APT)  # every call has the dpkg lock timeout


@pytest.mark.parametrize("name, package, step", APT_SCRIPTS)
def test_apt_get_update_is_retried(name, package, step):
    script = _script(name, package, step)
    retry = f"{APT} update || {{ sleep 5; {WAIT_LOCKS}; {APT} update; }}"
    # (a later step relies on an earlier step's update: see the once-per-run test below)
    assert script.count(f"{APT} update") == 2 * script.count(retry)


def _run_with_stub_apt(tmp_path: Path, script: str, update_failures: int,
                       held_locks: int = 0) -> tuple[int, list[str]]:
    """Run a planned script with apt-get, lslocks and sleep replaced by stubs that log."""
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    stubs = {
        "apt-get": f"""#!/bin/sh
echo "apt-get $*" >> {log}
case "$*" in *update*)
  n=$(cat {tmp_path}/updates 2>/dev/null || echo 0); echo $((n+1)) > {tmp_path}/updates
  [ "$n" -ge {update_failures} ] || exit 100;;
esac
exit 0
""",
        "lslocks": f"""#!/bin/sh
n=$(cat {tmp_path}/lslocks 2>/dev/null || echo 0); echo $((n+1)) > {tmp_path}/lslocks
[ "$n" -ge {held_locks} ] || echo /var/lib/dpkg/lock-frontend
""",
        "sleep": f"#!/bin/sh\necho \"sleep $*\" >> {log}\n",
    }
    for name, text in stubs.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(["sh", "-c", script], env=env, timeout=30)
    return done.returncode, log.read_text().splitlines() if log.exists() else []


def _docker_io_engine_script() -> str:
    return _script("debian12-amd64-none-fresh.txt", "docker.io", "docker engine")


def test_a_failed_apt_get_update_is_retried_then_the_install_runs(tmp_path):
    code, calls = _run_with_stub_apt(tmp_path, _docker_io_engine_script(), update_failures=1)
    assert code == 0
    assert [c.split()[-1] for c in calls if c.startswith("apt-get")] == [
        "update", "update", "docker.io"]
    assert "sleep 5" in calls


def test_the_script_waits_while_another_apt_holds_the_locks(tmp_path):
    code, calls = _run_with_stub_apt(tmp_path, _docker_io_engine_script(), update_failures=0,
                                     held_locks=3)
    assert code == 0
    assert calls[:3] == ["sleep 1"] * 3 and calls[3].startswith("apt-get")


def test_an_apt_get_update_that_keeps_failing_stops_the_step(tmp_path):
    code, calls = _run_with_stub_apt(tmp_path, _docker_io_engine_script(), update_failures=2)
    assert code != 0
    assert not any(c.endswith("docker.io") for c in calls)


# -- the docker group -----------------------------------------------------------------------------

@pytest.mark.parametrize("user, command", [
    ("builder", "usermod -aG docker builder"),
    ("ci bot", "usermod -aG docker 'ci bot'"),
])
def test_the_docker_group_step_adds_the_farm_user(user, command):
    f = host("ubuntu22.04-arm64-none-fresh.txt")
    group = by_step(steps.plan(f, want(f, user=user)))["docker group"]
    assert group.script == command
    assert group.detail == f"add {user} to the docker group"


# -- verify / emulated ----------------------------------------------------------------------------

@pytest.mark.parametrize("name, platform, emulated, problem", [
    ("debian12-amd64-docker.io-converged.txt", "linux/amd64", False, None),
    # the lab's arm64 node: an amd64 container standing in for it
    ("debian12-amd64-docker.io-converged.txt", "linux/arm64", True, None),
    ("debian12-amd64-docker.io-converged.txt", "linux/arm64", False,
     "the engine runs amd64 but the node is declared linux/arm64: check the node's"
     " machine_type and image"),
    ("ubuntu24.04-arm64-docker-ce-converged.txt", "linux/amd64", False,
     "the engine runs arm64 but the node is declared linux/amd64: check the node's"
     " machine_type and image"),
    ("ubuntu24.04-arm64-docker-ce-converged.txt", "linux/arm64", False, None),
])
def test_verify_the_engine_architecture(name, platform, emulated, problem):
    f = host(name)
    d = want(f, CONVERGED[name], platform=platform, emulated=emulated)
    assert steps.verify(f, d) == problem
    assert steps.emulated(f, d) == (f"linux/{f.docker_arch}" != platform)


@pytest.mark.parametrize("change, problem", [
    ({"docker_version": None, "docker_arch": None},               # active, not answering
     "docker is installed but the engine does not answer (see `journalctl -u docker`)"),
    ({"docker_active": False},                                   # stopped after configure
     "did not converge: still to do: enable and start docker"),
])
def test_verify_an_engine_that_does_not_answer(change, problem):
    f = dataclasses.replace(host("ubuntu22.04-amd64-docker-ce-converged.txt"), **change)
    assert steps.verify(f, want(f, "docker-ce")) == problem


@pytest.mark.parametrize("name", FRESH)
def test_verify_a_host_that_did_not_converge_names_what_is_left(name):
    f = host(name)
    problem = steps.verify(f, want(f, "docker-ce"))
    assert problem.startswith("did not converge: still to do: write /etc/docker/daemon.json; "
                              "install docker-ce, docker-ce-cli")
    assert problem.endswith("; add builder to the docker group")


def test_emulated_is_false_without_an_engine():
    f = host("ubuntu24.04-amd64-none-fresh.txt")
    assert not steps.emulated(f, want(f, platform="linux/arm64"))


# -- unsupported ----------------------------------------------------------------------------------

@pytest.mark.parametrize("os_release, message", [
    ('ID=fedora\nVERSION_ID=40\n', "fedora 40 is not supported"),
    ('ID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="9.4"\n', "rocky 9.4 is not supported"),
    ('ID=opensuse-leap\nID_LIKE="suse opensuse"\nVERSION_ID="15.6"\n',
     "opensuse-leap 15.6 is not supported"),
])
def test_unsupported_os(os_release, message):
    problem = steps.unsupported(facts.parse(f"@@ os-release\n{os_release}"))
    assert problem.startswith(message)
    assert "configure manages Debian and Ubuntu hosts" in problem


def test_unsupported_without_os_release():
    assert steps.unsupported(facts.parse("")).startswith("an unknown OS")


@pytest.mark.parametrize("name", ALL)
def test_recorded_hosts_are_supported(name):
    assert steps.unsupported(host(name)) is None


def test_a_debian_derivative_is_supported():
    f = facts.parse('@@ os-release\nID=linuxmint\nID_LIKE="ubuntu debian"\nVERSION_ID="21.3"\n')
    assert steps.unsupported(f) is None


# -- Binfmt flags as the kernel prints them -------------------------------------------------------

@pytest.mark.parametrize("flags, fixed", [("F", True), ("PF", True), ("POCF", True), ("OCF", True),
                                          ("P", False), ("POC", False), ("", False)])
def test_only_a_handler_with_F_counts_as_fixed(flags, fixed):
    f = Facts(dpkg_arch="amd64", packages={"qemu-user-static": "1", "binfmt-support": "1"},
              binfmt={"qemu-aarch64": Binfmt(True, "/usr/bin/qemu-aarch64-static", flags)})
    assert ("qemu/binfmt" in by_step(steps.plan(f, want(f)))) != fixed


def test_a_fresh_host_refreshes_the_package_lists_once():
    fresh = facts.parse((RECORDED / "debian12-amd64-none-fresh.txt").read_text())
    want = steps.Desired(user="builder", package="docker.io", platform="linux/amd64",
                         farm_platforms=("linux/amd64", "linux/arm64"),
                         daemon_json=steps.render_daemon_json([], []))
    scripts = " ".join(c.script for c in steps.plan(fresh, want))
    assert scripts.count(f"{steps.APT} update") == 2  # one update, and its one retry
    assert "qemu-user-static" in scripts and "docker.io" in scripts


# -- Debian 13: docker-cli, and the containerd image store --------------------------------------

STORE = steps.with_containerd_store(DAEMON)
TURN_ON = ("turn on the containerd image store (restart docker); the node's local images stay"
           " in the old store, on a build node they are only cache")
TURN_OFF = ("turn off the containerd image store (restart docker); the node's local images"
            " stay in the containerd store, on a build node they are only cache")
BOOKWORM_DOCKER_IO = {"docker.io": "20.10.24+dfsg1-1+deb12u1+b6"}


def _last_install(script: str) -> str:
    return script[script.rindex("--force-confold "):].removeprefix("--force-confold ")


def test_with_containerd_store_adds_only_the_feature():
    import json

    assert json.loads(STORE) == {**json.loads(DAEMON),
                                 "features": {"containerd-snapshotter": True}}
    assert STORE.endswith("}\n")
    assert steps.with_containerd_store(STORE) == STORE


def test_a_fresh_trixie_host_gets_docker_io_docker_cli_and_the_store():
    f = host("debian13-amd64-none-fresh.txt")
    changes = by_step(steps.plan(f, want(f, "docker.io", store=True)))
    assert tuple(changes) == tuple(s for s in STEPS if s != "idle stop")  # off by default
    engine = changes["docker engine"]
    assert engine.detail == "install docker.io and docker-cli (the distribution's)"
    assert _last_install(engine.script) == "docker.io docker-cli; }"
    daemon = changes["daemon.json"]
    assert daemon.detail == "write /etc/docker/daemon.json, containerd image store on"
    assert shlex.quote(STORE) in daemon.script and "restart" not in daemon.script
    assert steps.engine_too_old_for_store(f, want(f, "docker.io", store=True)) is None


def test_a_fresh_trixie_host_without_the_store_gets_the_plain_file():
    f = host("debian13-amd64-none-fresh.txt")
    daemon = by_step(steps.plan(f, want(f, "docker.io")))["daemon.json"]
    assert daemon.detail == "write /etc/docker/daemon.json"
    assert shlex.quote(DAEMON) in daemon.script


def test_a_converged_trixie_host_needs_nothing_and_verifies():
    f = host(TRIXIE)
    d = want(f, "docker.io", store=True)
    assert steps.plan(f, d) == []
    assert steps.verify(f, d) is None
    assert f.daemon_json_sha256 == facts.sha256(STORE)


def test_a_trixie_host_without_the_cli_gets_docker_cli_and_the_store():
    f = host(NO_CLI)
    d = want(f, "docker.io", store=True)
    changes = steps.plan(f, d)
    assert [(c.step, c.detail) for c in changes] == [
        ("daemon.json", TURN_ON),
        ("docker engine", "install docker-cli (Debian 13 moved the docker CLI out of docker.io)")]
    assert _last_install(changes[1].script) == "docker-cli; }"
    assert changes[0].script.endswith(" && systemctl restart docker")
    assert steps.verify(f, d).startswith("did not converge: still to do: turn on the")


def test_a_trixie_host_without_the_cli_and_without_the_store_gets_the_cli_alone():
    f = host(NO_CLI)
    assert [c.detail for c in steps.plan(f, want(f, "docker.io"))] == [
        "install docker-cli (Debian 13 moved the docker CLI out of docker.io)"]


@pytest.mark.parametrize("name", ["debian12-amd64-docker.io-converged.txt",
                                  "ubuntu24.04-arm64-docker.io-converged.txt", TRIXIE])
def test_a_docker_io_that_brings_its_cli_gets_no_docker_cli(name):
    f = host(name)
    assert "docker engine" not in by_step(steps.plan(f, want(f, "docker.io", store=True)))


def test_debian_12_docker_io_gets_no_store_and_a_warning():
    f = host("debian12-amd64-docker.io-converged.txt")
    d = want(f, "docker.io", store=True)
    assert steps.plan(f, d) == []              # the file stays as it is: no feature
    assert steps.verify(f, d) is None
    assert steps.engine_too_old_for_store(f, d) == "20.10"
    assert steps.engine_too_old_for_store(f, want(f, "docker.io")) is None  # not asked for


def test_a_fresh_debian_12_host_plans_docker_io_without_the_store():
    f = dataclasses.replace(host("debian12-amd64-none-fresh.txt"), candidates=BOOKWORM_DOCKER_IO)
    d = want(f, "docker.io", store=True)
    changes = by_step(steps.plan(f, d))
    assert changes["daemon.json"].detail == "write /etc/docker/daemon.json"
    assert shlex.quote(DAEMON) in changes["daemon.json"].script
    assert changes["docker engine"].detail == "install docker.io (the distribution's)"
    assert steps.engine_too_old_for_store(f, d) == "20.10"
    # docker-ce instead: Docker's repository has 24+, so the store goes on
    assert by_step(steps.plan(f, want(f, "docker-ce", store=True)))["daemon.json"].detail == (
        "write /etc/docker/daemon.json, containerd image store on")


def test_empty_apt_lists_leave_the_store_and_the_cli_to_the_next_plan():
    # a fresh VM before its first `apt-get update`: no candidates; configure plans again
    # once the engine is installed
    f = dataclasses.replace(host("debian13-amd64-none-fresh.txt"), candidates={})
    d = want(f, "docker.io", store=True)
    changes = by_step(steps.plan(f, d))
    assert changes["daemon.json"].detail == "write /etc/docker/daemon.json"
    assert changes["docker engine"].detail == "install docker.io (the distribution's)"
    assert steps.engine_release(f, d) is None
    assert steps.engine_too_old_for_store(f, d) is None


@pytest.mark.parametrize("name, package", [
    ("debian12-amd64-docker-ce-converged.txt", "docker-ce"),
    ("debian12-arm64-docker-ce-converged.txt", "docker-ce"),
    ("ubuntu22.04-amd64-docker-ce-converged.txt", "docker-ce"),
    ("ubuntu24.04-arm64-docker-ce-converged.txt", "docker-ce"),
    ("ubuntu24.04-arm64-docker.io-converged.txt", "docker.io"),   # Ubuntu's 27.5
])
def test_switching_the_store_on_shows_in_the_check_plan(name, package):
    f = host(name)
    changes = steps.plan(f, want(f, package, store=True))
    assert [(c.step, c.detail) for c in changes] == [("daemon.json", TURN_ON)]
    assert shlex.quote(STORE) in changes[0].script
    assert changes[0].script.endswith(" && systemctl restart docker")


def test_switching_the_store_off_shows_in_the_check_plan():
    f = host(TRIXIE)
    changes = steps.plan(f, want(f, "docker.io"))
    assert [(c.step, c.detail) for c in changes] == [("daemon.json", TURN_OFF)]
    assert shlex.quote(DAEMON) in changes[0].script   # the key is not written at all
    assert "containerd-snapshotter" not in changes[0].script


def test_switching_on_a_stopped_engine_needs_no_restart():
    f = dataclasses.replace(host("debian12-amd64-docker-ce-converged.txt"), docker_active=False,
                            docker_version=None, docker_arch=None)
    daemon = by_step(steps.plan(f, want(f, "docker-ce", store=True)))["daemon.json"]
    assert daemon.detail == ("turn on the containerd image store; the node's local images stay"
                             " in the old store, on a build node they are only cache")
    assert "restart" not in daemon.script


def test_the_running_engine_says_which_store_it_runs_whatever_the_file():
    # other settings change too: the switch is what the plan says, from the engine's word
    f = host(TRIXIE)
    mirrored = steps.render_daemon_json(["https://mirror.gcr.io"], [])
    assert steps.plan(f, want(f, daemon_json=mirrored))[0].detail == TURN_OFF
    assert steps.plan(f, want(f, daemon_json=mirrored, store=True))[0].detail == (
        "update /etc/docker/daemon.json, restart docker")


@pytest.mark.parametrize("store, note", [
    (False, "does not run the containerd image store that /etc/docker/daemon.json turns on"),
    (None, "does not run the containerd image store that /etc/docker/daemon.json turns on"),
])
def test_verify_fails_when_the_engine_does_not_run_the_store(store, note):
    f = dataclasses.replace(host(TRIXIE), containerd_store=store)
    problem = steps.verify(f, want(f, "docker.io", store=True))
    assert problem.startswith("docker 26.1.5+dfsg1 " + note)
    assert "driver-type io.containerd.snapshotter.v1" in problem
    assert "sudo systemctl restart docker" in problem and "inv configure" in problem


def test_verify_asks_nothing_of_the_store_when_it_is_not_written():
    f = dataclasses.replace(host("debian12-amd64-docker.io-converged.txt"), containerd_store=False)
    assert steps.verify(f, want(f, "docker.io", store=True)) is None


@pytest.mark.parametrize("change, package, release", [
    ({}, "docker.io", (26, 1)),                                   # the running engine
    ({"docker_version": None}, "docker.io", (26, 1)),              # its package
    ({"docker_version": "27.0.3"}, "docker.io", (27, 0)),          # the engine over the package
    ({}, "docker-ce", (24, 0)),                                    # to be installed: 24 at least
    ({"packages": {}, "candidates": {}}, "docker.io", None),
    ({"packages": {}, "candidates": BOOKWORM_DOCKER_IO}, "docker.io", (20, 10)),
])
def test_engine_release(change, package, release):
    f = dataclasses.replace(host(TRIXIE), **change)
    assert steps.engine_release(f, want(f, package)) == release


def test_engine_release_of_an_installed_docker_ce_that_is_stopped_is_its_package():
    f = dataclasses.replace(host("debian12-amd64-docker-ce-converged.txt"), docker_version=None)
    assert steps.engine_release(f, want(f, "docker-ce")) == (28, 3)


def test_why_the_store_is_off_for_one_node():
    off = steps.containerd_store_off({"x": "20.10"})
    assert str(off) == (
        "docker 20.10 on node x has no containerd image store (Docker 24+ needed): attestations"
        " (--provenance, --sbom) and registry cache export are off on it. Fix: use"
        " docker.package: docker-ce, or Debian 13 nodes (or set docker.containerd_store: false"
        " to do without it)")
    assert str(off) == f"{off.problem}. Fix: {off.fix}"


def test_why_the_store_is_off_names_every_node_once():
    off = steps.containerd_store_off({"b": "20.10", "a": "20.10", "c": "23.0"})
    assert off.problem.startswith("docker 20.10 on nodes a, b and docker 23.0 on node c have no"
                                  " containerd image store")
    assert off.problem.endswith("are off on them")
