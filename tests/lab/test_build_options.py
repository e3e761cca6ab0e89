"""What real projects build, on the lab's Debian 13 nodes (Docker 26, containerd image store):
a stage picked with --target, a secret that reaches only its RUN step, ssh forwarding, several
tags of one index, provenance and SBOM kept through the merge, the same fields in a bake file;
and a node pinned to Debian 12 (Docker 20.10, no containerd store) still provisioned and
building, with attestations refused on it saying why.

One 1+1 farm for the module (and a one-node Debian 12 farm for the last tests), as a user
runs them: `inv` on the command line, checked with the real docker CLI, buildx and registry.
"""

from __future__ import annotations

import gzip
import json
import os
import secrets
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from .conftest import inv, write_inventory
from .registries import ssh

pytestmark = pytest.mark.lab

PROJECT = "archfarm-opts"
REGISTRY = "127.0.0.1:5000"
SCANNER = f"{REGISTRY}/lab/sbom-scanner:bookworm"
RUN_IMAGE = f"{REGISTRY}/lab/debian-run:bookworm"
NODES = ("arm64", "amd64")
# Where anything of a build could be written on a node: the engine's stores (the build cache
# among them), temporary directories, home directories.
NODE_DISK = ("/var/lib/docker", "/var/lib/containerd", "/tmp", "/var/tmp", "/home", "/root")

DOCKERFILE = f"""\
FROM {RUN_IMAGE} AS base
LABEL stage=base
FROM base AS test
LABEL stage=test
RUN echo tested > /tested
FROM base AS final
LABEL stage=final
# The secret's length, never its value, is kept: proof the step had it.
RUN --mount=type=secret,id=token,required=true wc -c < /run/secrets/token > /token-length
"""


@pytest.fixture(scope="module")
def farm(lab, tmp_path_factory):
    """A 1+1 farm of Debian 13 nodes, provisioned once for the module; the SBOM generator is
    the lab's (Docker Hub's is out of reach)."""
    tmp = tmp_path_factory.mktemp("opts")
    path = write_inventory(tmp / "po.yaml", lab, PROJECT, "po",
                           extra=f"buildx: {{sbom_generator: {SCANNER}}}\n")
    code, out, err = inv("provision", "-i", str(path))
    assert code == 0, err
    yield path
    inv("destroy", "-i", str(path), "--yes")


@pytest.fixture(scope="module")
def context(tmp_path_factory) -> Path:
    ctx = tmp_path_factory.mktemp("ctx")
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    return ctx


@pytest.fixture
def token(tmp_path) -> tuple[str, Path]:
    """A secret value no file, image or log has yet, in a file of its own (0600)."""
    value = "archfarm-secret-" + secrets.token_hex(16)
    path = tmp_path / "token"
    path.write_text(value)
    path.chmod(0o600)
    return value, path


def build(farm: Path, context: Path, tag: str, *extra: str, env: dict | None = None
          ) -> tuple[int, dict, str]:
    return inv("build", "-i", str(farm), "--context", str(context), "--tag", tag, "--push",
               *extra, env=env)


def registry_json(path: str, accept: str = "") -> dict:
    request = urllib.request.Request(f"http://{REGISTRY}/v2/{path}",
                                     headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def imagetools(ref: str, field: str) -> dict:
    done = subprocess.run(["docker", "buildx", "imagetools", "inspect", ref, "--format",
                           "{{json ." + field + "}}"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def blobs_of(repo: str, index_digest: str) -> list[bytes]:
    """Every blob of every manifest the index lists (configs and layers, gunzipped), as the
    registry serves them."""
    index = registry_json(f"{repo}/manifests/{index_digest}",
                          "application/vnd.oci.image.index.v1+json")
    out = []
    for entry in index["manifests"]:
        manifest = registry_json(f"{repo}/manifests/{entry['digest']}", entry["mediaType"])
        for blob in [manifest["config"], *manifest.get("layers", [])]:
            with urllib.request.urlopen(f"http://{REGISTRY}/v2/{repo}/blobs/{blob['digest']}",
                                        timeout=60) as response:
                data = response.read()
            out.append(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return out


def test_every_node_runs_docker_26_on_the_containerd_image_store(farm):
    for node in NODES:
        info = json.loads(ssh(f"archfarm-po-{node}", "docker info --format '{{json .}}'"))
        assert int(info["ServerVersion"].split(".")[0]) >= 26, info["ServerVersion"]
        assert ["driver-type", "io.containerd.snapshotter.v1"] in info["DriverStatus"], \
            info["DriverStatus"]


def test_target_builds_the_named_stage(farm, context, token):
    tag = f"{REGISTRY}/po/stage:test"
    code, out, err = build(farm, context, tag, "--target", "test", "--provenance", "false")
    assert code == 0, err
    configs = imagetools(tag, "Image")
    assert {p: c["config"]["Labels"]["stage"] for p, c in configs.items()} == {
        "linux/amd64": "test", "linux/arm64": "test"}


def test_a_secret_reaches_its_step_and_nothing_else(farm, context, token, tmp_path):
    """The step had the secret (the image keeps its length), and its value is in no layer or
    config of the image, no line of output, not the --json, and nowhere on either node's
    disk (its docker and containerd stores, the build cache included)."""
    value, path = token
    tag = f"{REGISTRY}/po/secret:1"
    code, out, err = build(farm, context, tag, "--secret", f"id=token,src={path}")
    assert code == 0, err
    blobs = blobs_of("po/secret", out["digest"])
    assert len(blobs) >= 4, "two platforms, each a config and layers"
    assert not [b for b in blobs if value.encode() in b]
    assert value not in json.dumps(out) + err
    for node in NODES:
        found = subprocess.run(
            ["ssh", "-o", "BatchMode=yes", f"archfarm-po-{node}",
             f"sudo grep -rlF -D skip {value} {' '.join(NODE_DISK)}; echo grep-exit=$?"],
            capture_output=True, text=True, timeout=300)
        assert found.stdout.strip() == "grep-exit=1", (node, found.stdout, found.stderr)


def test_a_failing_build_with_a_secret_keeps_its_value_out_of_the_kept_log(
        farm, token, tmp_path):
    value, path = token
    ctx = tmp_path / "fails"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {RUN_IMAGE}\nRUN --mount=type=secret,id=token test -s /run/secrets/token\n"
        "RUN echo failing on purpose; false\n")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    code, out, err = build(farm, ctx, f"{REGISTRY}/po/fails:1", "--secret",
                           f"id=token,src={path}", env={"TMPDIR": str(tmp)})
    assert code == 1, err
    logs = list(tmp.glob("archfarm-build-*/*.log"))
    assert logs and all("failing on purpose" in log.read_text() for log in logs
                        if "index" not in log.name), logs
    assert not [log for log in logs if value in log.read_text()]
    assert value not in json.dumps(out) + err


def test_ssh_default_forwards_this_machines_agent_to_the_step(farm, tmp_path):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        env = {"SSH_AUTH_SOCK": str(sock)}
        for _ in range(50):
            if sock.exists():
                break
            subprocess.run(["sleep", "0.1"])
        subprocess.run(["ssh-add", str(key)], env={**os.environ, **env}, check=True,
                       capture_output=True)
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(
            f"FROM {RUN_IMAGE}\nRUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\"\n")
        code, out, err = build(farm, ctx, f"{REGISTRY}/po/ssh:1", "--ssh", "default",
                               env=env)
        assert code == 0, err
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(timeout=10)


def test_two_tags_name_one_index_with_provenance_and_sbom_for_both_platforms(
        farm, context, token):
    value, path = token
    tags = [f"{REGISTRY}/po/attested:1", f"{REGISTRY}/po/attested:latest"]
    code, out, err = build(farm, context, tags[0], "--tag", tags[1], "--secret",
                           f"id=token,src={path}", "--provenance", "mode=max", "--sbom",
                           "true", "--label", "org.opencontainers.image.vendor=archfarm",
                           "--annotation", "index:org.opencontainers.image.title=attested")
    assert code == 0, err
    assert {p["platform"]: p["attestations"] for p in out["platforms"]} == {
        "linux/amd64": ["provenance", "sbom"], "linux/arm64": ["provenance", "sbom"]}, out
    digests = {subprocess.run(["docker", "buildx", "imagetools", "inspect", "--raw", tag],
                              capture_output=True, timeout=60).stdout for tag in tags}
    assert len(digests) == 1, "both tags name the same index"
    index = json.loads(digests.pop())
    assert index["annotations"]["org.opencontainers.image.title"] == "attested"
    provenance, sbom = imagetools(tags[1], "Provenance"), imagetools(tags[1], "SBOM")
    for platform in ("linux/amd64", "linux/arm64"):
        assert provenance[platform]["SLSA"]["metadata"]["buildInvocationID"], provenance
        assert sbom[platform]["SPDX"]["spdxVersion"].startswith("SPDX-2"), sbom
        labels = imagetools(tags[1], "Image")[platform]["config"]["Labels"]
        assert labels["org.opencontainers.image.vendor"] == "archfarm"
    # mode=max records the build's secrets by id only
    assert value not in json.dumps(provenance) + json.dumps(sbom)


def test_a_one_platform_build_has_its_attestations_checked_too(farm, context, token):
    """buildx prints one platform's attestations bare, not keyed by platform."""
    value, path = token
    code, out, err = build(farm, context, f"{REGISTRY}/po/one:1", "--platform", "linux/arm64",
                           "--secret", f"id=token,src={path}", "--provenance", "mode=min",
                           "--sbom", "true")
    assert code == 0, err
    assert [p["attestations"] for p in out["platforms"]] == [["provenance", "sbom"]], out


def test_a_bake_target_with_a_secret_a_stage_and_attestations(farm, context, token, tmp_path):
    value, path = token
    (tmp_path / "docker-bake.hcl").write_text(f"""
target "app" {{
  context = "{context}"
  target = "final"
  tags = ["{REGISTRY}/po/baked:1", "{REGISTRY}/po/baked:2"]
  secret = ["id=token,src={path}"]
  attest = ["type=provenance,mode=max", "type=sbom"]
  labels = {{ "team" = "ops" }}
}}
""")
    code, out, err = inv("bake", "-i", str(farm), "--file", str(tmp_path / "docker-bake.hcl"),
                         "app")
    assert code == 0, err
    target = out["targets"]["app"]
    assert {p["attestations"] == ["provenance", "sbom"] for p in target["platforms"]} == {True}
    labels = imagetools(f"{REGISTRY}/po/baked:2", "Image")
    assert {c["config"]["Labels"]["stage"] for c in labels.values()} == {"final"}
    assert value not in json.dumps(out) + err


# -- a node pinned to Debian 12 ------------------------------------------------------------------

@pytest.fixture(scope="module")
def bookworm(lab, tmp_path_factory):
    """One amd64 node pinned to Debian 12: docker.io 20.10, no containerd image store."""
    tmp = tmp_path_factory.mktemp("old")
    path = write_inventory(
        tmp / "old.yaml", lab, PROJECT, "old",
        nodes="  - {name: amd64, platform: linux/amd64, machine_type: n2-standard-2,"
              " image: projects/debian-cloud/global/images/family/debian-12}\n")
    code, out, err = inv("provision", "-i", str(path))
    yield path, code, out, err
    inv("destroy", "-i", str(path), "--yes")


def test_a_debian_12_pin_is_provisioned_and_says_the_store_is_off(bookworm):
    path, code, out, err = bookworm
    assert code == 0, err
    os_release = ssh("archfarm-old-amd64", "cat /etc/os-release")
    assert 'VERSION_CODENAME=bookworm' in os_release
    assert "containerd image store" in err and "amd64" in err, err


def test_a_debian_12_pin_builds_and_refuses_attestations_saying_why(bookworm, tmp_path):
    path, *_ = bookworm
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {RUN_IMAGE}\nRUN true\n")
    code, out, err = inv("build", "-i", str(path), "--context", str(ctx), "--tag",
                         f"{REGISTRY}/old/app:1", "--push")
    assert code == 0, err
    code, out, err = inv("build", "-i", str(path), "--context", str(ctx), "--tag",
                         f"{REGISTRY}/old/app:2", "--push", "--provenance", "mode=max")
    assert code == 1, err
    note = out["nodes"]["linux/amd64"]["note"]
    assert note.startswith("node amd64: its engine cannot export attestations"), note
    assert "containerd image store" in note


def test_an_index_annotation_the_classic_store_cannot_carry_is_a_failed_read_back(
        bookworm, tmp_path):
    """A Docker 20.10 node pushes Docker media types, and a Docker manifest list has no
    annotations: the read-back says so, with the fix, rather than dropping it silently."""
    path, *_ = bookworm
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {RUN_IMAGE}\nRUN true\n")
    code, out, err = inv("build", "-i", str(path), "--context", str(ctx), "--tag",
                         f"{REGISTRY}/old/app:3", "--push", "--annotation", "index:team=ops")
    assert code == 1, err
    note = out["nodes"]["index"]["note"]
    assert "lacks the annotation team=ops" in note and "containerd image store" in note, note


# -- the registry cache (issue 17, first part) ---------------------------------------------------

def forget_everything(node: str) -> None:
    """The node as if recreated: no build cache, no image."""
    ssh(f"archfarm-po-{node}", "docker builder prune -af >/dev/null && docker image ls -aq |"
        " xargs -r docker image rm -f >/dev/null; docker builder du | tail -1")


def diff_ids(ref: str) -> dict[str, list[str]]:
    return {p: c["rootfs"]["diff_ids"] for p, c in imagetools(ref, "Image").items()}


def test_a_node_that_lost_its_cache_rebuilds_from_the_registry_cache(farm, tmp_path):
    """A step whose output is random is only the same layer again if it came from a cache:
    after both nodes forget everything, `--cache registry` gives the same layers back, and a
    build without it does not."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {RUN_IMAGE}\nRUN head -c 16 /dev/urandom | od -An -tx1 > /nonce\n")
    tag = f"{REGISTRY}/po/cached:1"
    code, out, err = build(farm, ctx, tag, "--cache", "registry")
    assert code == 0, err
    first = diff_ids(tag)
    for platform in ("linux-amd64", "linux-arm64"):
        raw = subprocess.run(["docker", "buildx", "imagetools", "inspect", "--raw",
                              f"{REGISTRY}/po/cached:buildcache-{platform}"],
                             capture_output=True, text=True, timeout=60)
        assert raw.returncode == 0, raw.stderr
    for node in NODES:
        forget_everything(node)
    code, out, err = build(farm, ctx, tag, "--cache", "registry")
    assert code == 0, err
    assert diff_ids(tag) == first
    for node in NODES:
        forget_everything(node)
    code, out, err = build(farm, ctx, f"{REGISTRY}/po/cached:2")
    assert code == 0, err
    assert all(diff_ids(f"{REGISTRY}/po/cached:2")[p] != first[p] for p in first)


def test_an_unknown_cache_kind_is_bad_input(farm, context):
    code, out, err = build(farm, context, f"{REGISTRY}/po/x:1", "--cache", "s3")
    assert code == 2 and out["error"].startswith("--cache s3: not a kind of cache."), out
