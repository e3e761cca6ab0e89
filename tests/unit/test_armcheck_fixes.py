"""The fix check-arm proposes for an image without an arm64 variant: which tags of the same
repository it tries, best first; and where SARIF says a finding is."""

from __future__ import annotations

import os

import pytest

from provision.armcheck.report import artifact_uri
from provision.armcheck.verdict import candidate_tags
from provision.platforms import is_arm64


@pytest.mark.parametrize("tag, tags, expected", [
    ("1.0-amd64", ["1.0-amd64", "1.0", "latest"], ["1.0", "latest"]),
    ("1.2.3_x86_64", ["1.2.3_x86_64", "1.2.3", "1.2", "1.2.3-alpine"],
     ["1.2.3", "1.2.3-alpine", "1.2"]),
    ("v2-linux-amd64", ["v2-linux-amd64", "v2-linux-arm64", "v2"], ["v2"]),
    ("latest", ["latest", "1.0"], []),          # nothing better to propose than itself
    ("1.0", ["1.0", "0.9", "latest"], ["latest"]),
    ("1.0-amd64", ["1.0-amd64"], []),           # the tag without its suffix must exist
])
def test_the_tags_tried_for_a_multi_arch_twin_best_first(tag, tags, expected):
    assert candidate_tags(tag, tags) == expected


def test_sarif_locations_are_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "k8s").mkdir()
    assert artifact_uri("k8s/app.yaml") == "k8s/app.yaml"
    assert artifact_uri(str(tmp_path / "k8s" / "app.yaml")) == "k8s/app.yaml"
    assert artifact_uri("k8s/my app.yaml") == "k8s/my%20app.yaml"  # a URI, as SARIF wants
    assert artifact_uri("-") == "stdin"
    outside = os.path.join(os.path.dirname(tmp_path), "else where.yaml")
    assert artifact_uri(outside) == "file://" + outside.replace(" ", "%20")


@pytest.mark.parametrize("written, arm64", [
    ("linux/arm64", True), ("linux/arm64/v8", True), ("arm64", True), ("linux/aarch64", True),
    ("Linux/ARM64", True), ("linux/amd64", False), ("x86_64", False), ("linux/arm/v7", False),
])
def test_a_platform_is_read_as_docker_reads_it(written, arm64):
    """Docker Hub's official images list linux/arm64/v8; compose accepts `platform: arm64`."""
    assert is_arm64(written) is arm64
