"""The cost estimate: figures from the price table, spot beside on-demand, disks, totals, and
prices the table lacks said as such."""

from __future__ import annotations

import textwrap

import pytest

from provision import costs
from provision import costs_table as table
from provision.errors import UserError
from provision.gce.catalog import FAMILIES
from provision.inventory import parse


def farm(nodes: str, zones: str = "[us-central1-a, us-central1-b]"):
    return parse(textwrap.dedent(f"""
        farm: t
        gcp:
          project: test-project
          zones: {zones}
        nodes:
        """) + textwrap.indent(textwrap.dedent(nodes), "  "), "test.yaml")


T2A_4 = """
- name: arm
  platform: linux/arm64
  machine_type: t2a-standard-4
"""


def test_t2a_standard_4_in_us_central1_is_vcpus_times_rate_plus_memory_times_rate():
    estimate = costs.estimate(farm(T2A_4))
    node, = estimate.nodes
    rates = table.MACHINE_RATES["t2a"]["us-central1"]
    assert node.region == "us-central1"
    assert node.shape == costs.Shape(4, 16)
    assert node.machine_hourly == pytest.approx(4 * rates.vcpu + 16 * rates.gb)
    assert node.machine_spot_hourly == pytest.approx(4 * rates.spot_vcpu + 16 * rates.spot_gb)
    # Hand-checked against the source: t2a-standard-4 in us-central1 is $0.154 an hour
    # on-demand and $0.065568 spot; 50 GB of pd-balanced at $0.10 a GB-month is $5 a month.
    assert node.machine_hourly == pytest.approx(0.154)
    assert node.machine_spot_hourly == pytest.approx(0.065568)
    assert node.disk_hourly == pytest.approx(50 * 0.10 / 730)
    # and its external IPv4 address, $0.005 an hour in use ($3.65 a month)
    assert node.hourly * 730 == pytest.approx(112.42 + 5.00 + 3.65)
    assert node.missing == ()


def test_n2_rates_reproduce_the_published_price_of_n2_standard_4():
    node, = costs.estimate(farm("""
        - name: x86
          platform: linux/amd64
          machine_type: n2-standard-4
        """)).nodes
    assert node.machine_hourly == pytest.approx(4 * 0.031611 + 16 * 0.004237)  # = 0.194236


@pytest.mark.parametrize("machine_type, shape", [
    ("n2-highcpu-8", costs.Shape(8, 8)), ("c3-highcpu-4", costs.Shape(4, 8)),
    ("c4a-highmem-2", costs.Shape(2, 16)), ("e2-micro", costs.Shape(0.25, 1)),
    ("e2-medium", costs.Shape(1, 4)), ("t2a-standard-48", costs.Shape(48, 192))])
def test_shapes_follow_the_family_memory_ratio(machine_type, shape):
    assert costs.shape_of(machine_type) == shape


@pytest.mark.parametrize("machine_type", [
    "n2-custom-4-8192", "t2a-highcpu-4", "c4a-standard-8-lssd", "m3-megamem-64", "e2-standard"])
def test_names_the_table_cannot_read_have_no_shape(machine_type):
    assert costs.shape_of(machine_type) is None


def test_spot_node_is_billed_at_spot_and_both_prices_are_shown():
    spot = T2A_4 + "  spot: true\n  max_run_hours: 8\n"
    node, = costs.estimate(farm(spot)).nodes
    assert node.spot and node.spot_hourly < node.hourly
    assert node.planned_hourly == node.spot_hourly
    # the disk costs the same; a spot VM's address costs half
    assert node.spot_hourly - node.hourly == pytest.approx(
        node.machine_spot_hourly - node.machine_hourly + 0.0025 - 0.005)


def test_disk_size_and_type_come_from_the_node():
    ssd = T2A_4 + "  disk_gb: 200\n  disk_type: pd-ssd\n"
    node, = costs.estimate(farm(ssd)).nodes
    assert node.disk_hourly * 730 == pytest.approx(200 * table.DISK_RATES["pd-ssd"]["us-central1"])


def test_totals_add_up_every_node_and_planned_mixes_spot_and_on_demand():
    estimate = costs.estimate(farm("""
        - name: arm
          platform: linux/arm64
          machine_type: t2a-standard-4
          count: 2
          spot: true
        - name: x86
          platform: linux/amd64
          machine_type: n2-standard-4
        """))
    arm1, arm2, x86 = estimate.nodes
    assert [n.node for n in estimate.nodes] == ["arm-1", "arm-2", "x86"]
    total = estimate.hourly
    assert total["on_demand"] == pytest.approx(arm1.hourly + arm2.hourly + x86.hourly)
    assert total["spot"] == pytest.approx(arm1.spot_hourly + arm2.spot_hourly + x86.spot_hourly)
    assert total["planned"] == pytest.approx(arm1.spot_hourly + arm2.spot_hourly + x86.hourly)
    assert estimate.monthly["planned"] == pytest.approx(730 * total["planned"])
    as_json = estimate.to_json()
    assert as_json["total"]["complete"] is True
    assert as_json["currency"] == "USD" and as_json["taken"] == table.TAKEN
    assert as_json["source"] and len(as_json["nodes"]) == 3


def test_limit_prices_only_the_named_nodes():
    two = farm(T2A_4 + "  count: 2\n")
    assert [n.node for n in costs.estimate(two, {"arm-2"}).nodes] == ["arm-2"]


def test_unknown_machine_type_says_so_and_is_left_out_of_the_totals():
    estimate = costs.estimate(farm("""
        - name: x86
          platform: linux/amd64
          machine_type: n2-custom-4-8192
        """))
    node, = estimate.nodes
    assert node.missing == ("no price for n2-custom-4-8192 in us-central1",)
    assert node.machine_hourly is None
    # the disk and the address still count
    assert estimate.hourly["on_demand"] == pytest.approx(node.disk_hourly + 0.005)
    total = estimate.to_json()["total"]
    assert total["complete"] is False
    assert total["missing"] == ["no price for n2-custom-4-8192 in us-central1"]


def test_unknown_region_says_so():
    node, = costs.estimate(farm("""
        - name: x86
          platform: linux/amd64
          machine_type: n2-standard-4
        """, zones="[me-west1-a]")).nodes
    assert node.missing == ("no price for n2-standard-4 in me-west1",
                            "no price for disk pd-balanced in me-west1")
    assert node.hourly == table.EXTERNAL_IPV4_HOURLY  # the address's price is global


def test_unknown_disk_type_says_so_and_the_machine_is_still_priced():
    node, = costs.estimate(farm(T2A_4 + "  disk_type: hyperdisk-balanced\n")).nodes
    assert node.missing == ("no price for disk hyperdisk-balanced in us-central1",)
    assert node.machine_hourly == pytest.approx(0.154)


def test_a_node_is_priced_where_its_family_is_first_offered():
    # us-east4 has no T2A: archfarm skips it, and so does the price.
    node, = costs.estimate(farm(T2A_4, zones="[us-east4-a, europe-west4-a]")).nodes
    assert node.region == "europe-west4"


def test_the_table_covers_every_family_of_the_catalog_and_names_its_source():
    assert set(table.MACHINE_RATES) == set(FAMILIES) == set(table.MEMORY_PER_VCPU)
    assert {"pd-standard", "pd-balanced", "pd-ssd"} <= set(table.DISK_RATES)
    assert table.TAKEN and all(url.startswith("https://") for url in table.SOURCES)
    for family, regions in table.MACHINE_RATES.items():
        for region, rates in regions.items():
            assert 0 < rates.spot_vcpu < rates.vcpu, (family, region)


# -- external addresses and --hours-a-day ---------------------------------------------------------

PRIVATE_FARM = """
farm: t
gcp:
  project: test-project
  zones: [us-central1-a]
  external_ip: false
idle_stop_minutes: 20
nodes:
  - {name: gate, platform: linux/amd64, machine_type: e2-small, bastion: true, external_ip: true}
  - {name: arm, platform: linux/arm64, machine_type: t2a-standard-4, spot: true}
  - {name: x86, platform: linux/amd64, machine_type: n2-standard-4, external_ip: true,
     idle_stop_minutes: 5}
"""


def private_farm():
    return parse(PRIVATE_FARM, "test.yaml")


def test_a_private_node_pays_for_no_address_and_the_others_do_spot_at_half():
    gate, arm, x86 = costs.estimate(private_farm()).nodes
    assert (gate.external_ip, arm.external_ip, x86.external_ip) == (True, False, True)
    assert arm.hourly == pytest.approx(arm.machine_hourly + arm.disk_hourly)
    assert arm.spot_hourly == pytest.approx(arm.machine_spot_hourly + arm.disk_hourly)
    assert x86.hourly == pytest.approx(x86.machine_hourly + x86.disk_hourly + 0.005)
    assert x86.spot_hourly == pytest.approx(x86.machine_spot_hourly + x86.disk_hourly + 0.0025)


def test_hours_a_day_bills_idle_stop_nodes_while_they_run_and_their_disks_always():
    estimate = costs.estimate(private_farm(), hours_a_day=6)
    gate, arm, x86 = estimate.nodes
    # the bastion never idle-stops: always on, use or not
    assert not gate.idle_stop and gate.monthly_use(6) == pytest.approx(730 * gate.hourly)
    # a spot node with idle stop: its spot machine 6 h a day, its disk all month, no address
    assert arm.idle_stop and arm.running_hours(6) == pytest.approx(730 / 4)
    assert arm.monthly_use(6) == pytest.approx(arm.machine_spot_hourly * 730 / 4
                                               + arm.disk_hourly * 730)
    # an on-demand node with an address: machine and address while it runs
    assert x86.monthly_use(6) == pytest.approx((x86.machine_hourly + 0.005) * 730 / 4
                                               + x86.disk_hourly * 730)
    monthly = estimate.monthly
    assert monthly["always_on"] == pytest.approx(monthly["planned"])
    assert monthly["use"] == pytest.approx(sum(n.monthly_use(6) for n in estimate.nodes))
    assert monthly["use"] < monthly["always_on"]
    as_json = estimate.to_json()
    assert as_json["hours_a_day"] == 6
    assert as_json["total"]["monthly"]["use"] == pytest.approx(monthly["use"], abs=0.01)
    node = as_json["nodes"][1]
    assert (node["idle_stop"], node["external_ip"]) == (True, False)
    assert node["running_hours"] == pytest.approx(182.5)
    assert node["monthly"]["use"] == pytest.approx(arm.monthly_use(6), abs=0.01)


def test_24_hours_a_day_is_always_on_and_without_idle_stop_use_changes_nothing():
    full = costs.estimate(private_farm(), hours_a_day=24).monthly
    assert full["use"] == pytest.approx(full["always_on"])
    always = costs.estimate(farm(T2A_4), hours_a_day=2).monthly  # no idle_stop_minutes
    assert always["use"] == pytest.approx(always["always_on"])


def test_without_hours_a_day_the_estimate_has_no_use_figure():
    estimate = costs.estimate(private_farm())
    assert "use" not in estimate.monthly
    assert estimate.to_json()["hours_a_day"] is None


@pytest.mark.parametrize("text", ["0", "-1", "24.5", "25", "eight", "", "nan", "inf"])
def test_hours_a_day_out_of_range_or_not_a_number_is_bad_input(text):
    with pytest.raises(UserError) as error:
        costs.parse_hours_a_day(text, check=True)
    assert error.value.exit_code == 2
    assert str(error.value).startswith(f"--hours-a-day {text}: not a number of hours in a day.")
    assert "at most 24" in str(error.value)


def test_hours_a_day_goes_with_check():
    assert costs.parse_hours_a_day("7.5", check=True) == 7.5
    assert costs.parse_hours_a_day(None, check=False) is None
    with pytest.raises(UserError, match="only --check shows. Fix: add --check."):
        costs.parse_hours_a_day("8", check=False)
