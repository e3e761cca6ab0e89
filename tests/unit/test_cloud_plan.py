"""The cloud stage's planners, table-driven: observed state in, typed actions out. No API."""

from __future__ import annotations

import pytest

from provision.cloud import plan
from provision.cloud.plan import Observed, Verb
from provision.errors import UserError
from provision.gce import labels
from provision.gce.firewall import FoundRule
from provision.gce.instances import FoundVm
from provision.inventory import parse

INVENTORY = """
farm: f
gcp:
  project: test-project
  zones: [us-central1-a, us-central1-b]
  ssh_source_ranges: [{ranges}]
nodes:
  - name: arm
    platform: linux/arm64
    machine_type: t2a-standard-2
  - name: x86
    platform: linux/amd64
    machine_type: n2-standard-2
"""


def farm(ranges: str = "203.0.113.7/32"):
    return parse(INVENTORY.format(ranges=ranges), "f.yaml")


def vm(node: str, status: str = "RUNNING", zone: str = "us-central1-a", name: str = "",
       farm_name: str = "f") -> FoundVm:
    marks = {labels.MANAGED_BY: "archfarm", labels.FARM_LABEL: farm_name, labels.NODE_LABEL: node}
    return FoundVm(name or f"{farm_name}-{node}", zone, status, "n2-standard-2", marks,
                   None, None)


def rule(ranges=("203.0.113.7/32",), tags=("archfarm-f",), ports=("22",),
         description="managed-by=archfarm archfarm-farm=f", other=()) -> FoundRule:
    return FoundRule("archfarm-f-ssh", description, tuple(ranges), tuple(tags), tuple(ports),
                     tuple(other))


def verbs(actions) -> dict[str, Verb]:
    return {a.key: a.verb for a in actions}


@pytest.mark.parametrize(("status", "verb"), [
    ("RUNNING", Verb.KEEP),
    ("PROVISIONING", Verb.WAIT),
    ("STAGING", Verb.WAIT),
    ("REPAIRING", Verb.WAIT),
    ("TERMINATED", Verb.START),
    ("STOPPING", Verb.START),      # wait for TERMINATED, then start
    ("SUSPENDING", Verb.RESUME),   # wait for SUSPENDED, then resume
    ("SUSPENDED", Verb.RESUME),
    ("SOMETHING_NEW", Verb.BLOCKED),
])
def test_a_found_vm_is_planned_by_its_status(status, verb):
    actions = plan.vms(farm(), Observed([vm("arm", status)], rule()))
    assert verbs(actions) == {"arm": verb, "x86": Verb.CREATE, "archfarm-f-ssh": Verb.KEEP}


@pytest.mark.parametrize(("found", "prune", "expected"), [
    ([vm("gone")], False, Verb.ORPHAN),
    ([vm("gone")], True, Verb.DELETE),
    ([vm("arm"), vm("arm", zone="us-central1-b", name="f-arm-again")], False, Verb.ORPHAN),
])
def test_vms_not_wanted_are_orphans_or_pruned(found, prune, expected):
    actions = plan.vms(farm(), Observed(found, rule()), prune=prune)
    extra = [a for a in actions if a.key not in ("arm", "x86", "archfarm-f-ssh")]
    assert [a.verb for a in extra] == [expected]
    assert extra[0].vm is not None and extra[0].key == extra[0].vm.name


def test_limit_plans_only_those_nodes_and_leaves_orphans_alone_but_keeps_the_rule():
    actions = plan.vms(farm(), Observed([vm("gone")], None), limit={"arm"})
    assert verbs(actions) == {"arm": Verb.CREATE, "archfarm-f-ssh": Verb.CREATE}


@pytest.mark.parametrize(("found", "verb", "detail"), [
    (None, Verb.CREATE, "tcp:22 from 203.0.113.7/32"),
    (rule(), Verb.KEEP, "tcp:22 from 203.0.113.7/32"),
    (rule(ranges=("0.0.0.0/0",)), Verb.UPDATE, "source ranges 0.0.0.0/0 -> 203.0.113.7/32"),
    (rule(tags=("web",)), Verb.UPDATE, "target tags web -> archfarm-f"),
    (rule(ports=("22", "2375")), Verb.UPDATE, "tcp ports 22, 2375 -> 22"),
    (rule(other=("udp",)), Verb.UPDATE, "drop udp"),
])
def test_the_firewall_rule_is_compared_with_the_inventory(found, verb, detail):
    action = plan.firewall(farm(), found)
    assert (action.verb, action.detail) == (verb, detail)


def test_a_disabled_rule_is_enabled_and_a_rule_on_another_network_is_refused():
    assert plan.firewall(farm(), rule()).verb is Verb.KEEP
    disabled = FoundRule(**{**rule().__dict__, "disabled": True})
    assert (plan.firewall(farm(), disabled).verb, plan.firewall(farm(), disabled).detail) == (
        Verb.UPDATE, "enable it")
    elsewhere = FoundRule(**{**rule().__dict__, "network": "other"})
    with pytest.raises(UserError, match="is on network other.*Fix: set gcp.network back"):
        plan.firewall(farm(), elsewhere)


def test_of_two_vms_for_a_node_the_running_one_is_kept_and_the_other_is_the_orphan():
    stopped, running = vm("arm", "TERMINATED"), vm("arm", zone="us-central1-b")
    actions = {a.key: a for a in plan.vms(farm(), Observed([stopped, running], rule()),
                                          prune=True)}
    assert actions["arm"].verb is Verb.KEEP and actions["arm"].vm is running
    assert actions["f-arm (us-central1-a)"].verb is Verb.DELETE


def test_a_rule_without_archfarms_mark_is_never_adopted():
    with pytest.raises(UserError, match="not made by archfarm.*Fix: delete or rename"):
        plan.firewall(farm(), rule(description="made by hand"))


def test_a_missing_rule_needs_source_ranges():
    with pytest.raises(UserError, match="gcp.ssh_source_ranges is empty"):
        plan.firewall(parse(INVENTORY.replace("[{ranges}]", "[]"), "f.yaml"), None)


def test_destroy_is_planned_per_vm_and_spares_strangers_and_unmarked_rules():
    seen = Observed([vm("arm"), vm("arm", zone="us-central1-b", name="f-arm-2")],
                    rule(description="by hand"), strangers=[vm("x86", farm_name="other",
                                                              name="f-x86")])
    assert verbs(plan.destroy(farm(), seen)) == {
        "f-arm": Verb.DELETE, "f-arm-2": Verb.DELETE, "f-x86": Verb.SPARE,
        "archfarm-f-ssh": Verb.SPARE}
    assert plan.destroy(farm(), Observed([], None)) == []


def test_only_changing_verbs_count_as_changes():
    assert {v for v in Verb if v.changes} == {Verb.CREATE, Verb.START, Verb.RESUME,
                                               Verb.UPDATE, Verb.DELETE}
