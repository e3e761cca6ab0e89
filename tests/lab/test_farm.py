"""Issue 16 on a real lab farm of two nodes per platform (inventory/lab-farm.yaml): the
schedule, builds that move off a lost node, two builds at once, and `inv bake`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from google.cloud import compute_v1

from .conftest import KW, REPO, inv
from .registries import ssh
from .test_build import Running, slow_context

pytestmark = pytest.mark.lab

PROJECT = "archfarm-farm16"
FARM = "f16"
REGISTRY = "127.0.0.1:5000"
NODES = {"linux/arm64": {"arm64-1", "arm64-2"}, "linux/amd64": {"amd64-1", "amd64-2"}}
EVERY_NODE = NODES["linux/arm64"] | NODES["linux/amd64"]


@pytest.fixture(scope="module")
def farm(lab, tmp_path_factory) -> Path:
    """inventory/lab-farm.yaml in this module's own project, provisioned once (vms, configure,
    register) and destroyed at the end."""
    tmp = tmp_path_factory.mktemp("f16")
    inventory = yaml.safe_load((REPO / "inventory/lab-farm.yaml").read_text())
    inventory["farm"] = FARM
    inventory["gcp"].update(project=PROJECT, api_endpoint=lab)
    inventory["ssh"]["private_key"] = str(tmp / "farm-key")
    path = tmp / "f16.yaml"
    path.write_text(yaml.safe_dump(inventory))
    try:
        code, out, err = inv("provision", "-i", str(path))
        assert code == 0, err
        assert set(out["nodes"]) >= EVERY_NODE, out["nodes"]
        yield path
    finally:
        inv("destroy", "-i", str(path), "--yes")


def token() -> str:
    return uuid.uuid4().hex[:12]


def registry_tags(repository: str) -> set[str]:
    """The tags of `repository` in the lab registry; none when the registry never saw it."""
    try:
        with urllib.request.urlopen(f"http://{REGISTRY}/v2/{repository}/tags/list",
                                    timeout=30) as r:
            return set(json.load(r)["tags"] or [])
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return set()
        raise


def index_platforms(ref: str) -> set[str]:
    """The platforms listed by the index at `ref`, as the registry serves it."""
    raw = subprocess.run(["docker", "buildx", "imagetools", "inspect", "--raw", ref],
                         capture_output=True, text=True, timeout=120)
    assert raw.returncode == 0, raw.stderr
    return {f"{m['platform']['os']}/{m['platform']['architecture']}"
            for m in json.loads(raw.stdout)["manifests"] if m["platform"]["os"] != "unknown"}


def context(tmp_path: Path, step: str = "true") -> Path:
    """A build context whose one step runs `step` after echoing a fresh token (never cached)."""
    name = token()
    directory = tmp_path / name
    directory.mkdir()
    (directory / "Dockerfile").write_text(f"FROM {REGISTRY}/lab/debian-run:bookworm\n"
                                          f"RUN echo {name} && {step}\n")
    return directory


def bake_file(tmp_path: Path, targets: dict[str, dict], default: list[str] | None = None
              ) -> Path:
    """A docker-bake.hcl of `targets` (name -> attributes), its default group `default` (or
    every target)."""
    hcl = [f"group \"default\" {{\n  targets = {json.dumps(default or list(targets))}\n}}\n"]
    for name, attributes in targets.items():
        body = "".join(f"  {k} = {json.dumps(v if k != 'context' else str(v))}\n"
                       for k, v in attributes.items())
        hcl.append(f"target {json.dumps(name)} {{\n{body}}}\n")
    path = tmp_path / "docker-bake.hcl"
    path.write_text("\n".join(hcl))
    return path


def repository(name: str) -> str:
    """A repository of this farm no earlier run used: f16/NAME-TOKEN."""
    return f"{FARM}/{name}-{token()}"


def build(inventory: Path, context_dir: Path, tag: str, *extra: str, tmp: Path | None = None
          ) -> tuple[int, dict, str]:
    return inv("build", "-i", str(inventory), "--context", str(context_dir), "--tag", tag,
               "--push", *extra, env={"TMPDIR": str(tmp)} if tmp else None)


def nodes_of(out: dict) -> dict[str, str]:
    """platform -> the node that built it, from `inv build --json`."""
    return {p["platform"]: p["node"] for p in out["platforms"]}


def scheduled(out: dict) -> dict[str, str]:
    """job -> the node the schedule gave it."""
    return {j["job"]: j["node"] for j in out["schedule"]}


# -- stopping and starting nodes -------------------------------------------------------------

def zone_of(inventory: Path, node: str) -> str:
    code, out, err = inv("status", "-i", str(inventory))
    assert code == 0, err
    return next(n["zone"] for n in out["nodes"] if n["name"] == node)


def stop_vm(inventory: Path, node: str) -> None:
    """Stop the node's VM through the Compute Engine API, as an outage would, and wait for it."""
    client = compute_v1.InstancesClient(**KW)
    zone, vm = zone_of(inventory, node), f"{FARM}-{node}"
    # Never `.result()`: it polls through a client that ignores api_endpoint (the real cloud).
    client.stop(project=PROJECT, zone=zone, instance=vm)
    deadline = time.monotonic() + 120
    while client.get(project=PROJECT, zone=zone, instance=vm).status != "TERMINATED":
        assert time.monotonic() < deadline, f"{vm} did not stop in 120 s"
        time.sleep(0.5)


def every_engine_answers(inventory: Path, timeout: float = 180) -> None:
    """`inv vms` (starts stopped VMs), then wait until `inv status` sees every engine answer:
    the next test gets the whole farm."""
    code, _, err = inv("vms", "-i", str(inventory))
    assert code == 0, err
    deadline = time.monotonic() + timeout
    while True:
        code, out, err = inv("status", "-i", str(inventory))
        down = {**out.get("unreachable", {}), **out.get("engine_down", {})}
        running = {n["name"] for n in out.get("nodes", []) if n["status"] == "RUNNING"}
        if code == 0 and running >= EVERY_NODE and not down:
            return
        assert time.monotonic() < deadline, f"the farm is not whole again: {out or err}"
        time.sleep(3)


# -- the farm and the schedule ---------------------------------------------------------------

def test_the_farm_has_two_nodes_per_platform_and_status_shows_a_builds_column(farm):
    code, out, err = inv("status", "-i", str(farm))
    assert code == 0, err
    assert {n["name"]: n["vm"] for n in out["nodes"]} == {
        n: f"{FARM}-{n}" for n in EVERY_NODE}
    shown = subprocess.run([sys.executable, "-m", "invoke", "--search-root", str(REPO),
                            "status", "-i", str(farm)], capture_output=True, text=True,
                           timeout=300)
    assert shown.returncode == 0, shown.stderr
    # the table's header row: "name ┃ zone ┃ ... ┃ builds ┃ ..."
    header = next(line for line in shown.stdout.splitlines() if line.startswith("name "))
    assert "builds" in [cell.strip() for cell in header.split("┃")], shown.stdout


def test_a_second_register_changes_nothing_and_the_builder_pins_each_platform_once(farm):
    """buildx unpins a platform from a builder node when another node pins it: pinning both
    nodes of a platform made every register undo the last."""
    code, out, err = inv("register", "-i", str(farm))
    assert code == 0, err
    assert {n: r["changed"] for n, r in out["nodes"].items()} == {n: 0 for n in EVERY_NODE}
    code, status, err = inv("status", "-i", str(farm))
    pinned = {n["name"]: n["builder"][0] if n["builder"] else None for n in status["nodes"]}
    assert pinned == {"arm64-1": "linux/arm64", "amd64-1": "linux/amd64", "arm64-2": None,
                      "amd64-2": None}, status


def test_status_counts_a_build_in_flight_on_its_node(farm, tmp_path):
    running = Running(farm, tmp_path, "--context", str(slow_context(tmp_path, 30)), "--tag",
                      f"{REGISTRY}/{repository('busy')}:1", "--push", "--platform",
                      "linux/amd64")
    running.wait_for("RUN echo")
    code, out, err = inv("status", "-i", str(farm))
    build_code, built, build_err = running.finish()
    assert code == 0, err
    assert build_code == 0, build_err
    busy = nodes_of(built)["linux/amd64"]
    assert {n["name"]: n["builds"] for n in out["nodes"]} == {
        n: 1 if n == busy else 0 for n in EVERY_NODE}, out["nodes"]


def test_build_check_prints_the_schedule_and_builds_nothing(farm, tmp_path):
    repo = repository("check")
    code, out, err = build(farm, context(tmp_path), f"{REGISTRY}/{repo}:1", "--check")
    assert code == 0, err
    assert out["check"] is True
    # a context no node built yet: no cache affinity, so the inventory's order decides
    assert {(j["platform"], j["node"], j["wave"], j["emulated"]) for j in out["schedule"]} == {
        ("linux/arm64", "arm64-1", 0, False), ("linux/amd64", "amd64-1", 0, False)}
    assert "arm64-1" in err and "amd64-1" in err  # the plan, as a user reads it
    assert out["digest"] is None
    assert registry_tags(repo) == set()


def test_bake_check_gives_each_platforms_two_jobs_two_free_nodes_and_builds_nothing(
        farm, tmp_path):
    repos = {t: repository(t) for t in ("a", "b")}
    path = bake_file(tmp_path, {t: {"context": context(tmp_path), "tags": [f"{REGISTRY}/{r}:1"]}
                                for t, r in repos.items()})
    code, out, err = inv("bake", "-i", str(farm), "--check", str(path))
    assert code == 0, err
    assert out["check"] is True
    jobs = {j["job"]: j for j in out["schedule"]}
    assert set(jobs) == {f"{t}/{p}" for t in repos for p in NODES}, out["schedule"]
    for platform, nodes in NODES.items():
        assert {jobs[f"{t}/{platform}"]["node"] for t in repos} == nodes, out["schedule"]
    assert all(j["wave"] == 0 and not j["emulated"] for j in jobs.values()), out["schedule"]
    assert all(node in err for node in EVERY_NODE), err  # the plan, as a user reads it
    assert all(registry_tags(r) == set() for r in repos.values())


# -- inv bake --------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_bake_of_several_targets_uses_every_node(farm, tmp_path):
    repos = {t: repository(t) for t in ("a", "b", "c")}
    path = bake_file(tmp_path, {t: {"context": context(tmp_path), "tags": [f"{REGISTRY}/{r}:1"]}
                                for t, r in repos.items()})
    code, out, err = inv("bake", "-i", str(farm), str(path))
    assert code == 0, err
    assert set(out["targets"]) == set(repos)
    used = {p["node"] for t in out["targets"].values() for p in t["platforms"]}
    assert used == EVERY_NODE, out["targets"]
    for name, repo in repos.items():
        target = out["targets"][name]
        assert target["image"] == f"{REGISTRY}/{repo}:1" and target["digest"], target
        assert index_platforms(target["image"]) == set(NODES)


def test_bake_of_named_targets_builds_only_those(farm, tmp_path):
    repos = {t: repository(t) for t in ("a", "b", "c")}
    path = bake_file(tmp_path, {t: {"context": context(tmp_path), "tags": [f"{REGISTRY}/{r}:1"]}
                                for t, r in repos.items()})
    code, out, err = inv("bake", "-i", str(farm), str(path), "a", "c")
    assert code == 0, err
    assert set(out["targets"]) == {"a", "c"}
    assert "1" in registry_tags(repos["a"]) and "1" in registry_tags(repos["c"])
    assert registry_tags(repos["b"]) == set()


def test_a_failing_target_does_not_stop_the_others(farm, tmp_path):
    repos = {t: repository(t) for t in ("good", "broken", "also-good")}
    steps = {"good": "true", "broken": "false", "also-good": "true"}
    path = bake_file(tmp_path, {t: {"context": context(tmp_path, steps[t]),
                                    "tags": [f"{REGISTRY}/{r}:1"]} for t, r in repos.items()})
    code, out, err = inv("bake", "-i", str(farm), str(path), env={"TMPDIR": str(tmp_path)})
    assert code == 1, err
    assert out["targets"]["broken"]["error"], out["targets"]["broken"]
    assert out["targets"]["broken"]["digest"] is None
    assert "1" not in registry_tags(repos["broken"])
    for name in ("good", "also-good"):
        target = out["targets"][name]
        assert target["error"] is None and target["digest"], target
        assert index_platforms(target["image"]) == set(NODES)


def bad_bake(tmp_path: Path, bad: str, **attributes) -> tuple[Path, str]:
    """A bake file of a good target and the target `bad` with `attributes`; and the good
    target's repository (where a build that should not happen would push)."""
    repo = repository("good")
    path = bake_file(tmp_path, {"good": {"context": context(tmp_path),
                                         "tags": [f"{REGISTRY}/{repo}:1"]},
                                bad: {"context": context(tmp_path), **attributes}})
    return path, repo


def test_bake_of_a_missing_file_exits_2_naming_it(farm, tmp_path):
    missing = tmp_path / "no-such-bake.hcl"
    code, _, err = inv("bake", "-i", str(farm), str(missing))
    assert code == 2, err
    assert missing.name in err and "Fix" in err and "Traceback" not in err, err


def test_bake_of_an_unknown_target_exits_2_naming_it_and_builds_nothing(farm, tmp_path):
    path, repo = bad_bake(tmp_path, "other", tags=[f"{REGISTRY}/{repository('other')}:1"])
    code, _, err = inv("bake", "-i", str(farm), str(path), "good", "nonesuch")
    assert code == 2, err
    assert "nonesuch" in err and path.name in err and "Fix" in err, err
    assert registry_tags(repo) == set()


def test_bake_of_a_target_without_a_tag_exits_2_naming_it_and_builds_nothing(farm, tmp_path):
    path, repo = bad_bake(tmp_path, "untagged")
    code, _, err = inv("bake", "-i", str(farm), str(path))
    assert code == 2, err
    assert "untagged" in err and path.name in err and "tag" in err and "Fix" in err, err
    assert registry_tags(repo) == set()


def test_bake_of_a_platform_no_node_runs_exits_2_naming_it_and_builds_nothing(farm, tmp_path):
    path, repo = bad_bake(tmp_path, "mainframe", platforms=["linux/s390x"],
                          tags=[f"{REGISTRY}/{repository('mainframe')}:1"])
    code, _, err = inv("bake", "-i", str(farm), str(path))
    assert code == 2, err
    assert "mainframe" in err and "linux/s390x" in err and path.name in err, err
    assert "--allow-emulation" in err, err
    assert registry_tags(repo) == set()


# -- lost nodes and concurrent builds --------------------------------------------------------

@pytest.mark.slow
def test_ctrl_c_during_a_bake_exits_130_and_leaves_no_node_busy(farm, tmp_path):
    path = bake_file(tmp_path, {name: {"context": context(tmp_path, "sleep 60"),
                                       "tags": [f"{REGISTRY}/{repository(name)}:1"],
                                       "platforms": ["linux/amd64"]} for name in ("a", "b")})
    running = Running(farm, tmp_path, str(path), task="bake")
    running.wait_for("building on")
    running.wait_for("building on")
    running.proc.send_signal(signal.SIGINT)
    code, out, err = running.finish(timeout=60)
    assert code == 130, err
    assert out["interrupted"] is True and "run the same bake again" in err
    assert not list(tmp_path.glob("archfarm-build-*"))
    # every slot the bake held was let go with it
    code, status, err = inv("status", "-i", str(farm))
    assert code == 0 and {n["name"]: n["builds"] for n in status["nodes"]} == {
        n: 0 for n in EVERY_NODE}, status


@pytest.mark.slow
def test_two_builds_at_once_use_two_nodes_of_each_platform(farm, tmp_path):
    runs = []
    for name in ("first", "second"):
        tmpdir = tmp_path / name
        tmpdir.mkdir()
        runs.append(Running(farm, tmpdir, "--context", str(slow_context(tmpdir, 10)), "--tag",
                            f"{REGISTRY}/{repository(name)}:1", "--push"))
    (code1, first, err1), (code2, second, err2) = (r.finish() for r in runs)
    assert code1 == 0, err1
    assert code2 == 0, err2

    def used(out: dict) -> dict[str, set[str]]:  # every node a platform ran on, tries included
        return {p["platform"]: {p["node"], *(t["node"] for t in p["tried"])}
                for p in out["platforms"]}

    for platform in NODES:
        assert not used(first)[platform] & used(second)[platform], (first, second)


@pytest.mark.slow
def test_an_engine_killed_mid_build_moves_the_platform_to_its_sibling(farm, tmp_path):
    # a fresh context: no cache affinity, so the inventory's order gives it amd64-1
    running = Running(farm, tmp_path, "--context", str(slow_context(tmp_path, 20)), "--tag",
                      f"{REGISTRY}/{repository('moved')}:1", "--push", "--platform",
                      "linux/amd64")
    try:
        running.wait_for("RUN echo")
        ssh(f"archfarm-{FARM}-amd64-1", "sudo systemctl stop docker.socket docker")
        code, out, err = running.finish()
        assert code == 0, err
        [amd64] = out["platforms"]
        assert amd64["node"] == "amd64-2", out
        assert [t["node"] for t in amd64["tried"]] == ["amd64-1"], out
        assert "lost mid-build" in amd64["tried"][0]["why"], out
        assert index_platforms(out["image"]) == {"linux/amd64"}
    finally:
        ssh(f"archfarm-{FARM}-amd64-1", "sudo systemctl start docker")
        every_engine_answers(farm)


@pytest.mark.slow
def test_a_silent_build_past_the_stall_timeout_fails_and_stays_on_a_node_that_answers(
        farm, tmp_path):
    """The node answers the probe after the stall: the silence is the build's own (another
    node would wait the same), so it is not moved and the node stays in use."""
    started = time.monotonic()
    code, out, err = build(farm, context(tmp_path, "sleep 60"),
                           f"{REGISTRY}/{repository('stall')}:1", "--platform", "linux/amd64",
                           "--stall-timeout", "5", tmp=tmp_path)
    elapsed = time.monotonic() - started
    # 5 s of silence, the probe and the build's start; the step alone would take 60 s
    assert elapsed < 30, (elapsed, err)
    assert code == 1, err
    [amd64] = out["platforms"]
    assert amd64["node"] == "amd64-1" and amd64["tried"] == [], out
    note = out["nodes"]["linux/amd64"]["note"]
    assert note.startswith("node amd64-1 went silent: its build printed nothing for 5 s"), note


@pytest.fixture(scope="class")
def arm64_1_stopped(farm):
    stop_vm(farm, "arm64-1")
    try:
        # Every lab VM shares this machine's kernel: the lab must have given back the QEMU
        # handler the VM's shutdown took, which the emulated arm64-2 (and the host) builds with.
        handler = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
        assert handler.exists() and handler.read_text().startswith("enabled")
        yield farm
    finally:
        every_engine_answers(farm)


@pytest.mark.slow
class TestWithArm64_1Stopped:
    def test_a_build_still_builds_every_platform_on_the_nodes_up(self, arm64_1_stopped,
                                                                  tmp_path):
        code, out, err = build(arm64_1_stopped, REPO / "examples/hello",
                               f"{REGISTRY}/{repository('hello')}:1")
        assert code == 0, err
        assert set(out["down"]) == {"arm64-1"} and "TERMINATED" in out["down"]["arm64-1"], out
        assert nodes_of(out)["linux/arm64"] == "arm64-2", out
        assert scheduled(out)["linux/arm64"] == "arm64-2", out
        assert all(p["tried"] == [] for p in out["platforms"]), out
        assert index_platforms(out["image"]) == set(NODES)

    def test_a_silent_build_with_no_sibling_up_fails_within_the_stall_timeout(
            self, arm64_1_stopped, tmp_path):
        started = time.monotonic()
        code, out, err = build(arm64_1_stopped, context(tmp_path, "sleep 60"),
                               f"{REGISTRY}/{repository('stall')}:1", "--platform",
                               "linux/arm64", "--stall-timeout", "5", tmp=tmp_path)
        elapsed = time.monotonic() - started
        # 5 s of silence, plus the observation and the build's start; the step takes 60 s
        assert elapsed < 30, (elapsed, err)
        assert code == 1, err
        [arm64] = out["platforms"]
        assert arm64["node"] == "arm64-2" and arm64["tried"] == [], out
        note = out["nodes"]["linux/arm64"]["note"]
        assert "--stall-timeout" in note, note

    def test_a_bake_that_would_queue_two_deep_wakes_the_stopped_node(self, arm64_1_stopped,
                                                                     tmp_path):
        # Last in the class: it starts arm64-1 again. Three targets: arm64-2 takes the first
        # two (the second waits one build there, as long as a wake); the third would wait two,
        # so arm64-1 is woken for it.
        repos = {t: repository(t) for t in ("a", "b", "c")}
        path = bake_file(tmp_path, {t: {"context": context(tmp_path, "sleep 3"),
                                        "tags": [f"{REGISTRY}/{r}:1"],
                                        "platforms": ["linux/arm64"]}
                                    for t, r in repos.items()})
        code, out, err = inv("bake", "-i", str(arm64_1_stopped), str(path))
        assert code == 0, err
        woken = [a for a in out["schedule"] if a["node"] == "arm64-1"]
        assert len(woken) == 1 and woken[0]["why"].startswith("wakes it (TERMINATED)"), out
        rows = [p for t in out["targets"].values() for p in t["platforms"]]
        assert {p["node"] for p in rows} == {"arm64-1", "arm64-2"}, rows
        woke = [p["wake"] for p in rows if p["node"] == "arm64-1"]
        assert woke and all(w > 0 for w in woke), rows  # the wake in its rows
        for repo in repos.values():
            assert index_platforms(f"{REGISTRY}/{repo}:1") == {"linux/arm64"}
