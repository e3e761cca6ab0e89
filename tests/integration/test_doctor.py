"""`inv doctor` against the fake: one test per problem it finds, each asserting what the user
sees (the line, its fix, the exit code, --json), and that it never changes anything.

Local tools are small stand-ins on PATH printing what the real ones print (docker 20.10 from
Debian 12 with no engine running, Debian's buildx, OpenSSH 9.2): this tests doctor's parsing,
and keeps the tests off the machine's real docker.
"""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path

import pytest
from google.cloud import compute_v1

from provision.doctor import doctor as doctor_task

from .conftest import LAB_LIKE, PROJECT, inv, mutations, run_json, run_vms

DOCKER_JSON = ('{"Client":{"Platform":{"Name":""},"Version":"20.10.24+dfsg1",'
               '"ApiVersion":"1.41","Os":"linux","Arch":"amd64"},"Server":null}')
DOCKER = """#!/bin/sh
case "$1" in
  version)
    echo 'DOCKER_JSON'
    echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock.' >&2
    exit 1;;
  buildx) echo 'github.com/docker/buildx BUILDX BUILDX';;
  *) exit 1;;
esac
""".replace("DOCKER_JSON", DOCKER_JSON)
SSH = """#!/bin/sh
echo 'OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024' >&2
"""


def tools(directory: Path, docker: bool = True, buildx: str = "0.10.5+ds1-1") -> Path:
    directory.mkdir(exist_ok=True)
    scripts = {"ssh": SSH, **({"docker": DOCKER.replace("BUILDX", buildx)} if docker else {})}
    for name, text in scripts.items():
        (directory / name).write_text(text)
        (directory / name).chmod(0o755)
    return directory


@pytest.fixture(autouse=True)
def local_tools(tmp_path, monkeypatch) -> Path:
    """PATH holds only the stand-ins: never the machine's real docker."""
    directory = tools(tmp_path / "bin")
    monkeypatch.setenv("PATH", str(directory))
    monkeypatch.delenv("ARCHFARM_GCE_ENDPOINT", raising=False)
    return directory


def doctor(inventory: Path, capsys) -> tuple[int, dict]:
    return run_json(doctor_task, inventory=str(inventory), capsys=capsys)


def only(report: dict, prefix: str) -> dict:
    found = [c for c in report["checks"] if c["check"].startswith(prefix)]
    assert len(found) == 1, (prefix, report["checks"])
    return found[0]


def problems(report: dict) -> list[str]:
    return [c["check"] for c in report["checks"] if c["status"] == "problem"]


def text_of(inventory: Path, capsys) -> tuple[int, str]:
    capsys.readouterr()
    code = doctor_task(inventory=str(inventory))
    return code, capsys.readouterr().out


def test_a_clean_lab_like_farm_is_all_ok_and_changes_nothing(fake_gce, inventory, capsys):
    code, out = text_of(inventory, capsys)
    assert code == 0, out
    assert "ok       docker CLI: 20.10.24+dfsg1 (>= 20.10)." in out
    assert "ok       docker buildx: 0.10.5+ds1-1 (>= 0.10)." in out
    assert "ok       OpenSSH client: OpenSSH_9.2p1 Debian-2+deb12u3 (>= 6.5)." in out
    assert "anonymous credentials (no Google account is used)" in out
    assert "ok       quota T2A_CPUS in us-central1: 2 vCPUs more for arm" in out
    assert "all 16 checks ok" in out
    code, report = doctor(inventory, capsys)
    assert code == 0 and report["problems"] == 0 and report["warnings"] == 0
    assert {c["status"] for c in report["checks"]} == {"ok"}
    assert only(report, "node arm: image")["detail"].endswith(", ARM64")
    assert not mutations(fake_gce)


def test_a_shrunk_quota_is_a_problem_naming_metric_region_and_nodes(fake_gce, inventory,
                                                                    capsys):
    fake_gce.set_faults(quotas=[{"region": "us-central1", "metric": "T2A_CPUS", "limit": 1}])
    code, report = doctor(inventory, capsys)
    assert code == 1 and problems(report) == ["quota T2A_CPUS in us-central1"]
    line = only(report, "quota T2A_CPUS")
    assert line["detail"] == ("2 vCPUs more for arm (region of their first zone); 1 of 1 free")
    assert "request more T2A_CPUS in us-central1" in line["fix"]
    assert f"quotas?project={PROJECT}" in line["fix"]
    assert not mutations(fake_gce)


def test_vms_the_farm_already_runs_need_no_new_quota(fake_gce, inventory, capsys):
    assert run_vms(inventory) == 0
    fake_gce.set_faults(quotas=[{"region": "us-central1", "metric": "T2A_CPUS", "limit": 2}])
    before = len(mutations(fake_gce))
    code, report = doctor(inventory, capsys)
    assert code == 0, problems(report)
    assert only(report, "farm VMs already there")["detail"].startswith("2 VM(s)")
    assert not [c for c in report["checks"] if c["check"].startswith("quota")]
    assert only(report, "firewall rule archfarm-t-ssh")["detail"] == (
        "exists: tcp:22 from 127.0.0.1/32")
    assert len(mutations(fake_gce)) == before


def test_spot_nodes_count_in_preemptible_quota_where_it_is_granted(fake_gce, write_inventory,
                                                                  capsys):
    fake_gce.set_faults(quotas=[{"region": "us-central1", "metric": "PREEMPTIBLE_CPUS",
                                 "limit": 1}])
    inventory = write_inventory(LAB_LIKE.replace("t2a-standard-2\n",
                                                 "t2a-standard-2\n    spot: true\n"))
    code, report = doctor(inventory, capsys)
    assert code == 1 and problems(report) == ["quota PREEMPTIBLE_CPUS in us-central1"]
    assert only(report, "quota PREEMPTIBLE_CPUS")["detail"].startswith("2 vCPUs more for arm ")


@pytest.mark.parametrize(("image", "detail", "fix"), [
    ("projects/debian-cloud/global/images/family/debian-14-arm64",
     "image family debian-14-arm64 not found in project debian-cloud",
     "gcloud compute images list --project debian-cloud"),
    ("projects/debian-cloud/global/images/family/debian-13",
     "debian-13-trixie-v20251111 is X86_64, but node arm is linux/arm64; Compute Engine"
     " refuses to boot it",
     "use an ARM64 image, like projects/debian-cloud/global/images/family/debian-13-arm64"),
    ("projects/debian-cloud/global/images/family/debian-12",
     "debian-12-bookworm-v20251111 is X86_64, but node arm is linux/arm64; Compute Engine"
     " refuses to boot it",
     "use an ARM64 image, like projects/debian-cloud/global/images/family/debian-13-arm64"),
])
def test_a_node_image_missing_or_of_the_wrong_architecture(fake_gce, write_inventory, capsys,
                                                           image, detail, fix):
    inventory = write_inventory(LAB_LIKE.replace("t2a-standard-2\n",
                                                 f"t2a-standard-2\n    image: {image}\n"))
    code, report = doctor(inventory, capsys)
    assert code == 1 and problems(report) == [f"node arm: image {image}"]
    line = only(report, "node arm: image")
    assert line["detail"] == detail
    assert fix in line["fix"] and "leave image out" in line["fix"]


def test_a_machine_type_offered_in_none_of_the_nodes_zones(fake_gce, write_inventory, capsys):
    # N2 comes in 2, 4, 8... vCPUs: no zone offers n2-standard-3, which the inventory's
    # pattern accepts (only Compute Engine knows each family's shapes).
    inventory = write_inventory(LAB_LIKE.replace(
        "n2-standard-2\n", "n2-standard-3\n    zones: [us-west1-a, us-west1-b]\n"))
    code, report = doctor(inventory, capsys)
    assert code == 1 and problems(report) == ["node x86: machine type n2-standard-3"]
    line = only(report, "node x86: machine type")
    assert line["detail"] == "offered in none of us-west1-a, us-west1-b"
    assert "gcloud compute machine-types list --zones us-west1-a,us-west1-b" in line["fix"]
    assert not [c for c in report["checks"] if c["check"] == "quota N2_CPUS in us-west1"]


def test_os_login_in_project_metadata_is_a_problem_with_the_precise_fix(fake_gce, inventory,
                                                                       capsys):
    projects = fake_gce.client(compute_v1.ProjectsClient)
    fingerprint = projects.get(project=PROJECT).common_instance_metadata.fingerprint
    projects.set_common_instance_metadata_unary(project=PROJECT, metadata_resource=(
        compute_v1.Metadata(fingerprint=fingerprint,
                            items=[compute_v1.Items(key="enable-oslogin", value="True")])))
    before = len(mutations(fake_gce))
    code, out = text_of(inventory, capsys)
    assert code == 1
    assert ("problem  project metadata enable-oslogin: enable-oslogin=True in project"
            " test-project: OS Login manages SSH logins, so the guest ignores the ssh-keys"
            " archfarm puts on each VM") in out
    assert ("Fix: turn it off for the project with `gcloud compute project-info add-metadata"
            " --project test-project --metadata enable-oslogin=FALSE`") in out
    assert "enable-oslogin=FALSE in their instance metadata" in out
    assert len(mutations(fake_gce)) == before


def test_no_source_ranges_while_the_rule_is_missing(fake_gce, write_inventory, capsys):
    inventory = write_inventory(LAB_LIKE.replace("  ssh_source_ranges: [127.0.0.1/32]\n", ""))
    code, report = doctor(inventory, capsys)
    assert code == 1 and problems(report) == ["firewall rule archfarm-t-ssh"]
    line = only(report, "firewall rule")
    assert "does not exist yet and gcp.ssh_source_ranges is empty" in line["detail"]
    assert "set gcp.ssh_source_ranges" in line["fix"]


def test_a_range_wider_than_a_16_is_a_warning_not_a_failure(fake_gce, write_inventory, capsys):
    inventory = write_inventory(LAB_LIKE.replace("[127.0.0.1/32]", "[127.0.0.1/32, 10.0.0.0/12]"))
    code, out = text_of(inventory, capsys)
    assert code == 0
    assert ("warning  SSH source range 10.0.0.0/12: wider than a /16: 1,048,576 addresses may"
            " reach SSH on every node.") in out
    assert "0 problem(s), 1 warning(s)" in out


@pytest.mark.parametrize(("status", "reason", "detail", "fix"), [
    (404, "notFound", "project test-project was not found", "set gcp.project to the project's ID"),
    (403, "accessNotConfigured", "the Compute Engine API is not enabled in test-project",
     "gcloud services enable compute.googleapis.com --project test-project"),
])
def test_a_project_missing_or_without_the_api_skips_the_api_checks(fake_gce, inventory, capsys,
                                                                   status, reason, detail, fix):
    fake_gce.set_faults(http_errors=[{"method": "projects.get", "status": status,
                                      "reason": reason}])
    code, report = doctor(inventory, capsys)
    assert code == 1 and report["problems"] == 1
    line = only(report, "Compute Engine API and project")
    assert (line["status"], line["detail"]) == ("problem", detail)
    assert fix in line["fix"]
    skipped = report["checks"][-1]
    assert skipped["status"] == "skipped" and "not checked" in skipped["detail"]
    assert [r["method"] for r in fake_gce.requests()] == ["projects.get"]


def test_an_unreachable_endpoint_is_one_clear_line(fake_gce, inventory, capsys, monkeypatch):
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("ARCHFARM_GCE_ENDPOINT", f"http://127.0.0.1:{port}")
    code, out = text_of(inventory, capsys)
    assert code == 1
    assert (f"problem  Compute Engine API and project: cannot reach http://127.0.0.1:{port}:"
            " connection failed. Fix: start the lab (`inv lab.up`)") in out
    assert "Traceback" not in out


def test_no_credentials_for_google_skips_the_api_checks(fake_gce, write_inventory, capsys,
                                                        tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    inventory = write_inventory(LAB_LIKE.replace("  api_endpoint: {endpoint}\n", ""))
    code, report = doctor(inventory, capsys)
    assert code == 1 and problems(report) == ["credentials"]
    line = only(report, "credentials")
    assert line["detail"].startswith("No Google Cloud credentials found")
    assert "gcloud auth application-default login" in line["fix"]
    assert report["checks"][-1]["status"] == "skipped"
    assert not fake_gce.requests()


def test_docker_missing_from_path_is_a_problem_with_the_install_fix(fake_gce, inventory,
                                                                    capsys, tmp_path,
                                                                    monkeypatch):
    monkeypatch.setenv("PATH", str(tools(tmp_path / "no-docker", docker=False)))
    code, out = text_of(inventory, capsys)
    assert code == 1
    assert ("problem  docker CLI: docker is not on PATH. Fix: install the Docker CLI and"
            " buildx: `apt-get install docker.io docker-buildx` on Debian 12") in out
    assert "problem  docker buildx: docker is not on PATH." in out
    assert "ok       OpenSSH client" in out and "ok       quota CPUS" in out  # the rest ran


def test_an_old_buildx_is_a_problem(fake_gce, inventory, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tools(tmp_path / "old", buildx="v0.9.1")))
    code, report = doctor(inventory, capsys)
    assert code == 1 and problems(report) == ["docker buildx"]
    assert only(report, "docker buildx")["detail"] == "v0.9.1 is older than 0.10"


def test_a_bad_inventory_exits_2_before_any_check(fake_gce, write_inventory, capsys):
    inventory = write_inventory(LAB_LIKE.replace("zones:", "zone:"))
    code, report = doctor(inventory, capsys)
    assert code == 2 and "unknown key zone; did you mean zones?" in report["error"]
    assert not fake_gce.requests()


def test_inv_doctor_on_the_command_line(fake_gce, inventory, local_tools):
    result = inv("doctor", "-i", str(inventory), "--json", env={"PATH": str(local_tools)})
    assert result.returncode == 0, result.stderr
    assert '"problems": 0' in result.stdout.strip().splitlines()[-1]
    assert "ok       docker CLI" in result.stderr  # human lines go to stderr under --json
    help_text = inv("doctor", "--help").stdout
    assert textwrap.shorten(help_text, 10_000).count("--inventory") == 1
