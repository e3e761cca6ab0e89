"""What a failed build's recap says, from its log alone (pure)."""

from __future__ import annotations

import shlex

from provision.buildx.build import finish_command
from provision.buildx.buildlog import Where, node_lost, why_failed
from provision.buildx.request import Request
from provision.inventory import parse
from provision.runner import Outcome

FARM = parse("farm: bx\ngcp: {project: proj-one, zones: [us-central1-a], ssh_source_ranges:"
             " [127.0.0.1/32]}\nnodes:\n  - {name: amd64, platform: linux/amd64,"
             " machine_type: n2-standard-2}\n", "bx.yaml")
FAILED_RUN = ('#4 [1/2] FROM docker.io/moby/buildkit:v0.16.0\n'
              '#5 [2/2] RUN false\n'
              'ERROR: failed to solve: process "/bin/sh -c false" did not complete'
              ' successfully: exit code: 1\n')


def test_a_merge_build_that_mentions_buildkit_is_not_blamed_on_the_buildkit_container():
    why = why_failed(FAILED_RUN, Where("node amd64", "archfarm-bx-amd64"), FARM)
    assert why == "the build failed on node amd64"


def test_the_builder_that_cannot_boot_buildkit_says_so():
    text = ("#1 [internal] booting buildkit\n#1 pulling image moby/buildkit:buildx-stable-1\n"
            "ERROR: failed to pull moby/buildkit:buildx-stable-1: connection refused\n")
    assert "could not start the buildkit container" in why_failed(text, Where("builder bx"),
                                                                   FARM)


def test_the_command_that_finishes_a_merge_is_quoted_for_the_shell():
    request = Request(context_dir=None, tag="[::1]:5000/app:1", push=True)
    pushed = {"linux/amd64": Outcome(extra={"digest": "sha256:" + "a" * 64})}
    command = finish_command(request, pushed)
    assert "'[::1]:5000/app:1'" in command  # brackets are a glob to the shell
    assert shlex.split(command)[:6] == ["docker", "buildx", "imagetools", "create", "--tag",
                                        "[::1]:5000/app:1"]


NODE = Where("node amd64-1", "archfarm-bx-amd64-1")


def test_a_lost_engine_is_read_from_dockers_own_lines():
    lost = ("#5 [2/2] RUN sleep 30\n"
            "ERROR: failed to solve: error reading from server: EOF\n")
    assert node_lost(lost, NODE)
    assert node_lost("error during connect: Get http://docker.example.com/v1.24/...", NODE)


def test_a_steps_own_output_naming_a_lost_daemon_is_the_builds_own_failure():
    said = ("#5 [2/2] RUN docker info\n"
            "#5 0.215 Cannot connect to the Docker daemon at unix:///var/run/docker.sock\n"
            '#5 ERROR: process "/bin/sh -c docker info" did not complete successfully\n'
            'ERROR: failed to solve: process "/bin/sh -c docker info" did not complete'
            " successfully: exit code: 1\n")
    assert not node_lost(said, NODE)
    assert not node_lost(FAILED_RUN, NODE)
