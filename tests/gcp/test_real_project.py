"""Against a real Compute Engine project: create one small VM, see it, destroy it.

Runs only when ARCHFARM_GCP_PROJECT names a project and Application Default Credentials exist
(`gcloud auth application-default login`); it creates a billed e2-micro for about a minute.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from provision.buildx.tasks import build as build_task
from provision.cloud.tasks import destroy as destroy_task
from provision.cloud.tasks import vms as vms_task
from provision.doctor import doctor as doctor_task
from provision.pipeline import provision as provision_task
from provision.status import status as status_task

PROJECT = os.environ.get("ARCHFARM_GCP_PROJECT")
ADC = Path("~/.config/gcloud/application_default_credentials.json").expanduser()

pytestmark = pytest.mark.skipif(
    not PROJECT or not (os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") or ADC.exists()),
    reason="needs a real project: set ARCHFARM_GCP_PROJECT and Application Default Credentials")


E2_MICRO = ("  - {name: x86, platform: linux/amd64, machine_type: e2-micro, disk_gb: 10,"
            " max_run_hours: 1}\n")


def real_inventory(tmp_path: Path, farm: str = "archfarm-ci", nodes: str = E2_MICRO,
                   extra: str = "") -> Path:
    """An inventory for the real project; `extra` is more YAML before `nodes:`."""
    source = os.environ.get("ARCHFARM_GCP_SSH_SOURCE", "203.0.113.7/32")
    inventory = tmp_path / f"{farm}.yaml"
    inventory.write_text(f"""
farm: {farm}
gcp:
  project: {PROJECT}
  zones: [us-central1-a, us-central1-b, us-central1-f]
  ssh_source_ranges: [{source}]
ssh: {{private_key: {tmp_path}/key}}
{extra}nodes:
{nodes}""")
    return inventory


def test_doctor_reads_the_real_project(tmp_path, capsys, monkeypatch):
    """Changes nothing (it only reads), so it creates no VM and costs nothing. The local tools
    may be missing on the test machine: only the Compute Engine lines are asserted."""
    monkeypatch.delenv("ARCHFARM_GCE_ENDPOINT", raising=False)
    capsys.readouterr()
    code = doctor_task(inventory=str(real_inventory(tmp_path)), json_mode=True)
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code in (0, 1), report
    status = {c["check"]: c["status"] for c in report["checks"]}
    assert status["credentials"] == "ok"
    assert status["Compute Engine API and project"] == "ok"
    assert status["node x86: machine type e2-micro"] == "ok"
    assert status["node x86: image projects/debian-cloud/global/images/family/debian-13"] == "ok"
    assert "quota CPUS in us-central1" in status or "farm VMs already there" in status


def test_create_status_destroy_on_real_compute_engine(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ARCHFARM_GCE_ENDPOINT", raising=False)
    inventory = real_inventory(tmp_path)
    try:
        assert vms_task(inventory=str(inventory)) == 0
        assert vms_task(inventory=str(inventory)) == 0  # converged
        assert status_task(inventory=str(inventory), json_mode=True) == 0
        assert '"status": "RUNNING"' in capsys.readouterr().out
    finally:
        assert destroy_task(inventory=str(inventory), yes=True) == 0


@pytest.mark.skipif(not os.environ.get("ARCHFARM_GCP_SSH_SOURCE"),
                    reason="SSH to the VMs needs ARCHFARM_GCP_SSH_SOURCE: this machine's public"
                           " address as a CIDR, e.g. 198.51.100.4/32")
def test_provision_and_builder_strategy_build_on_real_arm64_and_amd64_vms(tmp_path, capsys,
                                                                          monkeypatch):
    """The whole path on real VMs: docker-ce from Docker's repository, QEMU, the buildx builder
    with both nodes pinned, and a builder-strategy build exported as an OCI layout whose index
    lists both platforms. Spot VMs with max_run_hours: 1, destroyed whatever happens."""
    import tarfile

    from provision.buildx.request import Request

    monkeypatch.delenv("ARCHFARM_GCE_ENDPOINT", raising=False)
    inventory = real_inventory(tmp_path, "archfarm-cibx", extra="docker: {package: docker-ce}\n",
                               nodes="""\
  - {name: arm, platform: linux/arm64, machine_type: t2a-standard-1, spot: true,
      max_run_hours: 1, disk_gb: 20}
  - {name: x86, platform: linux/amd64, machine_type: e2-small, spot: true,
      max_run_hours: 1, disk_gb: 20}
""")
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM debian:12-slim\nRUN uname -m > /machine\n")
    try:
        assert provision_task(inventory=str(inventory)) == 0
        out = tmp_path / "image.tar"
        request = Request(context_dir=context, tag="archfarm-ci/bx:test", strategy="builder",
                          output=f"oci:{out}")
        assert build_task(inventory=str(inventory), request=request) == 0
        with tarfile.open(out) as tar:
            index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
            top = json.load(tar.extractfile(  # type: ignore[arg-type]
                "blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]))
        platforms = {f"{m['platform']['os']}/{m['platform']['architecture']}"
                     for m in top["manifests"] if m.get("platform", {}).get("os") != "unknown"}
        assert platforms == {"linux/arm64", "linux/amd64"}
    finally:
        assert destroy_task(inventory=str(inventory), yes=True) == 0
