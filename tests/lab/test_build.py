"""`inv register`, `inv build`, `inv check-arm` and `inv destroy` on a real lab farm, checked
with the real docker CLI and buildx, and the image run on this machine's engine."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from google.cloud import compute_v1

from provision.buildx import register

from .conftest import BOTH, ENDPOINT, KW, REPO, inv, write_inventory
from .registries import NodeForward, SlowProxy, ssh

pytestmark = pytest.mark.lab

PROJECT = "archfarm-bx"
REGISTRY = "127.0.0.1:5000"


@pytest.fixture(scope="module")
def farm(lab, tmp_path_factory):
    """A two-node farm provisioned once (vms, configure, register) for the whole module."""
    tmp = tmp_path_factory.mktemp("bx")
    # The builder strategy's buildkit image: a lab-registry path, so nothing reaches Docker Hub.
    buildkit = f"{REGISTRY}/moby/buildkit:not-in-the-lab"
    # amd64 is a spot VM: the fake's preemption fault stops it mid-build
    nodes = BOTH.replace("n2-standard-2}", "n2-standard-2, spot: true}")
    path = write_inventory(tmp / "bx.yaml", lab, PROJECT, "bx", nodes=nodes,
                           extra=f"buildx: {{buildkit_image: {buildkit}}}\n")
    code, out, err = inv("provision", "-i", str(path))
    assert code == 0, err
    yield path, out
    inv("destroy", "-i", str(path), "--yes")


def build_hello(inventory: Path, tag: str, *extra: str, tmp: Path | None = None
                ) -> tuple[int, dict, str]:
    """`inv build` of examples/hello, pushed to `tag`; with TMPDIR `tmp` when given (a build
    that fails keeps its logs there)."""
    return inv("build", "-i", str(inventory), "--context", str(REPO / "examples/hello"),
               "--tag", tag, "--push", *extra, env={"TMPDIR": str(tmp)} if tmp else None)


def images(index: dict) -> list[dict]:
    """The image manifests an index lists, without attestation manifests (platform
    unknown/unknown: buildx's default provenance on the nodes' containerd image store)."""
    return [m for m in index["manifests"] if (m.get("annotations") or {}).get(
        "vnd.docker.reference.type") != "attestation-manifest"]


def docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=300)


def test_provision_registers_both_nodes_pinned_and_buildx_inspect_shows_them(farm):
    path, out = farm
    assert all(r["failed"] == 0 for r in out["nodes"].values()), out
    inspected = docker("buildx", "inspect", "bx")
    assert inspected.returncode == 0, inspected.stderr
    # buildx's own words: one block per node, "Name: bx-arm64", "Endpoint: ...",
    # "Platforms: linux/arm64*" (the star marks a pinned platform)
    blocks = {}
    for block in inspected.stdout.split("\n\n"):
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if fields.get("Name", "").startswith("bx-"):
            blocks[fields["Name"]] = fields
    assert blocks["bx-arm64"]["Endpoint"] == "archfarm-bx-arm64", inspected.stdout
    assert blocks["bx-arm64"]["Platforms"].startswith("linux/arm64*"), inspected.stdout
    assert blocks["bx-amd64"]["Endpoint"] == "archfarm-bx-amd64", inspected.stdout
    assert blocks["bx-amd64"]["Platforms"].startswith("linux/amd64*"), inspected.stdout
    contexts = {c["Name"]: c["DockerEndpoint"] for c in map(json.loads, docker(
        "context", "ls", "--format", "json").stdout.splitlines())}
    assert contexts["archfarm-bx-arm64"] == "ssh://archfarm-bx-arm64"
    assert register.include_line() in (register.ssh_dir() / "config").read_text()


def test_a_second_register_changes_nothing(farm):
    path, _ = farm
    code, out, err = inv("register", "-i", str(path))
    assert code == 0, err
    assert {n: r["changed"] for n, r in out["nodes"].items()} == {"arm64": 0, "amd64": 0}


def builder_nodes(name: str) -> set[str]:
    return {n["Name"] for line in docker("buildx", "ls", "--format", "json").stdout.splitlines()
            if (b := json.loads(line))["Name"] == name for n in b.get("Nodes") or []}


def test_a_node_taken_out_of_the_inventory_leaves_the_builder_and_comes_back(farm, tmp_path):
    path, _ = farm
    amd64_only = tmp_path / "bx-amd64.yaml"
    amd64_only.write_text("".join(line for line in path.read_text().splitlines(True)
                                  if "name: arm64" not in line))
    code, out, err = inv("register", "-i", str(amd64_only))
    assert code == 0, err
    assert out["nodes"]["arm64"]["changes"] == ["ssh config", "builder node",
                                                "docker context"], out["nodes"]
    assert builder_nodes("bx") == {"bx-amd64"}
    assert "archfarm-bx-arm64" not in docker("context", "ls", "--format", "{{.Name}}").stdout
    assert "Host archfarm-bx-arm64\n" not in register.farm_config("bx").read_text()
    code, out, err = inv("register", "-i", str(path))  # back in the inventory
    assert code == 0, err
    assert builder_nodes("bx") == {"bx-amd64", "bx-arm64"}


def test_status_lists_each_nodes_builder_platform(farm):
    path, _ = farm
    code, out, err = inv("status", "-i", str(path))
    assert code == 0, err
    assert {n["name"]: n["builder"][0] for n in out["nodes"]} == {
        "arm64": "linux/arm64", "amd64": "linux/amd64"}


@pytest.fixture(scope="module")
def hello(farm):
    path, _ = farm
    tag = f"{REGISTRY}/bx/hello:test"
    code, out, err = build_hello(path, tag, "--strategy", "merge")
    assert code == 0, err
    yield tag, out
    # the tests pulled it into this machine's engine: leave none of it behind
    pulled = docker("images", "-q", f"{REGISTRY}/bx/hello").stdout.split()
    if pulled:
        docker("rmi", "-f", *sorted(set(pulled)))


def test_merge_build_pushes_an_index_with_both_platforms_each_built_on_its_node(hello):
    tag, out = hello
    raw = json.loads(docker("buildx", "imagetools", "inspect", "--raw", tag).stdout)
    listed = {f"{m['platform']['os']}/{m['platform']['architecture']}"
              for m in images(raw)}
    assert listed == {"linux/amd64", "linux/arm64"}
    assert {p["platform"]: p["node"] for p in out["platforms"]} == {
        "linux/arm64": "arm64", "linux/amd64": "amd64"}
    assert all(p["digest"] for p in out["platforms"])
    described = json.loads(docker("buildx", "imagetools", "inspect", tag, "--format",
                                  "{{json .Manifest}}").stdout)
    assert out["digest"] == described["digest"]  # the index digest, as the registry has it


@pytest.mark.parametrize("platform, machine", [("linux/arm64", "aarch64"),
                                               ("linux/amd64", "x86_64")])
def test_the_image_prints_its_machine(hello, platform, machine):
    tag, _ = hello
    ran = docker("run", "--rm", "--pull", "always", "--platform", platform, tag)
    assert ran.returncode == 0, ran.stderr
    assert machine in ran.stdout


def test_check_arm_says_ready_for_the_multi_arch_image(hello, farm):
    tag, _ = hello
    code, out, err = inv("check-arm", "-i", str(farm[0]), tag)
    assert code == 0, err
    assert out["ready"] is True and "aarch64" in out["output"] and "arm64" in out["ran_on"]


def test_check_arm_says_not_ready_for_an_amd64_only_image(farm):
    path, _ = farm
    tag = f"{REGISTRY}/bx/hello:amd64-only"
    code, out, err = build_hello(path, tag, "--platform", "linux/amd64")
    assert code == 0, err
    code, out, err = inv("check-arm", "-i", str(path), tag)
    assert code == 1
    assert out["ready"] is False and "no linux/arm64 variant" in out["reason"]


def test_builder_strategy_without_a_pullable_buildkit_image_names_the_fix(farm, tmp_path):
    path, _ = farm
    code, out, err = build_hello(path, f"{REGISTRY}/bx/hello:builder", "--strategy", "builder",
                                 tmp=tmp_path)
    assert code == 1
    notes = " ".join(r.get("note", "") for r in out["nodes"].values())
    assert "buildx.buildkit_image" in notes and "--strategy merge" in notes


# -- faults: long tags, interrupts, a lost merge, lost engines and registries ---------------------

def registry_tags(repository: str) -> set[str]:
    """The tags of `repository` in the lab registry, as the registry API lists them."""
    with urllib.request.urlopen(f"http://{REGISTRY}/v2/{repository}/tags/list", timeout=30) as r:
        return set(json.load(r)["tags"])


def test_a_128_character_tag_builds_and_leaves_only_short_per_platform_tags(farm):
    path, _ = farm
    longest = "v" * 128  # docker's limit for a tag
    code, out, err = build_hello(path, f"{REGISTRY}/bx/long:{longest}")
    assert code == 0, err
    tags = registry_tags("bx/long")
    assert longest in tags
    per_platform = tags - {longest}
    assert {t.rpartition("-linux-")[2] for t in per_platform} == {"arm64", "amd64"}, tags
    assert all(t.startswith("archfarm-") and len(t) < 64 for t in per_platform), tags
    assert {p["pushed"].rpartition(":")[2] for p in out["platforms"]} == per_platform


class Running:
    """`inv build -i INVENTORY ARGS --json` (or another task) started as a user would (its own
    TMPDIR), its progress (stderr) read as it comes."""

    def __init__(self, inventory: Path, tmpdir: Path, *args: str, task: str = "build"):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "invoke", "--search-root", str(REPO), task, "-i",
             str(inventory), *args, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env={**os.environ, "TMPDIR": str(tmpdir)})
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no {text!r} in {timeout} s; stderr so far:\n{''.join(self.seen)}")
            self.seen.append(line)
            if text in line:
                return line

    def finish(self, timeout: float = 300) -> tuple[int, dict, str]:
        """(exit code, the --json object, all of stderr)."""
        code = self.proc.wait(timeout=timeout)
        stdout = self.proc.stdout.read()
        self.reader.join(timeout=10)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return code, json.loads(stdout.strip().splitlines()[-1]), "".join(self.seen)


def slow_context(tmp_path: Path, seconds: int = 60) -> Path:
    """A build context whose one step runs `seconds` (a fresh token: never from the cache)."""
    token = uuid.uuid4().hex
    context = tmp_path / token
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {REGISTRY}/lab/debian-run:bookworm\n"
                                        f"RUN echo {token} && sleep {seconds}\n")
    return context


def test_ctrl_c_during_a_build_exits_130_says_what_was_in_flight_and_leaves_no_temp_dir(
        farm, tmp_path):
    path, _ = farm
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    running = Running(path, tmpdir, "--context", str(slow_context(tmp_path)), "--tag",
                      f"{REGISTRY}/bx/slow:ctrl-c", "--push", "--platform", "linux/amd64")
    running.wait_for("RUN echo")  # the heartbeat names the step in flight
    os.kill(running.proc.pid, signal.SIGINT)
    code, out, err = running.finish()
    assert code == 130, err
    amd64 = out["nodes"]["linux/amd64"]
    assert amd64["interrupted"] and "RUN echo" in amd64["note"], amd64
    assert "linux/amd64 INTERRUPTED: interrupted while" in err
    assert "interrupted: 1 left in flight (linux/amd64)" in err
    assert "None" not in err
    assert list(tmpdir.glob("archfarm-build-*")) == []


@pytest.fixture
def loopback_registry(farm):
    """The lab registry at a port of its own, for this machine (a SlowProxy, 3 s a connection)
    and for both nodes (a NodeForward each): (port, the proxy)."""
    proxy = SlowProxy(delay=3)
    forwards = [NodeForward(f"archfarm-bx-{node}", proxy.port) for node in ("arm64", "amd64")]
    yield proxy.port, proxy
    proxy.lose()
    for forward in forwards:
        forward.lose()


def test_sigint_to_the_process_during_the_merge_exits_130_and_says_how_to_finish(
        farm, loopback_registry, tmp_path):
    path, _ = farm
    port, _ = loopback_registry
    tag = f"127.0.0.1:{port}/bx/merge:sigint"
    running = Running(path, tmp_path, "--context", str(REPO / "examples/hello"), "--tag", tag,
                      "--push")
    running.wait_for("merging")
    os.kill(running.proc.pid, signal.SIGINT)  # the process alone, not its group
    code, out, err = running.finish()
    assert code == 130, err
    assert all(p["digest"] for p in out["platforms"]), out  # the platforms stay in the recap
    index = out["nodes"]["index"]
    assert index["interrupted"] and f"to finish run `{index['finish']}`" in index["note"]
    assert index["finish"] in err  # the human recap says it too
    finish = subprocess.run(index["finish"].split(), capture_output=True, text=True, timeout=120)
    assert finish.returncode == 0, finish.stderr
    raw = json.loads(docker("buildx", "imagetools", "inspect", "--raw", tag).stdout)
    assert {m["platform"]["architecture"] for m in images(raw)} == {"arm64", "amd64"}


def test_a_failed_merge_keeps_the_per_platform_recap_and_says_how_to_finish(
        farm, loopback_registry, tmp_path):
    path, _ = farm
    port, proxy = loopback_registry
    running = Running(path, tmp_path, "--context", str(REPO / "examples/hello"), "--tag",
                      f"127.0.0.1:{port}/bx/merge:lost", "--push")
    running.wait_for("merging")
    proxy.lose()
    code, out, err = running.finish()
    assert code == 1, err
    assert all(out["nodes"][p]["failed"] == 0 for p in ("linux/arm64", "linux/amd64")), out
    assert all(p["digest"] for p in out["platforms"]), out
    index = out["nodes"]["index"]
    assert index["failed"] == 1 and "the merge failed" in index["note"], index
    assert "docker buildx imagetools create --tag" in index["finish"]
    assert "index FAILED: the merge failed" in err


def test_a_registry_lost_mid_push_names_the_node_and_the_registry(farm, tmp_path):
    path, _ = farm
    with socket.create_server(("127.0.0.1", 0)) as probe:  # a port free here, for the tag
        port = probe.getsockname()[1]
    forward = NodeForward("archfarm-bx-amd64", port, delay=60)  # the push hangs on it
    try:
        running = Running(path, tmp_path, "--context", str(REPO / "examples/hello"), "--tag",
                          f"127.0.0.1:{port}/bx/lost:push", "--push", "--platform",
                          "linux/amd64")
        # the build's steps take a few seconds; then the push hangs, and the heartbeat
        # (every 10 s) must say so rather than name the last step
        running.wait_for("s: pushing the image", timeout=40)
    finally:
        forward.lose()
    code, out, err = running.finish()
    assert code == 1, err
    note = out["nodes"]["linux/amd64"]["note"]
    assert note.startswith(f"node amd64 lost the registry 127.0.0.1:{port} ("), note
    assert "make sure the registry is up and node amd64 reaches it" in note


def test_a_stopped_engine_names_the_node_what_was_lost_and_the_fix(farm, tmp_path):
    path, _ = farm
    running = Running(path, tmp_path, "--context", str(slow_context(tmp_path)), "--tag",
                      f"{REGISTRY}/bx/slow:engine", "--push", "--platform", "linux/amd64")
    running.wait_for("RUN echo")
    ssh("archfarm-bx-amd64", "sudo systemctl stop docker.socket docker")
    try:
        code, out, err = running.finish()
        assert code == 1, err
        mid_build = out["nodes"]["linux/amd64"]["note"]
        assert mid_build.startswith("node amd64 was lost mid-build"), mid_build
        assert "Fix: `inv status`, then `inv provision`" in mid_build
        code, out, err = inv("build", "-i", str(path), "--context", str(slow_context(tmp_path)),
                             "--tag", f"{REGISTRY}/bx/slow:stopped", "--push", "--platform",
                             "linux/amd64", env={"TMPDIR": str(tmp_path)})
        assert code == 1, err
        # seen before the build: the node is skipped, and with no other amd64 node the
        # platform fails at once, nothing built
        stopped = out["nodes"]["linux/amd64"]["note"]
        assert stopped == ("no node of linux/amd64 is up (amd64: its docker engine does not"
                           " answer; `inv configure` starts it)"), stopped
        assert out["down"] == {"amd64": "its docker engine does not answer; `inv configure`"
                                        " starts it"}
    finally:
        ssh("archfarm-bx-amd64", "sudo systemctl start docker")


def stop_vm(name: str) -> None:
    client = compute_v1.InstancesClient(**KW)
    # Never `.result()`: it polls through a client that ignores api_endpoint (the real cloud).
    client.stop(project=PROJECT, zone="us-central1-a", instance=name)
    deadline = time.monotonic() + 120
    while client.get(project=PROJECT, zone="us-central1-a", instance=name).status != "TERMINATED":
        assert time.monotonic() < deadline
        time.sleep(0.5)


def test_a_node_stopped_before_the_build_is_woken_and_its_wake_is_in_the_table(farm, tmp_path):
    path, _ = farm
    stop_vm("bx-arm64")
    code, out, err = build_hello(path, f"{REGISTRY}/bx/hello:woken", tmp=tmp_path)
    assert code == 0, err
    assert out["down"] == {"arm64": "its VM is TERMINATED; a build that needs it wakes it"}
    [planned] = [a for a in out["schedule"] if a["platform"] == "linux/arm64"]
    assert planned["node"] == "arm64" and planned["why"].startswith("wakes it (TERMINATED)")
    rows = {r["platform"]: r for r in out["platforms"]}
    # woken: started, its keys read again, its engine answering over the pinned ssh
    assert rows["linux/arm64"]["wake"] > 0 and rows["linux/amd64"]["wake"] is None
    assert "starting its VM (TERMINATED)" in err and "Traceback" not in err
    index = json.loads(docker("buildx", "imagetools", "inspect", "--raw",
                              f"{REGISTRY}/bx/hello:woken").stdout)
    assert {f"{m['platform']['os']}/{m['platform']['architecture']}"
            for m in images(index)} == {"linux/arm64", "linux/amd64"}
    client = compute_v1.InstancesClient(**KW)
    assert client.get(project=PROJECT, zone="us-central1-a",
                      instance="bx-arm64").status == "RUNNING"


def preempt(instance: str) -> dict:
    """The fake's preemption fault: the spot VM is stopped as Compute Engine reclaims it."""
    body = {"project": PROJECT, "zone": "us-central1-a", "instance": instance}
    request = urllib.request.Request(f"{ENDPOINT}/_fake/preempt", method="POST",
                                     data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_a_spot_node_preempted_mid_build_has_only_its_platform_retried_once_started_again(
        farm, tmp_path):
    path, _ = farm
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    tag = f"{REGISTRY}/bx/slow:preempted"
    running = Running(path, tmpdir, "--context", str(slow_context(tmp_path, 15)), "--tag", tag,
                      "--push")
    running.wait_for("RUN echo")  # both platforms are in their slow step
    preempt("bx-amd64")
    code, out, err = running.finish(timeout=600)
    assert code == 0, err
    rows = {r["platform"]: r for r in out["platforms"]}
    why = "its spot VM was preempted mid-build (TERMINATED)"
    assert rows["linux/amd64"]["node"] == "amd64"
    assert rows["linux/amd64"]["tried"] == [{"node": "amd64", "why": why}]
    assert rows["linux/amd64"]["wake"] > 0  # started again before the retry
    assert f"retried on amd64 once it was started again: {why}" in " ".join(err.split())
    # nothing else was redone: arm64 built once, where it was planned
    assert rows["linux/arm64"]["tried"] == [] and rows["linux/arm64"]["wake"] is None
    index = json.loads(docker("buildx", "imagetools", "inspect", "--raw", tag).stdout)
    assert {m["digest"] for m in images(index)} == {r["digest"] for r in rows.values()}


def test_check_shows_the_wake_and_wakes_nothing(farm, tmp_path):
    path, _ = farm
    stop_vm("bx-arm64")
    try:
        # --check: the schedule is shown and nothing is woken or built
        code, out, err = build_hello(path, f"{REGISTRY}/bx/hello:down", "--check",
                                     tmp=tmp_path)
        assert code == 0, err
        [planned] = [a for a in out["schedule"] if a["platform"] == "linux/arm64"]
        assert planned["why"].startswith("wakes it (TERMINATED)")
        client = compute_v1.InstancesClient(**KW)
        assert client.get(project=PROJECT, zone="us-central1-a",
                          instance="bx-arm64").status == "TERMINATED"
    finally:
        assert inv("vms", "-i", str(path))[0] == 0


def test_destroy_removes_builder_contexts_ssh_config_and_the_include(farm):
    path, _ = farm
    code, out, err = inv("destroy", "-i", str(path), "--yes")
    assert code == 0, err
    assert "bx" not in {json.loads(line)["Name"] for line in docker(
        "buildx", "ls", "--format", "json").stdout.splitlines()}
    assert not [line for line in docker("context", "ls", "--format", "json").stdout.splitlines()
                if "archfarm-bx-" in line]
    assert not register.farm_config("bx").exists()
    others = list((register.ssh_dir() / "archfarm").glob("*.conf"))
    config = register.ssh_dir() / "config"
    text = config.read_text() if config.exists() else ""
    assert (register.include_line() in text) == bool(others)
    assert not Path(register.ssh_dir() / "archfarm" / "bx.conf").exists()
