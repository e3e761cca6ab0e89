"""check-arm's reading of its input before anything runs: which references are bad input, and
which registry a reference names (the one an unreachable-registry message points to)."""

from __future__ import annotations

import pytest

from provision.armcheck.run import cause, check_reference
from provision.buildx import reference
from provision.buildx.docker_cli import Done
from provision.buildx.reference import registry as registry_of
from provision.errors import UserError

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize("image", [
    "127.0.0.1:5000/hello:demo", "hello", "library/hello:1.0", "localhost:5000/a/b",
    "us-central1-docker.pkg.dev/p/r/app:1", f"127.0.0.1:5000/hello@{DIGEST}",
    f"127.0.0.1:5000/hello:demo@{DIGEST}", "[::1]:5000/x:y", "a/b_c/d__e-f.g:T_1.x-y"])
def test_a_docker_reference_is_accepted(image):
    check_reference(image)


@pytest.mark.parametrize("image", [
    "", "Bad Ref", "127.0.0.1:5000/Hello:demo", "hello:", "a//b", "-hello", "hello:-x",
    "hello@sha256:zz", "hello,world", "127.0.0.1:5000/hello:demo extra"])
def test_a_malformed_reference_is_bad_input_naming_the_shape(image):
    with pytest.raises(UserError) as caught:
        check_reference(image)
    assert caught.value.exit_code == 2
    assert "not an image reference" in str(caught.value)
    assert "[REGISTRY/]REPOSITORY[:TAG]" in str(caught.value)


@pytest.mark.parametrize("image, registry", [
    ("127.0.0.1:9/x:y", "127.0.0.1:9"), ("localhost/x", "localhost"),
    ("gcr.io/p/app", "gcr.io"), ("library/hello", "docker.io"), ("hello:1", "docker.io")])
def test_the_registry_of_a_reference(image, registry):
    assert registry_of(image) == registry


def test_the_cause_of_an_ssh_context_failure_is_what_ssh_said():
    said = ('error during connect: Get "http://docker.example.com/v1.50/version": command'
            " [ssh -o ConnectTimeout=30 -T -- archfarm-x-arm64 docker system dial-stdio] has"
            " exited with exit status 255, make sure the URL is valid, and Docker 18.09 or"
            " later is installed on the remote host: stderr=ssh: connect to host 127.0.0.4"
            " port 22: Connection refused\n")
    assert cause(Done("", said, 1)) == ("ssh: connect to host 127.0.0.4 port 22: Connection"
                                        " refused.")


def test_an_empty_command_is_bad_input_before_anything_runs():
    from provision.armcheck.run import check
    from provision.inventory import parse
    from provision.runner import Cancel

    farm = parse("farm: f\ngcp: {project: proj-one, zones: [us-central1-a], ssh_source_ranges:"
                 " [127.0.0.1/32]}\nnodes:\n  - {name: a, platform: linux/arm64,"
                 " machine_type: t2a-standard-2}\n", "f.yaml")
    # 127.0.0.1:9: nothing listens there, so a check that went ahead could decide nothing
    with pytest.raises(UserError, match=r"-- ''.*names no command"):
        check(farm, "127.0.0.1:9/hello:demo", [""], Cancel())


@pytest.mark.parametrize("written", ["nginx", "docker.io/nginx", "docker.io/library/nginx",
                                     "index.docker.io/library/nginx:latest"])
def test_every_spelling_of_a_docker_hub_image_is_one_image(written):
    assert reference.normalized(written) == "docker.io/library/nginx:latest"


def test_a_digest_alone_gets_no_latest_tag_and_a_registry_keeps_its_paths():
    digest = "sha256:" + "a" * 64
    assert reference.split(f"127.0.0.1:5000/lab/x@{digest}") == \
        ("127.0.0.1:5000", "lab/x", None, digest)
    assert reference.normalized("127.0.0.1:5000/x") == "127.0.0.1:5000/x:latest"
