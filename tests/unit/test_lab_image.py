"""The lab's two VM images (provision/lab/image.py) and how its docker backend picks one: a
VM whose boot disk is a Debian 12 image boots the bookworm image, any other the trixie one.
No docker engine is used: the docker calls and the build script are stand-ins."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from provision.fakegce.backends import VmView
from provision.lab import image
from provision.lab.backend import DockerBackend

STEM = "archfarm-lab-vm:0123456789ab"


@pytest.mark.parametrize(("project", "family", "suite"), [
    ("debian-cloud", "debian-12", "bookworm"),
    ("debian-cloud", "debian-12-arm64", "bookworm"),
    ("debian-cloud", "debian-13", "trixie"),
    ("debian-cloud", "debian-13-arm64", "trixie"),
    ("ubuntu-os-cloud", "ubuntu-2404-lts-arm64", "trixie"),
    ("my-project", "debian-12", "trixie"),       # not the public Debian 12 images
    ("debian-cloud", "debian-12-backports", "trixie"),
])
def test_the_suite_follows_the_boot_disks_image(project, family, suite):
    assert image.suite_for(project, family) == suite


def vm(family: str, project: str = "debian-cloud") -> VmView:
    return VmView("proj", "us-central1-a", "node", "1234567890123", "127.0.0.9", "ARM64", {},
                  image_project=project, image_family=family, image_name=f"{family}-v20251111")


def test_the_backend_boots_a_debian_12_vm_from_the_bookworm_image():
    backend = DockerBackend(image.suite_tags(STEM))
    assert backend.images == {"trixie": f"{STEM}-trixie", "bookworm": f"{STEM}-bookworm"}
    old, new = vm("debian-12-arm64"), vm("debian-13-arm64")
    assert backend._run_args(old, "c")[-1] == f"{STEM}-bookworm"
    assert backend._run_args(new, "c")[-1] == f"{STEM}-trixie"
    assert backend._run_args(vm("ubuntu-2204-lts", "ubuntu-os-cloud"), "c")[-1] == (
        f"{STEM}-trixie")


def test_the_lab_server_hands_the_backend_both_images(monkeypatch):
    from provision.lab import gce

    seen = {}
    monkeypatch.setattr(gce, "serve_args",
                        lambda parser, args, boot_seconds, backend: seen.update(b=backend) or 0)
    assert gce.main(["--lab-image", STEM]) == 0
    assert seen["b"].images == image.suite_tags(STEM)


def test_the_tag_stem_is_the_recipes_hash(tmp_path, monkeypatch):
    recipe = tmp_path / "image"
    (recipe / "units").mkdir(parents=True)
    (recipe / "build.sh").write_text("one")
    (recipe / "units" / "a.service").write_text("x")
    monkeypatch.setattr(image, "RECIPE_DIR", recipe)
    first = image.image_tag()
    assert first.startswith("archfarm-lab-vm:") and first == image.image_tag()
    (recipe / "build.sh").write_text("two")
    assert image.image_tag() != first
    assert list(image.suite_tags(first)) == ["trixie", "bookworm"]


def test_build_sh_takes_only_the_two_suites():
    build = subprocess.run(["bash", str(image.RECIPE_DIR / "build.sh"), "sid", "t", "m"],
                           capture_output=True, text=True, timeout=30)
    assert build.returncode == 2 and "unknown suite sid (trixie or bookworm)" in build.stderr


class Engine:
    """A stand-in for `docker`: the tags it holds; every call recorded."""

    def __init__(self, tags: set[str]):
        self.tags, self.calls = tags, []
        self.lock = threading.Lock()

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        with self.lock:
            self.calls.append(args)
        out, code = "", 0
        if args[:2] == ("image", "inspect"):
            code = 0 if set(args[2:]) <= self.tags else 1
        elif args[0] == "images":
            out = "\n".join(sorted(self.tags))
        elif args[0] == "rmi":
            self.tags -= set(args[1:])
        return subprocess.CompletedProcess(args, code, out, "")


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    """A recipe whose build.sh takes a second, says its suite and 'imports' its tag."""
    recipe = tmp_path / "image"
    recipe.mkdir()
    (recipe / "build.sh").write_text(
        '#!/bin/sh\nsleep 1\necho "building $1 as $2 from $3"\n'
        'echo "$2" >> "$(dirname "$0")/../imported"\n'
        '[ "$1" != "${FAIL:-}" ] || { echo "E: no $1 for you" >&2; exit 1; }\n')
    (recipe / "build.sh").chmod(0o755)
    monkeypatch.setattr(image, "RECIPE_DIR", recipe)
    monkeypatch.setattr(image, "debian_mirror", lambda: "http://mirror.invalid/debian")
    return tmp_path


def test_both_images_cached_is_one_docker_call_and_no_build(recipe, monkeypatch):
    tags = image.suite_tags(image.image_tag())
    engine = Engine(set(tags.values()))
    monkeypatch.setattr(image, "_docker", engine)
    said: list[str] = []
    assert image.ensure(said.append, recipe / "image-build.log") == tags
    assert engine.calls == [("image", "inspect", *tags.values())]
    assert said == [f"lab images {tags['trixie']}, {tags['bookworm']}: cached"]
    assert not (recipe / "imported").exists() and not (recipe / "image-build.log").exists()


def test_missing_images_are_built_side_by_side_and_older_recipes_removed(recipe, monkeypatch):
    tags = image.suite_tags(image.image_tag())
    engine = Engine({"archfarm-lab-vm:49a2b87091e7", "archfarm-lab-vm:0ld0ld0ld0ld-trixie"})
    monkeypatch.setattr(image, "_docker", engine)
    said: list[str] = []
    log = recipe / "image-build.log"
    started = time.monotonic()
    assert image.ensure(said.append, log) == tags
    assert time.monotonic() - started < 1.9  # two one-second builds at once
    assert sorted((recipe / "imported").read_text().split()) == sorted(tags.values())
    text = log.read_text()
    for suite, tag in tags.items():
        assert f"==== {tag} (Debian {suite}): exit 0 in " in text
        assert f"building {suite} as {tag} from http://mirror.invalid/debian" in text
    assert sorted(p.name for p in recipe.iterdir()) == ["image", "image-build.log", "imported"]
    assert said[0].endswith(": building from Debian packages (about a minute; log in"
                            f" {log})")
    assert ("rmi", "archfarm-lab-vm:0ld0ld0ld0ld-trixie", "archfarm-lab-vm:49a2b87091e7") in (
        engine.calls)


def test_only_the_missing_image_is_built(recipe, monkeypatch):
    tags = image.suite_tags(image.image_tag())
    monkeypatch.setattr(image, "_docker", Engine({tags["trixie"]}))
    image.ensure(lambda _: None, recipe / "image-build.log")
    assert (recipe / "imported").read_text().split() == [tags["bookworm"]]


def test_a_failed_build_names_its_last_lines_and_the_log(recipe, monkeypatch):
    monkeypatch.setenv("FAIL", "bookworm")
    monkeypatch.setattr(image, "_docker", Engine(set()))
    log = recipe / "image-build.log"
    with pytest.raises(image.UserError) as e:
        image.ensure(lambda _: None, log)
    assert "bookworm failed: " in str(e.value) and "E: no bookworm for you" in str(e.value)
    assert f"Fix: see {log}" in str(e.value)
    assert "exit 1 in" in log.read_text() and "exit 0 in" in log.read_text()

