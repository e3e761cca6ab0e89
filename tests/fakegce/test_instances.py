"""instances.* through the real client: lifecycle, encodings, validation and concurrency rules."""

from __future__ import annotations

import ipaddress
import time
import uuid

import pytest
import requests
from google.api_core import exceptions
from google.cloud import compute_v1

from provision.fakegce import FakeGCE, MemoryBackend
from provision.fakegce.backends import VmView

from .conftest import PROJECT, ZONE, clients_of, create, insert, instance, wait

DONE = compute_v1.Operation.Status.DONE


def test_insert_goes_provisioning_staging_running_while_the_operation_runs(gce):
    gce.fake.set_faults(operation_seconds=0.6)
    op = insert(gce, instance())
    assert op.status in (compute_v1.Operation.Status.PENDING, compute_v1.Operation.Status.RUNNING)
    seen, op_seen = [], [op.status]
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        seen.append(gce.instances.get(project=PROJECT, zone=ZONE, instance="vm1").status)
        op_seen.append(gce.zone_ops.get(project=PROJECT, zone=ZONE, operation=op.name).status)
        if seen[-1] == "RUNNING" and op_seen[-1] == DONE:
            break
        time.sleep(0.05)
    assert list(dict.fromkeys(seen)) == ["PROVISIONING", "STAGING", "RUNNING"]
    status = compute_v1.Operation.Status
    assert list(dict.fromkeys(op_seen)) == [status.PENDING, status.RUNNING, DONE]


def test_instance_json_has_full_links_string_int64_and_loopback_addresses(gce):
    create(gce, instance())
    url = (f"{gce.fake.endpoint}/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances/vm1")
    raw = requests.get(url, timeout=5).json()
    assert isinstance(raw["id"], str) and raw["id"].isdigit()
    assert raw["disks"][0]["diskSizeGb"] == "10"
    assert raw["selfLink"] == ("https://www.googleapis.com/compute/v1/projects/proj/zones/"
                               "us-central1-a/instances/vm1")
    assert raw["machineType"].startswith("https://www.googleapis.com/compute/v1/projects/proj/")
    assert raw["disks"][0]["architecture"] == "ARM64"
    assert raw["cpuPlatform"] == "Ampere Altra"
    nic = raw["networkInterfaces"][0]
    for address in (nic["networkIP"], nic["accessConfigs"][0]["natIP"]):
        assert ipaddress.ip_address(address) in ipaddress.ip_network("127.0.0.0/8")


def test_every_address_handed_out_is_loopback_and_unique(gce):
    # 30 VMs: more than a fresh project's 8 addresses and 24 vCPUs in a region allow.
    lifted = [{"region": "us-central1", "metric": m, "limit": 1000}
              for m in ("CPUS", "E2_CPUS", "IN_USE_ADDRESSES")]
    gce.fake.set_faults(operation_seconds=0, quotas=lifted)
    nat = set()
    for i in range(30):
        vm = create(gce, instance(name=f"vm-{i}", machine_type="e2-small", family="debian-12"))
        nic = vm.network_interfaces[0]
        assert ipaddress.ip_address(nic.network_i_p).is_loopback
        assert ipaddress.ip_address(nic.access_configs[0].nat_i_p).is_loopback
        nat.add(nic.access_configs[0].nat_i_p)
    assert len(nat) == 30


def test_nat_ip_appears_only_once_running(gce):
    gce.fake.set_faults(operation_seconds=0.5)
    insert(gce, instance())
    vm = gce.instances.get(project=PROJECT, zone=ZONE, instance="vm1")
    assert vm.status == "PROVISIONING"
    assert not vm.network_interfaces[0].access_configs[0].nat_i_p
    assert vm.network_interfaces[0].network_i_p  # assigned at creation, as on GCE


def test_get_missing_instance_is_404_not_found(gce):
    with pytest.raises(exceptions.NotFound) as e:
        gce.instances.get(project=PROJECT, zone=ZONE, instance="missing")
    assert "The resource 'projects/proj/zones/us-central1-a/instances/missing' was not found" \
        in e.value.message
    assert e.value.errors[0]["reason"] == "notFound"


def test_name_taken_is_409_conflict(gce):
    create(gce, instance())
    with pytest.raises(exceptions.Conflict) as e:
        insert(gce, instance())
    assert e.value.errors[0]["reason"] == "alreadyExists"
    assert "instances/vm1' already exists" in e.value.message


@pytest.mark.parametrize("name", ["Vm1", "1vm", "vm_1", "vm-", "v" * 64])
def test_bad_instance_name_is_400_invalid(gce, name):
    with pytest.raises(exceptions.BadRequest) as e:
        insert(gce, instance(name=name))
    assert e.value.errors[0]["reason"] == "invalid"
    assert f"Invalid value for field 'resource.name': '{name}'" in e.value.message


@pytest.mark.parametrize("labels, text", [
    ({"iAmVm": "x"}, "Label key 'iAmVm' violates format constraints"),
    ({"9lives": "x"}, "Label key '9lives' violates format constraints"),
    ({"k" * 64: "x"}, "violates format constraints"),
    ({"app": "head.default"}, "Label value 'head.default' violates format constraints"),
    ({"app": "UPPER"}, "Label value 'UPPER' violates format constraints"),
])
def test_label_rules_are_enforced(gce, labels, text):
    with pytest.raises(exceptions.BadRequest) as e:
        insert(gce, instance(labels=labels))
    assert text in e.value.message
    assert "Invalid value for field 'resource.labels'" in e.value.message


def test_label_values_may_be_empty_or_start_with_a_digit(gce):
    vm = create(gce, instance(labels={"a": "", "b": "9", "c_d": "x-y_z"}))
    assert dict(vm.labels) == {"a": "", "b": "9", "c_d": "x-y_z"}


def test_t2a_is_not_offered_in_us_central1_c(gce):
    with pytest.raises(exceptions.BadRequest) as e:
        insert(gce, instance(zone="us-central1-c"), zone="us-central1-c")
    assert ("Machine type with name 't2a-standard-1' does not exist in zone 'us-central1-c'"
            in e.value.message)


@pytest.mark.parametrize("debian", ["debian-13", "debian-12"])
def test_boot_image_architecture_must_match_the_machine_type(gce, debian):
    with pytest.raises(exceptions.BadRequest) as e:
        insert(gce, instance(family=debian))  # x86 image on an arm64 machine (T2A)
    assert e.value.errors[0]["reason"] == "invalidResourceUsage"
    assert ("Requested boot disk architecture (X86_64) is not compatible with machine type "
            "architecture (ARM64)") in e.value.message
    with pytest.raises(exceptions.BadRequest) as e:
        insert(gce, instance(machine_type="n2-standard-2", family=f"{debian}-arm64"))
    assert "(ARM64) is not compatible with machine type architecture (X86_64)" in e.value.message
    assert not gce.instances.list(project=PROJECT, zone=ZONE).items


@pytest.mark.parametrize(("machine_type", "family", "architecture"), [
    ("t2a-standard-1", "debian-13-arm64", "ARM64"), ("n2-standard-2", "debian-13", "X86_64"),
    ("t2a-standard-1", "debian-12-arm64", "ARM64"), ("n2-standard-2", "debian-12", "X86_64"),
])
def test_a_vm_boots_from_debian_13_or_12_of_its_architecture(gce, machine_type, family,
                                                            architecture):
    vm = create(gce, instance(machine_type=machine_type, family=family))
    assert vm.status == "RUNNING" and vm.disks[0].architecture == architecture


def test_the_boot_backend_sees_the_boot_disks_source_image():
    """A backend may boot a VM by its image (the lab: Debian 12 or 13); a family sent is
    resolved to its newest image, a name sent is that image."""
    seen: list[VmView] = []

    class Recording(MemoryBackend):
        def power_on(self, vm, publish):
            seen.append(vm)
            super().power_on(vm, publish)

    with FakeGCE(backend=Recording(), operation_seconds=0.01) as fake:
        gce = clients_of(fake)
        create(gce, instance(name="a", machine_type="n2-standard-2", family="debian-12"))
        pinned = instance(name="b")
        pinned.disks[0].initialize_params.source_image = (
            "projects/debian-cloud/global/images/debian-13-trixie-arm64-v20251014")
        create(gce, pinned)
    assert [(v.name, v.image_project, v.image_family, v.image_name) for v in seen] == [
        ("a", "debian-cloud", "debian-12", "debian-12-bookworm-v20251111"),
        ("b", "debian-cloud", "debian-13-arm64", "debian-13-trixie-arm64-v20251014")]


def test_disk_smaller_than_the_image_is_rejected(gce):
    with pytest.raises(exceptions.BadRequest) as e:
        insert(gce, instance(disk_gb=5))
    assert "Requested disk size cannot be smaller than the image size (10 GB)" in e.value.message


def test_c4a_needs_hyperdisk(gce):
    with pytest.raises(exceptions.BadRequest) as e:
        insert(gce, instance(machine_type="c4a-standard-1", disk_type="pd-balanced"))
    assert "features are not compatible" in e.value.message
    vm = create(gce, instance(machine_type="c4a-standard-1", disk_type="hyperdisk-balanced"))
    assert vm.cpu_platform == "Google Axion"


def test_unknown_source_image_is_400_invalid_naming_the_value_sent(gce):
    """images.get of a missing image is 404; an insert naming one is 400 `invalid`."""
    with pytest.raises(exceptions.BadRequest) as e:
        insert(gce, instance(family="debian-99"))
    assert e.value.errors[0]["reason"] == "invalid"
    assert e.value.errors[0]["message"] == (
        "Invalid value for field 'resource.disks[0].initializeParams.sourceImage': "
        "'projects/debian-cloud/global/images/family/debian-99'. "
        "The referenced image resource cannot be found.")
    vm = instance()
    vm.disks[0].initialize_params.source_image = (
        "https://www.googleapis.com/compute/v1/projects/debian-cloud/global/images/nope-v1")
    with pytest.raises(exceptions.BadRequest) as e:
        insert(gce, vm)
    assert ("'resource.disks[0].initializeParams.sourceImage': 'https://www.googleapis.com/"
            "compute/v1/projects/debian-cloud/global/images/nope-v1'. The referenced image "
            "resource cannot be found.") in e.value.message


def test_same_request_id_returns_the_same_operation_and_one_vm(gce):
    rid = str(uuid.uuid4())
    first = insert(gce, instance(), request_id=rid)
    second = insert(gce, instance(), request_id=rid)  # a retry after a lost response
    assert first.name == second.name
    assert second.client_operation_id == rid
    wait(gce, first)
    assert [vm.name for vm in gce.instances.list(project=PROJECT, zone=ZONE)] == ["vm1"]


@pytest.mark.parametrize("rid", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_request_id_must_be_a_non_zero_uuid(gce, rid):
    with pytest.raises(exceptions.BadRequest) as e:
        insert(gce, instance(), request_id=rid)
    assert "requestId" in e.value.message


def test_list_filters_on_labels_and_name_and_pages(gce):
    gce.fake.set_faults(operation_seconds=0)
    for i in range(5):
        create(gce, instance(name=f"farm-{i}", labels={"farm": "a" if i < 3 else "b"}))
    by_label = gce.instances.list(compute_v1.ListInstancesRequest(
        project=PROJECT, zone=ZONE, filter='labels.farm = "a"'))
    assert [vm.name for vm in by_label] == ["farm-0", "farm-1", "farm-2"]
    by_name = gce.instances.list(compute_v1.ListInstancesRequest(
        project=PROJECT, zone=ZONE, filter="name eq farm-[34]"))
    assert [vm.name for vm in by_name] == ["farm-3", "farm-4"]
    combined = gce.instances.list(compute_v1.ListInstancesRequest(
        project=PROJECT, zone=ZONE,
        filter='(labels.farm = "b") AND ((status = RUNNING) OR (status = STAGING))'))
    assert [vm.name for vm in combined] == ["farm-3", "farm-4"]
    paged = gce.instances.list(compute_v1.ListInstancesRequest(
        project=PROJECT, zone=ZONE, max_results=2))
    assert [vm.name for vm in paged] == [f"farm-{i}" for i in range(5)]
    lists = [r for r in gce.fake.requests() if r["method"] == "instances.list"]
    assert len(lists) == 3 + 3  # three filtered lists, then one list in three pages


def test_bad_filter_and_max_results_are_400(gce):
    with pytest.raises(exceptions.BadRequest):
        list(gce.instances.list(compute_v1.ListInstancesRequest(
            project=PROJECT, zone=ZONE, filter="labels.farm = ")))
    with pytest.raises(exceptions.BadRequest):
        list(gce.instances.list(compute_v1.ListInstancesRequest(
            project=PROJECT, zone=ZONE, max_results=501)))


def test_aggregated_list_groups_by_zone_with_warnings_for_empty_scopes(gce):
    gce.fake.set_faults(operation_seconds=0)
    create(gce, instance(name="a1", labels={"farm": "x"}))
    create(gce, instance(name="b1", zone="us-central1-b", labels={"farm": "x"}),
           zone="us-central1-b")
    create(gce, instance(name="b2", zone="us-central1-b"), zone="us-central1-b")
    scopes = dict(gce.instances.aggregated_list(compute_v1.AggregatedListInstancesRequest(
        project=PROJECT, filter='labels.farm = "x"')))
    found = {scope: [vm.name for vm in s.instances] for scope, s in scopes.items()
             if s.instances}
    assert found == {"zones/us-central1-a": ["a1"], "zones/us-central1-b": ["b1"]}
    assert scopes["zones/europe-west4-a"].warning.code == "NO_RESULTS_ON_PAGE"
    paged = gce.instances.aggregated_list(compute_v1.AggregatedListInstancesRequest(
        project=PROJECT, max_results=1))
    assert sorted(vm.name for _, s in paged for vm in s.instances) == ["a1", "b1", "b2"]


def test_delete_stop_start(gce):
    create(gce, instance())
    op = gce.instances.stop_unary(project=PROJECT, zone=ZONE, instance="vm1")
    assert gce.instances.get(project=PROJECT, zone=ZONE, instance="vm1").status == "STOPPING"
    wait(gce, op)
    stopped = gce.instances.get(project=PROJECT, zone=ZONE, instance="vm1")
    assert stopped.status == "TERMINATED"
    assert not stopped.network_interfaces[0].access_configs[0].nat_i_p
    wait(gce, gce.instances.start_unary(project=PROJECT, zone=ZONE, instance="vm1"))
    assert gce.instances.get(project=PROJECT, zone=ZONE, instance="vm1").status == "RUNNING"
    op = gce.instances.delete_unary(project=PROJECT, zone=ZONE, instance="vm1")
    assert op.operation_type == "delete"
    wait(gce, op)
    with pytest.raises(exceptions.NotFound):
        gce.instances.get(project=PROJECT, zone=ZONE, instance="vm1")
    # the boot disk went with it (autoDelete), so the name can be used again
    create(gce, instance())


def test_mutation_during_an_operation_is_resource_not_ready(gce):
    gce.fake.set_faults(operation_seconds=1)
    insert(gce, instance())
    vm = gce.instances.get(project=PROJECT, zone=ZONE, instance="vm1")
    with pytest.raises(exceptions.BadRequest) as e:
        gce.instances.stop_unary(project=PROJECT, zone=ZONE, instance="vm1")
    assert e.value.errors[0]["reason"] == "resourceNotReady"
    with pytest.raises(exceptions.BadRequest):
        gce.instances.set_labels_unary(
            project=PROJECT, zone=ZONE, instance="vm1",
            instances_set_labels_request_resource=compute_v1.InstancesSetLabelsRequest(
                labels={"a": "b"}, label_fingerprint=vm.label_fingerprint))


def test_set_labels_needs_the_current_fingerprint_and_rotates_it(gce):
    vm = create(gce, instance(labels={"a": "1"}))
    body = compute_v1.InstancesSetLabelsRequest(labels={"a": "2"},
                                                label_fingerprint=vm.label_fingerprint)
    wait(gce, gce.instances.set_labels_unary(project=PROJECT, zone=ZONE, instance="vm1",
                                             instances_set_labels_request_resource=body))
    after = gce.instances.get(project=PROJECT, zone=ZONE, instance="vm1")
    assert dict(after.labels) == {"a": "2"}
    assert after.label_fingerprint != vm.label_fingerprint
    with pytest.raises(exceptions.PreconditionFailed) as e:  # the old fingerprint is stale now
        gce.instances.set_labels_unary(project=PROJECT, zone=ZONE, instance="vm1",
                                       instances_set_labels_request_resource=body)
    assert e.value.errors[0]["reason"] == "conditionNotMet"
    assert "Labels fingerprint either invalid or resource labels have changed" in e.value.message


def test_empty_label_set_has_gces_empty_fingerprint(gce):
    assert create(gce, instance()).label_fingerprint == "42WmSpB8rSM="


def test_set_metadata_needs_the_current_fingerprint(gce):
    vm = create(gce, instance(metadata={"k": "v"}))
    meta = compute_v1.Metadata(items=[compute_v1.Items(key="k", value="w")],
                               fingerprint=vm.metadata.fingerprint)
    wait(gce, gce.instances.set_metadata_unary(project=PROJECT, zone=ZONE, instance="vm1",
                                               metadata_resource=meta))
    after = gce.instances.get(project=PROJECT, zone=ZONE, instance="vm1")
    assert [(i.key, i.value) for i in after.metadata.items] == [("k", "w")]
    with pytest.raises(exceptions.PreconditionFailed) as e:
        gce.instances.set_metadata_unary(project=PROJECT, zone=ZONE, instance="vm1",
                                         metadata_resource=meta)
    assert "Supplied fingerprint does not match current metadata fingerprint." in e.value.message


def test_bulk_insert_numbers_after_the_highest_existing_name(gce):
    gce.fake.set_faults(operation_seconds=0)
    create(gce, instance(name="node-0050"))
    body = compute_v1.BulkInsertInstanceResource(
        count=2, min_count=2, name_pattern="node-####",
        instance_properties=compute_v1.InstanceProperties(
            machine_type="t2a-standard-1", labels={"farm": "x"},
            disks=instance().disks, network_interfaces=instance().network_interfaces))
    op = gce.instances.bulk_insert_unary(project=PROJECT, zone=ZONE,
                                         bulk_insert_instance_resource_resource=body)
    assert op.operation_type == "bulkInsert"
    wait(gce, op)
    names = sorted(vm.name for vm in gce.instances.list(project=PROJECT, zone=ZONE))
    assert names == ["node-0050", "node-0051", "node-0052"]


def test_bulk_insert_with_explicit_names_and_bad_labels(gce):
    per_instance = compute_v1.BulkInsertInstanceResourcePerInstanceProperties
    body = compute_v1.BulkInsertInstanceResource(
        count=2, per_instance_properties={"x-a": per_instance(name="x-a"),
                                          "x-b": per_instance(name="x-b")},
        instance_properties=compute_v1.InstanceProperties(machine_type="t2a-standard-1",
                                                          disks=instance().disks))
    wait(gce, gce.instances.bulk_insert_unary(project=PROJECT, zone=ZONE,
                                              bulk_insert_instance_resource_resource=body))
    assert sorted(vm.name for vm in gce.instances.list(project=PROJECT, zone=ZONE)) == \
        ["x-a", "x-b"]
    body.instance_properties.labels = {"Bad": "x"}
    body.per_instance_properties = {}
    body.name_pattern = "y-#"
    with pytest.raises(exceptions.BadRequest) as e:
        gce.instances.bulk_insert_unary(project=PROJECT, zone=ZONE,
                                        bulk_insert_instance_resource_resource=body)
    assert "'resource.instanceProperties.labels'" in e.value.message


def test_bad_path_name_is_400_with_the_pattern(gce):
    with pytest.raises(exceptions.BadRequest) as e:
        gce.instances.get(project=PROJECT, zone=ZONE, instance="instance-")
    assert "Invalid value for field 'instance': 'instance-'. Must be a match of regex" \
        in e.value.message


def test_a_rejected_mutation_leaves_no_operation_behind_its_request_id(gce):
    vm = create(gce, instance(labels={"a": "1"}))
    rid = str(uuid.uuid4())
    stale = compute_v1.SetLabelsInstanceRequest(
        project=PROJECT, zone=ZONE, instance="vm1", request_id=rid,
        instances_set_labels_request_resource=compute_v1.InstancesSetLabelsRequest(
            labels={"a": "2"}, label_fingerprint="stale000000="))
    with pytest.raises(exceptions.PreconditionFailed):
        gce.instances.set_labels_unary(stale)
    # The retry, corrected, with the same requestId: it must act, not replay a phantom.
    stale.instances_set_labels_request_resource.label_fingerprint = vm.label_fingerprint
    op = gce.instances.set_labels_unary(stale)
    assert wait(gce, op).status == DONE
    assert dict(gce.instances.get(project=PROJECT, zone=ZONE, instance="vm1").labels) == \
        {"a": "2"}


def test_a_vm_without_access_config_has_only_its_internal_address_from_the_backends_range():
    """A private node: no accessConfigs on the wire, no natIP ever, no IN_USE_ADDRESSES; its
    networkIP comes from the boot backend's internal_range (the lab's docker subnet), which
    the backend is told, and goes back to the pool when the VM is deleted."""
    seen: list[VmView] = []

    class Subnet(MemoryBackend):
        internal_range = ("10.128.0.2", "10.128.0.3")

        def power_on(self, vm, publish):
            seen.append(vm)
            super().power_on(vm, publish)

    with FakeGCE(backend=Subnet(), operation_seconds=0.01) as fake:
        gce = clients_of(fake)
        regions = fake.client(compute_v1.RegionsClient)
        private = create(gce, instance(name="private", external_ip=False))
        public = create(gce, instance(name="public"))
        url = f"{fake.endpoint}/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances/private"
        raw = requests.get(url, timeout=10).json()  # the wire JSON, not the client's view
        usage = {q.metric: q.usage for q in regions.get(project=PROJECT,
                                                        region="us-central1").quotas}
        wait(gce, gce.instances.delete_unary(project=PROJECT, zone=ZONE, instance="public"))
        again = create(gce, instance(name="again", external_ip=False))
    nic = raw["networkInterfaces"][0]
    assert "accessConfigs" not in nic and nic["networkIP"] == "10.128.0.2"
    assert private.network_interfaces[0].network_i_p == "10.128.0.2"
    assert not private.network_interfaces[0].access_configs
    assert public.network_interfaces[0].network_i_p == "10.128.0.3"
    assert usage["IN_USE_ADDRESSES"] == 1.0  # the public VM's address only
    assert again.network_interfaces[0].network_i_p == "10.128.0.3"  # released by the delete
    assert [(v.name, v.nat_ip, v.network_ip) for v in seen] == [
        ("private", None, "10.128.0.2"), ("public", public.network_interfaces[0]
                                          .access_configs[0].nat_i_p, "10.128.0.3"),
        ("again", None, "10.128.0.3")]
