"""The lab's SBOM generator script (provision/lab/base/sbom-scan.sh), run as BuildKit runs it
(its SBOM scanning protocol: environment in, one in-toto statement a root file system out),
with this machine's `sh` and `awk`: it must be POSIX sh and awk only, as the lab image runs it
with busybox."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from provision.lab import base_images

SCRIPT = base_images.RECIPE_DIR / "sbom-scan.sh"
STATUS = """\
Package: libc6
Status: install ok installed
Priority: optional
Version: 2.36-9+deb12u13
Description: GNU C Library: Shared libraries
 Package: not-a-package (a continuation line)

Package: removed
Status: deinstall ok config-files
Version: 1.0-1

Package: half
Status: install reinstreq half-installed
Version: 2.0-1

Package: qemu-user-static
Status: hold ok installed
Version: 1:7.2+dfsg-7+deb12u18
"""


def scan(source: Path, destination: Path, extras: str | None = None,
         shell: tuple[str, ...] = ("sh",), **env: str) -> subprocess.CompletedProcess:
    environ = {"PATH": os.environ["PATH"], "BUILDKIT_SCAN_SOURCE": str(source),
               "BUILDKIT_SCAN_DESTINATION": str(destination), **env}
    if extras is not None:
        environ["BUILDKIT_SCAN_SOURCE_EXTRAS"] = extras
    return subprocess.run([*shell, str(SCRIPT)], env=environ, capture_output=True, timeout=60)


def rootfs(parent: Path, name: str, status: bytes | str | None = None) -> Path:
    root = parent / name
    (root / "var/lib/dpkg").mkdir(parents=True)
    if status is not None:
        data = status.encode() if isinstance(status, str) else status
        (root / "var/lib/dpkg/status").write_bytes(data)
    return root


def statement(path: Path) -> dict:
    return json.loads(path.read_bytes().decode("utf-8"))  # strict: valid UTF-8 JSON only


def packages(doc: dict) -> list[tuple[str, str]]:
    return [(p["name"], p["versionInfo"]) for p in doc["predicate"]["packages"]]


def test_a_root_file_system_gives_one_spdx_23_statement_of_its_installed_packages(tmp_path):
    source, out = rootfs(tmp_path, "sbom", STATUS), tmp_path / "out"
    out.mkdir()
    done = scan(source, out)
    assert done.returncode == 0, done.stderr
    assert [p.name for p in out.iterdir()] == ["sbom.spdx.json"]
    doc = statement(out / "sbom.spdx.json")
    assert (doc["_type"], doc["predicateType"], doc["subject"]) == (
        "https://in-toto.io/Statement/v0.1", "https://spdx.dev/Document", [])
    spdx = doc["predicate"]
    assert (spdx["spdxVersion"], spdx["dataLicense"], spdx["SPDXID"], spdx["name"]) == (
        "SPDX-2.3", "CC0-1.0", "SPDXRef-DOCUMENT", "sbom")
    assert re.fullmatch(r"https://archfarm\.invalid/lab-sbom/sbom-\S+", spdx["documentNamespace"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", spdx["creationInfo"]["created"])
    assert spdx["creationInfo"]["creators"] == ["Tool: archfarm-lab-sbom-scan"]
    assert packages(doc) == [("libc6", "2.36-9+deb12u13"),
                             ("qemu-user-static", "1:7.2+dfsg-7+deb12u18")]
    libc = spdx["packages"][0]
    assert libc["downloadLocation"] == "NOASSERTION" and libc["filesAnalyzed"] is False
    assert libc["externalRefs"] == [{"referenceCategory": "PACKAGE-MANAGER",
                                     "referenceType": "purl",
                                     "referenceLocator": "pkg:deb/debian/libc6@2.36-9+deb12u13"}]
    ids = [p["SPDXID"] for p in spdx["packages"]]
    assert len(set(ids)) == 2 and all(re.fullmatch(r"SPDXRef-[A-Za-z0-9.-]+", i) for i in ids)
    assert spdx["relationships"] == [
        {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
         "relatedSpdxElement": i} for i in ids]


@pytest.mark.parametrize("status", [None, "", "\n\n"], ids=["no-status", "empty", "blank"])
def test_no_packages_is_still_a_valid_document(tmp_path, status):
    out = tmp_path / "out"
    out.mkdir()
    assert scan(rootfs(tmp_path, "scratch", status), out).returncode == 0
    doc = statement(out / "scratch.spdx.json")
    assert doc["predicate"]["packages"] == [] and doc["predicate"]["relationships"] == []


def test_a_root_without_var_is_scanned_too(tmp_path):
    (tmp_path / "bare").mkdir()
    out = tmp_path / "out"
    out.mkdir()
    assert scan(tmp_path / "bare", out).returncode == 0
    assert packages(statement(out / "bare.spdx.json")) == []


def test_odd_characters_are_escaped_and_the_output_stays_valid_json(tmp_path):
    odd = (b'Package: we"ird\\na\tme\x01\x7f\nStatus: install ok installed\nVersion: 1:2.3~rc1\n'
           b"\nPackage: caf\xc3\xa9-\xe2\x82\xac\nStatus: install ok installed\nVersion: 1\n"
           b"\nPackage: broken\xff\xc3\nStatus: install ok installed\nVersion: 2\xed\xa0\x80\n"
           b"\nPackage: crlf\r\nStatus: install ok installed\r\nVersion: 3 \r\n")
    out = tmp_path / "out"
    out.mkdir()
    assert scan(rootfs(tmp_path, "odd", odd), out).returncode == 0
    doc = statement(out / "odd.spdx.json")
    assert packages(doc) == [('we"ird\\na\tme\x01\x7f', "1:2.3~rc1"), ("café-€", "1"),
                             ("broken\ufffd\ufffd", "2\ufffd\ufffd\ufffd"), ("crlf", "3")]
    refs = [p["externalRefs"][0]["referenceLocator"] for p in doc["predicate"]["packages"]]
    assert refs == ["pkg:deb/debian/we%22ird%5Cna%09me%01%7F@1:2.3~rc1",
                    "pkg:deb/debian/caf%C3%A9-%E2%82%AC@1",
                    "pkg:deb/debian/broken%FF%C3@2%ED%A0%80", "pkg:deb/debian/crlf@3"]
    ids = [p["SPDXID"] for p in doc["predicate"]["packages"]]
    assert len(set(ids)) == 4 and all(re.fullmatch(r"SPDXRef-[A-Za-z0-9.-]+", i) for i in ids)


def test_each_extra_root_gets_its_own_statement(tmp_path):
    source, out, extras = rootfs(tmp_path, "sbom", STATUS), tmp_path / "out", tmp_path / "x"
    out.mkdir()
    rootfs(extras, "sbom-build", "Package: gcc-12\nStatus: install ok installed\nVersion: 12\n")
    distroless = rootfs(extras, ".hidden-stage")
    (distroless / "var/lib/dpkg/status.d").mkdir()
    (distroless / "var/lib/dpkg/status.d/base-files").write_text(
        "Package: base-files\nVersion: 12.4\nArchitecture: amd64\n")  # no Status: installed
    (extras / "not-a-root").write_text("a file, not a root file system")
    assert scan(source, out, extras=f"{extras}/").returncode == 0
    assert sorted(p.name for p in out.iterdir()) == [
        ".hidden-stage.spdx.json", "sbom-build.spdx.json", "sbom.spdx.json"]
    assert packages(statement(out / "sbom-build.spdx.json")) == [("gcc-12", "12")]
    assert packages(statement(out / ".hidden-stage.spdx.json")) == [("base-files", "12.4")]
    assert statement(out / "sbom-build.spdx.json")["predicate"]["name"] == "sbom-build"


@pytest.mark.parametrize("extras", [None, "", "/nonexistent/extras"])
def test_extras_unset_empty_or_missing_scan_the_source_alone(tmp_path, extras):
    out = tmp_path / "out"
    out.mkdir()
    done = scan(rootfs(tmp_path, "sbom", STATUS), out, extras=extras)
    assert done.returncode == 0, done.stderr
    assert [p.name for p in out.iterdir()] == ["sbom.spdx.json"]


def test_a_status_file_behind_a_symlink_is_not_followed_out_of_the_root(tmp_path):
    outside = tmp_path / "outside-status"
    outside.write_text(STATUS)
    source = rootfs(tmp_path, "linked")
    (source / "var/lib/dpkg/status").symlink_to(outside)
    other = tmp_path / "other"
    (other / "var/lib").mkdir(parents=True)
    (other / "var/lib/dpkg").symlink_to(source / "var/lib/dpkg")
    out = tmp_path / "out"
    out.mkdir()
    assert scan(source, out).returncode == 0 and scan(other, out).returncode == 0
    assert packages(statement(out / "linked.spdx.json")) == []
    assert packages(statement(out / "other.spdx.json")) == []


def test_source_date_epoch_sets_the_creation_time(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert scan(rootfs(tmp_path, "sbom", STATUS), out,
                SOURCE_DATE_EPOCH="1700000000").returncode == 0
    created = statement(out / "sbom.spdx.json")["predicate"]["creationInfo"]["created"]
    assert created == "2023-11-14T22:13:20Z"


@pytest.mark.parametrize("missing", ["BUILDKIT_SCAN_SOURCE", "BUILDKIT_SCAN_DESTINATION"])
def test_a_required_variable_missing_fails(tmp_path, missing):
    env = {"PATH": os.environ["PATH"], "BUILDKIT_SCAN_SOURCE": str(tmp_path),
           "BUILDKIT_SCAN_DESTINATION": str(tmp_path)}
    del env[missing]
    done = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, timeout=60)
    assert done.returncode != 0 and missing.encode() in done.stderr


def test_the_script_is_posix_sh(tmp_path):
    """dash (Debian's sh) runs only POSIX sh; the image's busybox runs it in the lab tests
    (tests/lab/test_build_options.py, an SBOM for both platforms)."""
    out = tmp_path / "out"
    out.mkdir()
    done = scan(rootfs(tmp_path, "sbom", STATUS), out, shell=("dash",))
    assert done.returncode == 0, done.stderr
    assert len(packages(statement(out / "sbom.spdx.json"))) == 2
