"""`inv doctor`'s line for nodes whose engine will predate the containerd image store: doctor
reaches no node, so the inventory's package and each node's image say what it will run."""

from __future__ import annotations

import pytest

from provision import doctor
from provision.inventory import parse

from .test_containerd_store import FARM


def _with_image(text: str, image: str) -> str:
    return text.replace("    count: 2\n", f"    count: 2\n    image: {image}\n")


@pytest.mark.parametrize("image, warned", [
    ("projects/debian-cloud/global/images/family/debian-12", True),
    ("projects/debian-cloud/global/images/debian-12-bookworm-v20250101", True),
    ("projects/debian-cloud/global/images/family/debian-11", True),
    ("projects/debian-cloud/global/images/family/debian-13", False),
    ("projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64", False),
    ("projects/my-project/global/images/family/golden", False),   # not known: not guessed
])
def test_doctor_warns_of_debian_12_docker_io_nodes(image, warned):
    checks = doctor.containerd_store(parse(_with_image(FARM, image), "farm.yaml"))
    if not warned:
        assert checks == []
        return
    (check,) = checks
    assert (check.check, check.status) == ("containerd image store", doctor.WARNING)
    assert check.detail.startswith("docker 20.10 on nodes x86-1, x86-2 has no containerd image"
                                   " store (Docker 24+ needed)")
    assert check.fix.startswith("use docker.package: docker-ce, or Debian 13 nodes")


@pytest.mark.parametrize("docker", ["  package: docker-ce\n",
                                    "  package: docker.io\n  containerd_store: false\n"])
def test_doctor_says_nothing_of_docker_ce_or_a_store_not_asked_for(docker):
    text = _with_image(FARM, "projects/debian-cloud/global/images/family/debian-12")
    assert doctor.containerd_store(parse(text.replace("  package: docker.io\n", docker),
                                         "farm.yaml")) == []


@pytest.mark.parametrize("image, release", [
    ("projects/debian-cloud/global/images/family/debian-12-arm64", 12),
    ("https://www.googleapis.com/compute/v1/projects/debian-cloud/global/images/family/"
     "debian-13", 13),
    ("global/images/debian-13-trixie-arm64-v20250915", 13),
    ("projects/debian-cloud/global/images/family/debian-sid", None),
    ("projects/x/global/images/my-debian-12", None),
])
def test_debian_release(image, release):
    assert doctor.debian_release(image) == release
