"""`inv build` through the real command line and the real docker CLI, without a farm: bad
input ends with exit 2 before anything runs, and a node this machine has no docker context for
fails with the fix (`inv register`) and where its whole log is."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from provision.buildx.pieces import platform_tag
from provision.buildx.reference import problem as reference_problem

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples/hello"

pytestmark = pytest.mark.skipif(not shutil.which("docker"), reason="needs the docker CLI")

# The farm's nodes have no docker context in this test's DOCKER_CONFIG (own_cache): a build
# that gets as far as docker fails at once, without reaching any network.
INVENTORY = """
farm: t
gcp: {{project: test-project, zones: [us-central1-a], api_endpoint: "http://127.0.0.1:9",
      ssh_source_ranges: [127.0.0.1/32]}}
ssh: {{private_key: {key}}}
nodes:
  - {{name: arm, platform: linux/arm64, machine_type: t2a-standard-2}}
  - {{name: x86, platform: linux/amd64, machine_type: n2-standard-2}}
"""


@pytest.fixture
def build(tmp_path):
    """`inv build -i INVENTORY ARGS` as a user types it, TMPDIR inside tmp_path: (the completed
    process, the archfarm-build-* directories it left)."""
    inventory = tmp_path / "farm.yaml"
    inventory.write_text(INVENTORY.format(key=tmp_path / "farm-key"))
    tmp = tmp_path / "tmp"
    tmp.mkdir()

    def run(*args: str) -> tuple[subprocess.CompletedProcess, list[Path]]:
        done = subprocess.run([sys.executable, "-m", "invoke", "build", "-i", str(inventory),
                               *args], cwd=REPO, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "TMPDIR": str(tmp)})
        assert "Traceback" not in done.stderr, done.stderr
        return done, sorted(tmp.glob("archfarm-build-*"))
    return run


def exits_2(run, *args: str) -> str:
    """Run with --json; assert bad input (exit 2, one message with a fix, nothing left in
    TMPDIR); return the message."""
    done, left = run(*args, "--json")
    assert done.returncode == 2, done.stdout + done.stderr
    message = json.loads(done.stdout.strip().splitlines()[-1])["error"]
    assert "Fix:" in message, message
    assert left == [], "a build started"
    return message


LONG = "t" * 128


@pytest.mark.parametrize("tag", [
    "http://127.0.0.1:5000/x/y:h",          # a URL, not a reference
    "127.0.0.1:5000/x/y:",                  # an empty tag
    "127.0.0.1:5000//x/y:z",                # an empty path component
    "127.0.0.1:5000/x/y::z",                # two colons
    "127.0.0.1:5000/x/Y:z",                 # uppercase in the repository
    "127.0.0.1:5000/x/y:.z",                # a tag starting with a dot
    "127.0.0.1:5000/x__-y/z:1",             # a separator docker does not accept
    f"127.0.0.1:5000/x/y:{LONG}u",          # a 129-character tag
    f"127.0.0.1:5000/{'a' * 256}:z",        # a repository path over 255 characters
])
def test_a_malformed_tag_is_bad_input_before_anything_runs(build, tag):
    message = exits_2(build, "--context", str(HELLO), "--tag", tag, "--push")
    assert message.startswith(f"--tag {tag!r}: not an image reference"), message


@pytest.mark.parametrize("tag", [f"127.0.0.1:5000/x/y:{LONG}", "127.0.0.1:5000/x-y/z",
                                 "[::1]:5000/a.b/c__d:V1.0_x", "localhost/x"])
def test_a_valid_tag_gets_past_the_checks(build, tag):
    done, _ = build("--context", str(HELLO), "--tag", tag, "--push", "--json")
    assert done.returncode == 1, done.stdout + done.stderr  # the missing contexts, not the tag
    assert "--tag" not in done.stdout


def docker_accepts(ref: str) -> bool:
    """Whether the docker CLI's own parser takes `ref` (`docker tag` parses it before asking
    the engine for a source image that is never there)."""
    done = subprocess.run(["docker", "tag", f"archfarm-no-such-image:{uuid.uuid4().hex}", ref],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0, "docker tagged an image: the source should not exist"
    return "Error parsing reference" not in done.stderr


LONGEST = [f"127.0.0.1:5000/x/y:{LONG}", f"127.0.0.1:5000/{'a/' * 127}b:{LONG}",
           f"registry.example/{'a' * 255}:{LONG}"]


@pytest.mark.parametrize("ref", [
    "127.0.0.1:5000/x/y:h", "http://127.0.0.1:5000/x/y:h", "127.0.0.1:5000/x/y:",
    "127.0.0.1:5000//x/y:z", "127.0.0.1:5000/x/y::z", "127.0.0.1:5000/x/Y:z",
    "127.0.0.1:5000/x/y:.z", "127.0.0.1:5000/x__-y/z:1", "127.0.0.1:5000/x/y:_z",
    "[::1]:5000/a.b/c__d:V1.0_x", "localhost/x", "x", "x:1", "-x", "x-", "a--b/c", "A:1",
    "Registry.Example:443/a:1", "reg_istry/a:1", f"127.0.0.1:5000/x/y:{LONG}u",
    f"127.0.0.1:5000/{'a' * 256}:z", *LONGEST])
def test_the_tag_check_agrees_with_the_docker_cli(ref):
    """Docker's parser and --tag's check agree (but for a digest, which docker takes and a
    build cannot push to: test_register_local)."""
    assert (reference_problem(ref) is None) == docker_accepts(ref), reference_problem(ref)


@pytest.mark.parametrize("ref", LONGEST)
@pytest.mark.parametrize("platform", ["linux/arm64", "linux/amd64", "linux/arm/v7"])
def test_the_per_platform_tag_of_the_longest_tags_is_one_docker_accepts(ref, platform):
    assert docker_accepts(platform_tag(ref, platform))


@pytest.mark.parametrize("platform", ["", ",", " , "])
def test_an_empty_platform_selection_is_bad_input(build, platform):
    message = exits_2(build, "--context", str(HELLO), "--tag", "127.0.0.1:5000/x/y:1", "--push",
                      "--platform", platform)
    assert message.startswith(f"--platform {platform!r}: names no platform"), message
    assert "leave --platform out" in message


def test_file_naming_a_directory_says_it_is_a_directory(build):
    message = exits_2(build, "--context", str(HELLO), "--tag", "127.0.0.1:5000/x/y:1", "--push",
                      "--file", ".")
    assert f"--file .: {HELLO} is a directory, not a Dockerfile" in message, message


def test_a_node_not_registered_is_skipped_before_anything_is_built_naming_the_fix(build):
    done, left = build("--context", str(HELLO), "--tag", "127.0.0.1:5000/x/y:1", "--push",
                       "--platform", "linux/amd64")
    out = " ".join(done.stdout.split())  # the human output, lines joined as rich wraps them
    assert done.returncode == 1, done.stdout + done.stderr
    assert ("linux/amd64 FAILED: no node of linux/amd64 is up (x86: not registered as a build"
            " node; `inv register` (or `inv provision`) does it)") in out, out
    assert "x86 skipped: not registered" in out
    assert left == []  # nothing was built, so no logs to keep
    assert "None" not in out


def test_check_with_the_builder_strategy_builds_nothing(build):
    done, left = build("--context", str(HELLO), "--tag", "127.0.0.1:5000/x/y:1", "--push",
                       "--strategy", "builder", "--check", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nothing to schedule" in done.stderr and "building on" not in done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["check"] is True
    assert left == []
