"""`inv status`'s live facts merged into the listing, and its table; the SSH look is stubbed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from provision import configure, status
from provision.inventory import parse
from provision.report import Reporter
from provision.runner import Cancel

INVENTORY = """
farm: f
gcp:
  project: test-project
  zones: [us-central1-a]
  ssh_source_ranges: [203.0.113.7/32]
nodes:
  - name: arm
    platform: linux/arm64
    machine_type: t2a-standard-2
  - name: x86
    platform: linux/amd64
    machine_type: n2-standard-2
  - name: spare
    platform: linux/amd64
    machine_type: n2-standard-2
"""

LIVE = {
    "arm": {"docker": "28.3.3", "emulated": False, "builds": 2, "reachable": True},
    "x86": {"docker": None, "emulated": None, "builds": None, "reachable": False,
            "note": "no answer within 5 s"},
}


def listing() -> dict:
    def node(name: str, state: str) -> dict:
        return {"name": name, "vm": f"f-{name}", "zone": "us-central1-a",
                "platform": "linux/amd64", "machine_type": "n2-standard-2", "status": state,
                "external_ip": None, "docker": None, "emulated": None, "builds": None}
    return {"farm": "f", "nodes": [node("arm", "RUNNING"), node("x86", "RUNNING"),
                                   node("spare", "TERMINATED")]}


def test_builds_in_flight_come_with_the_live_facts(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(configure, "live_facts",
                        lambda farm, directory, node, progress, timeout: LIVE[node.name])
    state = listing()
    status.add_live_facts(parse(INVENTORY, "f.yaml"), None, state, Cancel())
    nodes = {n["name"]: n for n in state["nodes"]}
    assert nodes["arm"]["builds"] == 2 and nodes["arm"]["docker"] == "28.3.3"
    assert nodes["x86"]["builds"] is None and "x86" in state["unreachable"]
    assert nodes["spare"]["builds"] is None  # not running: not looked at


def test_a_stopped_engine_still_shows_the_builds_counted(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(configure, "live_facts", lambda *a: {
        "docker": None, "emulated": False, "builds": 0, "reachable": True})
    state = listing()
    status.add_live_facts(parse(INVENTORY, "f.yaml"), None, state, Cancel())
    arm = state["nodes"][0]
    assert arm["builds"] == 0 and arm["emulated"] is None and "arm" in state["engine_down"]


def test_the_table_has_a_builds_column(capsys):
    state = listing()
    state["nodes"][0].update(docker="28.3.3", emulated=False, builds=2, builder=None)
    state["unreachable"] = {"x86": "no answer within 5 s"}
    status.show(Reporter(), state)
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("name"))
    assert header.split()[-1] == "builds"
    rows: dict[str, list[str]] = {}
    for line in lines[lines.index(header) + 1:]:  # the table, then each node's own lines
        if line.split()[:1] in (["arm"], ["x86"], ["spare"]):
            rows.setdefault(line.split()[0], line.split())
    assert rows["arm"][-1] == "2"
    assert rows["x86"][-1] == "-" and "unreachable" in rows["x86"]
    assert rows["spare"][-1] == "-"


@pytest.mark.parametrize("seconds, shown", [
    (0, "0 s ago"), (59, "59 s ago"), (60, "1 min ago"), (12 * 60 + 30, "12 min ago"),
    (3 * 3600, "3 h ago"), (47 * 3600, "47 h ago"), (5 * 86400, "5 days ago")])
def test_age_reads_as_a_person_would_say_it(seconds, shown):
    now = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
    then = (now - timedelta(seconds=seconds)).astimezone(timezone(timedelta(hours=-8)))
    assert status.age(then.isoformat(timespec="milliseconds"), now) == shown


def test_a_stopped_or_suspended_node_shows_since_when_and_its_idle_stop(capsys):
    state = listing()
    ago = (datetime.now(UTC) - timedelta(minutes=12, seconds=5)).isoformat()
    state["nodes"][2].update(since=ago, idle_stop_minutes=0.25)
    state["nodes"][1].update(status="SUSPENDED", since=None)
    status.show(Reporter(), state)
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()
            if line.split()[:1] in (["arm"], ["x86"], ["spare"])}
    assert "stopped 12 min ago" in rows["spare"] and "0.25 min" in rows["spare"]
    assert "suspended" in rows["x86"] and "off" in rows["x86"].split()


def test_the_address_column_says_a_private_node_is_reached_through_the_bastion(capsys):
    state = listing()
    state["nodes"][0].update(external_ip="127.0.0.5", internal_ip="10.128.0.2", via=None)
    state["nodes"][1].update(external_ip=None, internal_ip="10.128.0.3", via="arm")
    status.show(Reporter(), state)
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()
            if line.split()[:1] in (["arm"], ["x86"])}
    assert "127.0.0.5" in rows["arm"] and "10.128.0.2" not in rows["arm"]
    assert "10.128.0.3 via arm" in rows["x86"]
