"""GCE details the fake reproduces: legacy regex filters, image and zone errors, tags, ids."""

from __future__ import annotations

import pytest
import requests
from google.api_core import exceptions
from google.cloud import compute_v1

from provision.fakegce.errors import InvalidField
from provision.fakegce.filters import compile_filter

from .conftest import PROJECT, ZONE, create, instance, wait

VM = {"name": "p-1", "status": "RUNNING", "labels": {"farm": "x"}}


# -- legacy regex filters with parenthesised terms --------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("(status eq RUNNING) (name eq p.*) (labels.farm eq x)", True),
    ("(status eq RUNNING) (name eq p.*) (labels.farm eq y)", False),  # every term must hold
    ("(status ne RUNNING) (name eq p.*)", False),
    ("(status ne STOPPING) (labels.farm ne y)", True),
    ("(name eq 'p-.*') (status eq \"RUN.*\")", True),  # quoted values, single or double
    ('(status eq RUNNING)(name eq "p-(1|2)")', True),  # a regex with its own parentheses
    ("(name eq p)", False),  # a regex matches the whole value, as on GCE
    ("(labels.owner ne x)", True),  # a missing field is the empty string
])
def test_parenthesised_legacy_terms_are_anded(text, expected):
    assert compile_filter(text)(VM) is expected


@pytest.mark.parametrize("text", [
    "(name eq x) AND (status eq y)",  # the legacy form has no AND
    "(name eq x) (status = RUNNING)",  # dialects mixed
    "status = RUNNING AND name eq x",
    "(name eq x",
    "(name eq x) trailing",
    "()",
])
def test_bad_or_mixed_legacy_filters_are_invalid(text):
    with pytest.raises(InvalidField):
        compile_filter(text)


def test_a_quoted_eq_does_not_switch_dialect():
    assert compile_filter('name = "a eq b"')({"name": "a eq b"}) is True


def test_legacy_filter_through_the_client(gce):
    gce.fake.set_faults(operation_seconds=0)
    create(gce, instance(name="p-1", labels={"farm": "x"}))
    create(gce, instance(name="p-2", labels={"farm": "y"}))
    create(gce, instance(name="q-1", labels={"farm": "x"}))
    wait(gce, gce.instances.stop_unary(project=PROJECT, zone=ZONE, instance="p-2"))

    def names(text):
        return [vm.name for vm in gce.instances.list(compute_v1.ListInstancesRequest(
            project=PROJECT, zone=ZONE, filter=text))]

    assert names("(status eq RUNNING) (name eq p.*) (labels.farm eq x)") == ["p-1"]
    assert names("(status ne RUNNING)") == ["p-2"]
    assert names("(name eq 'p-.*') (labels.farm ne x)") == ["p-2"]
    agg = gce.instances.aggregated_list(compute_v1.AggregatedListInstancesRequest(
        project=PROJECT, filter="(labels.farm eq x) (name ne q.*)"))
    assert [vm.name for _, scope in agg for vm in scope.instances] == ["p-1"]
    with pytest.raises(exceptions.BadRequest) as e:
        names("(name eq p.*) AND (status = RUNNING)")
    assert "Invalid value for field 'filter'" in e.value.message


# -- a source image that does not exist -------------------------------------------------------

def test_bulk_insert_names_its_own_field_for_a_missing_image(gce):
    disks = instance(family="debian-14-arm64").disks
    body = compute_v1.BulkInsertInstanceResource(
        count=1, name_pattern="b-#", instance_properties=compute_v1.InstanceProperties(
            machine_type="t2a-standard-1", disks=disks))
    with pytest.raises(exceptions.BadRequest) as e:
        gce.instances.bulk_insert_unary(project=PROJECT, zone=ZONE,
                                        bulk_insert_instance_resource_resource=body)
    assert e.value.errors[0]["reason"] == "invalid"
    assert e.value.errors[0]["message"] == (
        "Invalid value for field "
        "'resource.instanceProperties.disks[0].initializeParams.sourceImage': "
        "'projects/debian-cloud/global/images/family/debian-14-arm64'. "
        "The referenced image resource cannot be found.")


# -- an unknown zone is 400 on every zonal method ---------------------------------------------

BAD_ZONE = "mars-north1-a"
OP = "operation-1-2-3-4"


def _zonal_calls(gce):
    vms, ops, mts = gce.instances, gce.zone_ops, gce.machine_types
    kw = {"project": PROJECT, "zone": BAD_ZONE}
    labels = compute_v1.InstancesSetLabelsRequest(labels={}, label_fingerprint="x")
    bulk = compute_v1.BulkInsertInstanceResource(count=1, name_pattern="a-#")
    return {
        "instances.insert": lambda: vms.insert_unary(instance_resource=instance(), **kw),
        "instances.bulkInsert": lambda: vms.bulk_insert_unary(
            bulk_insert_instance_resource_resource=bulk, **kw),
        "instances.get": lambda: vms.get(instance="vm1", **kw),
        "instances.list": lambda: list(vms.list(**kw)),
        "instances.delete": lambda: vms.delete_unary(instance="vm1", **kw),
        "instances.start": lambda: vms.start_unary(instance="vm1", **kw),
        "instances.stop": lambda: vms.stop_unary(instance="vm1", **kw),
        "instances.suspend": lambda: vms.suspend_unary(instance="vm1", **kw),
        "instances.resume": lambda: vms.resume_unary(instance="vm1", **kw),
        "instances.setLabels": lambda: vms.set_labels_unary(
            instance="vm1", instances_set_labels_request_resource=labels, **kw),
        "instances.setMetadata": lambda: vms.set_metadata_unary(
            instance="vm1", metadata_resource=compute_v1.Metadata(), **kw),
        "instances.getGuestAttributes": lambda: vms.get_guest_attributes(
            compute_v1.GetGuestAttributesInstanceRequest(
                instance="vm1", query_path="hostkeys/", **kw)),
        "machineTypes.get": lambda: mts.get(machine_type="t2a-standard-1", **kw),
        "machineTypes.list": lambda: list(mts.list(**kw)),
        "zoneOperations.get": lambda: ops.get(operation=OP, **kw),
        "zoneOperations.wait": lambda: ops.wait(operation=OP, **kw),
        "zoneOperations.list": lambda: list(ops.list(**kw)),
    }


def test_unknown_zone_is_400_on_every_zonal_method(gce):
    calls = _zonal_calls(gce)
    for method, call in calls.items():
        with pytest.raises(exceptions.BadRequest) as e:
            call()
        assert e.value.errors[0]["reason"] == "invalid", method
        assert e.value.errors[0]["message"] == \
            f"Invalid value for field 'zone': '{BAD_ZONE}'. Unknown zone.", method
    logged = {r["method"] for r in gce.fake.requests() if r["status"] == 400}
    assert logged == set(calls)
    with pytest.raises(exceptions.NotFound):  # zones.get is the exception: 404
        gce.zones.get(project=PROJECT, zone=BAD_ZONE)


# -- tags, and an instance addressed by its numeric id ----------------------------------------

def _raw(gce, name):
    url = f"{gce.fake.endpoint}/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances/{name}"
    return requests.get(url, timeout=5).json()


def test_tags_without_items_have_only_a_fingerprint(gce):
    create(gce, instance(name="plain"))
    tagged = instance(name="tagged")
    tagged.tags = compute_v1.Tags(items=["archfarm-ssh", "web"])
    create(gce, tagged)
    plain = _raw(gce, "plain")["tags"]
    assert plain == {"fingerprint": "42WmSpB8rSM="}
    tags = _raw(gce, "tagged")["tags"]
    assert tags["items"] == ["archfarm-ssh", "web"]
    assert tags["fingerprint"] and tags["fingerprint"] != plain["fingerprint"]
    got = gce.instances.get(project=PROJECT, zone=ZONE, instance="tagged")
    assert list(got.tags.items) == ["archfarm-ssh", "web"]


def test_every_per_instance_method_takes_the_numeric_id(gce):
    vm = create(gce, instance(metadata={"enable-guest-attributes": "TRUE"}))
    ref = {"project": PROJECT, "zone": ZONE, "instance": str(vm.id)}
    assert gce.instances.get(**ref).name == "vm1"
    keys = gce.instances.get_guest_attributes(
        compute_v1.GetGuestAttributesInstanceRequest(query_path="hostkeys/", **ref))
    assert {i.key for i in keys.query_value.items} >= {"ssh-ed25519"}
    op = gce.instances.set_labels_unary(
        instances_set_labels_request_resource=compute_v1.InstancesSetLabelsRequest(
            labels={"a": "b"}, label_fingerprint=vm.label_fingerprint), **ref)
    assert op.target_link.endswith("/instances/vm1") and op.target_id == vm.id
    wait(gce, op)
    wait(gce, gce.instances.set_metadata_unary(metadata_resource=compute_v1.Metadata(
        items=[], fingerprint=vm.metadata.fingerprint), **ref))
    for call in (gce.instances.stop_unary, gce.instances.start_unary,
                 gce.instances.suspend_unary, gce.instances.resume_unary):
        assert wait(gce, call(**ref)).status == compute_v1.Operation.Status.DONE
    after = gce.instances.get(**ref)
    assert after.status == "RUNNING" and dict(after.labels) == {"a": "b"}
    wait(gce, gce.instances.delete_unary(**ref))
    with pytest.raises(exceptions.NotFound) as e:
        gce.instances.get(**ref)
    assert f"instances/{vm.id}' was not found" in e.value.message


def test_a_numeric_id_is_looked_up_in_its_own_zone_only(gce):
    vm = create(gce, instance())
    with pytest.raises(exceptions.NotFound):
        gce.instances.get(project=PROJECT, zone="us-central1-b", instance=str(vm.id))
    with pytest.raises(exceptions.NotFound):
        gce.instances.get(project=PROJECT, zone=ZONE, instance="12345")
