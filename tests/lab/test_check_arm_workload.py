"""`inv check-arm --manifests / --compose` on real images in the lab registry, driven as a user
runs it: a Deployment (with an initContainer), a CronJob and a compose file using a multi-arch
image (READY), an amd64-only one (NOT READY, with a multi-arch tag to propose) and one whose
arm64 manifest holds x86-64 binaries (NOT READY: mislabelled); the JSON, the SARIF file, the
table, the scheduling hints, stdin, --manifest-only, an unreachable registry and bad input.

No farm and no VM: the images are composed in the registry once for the module
(tests/lab/workload_images.py); the fixture manifests are in tests/lab/workloads/.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import REPO
from .workload_images import (
    AMD64_ONLY,
    MISLABELLED,
    READY_IMAGE,
    REGISTRY,
    TOOL_MULTIARCH,
    push_test_images,
)
from .workload_images import pod as workload_pod

pytestmark = pytest.mark.lab

WORKLOADS = Path(__file__).resolve().parent / "workloads"
WEB, COMPOSE = WORKLOADS / "web.yaml", WORKLOADS / "compose.yaml"
ARM_READY, MALFORMED = WORKLOADS / "arm-ready.yaml", WORKLOADS / "malformed.yaml"
INV = [sys.executable, "-m", "invoke", "--search-root", str(REPO)]
# `ran`: --run's result (the brief's contract said `run`; docs/arm-readiness.md says `ran`)
IMAGE_KEYS = {"image", "used_by", "platforms", "verdict", "why", "entrypoint", "fix", "ran"}
USE_KEYS = {"kind", "name", "container", "section", "file", "line"}


@dataclass
class Checked:
    code: int
    out: dict
    stdout: str
    stderr: str

    def image(self, ref: str) -> dict:
        found = [i for i in self.out["images"] if i["image"] == ref]
        assert len(found) == 1, f"{ref} is listed {len(found)} times: {self.out}"
        return found[0]


def check_arm(*args: str, stdin: str | None = None, json_out: bool = True) -> Checked:
    """`inv check-arm [--json] ARGS` as a user runs it (a fresh interpreter, no inventory)."""
    done = subprocess.run([*INV, "check-arm", *(["--json"] if json_out else []), *args],
                          input=stdin, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "250"})
    lines = done.stdout.strip().splitlines()
    out = json.loads(lines[-1]) if json_out and lines else {}
    return Checked(done.returncode, out, done.stdout, done.stderr)


def line_of(path: Path, marker: str) -> int:
    """The 1-based line of `path` whose comment is `# marker` (each `image:` line has one)."""
    lines = [n for n, text in enumerate(path.read_text().splitlines(), 1)
             if text.endswith(f"# {marker}")]
    assert len(lines) == 1, (path, marker)
    return lines[0]


def uses(image: dict) -> set[tuple]:
    """(kind, name, container, file name, line) of each use, as the JSON lists them."""
    return {(u["kind"], u["name"], u["container"], Path(u["file"]).name, u["line"])
            for u in image["used_by"]}


@pytest.fixture(scope="module")
def images(lab) -> dict[str, str]:
    return push_test_images()


@pytest.fixture(scope="module")
def web(images, tmp_path_factory) -> tuple[Checked, Path]:
    """The web app's manifests and its compose file checked once, with --json and --sarif."""
    sarif = tmp_path_factory.mktemp("sarif") / "check-arm.sarif"
    return check_arm("--manifests", str(WEB), "--compose", str(COMPOSE),
                     "--sarif", str(sarif)), sarif


def test_the_workload_is_not_ready_and_every_image_is_listed_once(web):
    checked, _ = web
    assert checked.code == 1, checked.stderr
    assert checked.out["ready"] is False
    assert checked.out["counts"] == {"READY": 1, "NOT READY": 2, "UNKNOWN": 0}, checked.out
    # the ready image is used three times (Deployment, CronJob, compose): one entry
    assert sorted(i["image"] for i in checked.out["images"]) == sorted(
        [READY_IMAGE, AMD64_ONLY, MISLABELLED])
    for image in checked.out["images"]:
        assert set(image) == IMAGE_KEYS, image
        assert all(set(u) >= USE_KEYS for u in image["used_by"]), image
    assert "Traceback" not in checked.stderr


def test_the_multi_arch_image_is_ready_with_an_aarch64_entrypoint(web):
    checked, _ = web
    ready = checked.image(READY_IMAGE)
    assert ready["verdict"] == "READY" and "AArch64" in ready["why"], ready
    assert {"linux/amd64", "linux/arm64"} <= set(ready["platforms"]), ready
    # CMD ["/bin/sh"]: a symlink to busybox, an AArch64 ELF in the arm64 variant
    assert ready["entrypoint"]["path"] and "AArch64" in str(ready["entrypoint"]["machine"])
    assert ready["fix"] is None
    assert {("Deployment", "web", "app", "web.yaml", line_of(WEB, "web/app")),
            ("CronJob", "report", "report", "web.yaml", line_of(WEB, "report/report"))
            } < uses(ready), ready
    assert any(u["name"] == "frontend" and u["line"] == line_of(COMPOSE, "compose/frontend")
               and Path(u["file"]).name == "compose.yaml" for u in ready["used_by"]), ready
    assert len(ready["used_by"]) == 3, ready


def test_the_amd64_only_image_is_not_ready_and_the_fix_names_its_multi_arch_tag(web):
    checked, _ = web
    tool = checked.image(AMD64_ONLY)
    assert tool["verdict"] == "NOT READY" and "no linux/arm64 variant" in tool["why"], tool
    assert tool["platforms"] == ["linux/amd64"], tool
    assert tool["fix"] and TOOL_MULTIARCH in tool["fix"], tool
    migrate = next(u for u in tool["used_by"] if u["container"] == "migrate")
    assert migrate["section"] == "initContainers", migrate
    assert ("Deployment", "web", "migrate", "web.yaml", line_of(WEB, "web/migrate")) in uses(tool)
    assert any(u["name"] == "worker" and u["line"] == line_of(COMPOSE, "compose/worker")
               for u in tool["used_by"]), tool


def test_the_mislabelled_image_is_not_ready_for_its_x86_64_binaries(web):
    checked, _ = web
    bad = checked.image(MISLABELLED)
    assert bad["verdict"] == "NOT READY", bad
    assert "mislabelled" in bad["why"] and "x86-64" in bad["why"], bad
    assert "linux/arm64" in bad["platforms"], bad  # its index does list arm64
    assert "x86-64" in str(bad["entrypoint"]["machine"]), bad
    assert uses(bad) == {("Deployment", "web", "sidecar", "web.yaml",
                          line_of(WEB, "web/sidecar"))}
    section = bad["used_by"][0]["section"]
    assert section == "containers", bad


def test_a_scheduling_hint_only_for_the_cronjob_whose_images_are_all_ready(web):
    checked, _ = web
    hints = {h["workload"]: h for h in checked.out["hints"]}
    assert set(hints) == {"CronJob/report"}, checked.out  # Deployment/web is not ready
    assert Path(hints["CronJob/report"]["file"]).name == "web.yaml", hints
    assert "kubernetes.io/arch: arm64" in hints["CronJob/report"]["hint"], hints


def test_the_sarif_file_points_at_each_not_ready_use_and_notes_the_hint(web):
    checked, sarif = web
    log = json.loads(sarif.read_text())
    assert log["version"] == "2.1.0", log
    located: dict[str, set] = {"error": set(), "warning": set(), "note": set()}
    for run in log["runs"]:
        for result in run["results"]:
            physical = result["locations"][0]["physicalLocation"]
            located[result["level"]].add((Path(physical["artifactLocation"]["uri"]).name,
                                          physical["region"]["startLine"]))
    assert located["error"] == {("web.yaml", line_of(WEB, "web/migrate")),
                                ("web.yaml", line_of(WEB, "web/sidecar")),
                                ("compose.yaml", line_of(COMPOSE, "compose/worker"))}, log
    assert not located["warning"], log  # nothing UNKNOWN
    [hint] = checked.out["hints"]
    assert located["note"] == {("web.yaml", hint["line"])}, log


def test_the_text_form_shows_the_table_the_fix_and_the_count(images):
    checked = check_arm("--manifests", str(WEB), "--compose", str(COMPOSE), json_out=False)
    assert checked.code == 1, checked.stderr
    text = checked.stdout + checked.stderr
    for ref in (READY_IMAGE, AMD64_ONLY, MISLABELLED):
        assert ref.removeprefix(f"{REGISTRY}/") in text, text
    assert "mislabelled" in text and "no linux/arm64 variant" in text, text
    assert TOOL_MULTIARCH in text, text  # the fix
    assert any("NOT READY" in line and re.search(r"\b1\b", line) and re.search(r"\b2\b", line)
               for line in text.splitlines()), text  # the count: 1 READY, 2 NOT READY


def test_an_arm_ready_workload_exits_0_and_hints_only_where_arm64_scheduling_is_missing(images):
    checked = check_arm("--manifests", str(ARM_READY))
    assert checked.code == 0, checked.stderr
    assert checked.out["ready"] is True
    assert checked.out["counts"] == {"READY": 1, "NOT READY": 0, "UNKNOWN": 0}, checked.out
    hints = checked.out["hints"]
    assert [h["workload"] for h in hints] == ["Deployment/api"], hints
    assert Path(hints[0]["file"]).name == "arm-ready.yaml" and isinstance(hints[0]["line"], int)
    assert "arm64" in hints[0]["hint"], hints


def test_manifests_from_stdin_read_like_the_file(images):
    checked = check_arm("--manifests", "-", stdin=WEB.read_text())
    assert checked.code == 1, checked.stderr
    verdicts = {i["image"]: i["verdict"] for i in checked.out["images"]}
    assert verdicts == {READY_IMAGE: "READY", AMD64_ONLY: "NOT READY",
                        MISLABELLED: "NOT READY"}, checked.out
    lines = {(u["name"], u["container"]): u["line"]
             for i in checked.out["images"] for u in i["used_by"]}
    assert lines == {("web", "migrate"): line_of(WEB, "web/migrate"),
                     ("web", "app"): line_of(WEB, "web/app"),
                     ("web", "sidecar"): line_of(WEB, "web/sidecar"),
                     ("report", "report"): line_of(WEB, "report/report")}, checked.out


def test_manifest_only_trusts_the_mislabelled_manifest_but_says_binaries_were_not_checked(
        images):
    checked = check_arm("--manifests", str(WEB), "--manifest-only")
    assert checked.code == 1, checked.stderr  # the amd64-only image still has no arm64
    bad = checked.image(MISLABELLED)
    assert bad["verdict"] == "READY", bad
    assert "not checked" in bad["why"], bad
    assert checked.image(AMD64_ONLY)["verdict"] == "NOT READY"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_registry_is_unknown_and_the_other_images_are_still_checked(
        images, tmp_path):
    port = closed_port()
    gone = f"127.0.0.1:{port}/checkarm/gone:1.0"
    pod = tmp_path / "pod.yaml"
    pod.write_text(workload_pod("two", gone=gone, ready=READY_IMAGE))
    checked = check_arm("--manifests", str(pod))
    assert checked.code == 1, checked.stderr
    unknown = checked.image(gone)
    assert unknown["verdict"] == "UNKNOWN", unknown
    assert f"127.0.0.1:{port}" in unknown["why"] and "reach" in unknown["why"], unknown
    assert checked.image(READY_IMAGE)["verdict"] == "READY", checked.out
    assert checked.out["counts"] == {"READY": 1, "NOT READY": 0, "UNKNOWN": 1}, checked.out
    assert "Traceback" not in checked.stderr


@pytest.mark.parametrize("json_out", [True, False], ids=["json", "text"])
def test_malformed_yaml_exits_2_naming_the_file_and_line(images, json_out):
    checked = check_arm("--manifests", str(MALFORMED), json_out=json_out)
    assert checked.code == 2, (checked.stdout, checked.stderr)
    message = checked.out["error"] if json_out else checked.stderr
    assert "malformed.yaml" in message and re.search(r"\b10\b", message), message
    assert "Traceback" not in checked.stderr


def test_a_missing_file_and_a_bad_reference_are_bad_input(images, tmp_path):
    missing = check_arm("--compose", str(tmp_path / "no-such-compose.yaml"))
    assert missing.code == 2 and "no-such-compose.yaml" in missing.out["error"], missing
    bad = tmp_path / "bad-ref.yaml"
    bad.write_text('services:\n  app:\n    image: "127.0.0.1:5000/Bad Ref:x"\n')
    checked = check_arm("--compose", str(bad))
    assert checked.code == 2, checked.stderr
    assert "bad-ref.yaml" in checked.out["error"] and re.search(r"\b3\b", checked.out["error"])
    assert "Traceback" not in missing.stderr + checked.stderr


def test_the_mislabelled_images_arm64_entry_is_the_amd64_layer_under_an_arm64_config(images):
    """The fixture itself, through the docker CLI: what the check must see through."""
    def raw(ref: str) -> dict:
        done = subprocess.run(["docker", "buildx", "imagetools", "inspect", "--raw", ref],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    repository = MISLABELLED.rsplit(":", 1)[0]
    entries = {m["platform"]["architecture"]: m["digest"] for m in raw(MISLABELLED)["manifests"]}
    arm64, amd64 = (raw(f"{repository}@{entries[a]}") for a in ("arm64", "amd64"))
    assert arm64["layers"] == amd64["layers"]
    config = subprocess.run(["docker", "buildx", "imagetools", "inspect", "--format",
                             "{{json .Image}}", f"{repository}@{entries['arm64']}"],
                            capture_output=True, text=True, timeout=60)
    assert json.loads(config.stdout)["architecture"] == "arm64", config.stderr
