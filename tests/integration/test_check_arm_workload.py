"""`inv check-arm --manifests/--compose` end to end, as a user runs it, against real registries
(Debian's docker-registry on loopback, one plain and one with htpasswd auth), without the lab:
images made of real tar layers, the verdicts, the fixes, the hints, --json, SARIF, stdin,
credentials from a docker config, and bad input. The lab's tests run it on the lab's images.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
import requests

from .registry_server import DockerRegistry, push_blob, push_manifest

REPO = Path(__file__).resolve().parents[2]
INV = [sys.executable, "-m", "invoke", "--search-root", str(REPO)]
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
USER, PASSWORD = "ci", "s3cret-pw"

X86_64 = Path("/bin/true").read_bytes()[:4096]  # a real x86-64 executable's first pages
# An ELF64 little-endian header for AArch64 (e_machine 183): there is no arm64 binary here.
AARCH64 = (b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
           + struct.pack("<HHIQQQIHHHHHH", 2, 183, 1, 0x400000, 64, 0, 0, 64, 56, 1, 64, 0, 0))


def layer(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    """A gzip tar layer of regular files (mode 0755) and symlinks."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return gzip.compress(raw.getvalue(), mtime=0)


def push_variant(url: str, repo: str, arch: str, binary: bytes, auth=None,
                 tag: str | None = None, extra: dict[str, bytes] | None = None,
                 settings: dict | None = None) -> dict:
    """One platform's manifest (a base layer with the binary and `extra` files, its /bin/app
    symlink above it), tagged `tag` (else ARCH-only), and its descriptor for an index."""
    blobs = [layer({"usr/bin/app": binary, **(extra or {})}),
             layer({}, {"bin/app": "../usr/bin/app"})]
    config = json.dumps({"architecture": arch, "os": "linux",
                         "config": settings or {"Entrypoint": ["/bin/app"]},
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": push_blob(url, repo, config, auth), "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": push_blob(url, repo, b, auth), "size": len(b)}
                           for b in blobs]}
    digest = push_manifest(url, repo, tag or f"{arch}-only", manifest, auth)
    return {"mediaType": OCI_MANIFEST, "digest": digest,
            "size": len(json.dumps(manifest).encode()),
            "platform": {"os": "linux", "architecture": arch}}


def push_index(url: str, repo: str, tag: str, variants: list[dict], auth=None) -> None:
    push_manifest(url, repo, tag, {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                   "manifests": variants}, auth)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """app/multi:1.0 (amd64 + arm64), app/tool:1.0-amd64 (amd64 only) beside its multi-arch
    app/tool:1.0, and app/liar:1 (an arm64 entry holding an x86-64 binary)."""
    server = DockerRegistry(tmp_path_factory.mktemp("registry"))
    url = server.url
    amd = {r: push_variant(url, r, "amd64", X86_64) for r in ("app/multi", "app/liar")}
    amd["app/tool"] = push_variant(url, "app/tool", "amd64", X86_64, tag="1.0-amd64")
    arm = {r: push_variant(url, r, "arm64", AARCH64) for r in ("app/multi", "app/tool")}
    push_index(url, "app/multi", "1.0", [amd["app/multi"], arm["app/multi"]])
    push_index(url, "app/tool", "1.0", [amd["app/tool"], arm["app/tool"]])
    liar = push_variant(url, "app/liar", "arm64", X86_64)
    push_index(url, "app/liar", "1", [amd["app/liar"], liar])
    # An index whose arm64 entry is itself an index (as some tools publish), and an image
    # whose config is not JSON at all.
    inner = push_variant(url, "app/nested", "arm64", AARCH64)
    push_index(url, "app/nested", "inner", [inner])
    inner_index = requests.get(f"{url}/v2/app/nested/manifests/inner",
                               headers={"Accept": OCI_INDEX}, timeout=10)
    push_index(url, "app/nested", "1", [{
        "mediaType": OCI_INDEX, "digest": inner_index.headers["Docker-Content-Digest"],
        "size": len(inner_index.content), "platform": {"os": "linux", "architecture": "arm64"}}])
    # arm64 through and through, but for /opt/tool, an x86-64 binary a command may run.
    push_index(url, "app/mixed", "1", [
        push_variant(url, "app/mixed", "arm64", AARCH64, extra={"opt/tool": X86_64})])
    push_index(url, "app/cmd", "1", [  # the same with a Cmd, no Entrypoint
        push_variant(url, "app/cmd", "arm64", AARCH64, extra={"opt/tool": X86_64},
                     settings={"Cmd": ["/bin/app"]})])
    garbage = push_blob(url, "app/odd", b"not json")
    push_manifest(url, "app/odd", "1", {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                        "config": {"mediaType": "application/octet-stream",
                                                   "digest": garbage, "size": 8},
                                        "layers": []})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def private(tmp_path_factory):
    """A registry that wants USER/PASSWORD, holding priv/app:1 (multi-arch)."""
    server = DockerRegistry.with_password(tmp_path_factory.mktemp("private"), USER, PASSWORD)
    auth = (USER, PASSWORD)
    push_index(server.url, "priv/app", "1",
               [push_variant(server.url, "priv/app", a, b, auth)
                for a, b in (("amd64", X86_64), ("arm64", AARCH64))], auth)
    yield server
    server.stop()


def deployment(name: str, *images: str, arm64: bool = False) -> str:
    selector = "      nodeSelector: {kubernetes.io/arch: arm64}\n" if arm64 else ""
    containers = "".join(f"      - {{name: c{i}, image: '{image}'}}\n"
                         for i, image in enumerate(images))
    return (f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n"
            f"  template:\n    spec:\n{selector}      containers:\n{containers}")


def check_arm(*args: str, cwd: Path | None = None, stdin: str | None = None,
              env: dict | None = None) -> tuple[int, dict, str]:
    """`inv check-arm ARGS --json`: exit code, the JSON object, stderr."""
    done = subprocess.run([*INV, "check-arm", *args, "--json"], capture_output=True, text=True,
                          timeout=120, cwd=cwd, input=stdin, env=env)
    lines = done.stdout.strip().splitlines()
    return done.returncode, json.loads(lines[-1]) if lines else {}, done.stderr


@pytest.fixture
def no_credentials(tmp_path, monkeypatch):
    """An empty docker config: the user's own never leaks into a test."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))


def test_a_workload_gets_one_row_per_image_with_every_use_its_verdict_and_fix(
        registry, tmp_path, no_credentials):
    host = registry.host
    (tmp_path / "k8s").mkdir()
    (tmp_path / "k8s" / "web.yaml").write_text(
        deployment("web", f"{host}/app/multi:1.0", f"{host}/app/tool:1.0-amd64"))
    (tmp_path / "k8s" / "jobs.yaml").write_text(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly}\nspec:\n"
        "  jobTemplate:\n    spec:\n      template:\n        spec:\n          initContainers:\n"
        f"          - {{name: init, image: '{host}/app/multi:1.0'}}\n          containers:\n"
        f"          - {{name: job, image: '{host}/app/liar:1'}}\n")
    code, out, err = check_arm("--manifests", str(tmp_path / "k8s"))
    assert code == 1, err
    by_image = {i["image"]: i for i in out["images"]}
    assert list(by_image) == [f"{host}/app/multi:1.0", f"{host}/app/liar:1",
                              f"{host}/app/tool:1.0-amd64"]  # files sorted, first use first
    multi, tool, liar = (by_image[f"{host}/{r}"] for r in
                         ("app/multi:1.0", "app/tool:1.0-amd64", "app/liar:1"))
    assert multi["verdict"] == "READY" and "AArch64" in multi["why"], multi
    assert multi["entrypoint"]["path"] == "/usr/bin/app"  # through the upper layer's symlink
    assert [(u["kind"], u["name"], u["container"], u["section"], Path(u["file"]).name, u["line"])
            for u in multi["used_by"]] == [
        ("CronJob", "nightly", "init", "initContainers", "jobs.yaml", 10),
        ("Deployment", "web", "c0", "containers", "web.yaml", 8)]
    assert tool["verdict"] == "NOT READY" and "no linux/arm64 variant" in tool["why"], tool
    assert f"{host}/app/tool:1.0" in tool["fix"], tool  # its multi-arch twin
    assert liar["verdict"] == "NOT READY", liar
    assert "mislabelled" in liar["why"] and "x86-64" in liar["why"], liar
    assert "inv build" in liar["fix"]
    assert out["counts"] == {"READY": 1, "NOT READY": 2, "UNKNOWN": 0}
    assert out["hints"] == []  # neither template is ready yet: fix the images first


def test_a_ready_workload_exits_0_and_is_told_the_scheduling_it_lacks(
        registry, tmp_path, no_credentials):
    image = f"{registry.host}/app/multi:1.0"
    manifests = tmp_path / "app.yaml"
    manifests.write_text(deployment("pinned", image, arm64=True) + "---\n"
                         + deployment("loose", image))
    done = subprocess.run([*INV, "check-arm", "--manifests", str(manifests)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "scheduling on GKE Arm nodes" in text and "Deployment/loose" in text, text
    assert "kubernetes.io/arch: arm64" in text and "Deployment/pinned" not in text.split(
        "scheduling on GKE Arm nodes")[1]
    assert "1 image(s): 1 READY" in text


def test_sarif_points_at_each_use_of_an_image_that_is_not_ready(registry, tmp_path,
                                                                no_credentials):
    host = registry.host
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "web.yaml").write_text(
        deployment("web", f"{host}/app/multi:1.0", f"{host}/app/liar:1"))
    (tmp_path / "out").mkdir()
    code, out, err = check_arm("--manifests", "deploy", "--sarif", "out/arm.sarif", cwd=tmp_path)
    assert code == 1, err
    sarif = json.loads((tmp_path / "out" / "arm.sarif").read_text())
    assert sarif["version"] == "2.1.0"
    [result] = sarif["runs"][0]["results"]
    assert result["ruleId"] == "arm64-not-ready" and result["level"] == "error"
    assert "mislabelled" in result["message"]["text"]
    location = result["locations"][0]["physicalLocation"]
    assert location == {"artifactLocation": {"uri": "deploy/web.yaml"},
                        "region": {"startLine": 9}}


def test_helm_output_on_stdin_and_a_compose_file_are_one_workload(registry, tmp_path,
                                                                  no_credentials):
    host = registry.host
    helm = ("---\n# Source: chart/templates/web.yaml\n"
            + deployment("web", f"{host}/app/multi:1.0", arm64=True))
    (tmp_path / "compose.yaml").write_text(
        "services:\n  api:\n    image: ${REGISTRY}/app/multi:1.0\n"
        "  worker:\n    image: ${REGISTRY}/app/tool:${TOOL_TAG:-1.0-amd64}\n"
        "  local:\n    build: .\n")
    (tmp_path / ".env").write_text(f"REGISTRY={host}\n")
    code, out, err = check_arm("--manifests", "-", "--compose", str(tmp_path / "compose.yaml"),
                               stdin=helm)
    assert code == 1, err
    uses = {i["image"]: [(u["kind"], u["name"], u["file"]) for u in i["used_by"]]
            for i in out["images"]}
    assert uses[f"{host}/app/multi:1.0"] == [
        ("Deployment", "web", "-"), ("compose", "api", str(tmp_path / "compose.yaml"))]
    assert [i["verdict"] for i in out["images"]] == ["READY", "NOT READY"]
    assert [u["name"] for u in out["unbuilt"]] == ["local"]


def test_manifest_only_trusts_the_index_and_says_the_binaries_were_not_read(
        registry, tmp_path, no_credentials):
    (tmp_path / "a.yaml").write_text(deployment("a", f"{registry.host}/app/liar:1"))
    code, out, err = check_arm("--manifests", str(tmp_path / "a.yaml"), "--manifest-only")
    assert code == 0, err
    [image] = out["images"]
    assert image["verdict"] == "READY" and "not checked" in image["why"], image
    assert image["entrypoint"] is None


def test_an_unreachable_registry_decides_nothing_for_its_images_only(registry, tmp_path,
                                                                    no_credentials):
    (tmp_path / "a.yaml").write_text(deployment("a", "127.0.0.1:9/lost/app:1",
                                                f"{registry.host}/app/multi:1.0"))
    started = time.monotonic()
    code, out, err = check_arm("--manifests", str(tmp_path / "a.yaml"))
    assert code == 1, err
    lost, multi = out["images"]
    assert lost["verdict"] == "UNKNOWN" and "127.0.0.1:9" in lost["why"], lost
    assert "refused" in lost["why"] and lost["fix"], lost
    assert multi["verdict"] == "READY"
    assert time.monotonic() - started < 8  # no retries of a refused connection


def test_a_private_registry_is_read_with_the_docker_configs_credentials(private, tmp_path):
    (tmp_path / "a.yaml").write_text(deployment("a", f"{private.host}/priv/app:1", arm64=True))
    env = {"PATH": "/usr/bin:/bin", "DOCKER_CONFIG": str(tmp_path / "none")}
    code, out, err = check_arm("--manifests", str(tmp_path / "a.yaml"), env=env)
    assert code == 1, err
    [image] = out["images"]
    assert image["verdict"] == "UNKNOWN" and f"docker login {private.host}" in image["fix"]
    config = tmp_path / "docker"
    config.mkdir()
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {private.host: {"auth": token}}}))
    code, out, err = check_arm("--manifests", str(tmp_path / "a.yaml"),
                               env={**env, "DOCKER_CONFIG": str(config)})
    assert code == 0, err
    assert PASSWORD not in json.dumps(out) + err


@pytest.mark.parametrize("args, files, words", [
    (["--manifests", "bad.yaml"], {"bad.yaml": "kind: Pod\nspec: [\n"}, ["bad.yaml:", "YAML"]),
    (["--manifests", "nowhere.yaml"], {}, ["nowhere.yaml"]),
    (["--manifests", "pod.yaml"], {"pod.yaml": "kind: Pod\nmetadata: {name: p}\nspec:\n"
                                               "  containers:\n  - {name: c, image: 'Bad Ref'}\n"},
     ["pod.yaml:5", "reference"]),
    (["--manifests", "pod.yaml", "--sarif", "no/such/dir/x.sarif"],
     {"pod.yaml": "kind: Service\n"}, ["--sarif", "no/such/dir"]),
    (["127.0.0.1:5000/x:1", "--manifests", "pod.yaml"], {"pod.yaml": "kind: Service\n"},
     ["IMAGE", "both"]),
    (["127.0.0.1:5000/x:1", "--sarif", "x.sarif"], {}, ["--sarif", "only for a workload"]),
], ids=["yaml", "missing", "reference", "sarif-dir", "image-and-workload", "sarif-one-image"])
def test_bad_input_exits_2_naming_the_file_and_the_fix(tmp_path, args, files, words):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    code, out, err = check_arm(*args, cwd=tmp_path)
    assert code == 2, (out, err)
    assert "Traceback" not in err
    for word in words:
        assert word in out["error"], out
    assert "Fix:" in out["error"]


def test_ctrl_c_stops_a_check_waiting_on_a_registry_that_never_answers(registry, tmp_path,
                                                                       no_credentials):
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    accepted = threading.Event()
    threading.Thread(target=lambda: (silent.accept(), accepted.set()), daemon=True).start()
    try:
        (tmp_path / "a.yaml").write_text(deployment(
            "a", f"127.0.0.1:{silent.getsockname()[1]}/slow/app:1",
            f"{registry.host}/app/multi:1.0"))
        check = subprocess.Popen([*INV, "check-arm", "--manifests", str(tmp_path / "a.yaml")],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert accepted.wait(60), "the check never asked the silent registry"
        time.sleep(0.5)  # its request sent, waiting for an answer that never comes
        assert check.poll() is None, check.communicate()
        os.kill(check.pid, signal.SIGINT)
        started = time.monotonic()
        out, err = check.communicate(timeout=30)
    finally:
        silent.close()
    assert check.returncode == 130, (out, err)
    assert time.monotonic() - started < 3, "Ctrl-C waited for the registry's timeout"
    assert "interrupted" in err and "Traceback" not in err


def test_an_image_of_odd_manifests_is_followed_or_unknown_and_the_rest_still_decided(
        registry, tmp_path, no_credentials):
    host = registry.host
    (tmp_path / "a.yaml").write_text(deployment("a", f"{host}/app/nested:1", f"{host}/app/odd:1",
                                                f"{host}/app/multi:1.0"))
    code, out, err = check_arm("--manifests", str(tmp_path / "a.yaml"))
    assert code == 1, err
    nested, odd, multi = out["images"]
    assert nested["verdict"] == "READY" and "AArch64" in nested["why"], nested
    assert odd["verdict"] == "UNKNOWN" and "cannot read" in odd["why"], odd
    assert "imagetools inspect" in odd["fix"]
    assert multi["verdict"] == "READY"


def test_a_compose_service_pinned_to_amd64_is_not_ready_and_one_built_here_unchecked(
        registry, tmp_path, no_credentials):
    compose = tmp_path / "compose.yaml"
    compose.write_text(f"services:\n  api:\n    image: {registry.host}/app/multi:1.0\n"
                       "    platform: linux/amd64\n")
    code, out, err = check_arm("--compose", str(compose))
    assert code == 1, err
    [api] = out["images"]
    assert api["verdict"] == "NOT READY", api
    assert "pins platform linux/amd64" in api["why"] and "compose.yaml:3" in api["why"], api
    assert "remove `platform: linux/amd64`" in api["fix"]

    compose.write_text(f"services:\n  api:\n    image: {registry.host}/app/multi:1.0\n"
                       "  web:\n    build: .\n")
    code, out, err = check_arm("--compose", str(compose), "--sarif", str(tmp_path / "s.sarif"))
    assert code == 1, err  # web has no image: nothing proves it ready
    assert [i["verdict"] for i in out["images"]] == ["READY"] and not out["ready"]
    [result] = json.loads((tmp_path / "s.sarif").read_text())["runs"][0]["results"]
    assert result["level"] == "warning" and "compose service web" in result["message"]["text"]


def test_a_command_that_runs_an_x86_binary_of_an_arm64_image_is_found_out(
        registry, tmp_path, no_credentials):
    """A container's `command:` (a compose `entrypoint:`) replaces the image's entrypoint:
    what it runs is judged too; a command the image does not hold (a volume brings it) is no
    evidence either way."""
    image = f"{registry.host}/app/mixed:1"
    (tmp_path / "k8s.yaml").write_text(
        deployment("own", image) + "---\n" + deployment("volume", image).replace(
            "image: ", "command: [/scripts/run.sh], image: "))
    code, out, err = check_arm("--manifests", str(tmp_path / "k8s.yaml"))
    assert code == 0, err
    [mixed] = out["images"]
    assert mixed["verdict"] == "READY" and "its entrypoint /bin/app" in mixed["why"], mixed

    (tmp_path / "k8s.yaml").write_text(deployment("tool", image).replace(
        "image: ", "command: [/opt/tool, --serve], image: "))
    compose = tmp_path / "compose.yaml"
    compose.write_text(f"services:\n  web:\n    image: {image}\n"
                       "    entrypoint: /opt/tool --serve\n")
    for flag, path, who in (("--manifests", tmp_path / "k8s.yaml",
                             "Deployment/tool (container c0)"),
                            ("--compose", compose, "compose service web")):
        code, out, err = check_arm(flag, str(path))
        assert code == 1, err
        [mixed] = out["images"]
        assert mixed["verdict"] == "NOT READY", mixed
        assert f"the command of {who}, /opt/tool, is an x86-64" in mixed["why"], mixed
        assert "x86-64" in mixed["why"] and "mislabelled" in mixed["why"]


def test_the_verdict_does_not_depend_on_the_order_of_the_uses(registry, tmp_path,
                                                              no_credentials):
    """Every use overrides the command: one names the image's arm64 program, one a script a
    volume brings. In either order the image is READY (the missing script is no evidence)."""
    image = f"{registry.host}/app/mixed:1"
    pods = []
    for order in (("/bin/app", "/scripts/run.sh"), ("/scripts/run.sh", "/bin/app")):
        containers = "".join(f"  - {{name: c{i}, image: '{image}', command: [{c}]}}\n"
                             for i, c in enumerate(order))
        pods.append(f"kind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n{containers}")
    verdicts = []
    for pod in pods:
        (tmp_path / "pod.yaml").write_text(pod)
        code, out, err = check_arm("--manifests", str(tmp_path / "pod.yaml"))
        verdicts.append((code, out["images"][0]["verdict"]))
    assert verdicts == [(0, "READY"), (0, "READY")]


def test_args_or_a_compose_command_name_the_program_when_the_image_has_no_entrypoint(
        registry, tmp_path, no_credentials):
    image = f"{registry.host}/app/cmd:1"
    (tmp_path / "pod.yaml").write_text(
        f"kind: Pod\nmetadata: {{name: p}}\nspec:\n  containers:\n"
        f"  - {{name: c, image: '{image}', args: [/opt/tool, --serve]}}\n")
    (tmp_path / "compose.yaml").write_text(
        f"services:\n  web:\n    image: {image}\n    command: /opt/tool --serve\n"
        "    platform: arm64\n")  # docker reads `arm64` as linux/arm64: no pin to fault
    for flag, path in (("--manifests", "pod.yaml"), ("--compose", "compose.yaml")):
        code, out, err = check_arm(flag, str(tmp_path / path))
        assert code == 1, err
        [found] = out["images"]
        assert found["verdict"] == "NOT READY" and "/opt/tool, is an x86-64" in found["why"], \
            found
        assert "pins" not in found["why"]
