"""Private nodes (issue 17): the pure parts. VM specs and request bodies without an access
config, the network tags, the two firewall rules planned from the inventory, the ssh config's
ProxyJump, and how a VM found in the API is reached. No API, no lab."""

from __future__ import annotations

import pytest

from provision.buildx import register
from provision.cloud import plan, spec
from provision.cloud.plan import Observed, Verb
from provision.errors import UserError
from provision.gce import instances
from provision.gce.firewall import FoundRule
from provision.gce.instances import FoundVm
from provision.hosts.cache import Host
from provision.hosts.directory import reach
from provision.inventory import parse

MARK = "managed-by=archfarm archfarm-farm=p"

PRIVATE = """
farm: p
gcp:
  project: test-project
  zones: [us-central1-a]
  ssh_source_ranges: [203.0.113.7/32]
  external_ip: false
nodes:
  - {name: gate, platform: linux/amd64, machine_type: e2-small, bastion: true, external_ip: true}
  - {name: arm, platform: linux/arm64, machine_type: t2a-standard-1, count: 2}
"""

PUBLIC = PRIVATE.replace("  external_ip: false\n", "")


def farm(text: str = PRIVATE):
    return parse(text, "p.yaml")


def found_rule(name: str, source_ranges=(), source_tags=(), target_tags=(),
               description: str = MARK) -> FoundRule:
    return FoundRule(name, description, tuple(source_ranges), tuple(target_tags), ("22",), (),
                     source_tags=tuple(source_tags))


def test_a_private_node_is_created_without_an_access_config_and_the_bastion_with_one():
    f = farm()
    by_name = {n.name: n for n in f.expanded()}
    private = spec.vm_spec(f, by_name["arm-1"], "ssh-ed25519 AAAA")
    bastion = spec.vm_spec(f, by_name["gate"], "ssh-ed25519 AAAA")
    assert not private.external_ip and bastion.external_ip
    assert not instances.body(private, "us-central1-a").network_interfaces[0].access_configs
    nic = instances.body(bastion, "us-central1-a").network_interfaces[0]
    assert [a.type_ for a in nic.access_configs] == ["ONE_TO_ONE_NAT"]
    assert private.tags == ("archfarm-p",)
    assert bastion.tags == ("archfarm-p", "archfarm-p-public", "archfarm-p-bastion")


def test_a_farm_without_private_nodes_keeps_one_tag_and_one_rule_to_the_whole_farm():
    f = farm(PUBLIC)
    assert {spec.vm_spec(f, n, "k").tags for n in f.expanded() if not n.bastion} == {
        ("archfarm-p",)}
    actions = plan.vms(f, Observed([], None))
    rules = {a.key: a for a in actions if a.rule is not None}
    assert set(rules) == {"archfarm-p-ssh"}
    assert rules["archfarm-p-ssh"].rule.target_tags == ("archfarm-p",)


def test_with_private_nodes_ssh_from_outside_reaches_the_public_nodes_and_the_bastion_the_rest():
    actions = plan.vms(farm(), Observed([], None))
    rules = {a.key: a.rule for a in actions if a.rule is not None}
    assert set(rules) == {"archfarm-p-ssh", "archfarm-p-ssh-bastion"}
    outside, inside = rules["archfarm-p-ssh"], rules["archfarm-p-ssh-bastion"]
    assert outside.source_ranges == ("203.0.113.7/32",)
    assert outside.target_tags == ("archfarm-p-public",)
    assert inside.source_ranges == () and inside.source_tags == ("archfarm-p-bastion",)
    assert inside.target_tags == ("archfarm-p",) and inside.description == MARK
    assert {a.key: a.verb for a in actions if a.rule is not None} == {
        "archfarm-p-ssh": Verb.CREATE, "archfarm-p-ssh-bastion": Verb.CREATE}


def test_both_rules_as_wanted_are_kept_and_a_drifted_one_is_updated():
    seen = Observed([], found_rule("archfarm-p-ssh", ["203.0.113.7/32"],
                                   target_tags=["archfarm-p-public"]),
                    bastion_rule=found_rule("archfarm-p-ssh-bastion",
                                            source_tags=["archfarm-p-bastion"],
                                            target_tags=["archfarm-p"]))
    assert {a.key: a.verb for a in plan.vms(farm(), seen) if a.rule} == {
        "archfarm-p-ssh": Verb.KEEP, "archfarm-p-ssh-bastion": Verb.KEEP}
    drifted = Observed([], seen.rule, bastion_rule=found_rule(
        "archfarm-p-ssh-bastion", source_ranges=["0.0.0.0/0"], target_tags=["archfarm-p"]))
    update = next(a for a in plan.vms(farm(), drifted) if a.key == "archfarm-p-ssh-bastion")
    assert update.verb is Verb.UPDATE
    assert update.detail == ("source ranges 0.0.0.0/0 -> -; source tags - -> archfarm-p-bastion")
    # A farm that had private nodes and has none now: the first rule targets the farm again.
    back = {a.key: a for a in plan.vms(farm(PUBLIC), seen) if a.rule}
    assert back["archfarm-p-ssh"].verb is Verb.UPDATE
    assert back["archfarm-p-ssh"].detail == "target tags archfarm-p-public -> archfarm-p"


def test_the_bastion_rule_is_deleted_once_no_node_is_private_unless_it_is_not_ours():
    left = found_rule("archfarm-p-ssh-bastion", source_tags=["archfarm-p-bastion"],
                      target_tags=["archfarm-p"])
    actions = plan.vms(farm(PUBLIC), Observed([], None, bastion_rule=left))
    assert {a.key: a.verb for a in actions if a.rule} == {
        "archfarm-p-ssh": Verb.CREATE, "archfarm-p-ssh-bastion": Verb.DELETE}
    stranger = found_rule("archfarm-p-ssh-bastion", description="someone else's")
    assert "archfarm-p-ssh-bastion" not in {
        a.key for a in plan.vms(farm(PUBLIC), Observed([], None, bastion_rule=stranger))}
    with pytest.raises(UserError, match="was not made by archfarm for this farm"):
        plan.vms(farm(), Observed([], None, bastion_rule=stranger))


def test_destroy_deletes_both_rules_and_spares_a_same_named_stranger():
    seen = Observed([], found_rule("archfarm-p-ssh", ["203.0.113.7/32"]),
                    bastion_rule=found_rule("archfarm-p-ssh-bastion"))
    assert [(a.key, a.verb) for a in plan.destroy(farm(), seen)] == [
        ("archfarm-p-ssh", Verb.DELETE), ("archfarm-p-ssh-bastion", Verb.DELETE)]
    seen.bastion_rule = found_rule("archfarm-p-ssh-bastion", description="not ours")
    assert [(a.key, a.verb) for a in plan.destroy(farm(), seen)][-1] == (
        "archfarm-p-ssh-bastion", Verb.SPARE)


def _vm(name: str, external: str | None, internal: str) -> FoundVm:
    return FoundVm(name, "us-central1-a", "RUNNING", "e2-small", {}, external, internal)


def test_a_vm_without_an_external_address_is_reached_at_its_internal_one_through_the_bastion():
    f = farm()
    assert reach(f, _vm("p-gate", "127.0.0.5", "10.128.0.2")) == ("127.0.0.5", "")
    assert reach(f, _vm("p-arm-1", None, "10.128.0.3")) == ("10.128.0.3", "gate")
    # A public node whose address is not assigned yet is not reached through the bastion.
    assert reach(f, _vm("p-gate", None, "10.128.0.2")) == (None, "")
    # A VM made before the farm went private keeps its address and is reached directly.
    assert reach(f, _vm("p-arm-2", "127.0.0.6", "10.128.0.4")) == ("127.0.0.6", "")
    # No bastion (and no private node): nothing to go through.
    assert reach(farm(PUBLIC.replace(", bastion: true", "")),
                 _vm("p-arm-1", None, "10.128.0.3")) == (None, "")


def test_the_ssh_config_jumps_through_the_bastion_for_private_hosts_only():
    f = farm()
    hosts = {"gate": Host("gate", "p-gate", "us-central1-a", "1", "127.0.0.5",
                          {"ssh-ed25519": "AAAA"}),
             "arm-1": Host("arm-1", "p-arm-1", "us-central1-a", "2", "10.128.0.3",
                           {"ssh-ed25519": "BBBB"}, via="gate")}
    text = register.render(f, hosts)
    blocks = {b.splitlines()[0]: b for b in text.split("\n\n") if b.startswith("Host ")}
    private = blocks["Host archfarm-p-arm-1"].splitlines()
    assert "  HostName 10.128.0.3" in private
    assert "  ProxyJump archfarm-p-gate" in private
    assert "  HostKeyAlias archfarm-p-arm-1" in private
    assert "  StrictHostKeyChecking yes" in private
    assert "ProxyJump" not in blocks["Host archfarm-p-gate"]


# -- the lab: one network, VMs at their networkIP ----------------------------------------------

def _lab_vm(nat_ip: str | None, network_ip: str):
    from provision.fakegce.backends import VmView

    return VmView("proj", "us-central1-a", "node", "1234567890123", nat_ip, "ARM64", {},
                  image_project="debian-cloud", image_family="debian-13-arm64",
                  image_name="debian-13-trixie-arm64-v20251111", network_ip=network_ip)


def test_a_lab_vm_joins_the_lab_network_at_its_network_ip_and_only_a_public_one_publishes_sshd():
    from provision.lab.backend import DockerBackend
    from provision.lab.image import suite_tags

    backend = DockerBackend(suite_tags("archfarm-lab-vm:x"))
    assert backend.internal_range == ("10.128.0.2", "10.128.15.254")
    private = backend._run_args(_lab_vm(None, "10.128.0.3"), "c")
    public = backend._run_args(_lab_vm("127.0.0.9", "10.128.0.2"), "c")
    assert " ".join(private).count("--network archfarm-lab-net --ip 10.128.0.3") == 1
    assert "-p" not in private  # nothing of a private VM is published on this machine
    assert "--ip" in public and public[public.index("-p") + 1] == "127.0.0.9:22:22"


def test_the_lab_network_is_refused_where_a_route_of_this_machine_overlaps_it():
    from provision.lab.containers import colliding_routes

    routes = ("default via 192.0.2.1 dev eth0\n"
              "172.17.0.0/16 dev docker0 proto kernel scope link src 172.17.0.1 linkdown\n"
              "192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2\n")
    assert colliding_routes(routes) == []
    assert colliding_routes(routes + "10.0.0.0/8 via 192.0.2.9 dev eth0\n") == [
        "10.0.0.0/8 via 192.0.2.9 dev eth0"]
    assert colliding_routes("10.128.4.0/24 dev wg0 scope link\n") == [
        "10.128.4.0/24 dev wg0 scope link"]


def test_the_hosts_cache_keeps_the_bastion_a_node_is_reached_through(tmp_path, monkeypatch):
    import json

    from provision.hosts import cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    private = Host("arm-1", "p-arm-1", "us-central1-a", "2", "10.128.0.3",
                   {"ssh-ed25519": "BBBB"}, via="gate")
    cache.save("proj", "p", {"arm-1": private})
    assert cache.load("proj", "p") == {"arm-1": private}
    assert cache.known_hosts_path("proj", "p").read_text() == (
        "archfarm-p-arm-1,10.128.0.3 ssh-ed25519 BBBB\n")
    # A cache written before private nodes existed reads as reached directly.
    path = cache.cache_dir("proj", "p") / "hosts.json"
    old = json.loads(path.read_text())
    del old["nodes"]["arm-1"]["via"]
    path.write_text(json.dumps(old))
    assert cache.load("proj", "p")["arm-1"].via == ""
