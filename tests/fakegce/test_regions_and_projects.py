"""regions.get/list with quotas counted from the VMs held, the `quotas` fault, quota failures
on insert, and projects.get/setCommonInstanceMetadata, all through the real client."""

from __future__ import annotations

import pytest
from google.api_core import exceptions
from google.cloud import compute_v1

from .conftest import PROJECT, ZONE, create, insert, instance, wait


@pytest.fixture
def regions(gce):
    return gce.fake.client(compute_v1.RegionsClient)


@pytest.fixture
def projects(gce):
    return gce.fake.client(compute_v1.ProjectsClient)


def quotas(regions, region="us-central1") -> dict[str, tuple[float, float]]:
    got = regions.get(project=PROJECT, region=region)
    return {q.metric: (q.limit, q.usage) for q in got.quotas}


def test_a_fresh_project_has_default_limits_and_no_usage(regions):
    region = regions.get(project=PROJECT, region="us-central1")
    assert region.name == "us-central1" and region.status == "UP"
    assert region.zones[0].endswith(f"/projects/{PROJECT}/zones/us-central1-a")
    assert region.self_link.endswith(f"/projects/{PROJECT}/regions/us-central1")
    by_metric = {q.metric: (q.limit, q.usage) for q in region.quotas}
    assert by_metric["CPUS"] == (24.0, 0.0)
    assert by_metric["T2A_CPUS"] == (24.0, 0.0)
    assert by_metric["IN_USE_ADDRESSES"] == (8.0, 0.0)
    assert by_metric["PREEMPTIBLE_CPUS"] == (0.0, 0.0)
    names = [r.name for r in regions.list(project=PROJECT)]
    assert "europe-west4" in names and "us-central1" in names


def test_unknown_region_is_404(regions):
    with pytest.raises(exceptions.NotFound) as e:
        regions.get(project=PROJECT, region="mars-north1")
    assert "projects/proj/regions/mars-north1" in e.value.message


def test_usage_counts_running_vms_by_family_and_frees_cpus_when_stopped(gce, regions):
    gce.fake.set_faults(operation_seconds=0)
    create(gce, instance(name="arm", machine_type="t2a-standard-2"))
    create(gce, instance(name="x86", machine_type="n2-standard-4", family="debian-12",
                         external_ip=False))
    used = quotas(regions)
    assert used["CPUS"][1] == 6.0
    assert used["T2A_CPUS"][1] == 2.0 and used["N2_CPUS"][1] == 4.0
    assert used["IN_USE_ADDRESSES"][1] == 1.0  # the n2 VM has no external address
    assert used["INSTANCES"][1] == 2.0 and used["SSD_TOTAL_GB"][1] == 20.0
    assert quotas(regions, "europe-west4")["CPUS"][1] == 0.0
    wait(gce, gce.instances.stop_unary(project=PROJECT, zone=ZONE, instance="arm"))
    used = quotas(regions)
    assert used["CPUS"][1] == 4.0 and used["T2A_CPUS"][1] == 0.0
    assert used["IN_USE_ADDRESSES"][1] == 0.0 and used["INSTANCES"][1] == 2.0


def spot(vm: compute_v1.Instance) -> compute_v1.Instance:
    vm.scheduling = compute_v1.Scheduling(provisioning_model="SPOT", automatic_restart=False,
                                          on_host_maintenance="TERMINATE",
                                          instance_termination_action="DELETE")
    return vm


def test_spot_vms_use_preemptible_quota_once_granted(gce, regions):
    gce.fake.set_faults(operation_seconds=0, quotas=[
        {"region": "us-central1", "metric": "PREEMPTIBLE_CPUS", "limit": 16}])
    create(gce, spot(instance(name="cheap", machine_type="t2a-standard-4")))
    used = quotas(regions)
    assert used["PREEMPTIBLE_CPUS"] == (16.0, 4.0)
    assert used["CPUS"][1] == 0.0 and used["T2A_CPUS"][1] == 0.0


def test_spot_vms_use_regular_quota_without_preemptible_quota(gce, regions):
    gce.fake.set_faults(operation_seconds=0)
    create(gce, spot(instance(name="cheap", machine_type="t2a-standard-4")))
    used = quotas(regions)
    assert used["PREEMPTIBLE_CPUS"][1] == 0.0
    assert used["CPUS"][1] == 4.0 and used["T2A_CPUS"][1] == 4.0


def test_shrunk_quota_fails_the_insert_that_goes_over_it(gce, regions):
    gce.fake.set_faults(operation_seconds=0, quotas=[
        {"region": "us-central1", "metric": "T2A_CPUS", "limit": 4}])
    assert quotas(regions)["T2A_CPUS"] == (4.0, 0.0)
    create(gce, instance(name="first", machine_type="t2a-standard-4"))
    op = wait(gce, insert(gce, instance(name="second", machine_type="t2a-standard-1")))
    assert op.http_error_status_code == 403 and op.http_error_message == "FORBIDDEN"
    error = op.error.errors[0]
    assert error.code == "QUOTA_EXCEEDED"
    assert error.message == "Quota 'T2A_CPUS' exceeded.  Limit: 4.0 in region us-central1."
    info = error.error_details[0].quota_info
    assert info.metric_name == "compute.googleapis.com/cpus_per_vm_family"
    assert info.dimensions["vm_family"] == "T2A"
    assert quotas(regions)["T2A_CPUS"] == (4.0, 4.0)  # the failed insert left nothing
    # Other families and regions are not limited by it.
    create(gce, instance(name="x86", machine_type="n2-standard-2", family="debian-12"))
    create(gce, instance(name="eu", machine_type="t2a-standard-4", zone="europe-west4-a"),
           "europe-west4-a")


def test_default_limits_stop_a_ninth_external_address(gce):
    gce.fake.set_faults(operation_seconds=0)
    for i in range(8):
        create(gce, instance(name=f"vm-{i}", machine_type="e2-small", family="debian-12"))
    op = wait(gce, insert(gce, instance(name="vm-8", machine_type="e2-small",
                                        family="debian-12")))
    assert op.error.errors[0].message == (
        "Quota 'IN_USE_ADDRESSES' exceeded.  Limit: 8.0 in region us-central1.")


def test_a_quotas_fault_needs_region_metric_and_limit(gce):
    with pytest.raises(ValueError, match="region"):
        gce.fake.set_faults(quotas=[{"metric": "CPUS", "limit": 4}])
    gce.fake.set_faults(quotas=[{"region": "us-central1", "metric": "CPUS", "limit": 4}])
    assert gce.fake.state.faults.spec()["quotas"][0]["limit"] == 4


def test_project_metadata_is_read_and_replaced_with_its_fingerprint(gce, projects):
    project = projects.get(project=PROJECT)
    assert project.name == PROJECT
    assert project.common_instance_metadata.fingerprint == "42WmSpB8rSM="
    assert not project.common_instance_metadata.items
    assert project.default_service_account.endswith("-compute@developer.gserviceaccount.com")
    oslogin = compute_v1.Metadata(fingerprint=project.common_instance_metadata.fingerprint,
                                  items=[compute_v1.Items(key="enable-oslogin", value="TRUE")])
    op = projects.set_common_instance_metadata_unary(project=PROJECT, metadata_resource=oslogin)
    assert op.operation_type == "setCommonInstanceMetadata" and not op.zone
    assert wait(gce, op).status == compute_v1.Operation.Status.DONE
    metadata = projects.get(project=PROJECT).common_instance_metadata
    assert [(i.key, i.value) for i in metadata.items] == [("enable-oslogin", "TRUE")]
    assert metadata.fingerprint != "42WmSpB8rSM="
    with pytest.raises(exceptions.PreconditionFailed):  # the old fingerprint is stale now
        projects.set_common_instance_metadata_unary(project=PROJECT, metadata_resource=oslogin)


@pytest.mark.parametrize(("status", "reason", "error", "words"), [
    (404, "notFound", exceptions.NotFound, "The resource 'projects/proj' was not found"),
    (403, "accessNotConfigured", exceptions.Forbidden,
     "Compute Engine API has not been used in project"),
])
def test_injected_project_errors_read_like_compute_engine(gce, projects, status, reason,
                                                          error, words):
    gce.fake.set_faults(http_errors=[{"method": "projects.get", "status": status,
                                      "reason": reason}])
    with pytest.raises(error) as e:
        projects.get(project=PROJECT)
    assert e.value.errors[0]["reason"] == reason
    assert words in e.value.message
