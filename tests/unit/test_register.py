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
    assert register.ensure_include() is True
    assert register.ensure_include() is False
    text = (home / "config").read_text()
    assert text.splitlines()[1] == register.include_line() and text.endswith(USER_CONFIG)
    assert text.count("Include") == 1
    assert stat.S_IMODE((home / "config").stat().st_mode) == 0o644  # the user's mode kept


def test_check_mode_writes_nothing(home):
    assert register.include_present() is False
    planned = register.plan(FARM, {}, [], SEEN_NOTHING, register.include_present())
    assert planned.add_include and register.checked(planned).results == {}
    assert not (home / "config").exists()


def test_remove_include_restores_the_users_file_exactly(home):
    home.mkdir()
    (home / "config").write_text(USER_CONFIG)
    register.ensure_include()
    assert register.remove_include() is True
    assert (home / "config").read_text() == USER_CONFIG


def test_an_include_only_file_archfarm_made_is_removed(home):
    register.ensure_include()
    assert stat.S_IMODE((home / "config").stat().st_mode) == 0o600
    assert register.remove_include() is True
    assert not (home / "config").exists()


def test_the_include_stays_while_another_farm_is_registered(home):
    register.ensure_include()
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
    args = list(register.builder_create_args(FARM, FARM.expanded()[0], append=True))
    assert args[:4] == ["buildx", "create", "--name", "demo"]
    assert args[args.index("--platform"):][:2] == ["--platform", "linux/arm64"]
    assert "image=mirror.gcr.io/moby/buildkit:v0.16.0" in args
    assert args[-2:] == ["--append", "archfarm-demo-arm64"]


# -- the pure plan: what exists -> the changes ---------------------------------------------

PAIR = parse("""
farm: demo
gcp: {project: my-project, zones: [us-central1-a], ssh_source_ranges: [10.0.0.0/8]}
ssh: {user: builder, private_key: /keys/demo}
nodes:
  - {name: arm64, platform: linux/arm64, machine_type: t2a-standard-4}
  - {name: amd64, platform: linux/amd64, machine_type: n2-standard-4}
""", "demo.yaml")
HOSTS = {n: Host(node=n, vm=f"demo-{n}", zone="us-central1-a", vm_id=n, address=f"127.0.0.{i}",
                 host_keys={"ssh-ed25519": "AAAA"}) for i, n in enumerate(("arm64", "amd64"), 2)}


def converged(farm=PAIR) -> register.Observed:
    """What a registered farm looks like to `observe`."""
    mark = register.marker(farm)
    return register.Observed(
        contexts={f"archfarm-demo-{n.name}": (f"ssh://archfarm-demo-{n.name}", mark)
                  for n in farm.expanded()},
        builder={"Name": "demo", "Nodes": [
            {"Name": f"demo-{n.name}", "Endpoint": f"archfarm-demo-{n.name}",
             "Platforms": [n.platform]} for n in farm.expanded()]},
        driver_images={}, config_text=register.render(farm, HOSTS))


SEEN_NOTHING = register.Observed(contexts={}, builder=None, driver_images={}, config_text="")


def test_a_registered_farm_plans_no_change_and_check_reports_every_item_ok():
    planned = register.plan(PAIR, HOSTS, PAIR.expanded(), converged(), True)
    assert planned.nodes == {"arm64": [], "amd64": []} and not planned.leaving
    recap = register.checked(planned)
    assert {k: (r.ok, r.changed) for k, r in recap.results.items()} == {
        "arm64": (3, 0), "amd64": (3, 0)}


def test_a_new_farm_creates_the_builder_once_then_appends():
    planned = register.plan(PAIR, HOSTS, PAIR.expanded(), SEEN_NOTHING, False)
    assert planned.add_include
    items = {n: [c.item for c in cs] for n, cs in planned.nodes.items()}
    assert items == {n: list(register.ITEMS) for n in ("arm64", "amd64")}
    creates = [c.command for cs in planned.nodes.values() for c in cs
               if c.item == "builder node"]
    assert "--append" not in creates[0] and "--append" in creates[1]
    recap = register.checked(planned)
    assert all((r.ok, r.changed) == (0, 3) for r in recap.results.values())


def test_a_context_pointing_elsewhere_is_updated_and_only_that():
    seen = converged()
    seen.contexts["archfarm-demo-amd64"] = ("ssh://elsewhere", register.marker(PAIR))
    planned = register.plan(PAIR, HOSTS, PAIR.expanded(), seen, True)
    assert planned.nodes["arm64"] == []
    [change] = planned.nodes["amd64"]
    assert change.command[:3] == ("context", "update", "archfarm-demo-amd64")


def test_a_node_that_left_the_inventory_leaves_the_builder_and_loses_its_context():
    seen = converged()
    seen.contexts["archfarm-demo-old"] = ("ssh://archfarm-demo-old", register.marker(PAIR))
    seen.builder["Nodes"].append({"Name": "demo-old", "Endpoint": "archfarm-demo-old"})
    planned = register.plan(PAIR, HOSTS, PAIR.expanded(), seen, True)
    commands = [c.command for c in planned.leaving["old"]]
    assert commands == [("buildx", "create", "--name", "demo", "--leave", "--node", "demo-old"),
                        ("context", "rm", "--force", "archfarm-demo-old")]


# -- ~/.ssh/config: register then destroy gives the user's file back byte for byte ----------

def ssh_sees(config, host: str) -> dict[str, str]:
    """What OpenSSH makes of `host` reading `config` (and what it includes)."""
    return dict(line.split(" ", 1) for line in subprocess.run(
        ["ssh", "-G", "-F", str(config), host], capture_output=True, text=True,
        check=True).stdout.splitlines() if " " in line)


def test_a_crlf_config_gets_crlf_lines_and_comes_back_byte_for_byte(home):
    home.mkdir()
    original = USER_CONFIG.replace("\n", "\r\n").encode()
    (home / "config").write_bytes(original)
    register.ensure_include()
    lines = (home / "config").read_bytes().split(b"\r\n")
    assert lines[1] == register.include_line().encode() and b"\n" not in b"".join(lines)
    (home / "archfarm").mkdir()
    (home / "archfarm" / "demo.conf").write_text(register.render(FARM, {"arm64": HOST}))
    assert ssh_sees(home / "config", "archfarm-demo-arm64")["hostname"] == "203.0.113.9"
    (home / "archfarm" / "demo.conf").unlink()
    assert register.remove_include() is True
    assert (home / "config").read_bytes() == original


def test_a_line_the_user_added_above_archfarms_stays_and_archfarms_blank_line_goes(home):
    home.mkdir()
    (home / "config").write_text(USER_CONFIG)
    register.ensure_include()
    mine = "Host mine\n  HostName 198.51.100.7\n"
    (home / "config").write_text(mine + (home / "config").read_text())
    assert register.remove_include() is True
    assert (home / "config").read_text() == mine + USER_CONFIG


def test_a_node_that_left_with_its_context_deleted_by_hand_still_leaves_the_builder():
    seen = converged()
    seen.builder["Nodes"].append({"Name": "demo-old", "Endpoint": "archfarm-demo-old"})
    planned = register.plan(PAIR, HOSTS, PAIR.expanded(), seen, True)
    assert [c.command for c in planned.leaving["old"]] == [
        ("buildx", "create", "--name", "demo", "--leave", "--node", "demo-old")]


def test_check_names_the_items_to_change_and_each_node_its_context_and_builder():
    recap = register.checked(register.plan(PAIR, HOSTS, PAIR.expanded(), SEEN_NOTHING, True))
    arm = recap.results["arm64"]
    assert arm.note == "would change: ssh config, docker context, builder node"
    assert arm.to_json()["context"] == "archfarm-demo-arm64"
    assert arm.to_json()["builder"] == "demo"


def test_a_node_that_left_reports_its_ssh_entry_first_and_each_item_once():
    seen = converged()
    seen.contexts["archfarm-demo-old"] = ("ssh://archfarm-demo-old", register.marker(PAIR))
    seen.builder["Nodes"] += [{"Name": "demo-old", "Endpoint": "archfarm-demo-old"},
                              {"Name": "demo-old2", "Endpoint": "archfarm-demo-old"}]
    seen = register.Observed(seen.contexts, seen.builder, seen.driver_images,
                             seen.config_text + "\nHost archfarm-demo-old\n  HostName x\n")
    planned = register.plan(PAIR, HOSTS, PAIR.expanded(), seen, True)
    assert planned.leaving["old"][0].item == "ssh config"
    recap = register.checked(planned)
    assert recap.results["old"].changes == ["ssh config", "builder node", "docker context"]


FARM_2X2 = parse("""
farm: demo
gcp: {project: my-project, zones: [us-central1-a], ssh_source_ranges: [10.0.0.0/8]}
ssh: {user: builder, private_key: /keys/demo}
nodes:
  - {name: arm64, platform: linux/arm64, machine_type: t2a-standard-4, count: 2}
  - {name: amd64, platform: linux/amd64, machine_type: n2-standard-4, count: 2}
""", "demo.yaml")
HOSTS_2X2 = {n.name: Host(node=n.name, vm=f"demo-{n.name}", zone="us-central1-a",
                          vm_id=n.name, address=f"127.0.0.{i}", host_keys={"ssh-ed25519": "AAAA"})
             for i, n in enumerate(FARM_2X2.expanded(), 2)}


def test_the_builder_pins_each_platform_to_one_node_and_a_second_register_changes_nothing():
    """buildx unpins a platform from a builder node when a second node pins it, so pinning
    every node of a platform would make each register undo the last (and the builder strategy
    route nothing)."""
    planned = register.plan(FARM_2X2, HOSTS_2X2, FARM_2X2.expanded(), SEEN_NOTHING, True)
    builder = {n: [c.command for c in cs if c.item == "builder node"]
               for n, cs in planned.nodes.items()}
    assert [n for n, commands in builder.items() if commands] == ["arm64-1", "amd64-1"]
    assert "pins linux/arm64 to demo-arm64-1" in planned.notes["arm64-2"]
    seen = register.Observed(
        contexts={f"archfarm-demo-{n}": (f"ssh://archfarm-demo-{n}", register.marker(FARM_2X2))
                  for n in HOSTS_2X2},
        builder={"Name": "demo", "Nodes": [
            {"Name": f"demo-{n}", "Endpoint": f"archfarm-demo-{n}", "Platforms": [p]}
            for n, p in (("arm64-1", "linux/arm64"), ("amd64-1", "linux/amd64"))]},
        driver_images={}, config_text=register.render(FARM_2X2, HOSTS_2X2))
    again = register.plan(FARM_2X2, HOSTS_2X2, FARM_2X2.expanded(), seen, True)
    assert all(changes == [] for changes in again.nodes.values())


def test_a_second_node_of_a_platform_left_in_the_builder_by_an_older_register_leaves_it():
    seen = register.Observed(contexts={}, builder={"Name": "demo", "Nodes": [
        {"Name": "demo-arm64-2", "Endpoint": "archfarm-demo-arm64-2", "Platforms": []}]},
        driver_images={}, config_text="")
    planned = register.plan(FARM_2X2, HOSTS_2X2, FARM_2X2.expanded(), seen, True)
    [leave] = [c for c in planned.nodes["arm64-2"] if c.item == "builder node"]
    assert leave.command == ("buildx", "create", "--name", "demo", "--leave", "--node",
                             "demo-arm64-2")
