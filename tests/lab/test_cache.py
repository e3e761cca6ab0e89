"""Cache that outlives nodes (issue 17): a node deleted and made again by `inv provision` (a new
VM, empty disks) rebuilds a slow step from the registry cache (`--cache registry`) instead of
running it; and `buildx.cache_max_gb` reaches the node's engine, which reports it as its build
cache's garbage-collection limit.

One one-node farm (linux/amd64, Debian 13, Docker 26.1) for the module, in its own project, as a
user runs it: `inv` on the command line, the real docker CLI, buildx and registry. Tests of the
registry cache on nodes that only forgot their cache are in test_build_options.py.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from google.api_core import exceptions
from google.cloud import compute_v1

from provision import names

from .conftest import KW, inv, write_inventory
from .registries import ssh

pytestmark = pytest.mark.lab

PROJECT = "archfarm-cache"
FARM = "cache"
NODE = "amd64"
ALIAS = names.alias(FARM, NODE)
REGISTRY = "127.0.0.1:5000"
RUN_IMAGE = f"{REGISTRY}/lab/debian-run:bookworm"
ONE = "  - {name: amd64, platform: linux/amd64, machine_type: n2-standard-2}\n"
CACHE_MAX_GB = 3
SLEEP = 12  # the slow step; long enough to tell apart from a cache hit in the log's timings

# `docker` with the output of every `buildx build` also appended to $BUILD_LOG_COPY: inv build
# keeps a build's log only when it fails, and the log is where buildx says CACHED.
TEE = """#!/bin/bash
case " $* " in
  *" buildx build "*)
    {docker} "$@" 2> >(tee -a "$BUILD_LOG_COPY" >&2)
    status=$?
    wait $!
    exit $status ;;
esac
exec {docker} "$@"
"""


@pytest.fixture(scope="module")
def farm(lab, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cache")
    path = write_inventory(tmp / "cache.yaml", lab, PROJECT, FARM, nodes=ONE,
                           extra=f"buildx: {{cache_max_gb: {CACHE_MAX_GB}}}\n")
    code, out, err = inv("provision", "-i", str(path))
    assert code == 0, err
    yield path
    inv("destroy", "-i", str(path), "--yes")


@pytest.fixture
def docker_tee(tmp_path) -> tuple[dict, Path]:
    """The environment that puts the teeing `docker` first on PATH, and the log copy."""
    shim = tmp_path / "shim"
    shim.mkdir()
    real = shutil.which("docker")
    assert real, "the docker CLI is not installed"
    (shim / "docker").write_text(TEE.format(docker=real))
    (shim / "docker").chmod(0o755)
    log = tmp_path / "build.log"
    return {"PATH": f"{shim}{os.pathsep}{os.environ['PATH']}", "BUILD_LOG_COPY": str(log)}, log


def test_cache_max_gb_is_the_node_engines_build_cache_limit(farm, tmp_path):
    daemon = json.loads(ssh(ALIAS, "cat /etc/docker/daemon.json"))
    size = f"{CACHE_MAX_GB}GB"
    assert daemon["builder"] == {"gc": {"enabled": True, "defaultKeepStorage": size,
                                        "defaultMaxUsedSpace": size}}
    # The engine took it: its BuildKit's default GC policies keep at most that much (buildx
    # prints them as `Keep Bytes`, 3 GiB in docker's units)
    inspect = subprocess.run(["docker", "--context", ALIAS, "buildx", "inspect"],
                             capture_output=True, text=True, timeout=60)
    assert inspect.returncode == 0, inspect.stderr
    keeps = re.findall(r"Keep Bytes:\s+(\S+)", inspect.stdout)
    assert keeps and keeps[1:] == [f"{CACHE_MAX_GB}GiB"] * (len(keeps) - 1), inspect.stdout
    # Converged: a re-run changes nothing; another size is one daemon.json change to come
    code, out, err = inv("configure", "-i", str(farm))
    assert code == 0 and out["nodes"][NODE]["changed"] == 0, err
    bigger = tmp_path / "bigger.yaml"
    bigger.write_text(farm.read_text().replace(f"cache_max_gb: {CACHE_MAX_GB}",
                                               "cache_max_gb: 5"))
    code, out, err = inv("configure", "-i", str(bigger), "--check")
    assert code == 0, err
    assert out["nodes"][NODE]["changes"] == ["daemon.json"], out
    assert json.loads(ssh(ALIAS, "cat /etc/docker/daemon.json")) == daemon  # nothing written


def delete_vm() -> None:
    """The node's VM deleted through the API, as a lost spot VM is, and waited for."""
    client = compute_v1.InstancesClient(**KW)
    client.delete(project=PROJECT, zone="us-central1-a", instance=names.vm(FARM, NODE))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            client.get(project=PROJECT, zone="us-central1-a", instance=names.vm(FARM, NODE))
        except exceptions.NotFound:
            return
        time.sleep(0.5)
    raise AssertionError("the VM was not deleted within 120 s")


def vm_id() -> int:
    client = compute_v1.InstancesClient(**KW)
    return client.get(project=PROJECT, zone="us-central1-a", instance=names.vm(FARM, NODE)).id


def diff_ids(ref: str) -> list[str]:
    done = subprocess.run(["docker", "buildx", "imagetools", "inspect", ref, "--format",
                           "{{json .Image}}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["rootfs"]["diff_ids"]


def test_a_recreated_node_rebuilds_the_slow_step_from_the_registry_cache(farm, tmp_path,
                                                                         docker_tee):
    env, log = docker_tee
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    # Random output: the layer is the same again only if the step did not run again.
    (ctx / "Dockerfile").write_text(
        f"FROM {RUN_IMAGE}\n"
        f"RUN sleep {SLEEP} && head -c 16 /dev/urandom | od -An -tx1 > /nonce\n")
    tag = f"{REGISTRY}/cachetest/{secrets.token_hex(4)}:1"  # a repository no run has cached
    build = ("build", "-i", str(farm), "--context", str(ctx), "--tag", tag, "--push",
             "--cache", "registry")
    code, out, err = inv(*build, env=env)
    assert code == 0, err
    first = diff_ids(tag)
    assert re.search(r"#\d+ DONE", log.read_text())

    before = vm_id()
    delete_vm()
    code, out, err = inv("provision", "-i", str(farm))
    assert code == 0, err
    assert vm_id() != before  # a new VM: new disks, no build cache, no image
    assert ssh(ALIAS, "docker image ls -q").strip() == ""

    log.write_text("")
    code, out, err = inv(*build, env=env)
    assert code == 0, err
    text = log.read_text()
    assert f"importing cache manifest from {tag.rsplit(':', 1)[0]}:buildcache-linux-amd64" in text
    step = re.search(rf"^(#\d+) \[2/2\] RUN sleep {SLEEP}", text, re.MULTILINE)
    assert step, text
    # The step did not run: CACHED, or its layer fetched from the cache (then DONE, sooner
    # than the step's sleep: the log's own figure)
    done = re.search(rf"^{step.group(1)} DONE ([0-9.]+)s$", text, re.MULTILINE)
    assert (re.search(rf"^{step.group(1)} CACHED$", text, re.MULTILINE)
            or (done and float(done.group(1)) < SLEEP)), text
    assert diff_ids(tag) == first
    row, = out["platforms"]
    assert row["node"] == NODE
