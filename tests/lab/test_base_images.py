"""The lab's base images in the lab registry (`inv lab.up` publishes them), and
`examples/hello` built FROM them for both platforms on the host's engine.

Only images this module creates are removed (the base images it pulls are removed only if
they were not on the engine before).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from provision.lab import base_images

pytestmark = pytest.mark.lab

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello"


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check,
                          timeout=900)


@pytest.mark.parametrize("ref", list(base_images.IMAGES))
def test_each_base_image_is_one_index_for_amd64_and_arm64(lab, ref):
    index = json.loads(docker("buildx", "imagetools", "inspect", "--raw", ref).stdout)
    assert index["mediaType"] in base_images.INDEXES
    platforms = sorted(f"{m['platform']['os']}/{m['platform']['architecture']}"
                       for m in index["manifests"])
    assert platforms == ["linux/amd64", "linux/arm64"]
    # Each entry is an image of that very architecture (its config says so), not a relabel.
    for manifest in index["manifests"]:
        name = ref.rsplit(":", 1)[0]
        config = json.loads(docker("buildx", "imagetools", "inspect", "--format",
                                   "{{json .Image}}", f"{name}@{manifest['digest']}").stdout)
        assert config["architecture"] == manifest["platform"]["architecture"]
    assert base_images.published()[ref] == index_digest_of(ref)


def index_digest_of(ref: str) -> str:
    out = docker("buildx", "imagetools", "inspect", "--format", "{{json .Manifest}}", ref)
    return json.loads(out.stdout)["digest"]


def test_a_second_ensure_is_a_cache_hit_and_pushes_nothing(lab, tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("a cache hit must build and push nothing")

    for name in ("_build", "push_layer_image", "_push_blob", "_imagetools_create"):
        monkeypatch.setattr(base_images, name, never)
    said: list[str] = []
    started = time.monotonic()
    digests = base_images.ensure(said.append, tmp_path / "base-images.log")
    seconds = time.monotonic() - started
    assert said == [f"lab base images: cached (recipe {base_images.recipe_hash()})"]
    assert digests == base_images.published()
    assert all(d.startswith("sha256:") for d in digests.values())
    assert not (tmp_path / "base-images.log").exists()
    assert seconds < 1.0


@pytest.fixture
def own_images():
    """Tags the test makes; removed afterwards, with the base images pulled along the way."""
    before = {ref for ref in base_images.IMAGES
              if docker("image", "inspect", ref, check=False).returncode == 0}
    tags: list[str] = []
    yield tags
    for tag in tags:
        docker("rmi", tag, check=False)
    for ref in set(base_images.IMAGES) - before:
        docker("rmi", ref, check=False)


@pytest.mark.parametrize("platform, machine", [("linux/arm64", "aarch64"),
                                                ("linux/amd64", "x86_64")])
def test_hello_built_from_the_base_images_says_its_architecture(lab, own_images, platform,
                                                                 machine):
    tag = f"archfarm-test-hello:{platform.split('/')[1]}-{uuid.uuid4().hex[:8]}"
    own_images.append(tag)
    docker("build", "--platform", platform, "-t", tag, str(HELLO))
    inspected = json.loads(docker("image", "inspect", tag).stdout)[0]
    assert inspected["Architecture"] == platform.split("/")[1]
    ran = docker("run", "--rm", "--platform", platform, tag)
    assert ran.stdout == f"hello from {machine}\n"
