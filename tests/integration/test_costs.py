"""`inv vms --check` ends with the estimated cost, in the table and in --json, and changes
nothing."""

from __future__ import annotations

import pytest

from provision import costs_table as table
from provision.cloud.tasks import vms as vms_task

from .conftest import LAB_LIKE, SIX, count_tracebacks, inv, mutations, run_json, run_vms, vms_of


def vms_check(inventory, limit=None, hours_a_day=None):
    return lambda json_mode: vms_task(inventory=str(inventory), check=True, limit=limit,
                                      hours_a_day=hours_a_day, json_mode=json_mode)


def test_check_json_carries_the_cost_of_every_node_and_changes_nothing(fake_gce, write_inventory,
                                                                       capsys):
    path = write_inventory(SIX.replace("machine_type: t2a-standard-2\n",
                                       "machine_type: t2a-standard-2\n    spot: true\n"))
    code, result = run_json(vms_check(path), capsys=capsys)
    assert code == 0
    assert mutations(fake_gce) == [] and vms_of(fake_gce) == {}
    cost = result["cost"]
    assert cost["currency"] == "USD" and cost["taken"] == table.TAKEN and cost["source"]
    nodes = {n["node"]: n for n in cost["nodes"]}
    assert set(nodes) == {"arm-1", "arm-2", "arm-3", "x86-1", "x86-2", "x86-3"}
    arm = nodes["arm-1"]
    assert (arm["machine_type"], arm["region"], arm["spot"]) == ("t2a-standard-2", "us-central1",
                                                                 True)
    t2a, disk = table.MACHINE_RATES["t2a"]["us-central1"], table.DISK_RATES["pd-balanced"]
    disk_hourly = 50 * disk["us-central1"] / 730
    ip, ip_spot = table.EXTERNAL_IPV4_HOURLY, table.EXTERNAL_IPV4_SPOT_HOURLY
    assert arm["hourly"]["on_demand"] == pytest.approx(2 * t2a.vcpu + disk_hourly + ip,
                                                       abs=1e-6)
    assert arm["hourly"]["spot"] == pytest.approx(2 * t2a.spot_vcpu + disk_hourly + ip_spot,
                                                  abs=1e-6)
    assert arm["hourly"]["planned"] == arm["hourly"]["spot"]
    x86 = nodes["x86-1"]
    assert x86["spot"] is False and x86["hourly"]["planned"] == x86["hourly"]["on_demand"]
    total = cost["total"]
    assert total["complete"] is True and total["missing"] == []
    assert total["hourly"]["planned"] == pytest.approx(
        3 * arm["hourly"]["spot"] + 3 * x86["hourly"]["on_demand"], abs=1e-5)
    assert total["monthly"]["on_demand"] == pytest.approx(730 * total["hourly"]["on_demand"],
                                                          abs=0.01)


def test_check_shows_the_cost_table_after_the_plan(fake_gce, inventory, capsys):
    assert run_vms(inventory, check=True) == 0
    out = capsys.readouterr().out
    assert out.index("check mode: nothing was changed") < out.index("estimated cost")
    assert "t2a-standard-2" in out and "on-demand/month" in out
    assert "as planned (spot nodes at spot): $" in out
    assert mutations(fake_gce) == []


def test_check_with_limit_prices_only_those_nodes(fake_gce, inventory, capsys):
    code, result = run_json(vms_check(inventory, limit="x86"), capsys=capsys)
    assert code == 0
    assert [n["node"] for n in result["cost"]["nodes"]] == ["x86"]


def test_a_type_without_a_price_is_named_not_guessed(fake_gce, write_inventory, capsys):
    path = write_inventory(SIX.replace("n2-standard-2", "n2-custom-4-8192"))
    code, result = run_json(vms_check(path), capsys=capsys)
    assert code == 0
    total = result["cost"]["total"]
    assert total["complete"] is False
    assert total["missing"] == ["no price for n2-custom-4-8192 in us-central1"]
    assert run_vms(path, check=True) == 0
    assert "not in these figures: no price for n2-custom-4-8192 in us-central1" in \
        capsys.readouterr().out


def test_a_real_run_carries_no_cost(fake_gce, inventory, capsys):
    code, result = run_json(lambda json_mode: vms_task(inventory=str(inventory),
                                                       json_mode=json_mode), capsys=capsys)
    assert code == 0 and "cost" not in result


# -- --hours-a-day --------------------------------------------------------------------------------

# A bastion that keeps its address, an idle-stopping spot arm64 node with none, an x86 node
# with an address that stops after 10 idle minutes.
ELASTIC = (LAB_LIKE
           .replace("  ssh_source_ranges:", "  external_ip: false\n  ssh_source_ranges:")
           .replace("nodes:\n", "nodes:\n  - name: gate\n    platform: linux/amd64\n"
                    "    machine_type: e2-small\n    bastion: true\n    external_ip: true\n")
           .replace("machine_type: t2a-standard-2\n", "machine_type: t2a-standard-2\n"
                    "    spot: true\n    idle_stop_minutes: 10\n")
           .replace("machine_type: n2-standard-2\n", "machine_type: n2-standard-2\n"
                    "    external_ip: true\n    idle_stop_minutes: 10\n"))


def test_hours_a_day_prices_the_use_beside_always_on(fake_gce, write_inventory, capsys):
    path = write_inventory(ELASTIC)
    code, result = run_json(vms_check(path, hours_a_day="8"), capsys=capsys)
    assert code == 0 and mutations(fake_gce) == []
    cost = result["cost"]
    assert cost["hours_a_day"] == 8
    nodes = {n["node"]: n for n in cost["nodes"]}
    gate, arm, x86 = nodes["gate"], nodes["arm"], nodes["x86"]
    # the bastion runs always: its use is its always-on month
    assert gate["running_hours"] == 730 and gate["monthly"]["use"] == gate["monthly"]["always_on"]
    # 8 h a day is a third of the month for machines and addresses; disks bill all month
    disk_month = 50 * table.DISK_RATES["pd-balanced"]["us-central1"]
    t2a = table.MACHINE_RATES["t2a"]["us-central1"]
    assert (arm["external_ip"], arm["spot"], arm["idle_stop"]) == (False, True, True)
    assert arm["monthly"]["use"] == pytest.approx(2 * t2a.spot_vcpu * 730 / 3 + disk_month,
                                                  abs=0.01)
    x86_running = x86["hourly"]["planned"] - disk_month / 730
    assert x86["monthly"]["use"] == pytest.approx(x86_running * 730 / 3 + disk_month, abs=0.01)
    total = cost["total"]["monthly"]
    assert total["use"] == pytest.approx(sum(n["monthly"]["use"] for n in nodes.values()),
                                         abs=0.02)
    assert total["use"] < total["always_on"] == total["planned"]
    assert run_vms(path, check=True) == 0  # and the table, without --hours-a-day, as before
    capsys.readouterr()
    assert vms_check(path, hours_a_day="8")(json_mode=False) == 0
    out = capsys.readouterr().out
    assert "a month as planned, always on and at 8 h of builds a day" in out
    assert "at 8 h a day: nodes with idle_stop_minutes bill" in out
    use_table = out[out.index("a month as planned"):]
    row = next(line for line in use_table.splitlines() if line.startswith("arm "))
    assert [cell.strip() for cell in row.split("│")[1:4]] == ["spot, no IP", "yes", "243"]


@pytest.mark.parametrize("args, message", [
    (["vms", "--check", "--hours-a-day", "0"], "--hours-a-day 0: not a number of hours in a day"),
    (["vms", "--check", "--hours-a-day", "25"], "at most 24"),
    (["provision", "--check", "--hours-a-day", "eight"], "--hours-a-day eight: not a number"),
    (["vms", "--hours-a-day", "8"], "only --check shows. Fix: add --check."),
])
@pytest.mark.tally("bad_input")
def test_bad_hours_a_day_is_exit_2_before_any_call(fake_gce, write_inventory, args, message,
                                                   record_property):
    path = write_inventory()
    done = inv(*args, "-i", str(path))
    record_property("exit", done.returncode)
    record_property("tracebacks", count_tracebacks(done.stderr))
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and count_tracebacks(done.stderr) == 0
    assert fake_gce.requests() == []


def test_inv_vms_h_is_still_help():
    done = inv("vms", "-h")
    assert done.returncode == 0 and "--hours-a-day" in done.stdout


def test_provision_check_prices_the_use_too(fake_gce, write_inventory, capsys):
    from provision.pipeline import provision as provision_task

    path = write_inventory(ELASTIC)
    code, result = run_json(provision_task, inventory=str(path), check=True, hours_a_day="12",
                            capsys=capsys)
    assert code == 0 and mutations(fake_gce) == []
    assert result["cost"]["hours_a_day"] == 12
    total = result["cost"]["total"]["monthly"]
    assert total["use"] < total["always_on"]
