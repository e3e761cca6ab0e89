"""`inv vms --check` ends with the estimated cost, in the table and in --json, and changes
nothing."""

from __future__ import annotations

import pytest

from provision import costs_table as table
from provision.cloud.tasks import vms as vms_task

from .conftest import SIX, mutations, run_json, run_vms, vms_of


def vms_check(inventory, limit=None):
    return lambda json_mode: vms_task(inventory=str(inventory), check=True, limit=limit,
                                      json_mode=json_mode)


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
    assert arm["hourly"]["on_demand"] == pytest.approx(2 * t2a.vcpu + disk_hourly, abs=1e-6)
    assert arm["hourly"]["spot"] == pytest.approx(2 * t2a.spot_vcpu + disk_hourly, abs=1e-6)
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
