"""The inventory's checks, one defect each: the message names file, line, key and fix."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from provision import inventory
from provision.errors import InventoryError, UserError
from provision.gce import catalog
from provision.inventory import load, parse, resolve_path

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
farm: demo
gcp:
  project: my-project
  zones: [us-central1-a, us-central1-b]
  ssh_source_ranges: [203.0.113.7/32]
nodes:
  - name: arm
    platform: linux/arm64
    machine_type: t2a-standard-4
    count: 2
  - name: x86
    platform: linux/amd64
    machine_type: n2-standard-4
"""


def fails(text: str) -> InventoryError:
    with pytest.raises(InventoryError) as e:
        parse(text, "farm.yaml")
    message = str(e.value)
    assert isinstance(e.value, UserError) and e.value.exit_code == 2
    assert message.startswith("farm.yaml:") and "Fix: " in message and "\n" not in message
    return e.value


def edit(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new, 1)


def test_the_good_inventory_parses():
    farm = parse(GOOD, "farm.yaml")
    assert [n.name for n in farm.expanded()] == ["arm-1", "arm-2", "x86"]


# -- one source of truth: the catalog ----------------------------------------------------------

def test_machine_families_come_from_the_catalog_only():
    for name in ("ARM64_FAMILIES", "ARM64_ZONES", "IMAGES"):
        assert not hasattr(inventory, name), name
    farm = parse(GOOD, "farm.yaml")
    assert {n.image for n in farm.expanded()} == set(catalog.DEFAULT_IMAGES.values())


def test_nodes_boot_debian_13_unless_they_name_an_image():
    assert catalog.DEFAULT_IMAGES == {
        "linux/arm64": "projects/debian-cloud/global/images/family/debian-13-arm64",
        "linux/amd64": "projects/debian-cloud/global/images/family/debian-13"}
    pinned = "projects/debian-cloud/global/images/family/debian-12-arm64"
    farm = parse(edit("count: 2\n", f"count: 2\n    image: {pinned}\n"), "farm.yaml")
    assert [n.image for n in farm.expanded()] == [
        pinned, pinned, "projects/debian-cloud/global/images/family/debian-13"]
    e = fails(edit("count: 2\n", "count: 2\n    image: debian-12\n"))
    assert e.key == "nodes[0].image"
    assert e.fix == ("name one like projects/debian-cloud/global/images/family/debian-13, or"
                     " leave image out for Debian 13 on the node's platform")


def test_a_c4a_node_needs_a_zone_offering_c4a():
    text = edit("machine_type: t2a-standard-4", "machine_type: c4a-standard-4").replace(
        "zones: [us-central1-a, us-central1-b]", "zones: [us-west1-a, us-west1-b]")
    e = fails(text)
    assert (e.line, e.key) == (4, "gcp.zones")
    assert "none of us-west1-a, us-west1-b offers C4A" in e.problem
    assert "us-east1-b" in e.fix  # a zone from the catalog's C4A list


def test_c4a_where_the_catalog_offers_it():
    text = edit("machine_type: t2a-standard-4", "machine_type: c4a-standard-4").replace(
        "zones: [us-central1-a, us-central1-b]", "zones: [us-east1-b]")
    assert parse(text, "farm.yaml").nodes[0].machine_type == "c4a-standard-4"


def test_the_platform_mismatch_names_the_catalogs_families():
    e = fails(edit("machine_type: n2-standard-4", "machine_type: c4a-standard-4"))
    assert e.key == "nodes[1].platform" and "linux/arm64" in e.problem
    assert "t2a-*, c4a-*" not in e.fix and "e2, n2, n2d, c3" in e.fix


# -- YAML: duplicate keys, anchors and aliases, keys as written ---------------------------------

@pytest.mark.parametrize("text, key, lines", [
    (GOOD + "farm: other\n", "farm", (1, 14)),
    (edit("  zones: [us-central1-a, us-central1-b]\n",
          "  zones: [us-central1-a]\n  network: a\n  zones: [us-central1-b]\n"),
     "gcp.zones", (4, 6)),
    (edit("    count: 2\n", "    count: 2\n    spot: true\n    count: 3\n"),
     "nodes[0].count", (10, 12)),
])
def test_a_duplicate_key_names_the_key_and_both_lines(text, key, lines):
    e = fails(text)
    assert (e.key, e.line) == (key, lines[1])
    assert f"appears twice, on lines {lines[0]} and {lines[1]}" in e.problem


def test_keys_are_names_as_written_not_yaml_booleans():
    e = fails(GOOD + "yes: 1\n")
    assert e.key == "yes" and "unknown key yes" in e.problem


ALIAS_BOMB = "\n".join(  # 9**9 "lol"s from 624 bytes
    ['lol0: &lol0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"lol{i}: &lol{i} [{','.join([f'*lol{i - 1}'] * 9)}]" for i in range(1, 9)]
    + ["farm: *lol8"]) + "\n"


def test_a_billion_laughs_fails_at_once():
    """Run in a child: before the fix, walking the expanded document never ended."""
    assert len(ALIAS_BOMB) == 624
    code = ("from provision.inventory import parse\nimport sys\n"
            "try:\n  parse(sys.stdin.read(), 'bomb.yaml')\n"
            "except Exception as e:\n  print(type(e).__name__, e)\n")
    try:
        out = subprocess.run([sys.executable, "-c", code], input=ALIAS_BOMB, cwd=REPO,
                             capture_output=True, text=True, timeout=20).stdout
    except subprocess.TimeoutExpired:
        pytest.fail("the alias bomb was still expanding after 20s")
    assert out.startswith("InventoryError bomb.yaml:1: lol0: YAML anchor &lol0 is not")


@pytest.mark.parametrize("text, line, key, what", [
    (edit("farm: demo\n", "base: &b demo\nfarm: demo\n"), 1, "base", "anchor &b"),
    (edit("    count: 2\n", "    count: *n\n"), 10, "nodes[0].count", "alias *n"),
    (edit("  - name: x86\n", "  - <<: {spot: true}\n    name: x86\n").replace(
        "    count: 2\n", "    count: 2\n    <<: *n\n"), 11, "nodes[0].'<<'", "alias *n"),
])
def test_anchors_and_aliases_are_refused(text, line, key, what):
    e = fails(text)
    assert (e.line, e.key) == (line, key) and f"YAML {what} is not accepted" in e.problem
    assert "write the value out in full" in e.fix


def test_a_merge_key_without_alias_is_just_an_unknown_key():
    e = fails(edit("  - name: x86\n", "  - <<: {spot: true}\n    name: x86\n"))
    assert e.key == "nodes[1].'<<'" and "unknown key '<<'" in e.problem


@pytest.mark.parametrize("text, expected", [
    ("a: !!int x\n", "cannot read 'x' as tag:yaml.org,2002:int"),
    ("a: !!timestamp x\n", "as tag:yaml.org,2002:timestamp"),
    ("!!map [1]\n", "expected a mapping"),
    ("? [a, b]\n: 1\n", "a key here is a list or a mapping"),
    ("a: \x07\n", "character '\\x07' is not allowed"),
    ("a: 1\n---\nb: 2\n", "more than one YAML document"),
    ("[" * 100 + "]" * 100, "nested more than 32 levels deep"),
])
def test_odd_yaml_is_a_message_not_a_traceback(text, expected):
    assert expected in fails(text).problem


def test_an_odd_key_is_quoted_so_the_message_stays_one_line():
    e = fails(GOOD + '"a\\nb": 1\n')
    assert e.key == "'a\\nb'"


# -- the inventory path ------------------------------------------------------------------------

def test_an_empty_inventory_path_is_an_error_not_the_default(monkeypatch):
    monkeypatch.delenv("ARCHFARM_INVENTORY", raising=False)
    for empty in ("", "  "):
        with pytest.raises(InventoryError) as e:
            resolve_path(empty)
        assert "the inventory path is empty" in str(e.value)
        assert "Fix: pass -i PATH" in str(e.value)
    assert resolve_path(None) == Path("inventory/lab.yaml")
    monkeypatch.setenv("ARCHFARM_INVENTORY", "/x/farm.yaml")
    assert resolve_path(None) == Path("/x/farm.yaml")
    with pytest.raises(InventoryError):
        resolve_path("")


def test_an_inventory_path_that_is_a_directory(tmp_path):
    (tmp_path / "prod.yaml").write_text(GOOD)
    with pytest.raises(InventoryError) as e:
        load(str(tmp_path))
    assert str(e.value) == (f"{tmp_path}: is a directory, not an inventory file. Fix: pass -i"
                            f" with the YAML file itself, e.g. -i {tmp_path / 'prod.yaml'}.")


def test_an_inventory_path_under_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InventoryError) as e:
        load(str(tmp_path / "f" / "farm.yaml"))
    assert "a parent of this path is a file" in str(e.value)


def test_a_fifo_is_refused_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(InventoryError) as e:
        load(str(tmp_path / "pipe"))
    assert "not a regular file" in str(e.value)


def test_an_inventory_that_is_not_utf8(tmp_path):
    (tmp_path / "farm.yaml").write_bytes(b"farm: demo\ngcp: \xff\n")
    with pytest.raises(InventoryError) as e:
        load(str(tmp_path / "farm.yaml"))
    assert f"{tmp_path / 'farm.yaml'}:2: not UTF-8 text" in str(e.value)


# -- unknown keys: did you mean, instead of the missing key they cause --------------------------

@pytest.mark.parametrize("old, new, key, problem, fix", [
    ("  zones:", "  zone:", "gcp.zone", "unknown key zone; did you mean zones?",
     "rename it to zones"),
    ("nodes:", "node:", "node", "unknown key node; did you mean nodes?", "rename it to nodes"),
    ("    machine_type: n2", "    machinetype: n2", "nodes[1].machinetype",
     "unknown key machinetype; did you mean machine_type?", "rename it to machine_type"),
    ("    count: 2", "    colour: red", "nodes[0].colour", "unknown key colour",
     "remove it; the keys allowed here are name, platform, machine_type, count, zones"),
])
def test_an_unknown_key_says_what_was_meant(old, new, key, problem, fix):
    e = fails(edit(old, new))
    assert e.key == key and e.problem == problem and e.fix.startswith(fix)
    assert "missing" not in str(e)


def test_the_whole_message_for_a_misspelt_key():
    e = fails(edit("  zones:", "  zone:"))
    assert str(e) == ("farm.yaml:4: gcp.zone: unknown key zone; did you mean zones? Fix: rename"
                      " it to zones.")


# -- strict types -----------------------------------------------------------------------------

@pytest.mark.parametrize("line, key, problem, fix", [
    ("count: true", "count", "expected a whole number, got true", "use a whole number"),
    ('count: "3"', "count", "expected a whole number, got the quoted string '3'",
     "write it without quotes: 3"),
    ("count: 2.0", "count", "expected a whole number, got 2.0", "use a whole number"),
    ("max_run_hours: false", "max_run_hours", "expected a whole number, got false",
     "use a whole number"),
    ("disk_gb: '100'", "disk_gb", "expected a whole number, got the quoted string '100'",
     "write it without quotes: 100"),
    ('spot: "true"', "spot", "expected true or false, got the quoted string 'true'",
     "use true or false, without quotes"),
    ("spot: 1", "spot", "expected true or false, got 1", "use true or false"),
    ("spot: maybe", "spot", "expected true or false, got 'maybe'", "use true or false"),
])
def test_numbers_and_booleans_are_strict(line, key, problem, fix):
    e = fails(edit("    count: 2\n", f"    {line}\n"))
    assert (e.line, e.key, e.problem) == (10, f"nodes[0].{key}", problem)
    assert e.fix.startswith(fix)


@pytest.mark.parametrize("line, value", [("spot: yes", True), ("spot: false", False),
                                         ("count: 3", 3), ("max_run_hours: 8", 8),
                                         ("disk_gb: 100", 100)])
def test_plain_yaml_numbers_and_booleans_still_work(line, value):
    farm = parse(edit("    count: 2\n", f"    {line}\n"), "farm.yaml")
    assert getattr(farm.nodes[0], line.split(":")[0]) == value


# -- SSH source ranges -------------------------------------------------------------------------

@pytest.mark.parametrize("cidr, whom", [
    ("0.0.0.0/0", "the whole internet"), ("::/0", "the whole internet"),
    ("10.0.0.0/7", "everyone in a range wider than a /8"),
    ("2001:db8::/31", "everyone in a range wider than a /32"),
])
def test_ssh_from_anywhere_is_refused(cidr, whom):
    e = fails(edit("[203.0.113.7/32]", f"[203.0.113.7/32, '{cidr}']"))
    assert (e.line, e.key) == (5, "gcp.ssh_source_ranges[1]")
    assert e.problem == f"{cidr} would open SSH on every node to {whom}"
    assert "203.0.113.7/32" in e.fix and "gcp.allow_ssh_from_anywhere: true" in e.fix


@pytest.mark.parametrize("cidr", ["10.0.0.0/8", "2001:db8::/32", "127.0.0.1/32", "::1/128"])
def test_ranges_up_to_the_limit_are_fine(cidr):
    assert parse(edit("203.0.113.7/32", f"'{cidr}'"), "x").gcp.ssh_source_ranges == [cidr]


def test_allow_ssh_from_anywhere_opens_it_on_purpose():
    text = edit("[203.0.113.7/32]", "['0.0.0.0/0', '::/0']\n  allow_ssh_from_anywhere: true")
    assert parse(text, "farm.yaml").gcp.ssh_source_ranges == ["0.0.0.0/0", "::/0"]
    e = fails(text.replace("anywhere: true", "anywhere: 'true'"))
    assert e.key == "gcp.allow_ssh_from_anywhere"


@pytest.mark.parametrize("cidr, network, single", [
    ("10.0.0.1/8", "10.0.0.0/8", "10.0.0.1/32"),
    ("2001:db8::1/64", "2001:db8::/64", "2001:db8::1/128"),
])
def test_host_bits_set_shows_the_network_form(cidr, network, single):
    e = fails(edit("203.0.113.7/32", f"'{cidr}'"))
    assert (e.line, e.key) == (5, "gcp.ssh_source_ranges[0]")
    assert e.problem == f"{cidr} has host bits set"
    assert e.fix == f"write the network, {network}, or {single} for that one address"


def test_not_a_cidr_at_all():
    e = fails(edit("203.0.113.7/32", "localhost"))
    assert e.problem == "'localhost' is not a CIDR range"


def test_the_example_inventories_parse():
    for path in sorted((REPO / "inventory").glob("*.yaml")):
        parse(path.read_text(), str(path))


def test_messages_keep_their_shape():
    e = fails(textwrap.dedent(edit("    count: 2\n", "    count: 0\n")))
    assert str(e) == "farm.yaml:10: nodes[0].count: 0 is out of range. Fix: use a value at least 1."


def test_the_inventorys_platforms_are_the_platform_tables():
    from typing import get_args

    from provision import inventory, platforms

    assert set(get_args(inventory.Platform)) == set(platforms.BY_PLATFORM)


# -- private nodes, the bastion, idle stop, cache size (issue 17) ------------------------------

PRIVATE = edit("  ssh_source_ranges:", "  external_ip: false\n  ssh_source_ranges:").replace(
    "    machine_type: n2-standard-4\n",
    "    machine_type: n2-standard-4\n    bastion: true\n    external_ip: true\n")


def test_a_private_farm_is_reached_through_its_one_bastion():
    farm = parse(PRIVATE, "farm.yaml")
    assert [(n.name, n.private, n.bastion) for n in farm.expanded()] == [
        ("arm-1", True, False), ("arm-2", True, False), ("x86", False, True)]
    assert farm.bastion and farm.bastion.name == "x86"
    assert parse(GOOD, "farm.yaml").bastion is None
    assert all(not n.private for n in parse(GOOD, "farm.yaml").expanded())


@pytest.mark.parametrize("text, key, problem", [
    (edit("  ssh_source_ranges:", "  external_ip: false\n  ssh_source_ranges:"),
     "gcp.external_ip", "no bastion"),
    (edit("    count: 2\n", "    count: 2\n    external_ip: false\n"),
     "nodes[0].external_ip", "no bastion"),
    (edit("    count: 2\n", "    count: 2\n    bastion: true\n"),
     "nodes[0].bastion", "one bastion"),
    (PRIVATE.replace("    external_ip: true\n", ""), "nodes[1].external_ip", "needs its external"),
    (PRIVATE.replace("    bastion: true\n", "    bastion: true\n    idle_stop_minutes: 5\n"),
     "nodes[1].idle_stop_minutes", "never stopped"),
    (PRIVATE.replace("    bastion: true\n", "    bastion: true\n    spot: true\n"),
     "nodes[1].spot", "must not be taken away"),
    (PRIVATE.replace("    bastion: true\n", "    bastion: true\n    max_run_hours: 8\n"),
     "nodes[1].max_run_hours", "must not be taken away"),
])
def test_private_nodes_without_a_usable_bastion_are_refused(text, key, problem):
    e = fails(text)
    assert f" {key}: " in str(e) and problem in str(e)


def test_idle_stop_minutes_for_the_farm_or_a_node_never_the_bastion():
    text = PRIVATE.replace("nodes:", "idle_stop_minutes: 30\nnodes:").replace(
        "    count: 2\n", "    count: 2\n    idle_stop_minutes: 0.5\n")
    farm = parse(text, "farm.yaml")
    assert [n.idle_stop_minutes for n in farm.expanded()] == [0.5, 0.5, None]
    assert [n.idle_stop_minutes for n in parse(GOOD, "farm.yaml").expanded()] == [None] * 3


@pytest.mark.parametrize("value, problem", [
    ("0", "0 is out of range"), ('"5"', "quoted string '5'"), ("true", "expected a number")])
def test_a_bad_idle_stop_is_explained(value, problem):
    assert problem in str(fails(edit("nodes:", f"idle_stop_minutes: {value}\nnodes:")))


def test_cache_max_gb_is_a_whole_number_of_gigabytes():
    farm = parse(edit("nodes:", "buildx:\n  cache_max_gb: 20\nnodes:"), "farm.yaml")
    assert farm.buildx.cache_max_gb == 20
    assert "out of range" in str(fails(edit("nodes:", "buildx:\n  cache_max_gb: 0\nnodes:")))


def test_the_bastion_fix_says_what_works_with_the_farms_default():
    # gcp.external_ip false: removing the node's line would not give it an address
    e = fails(PRIVATE.replace("    external_ip: true\n", "    external_ip: false\n"))
    assert "Fix: set external_ip: true on it." in str(e)
    farm_public = edit("    machine_type: n2-standard-4\n", "    machine_type: n2-standard-4\n"
                       "    bastion: true\n    external_ip: false\n")
    assert "(or remove the line: the farm" in str(fails(farm_public))
