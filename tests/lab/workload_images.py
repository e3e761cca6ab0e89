"""The images `inv check-arm`'s workload form is tested and benchmarked on, in the lab registry.

No builds and no farm: each image is composed from the layers of the lab's run image
(`lab/debian-run:bookworm`, see provision/lab/base_images.py) with registry v2 calls. The base
layers are mounted across repositories (never uploaded again), and every manifest is made
from the base image's own bytes, so the same base gives the same digests: a second call finds
every tag already pointing at what it would push and pushes nothing.

Under `checkarm/` in the lab registry:

- `READY_IMAGE`: the run image's multi-arch index (linux/amd64 + linux/arm64), copied as is;
- `AMD64_ONLY`: its linux/amd64 manifest alone (no index); the same repository's
  `TOOL_MULTIARCH` tag is the multi-arch index, the tag a fix can propose;
- `MISLABELLED`: an index whose linux/arm64 entry has a config saying arm64 over the amd64
  layer: its manifest says arm64, its binaries (busybox, /bin/sh) are x86-64;
- `bench_images(n)`: n distinct multi-arch images, each platform the base layer plus one
  small layer of its own (`/etc/bench-<i>`), entrypoint /bin/sh.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

import requests

from provision.lab import base_images
from provision.lab.base_images import CONFIG, INDEXES, LAYER, MANIFEST, REGISTRY_ADDRESS

REGISTRY = REGISTRY_ADDRESS
BASE_REPOSITORY, BASE_TAG = "lab/debian-run", base_images.SUITE
READY_IMAGE = f"{REGISTRY}/checkarm/ready:1.0"
AMD64_ONLY = f"{REGISTRY}/checkarm/tool:1.0-amd64"
TOOL_MULTIARCH = f"{REGISTRY}/checkarm/tool:1.0"
MISLABELLED = f"{REGISTRY}/checkarm/mislabelled:1.0"
NO_COMMAND = f"{REGISTRY}/checkarm/no-command:1.0"  # multi-arch, no Entrypoint and no Cmd
INDEX = INDEXES[0]  # the Docker manifest list, as the base image's own index is
ARCHES = ("amd64", "arm64")


def _url(path: str) -> str:
    return f"http://{REGISTRY}{path}"


def _get(path: str, accept: str = "*/*") -> bytes:
    response = requests.get(_url(path), headers={"Accept": accept}, timeout=60)
    response.raise_for_status()
    return response.content


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tag_digest(repository: str, tag: str) -> str | None:
    """The digest the tag points at now, or None."""
    response = requests.head(_url(f"/v2/{repository}/manifests/{tag}"), timeout=60,
                             headers={"Accept": ", ".join([MANIFEST, *INDEXES])})
    return response.headers.get("Docker-Content-Digest") if response.ok else None


class Base:
    """The run image as the registry holds it: per arch its manifest and config (bytes)."""

    def __init__(self) -> None:
        self.index = _get(f"/v2/{BASE_REPOSITORY}/manifests/{BASE_TAG}", ", ".join(INDEXES))
        entries = json.loads(self.index)["manifests"]
        self.manifests = {e["platform"]["architecture"]: _get(
            f"/v2/{BASE_REPOSITORY}/manifests/{e['digest']}", e["mediaType"]) for e in entries}
        self.configs = {arch: _get(f"/v2/{BASE_REPOSITORY}/blobs/"
                                   f"{json.loads(m)['config']['digest']}")
                        for arch, m in self.manifests.items()}

    def layer(self, arch: str) -> dict:
        """The arch's one layer, as a manifest's `layers` entry."""
        return json.loads(self.manifests[arch])["layers"][0]

    def diff_id(self, arch: str) -> str:
        return json.loads(self.configs[arch])["rootfs"]["diff_ids"][0]


def _mount(repository: str, digest: str) -> None:
    """The base image's blob `digest` made part of `repository` without uploading it."""
    if requests.head(_url(f"/v2/{repository}/blobs/{digest}"), timeout=60).ok:
        return
    response = requests.post(_url(f"/v2/{repository}/blobs/uploads/"), timeout=60,
                             params={"mount": digest, "from": BASE_REPOSITORY})
    if response.status_code != 201:  # 202: the registry opened an upload instead
        raise RuntimeError(f"mounting {digest} from {BASE_REPOSITORY} into {repository}"
                           f" failed: {response.status_code} {response.text[:300]}")


def _push_blob(repository: str, data: bytes) -> str:
    digest = _digest(data)
    base_images._push_blob(repository, digest, len(data), data)
    return digest


def _push_manifest(repository: str, reference: str, data: bytes, media_type: str) -> str:
    """PUT the manifest under `reference` (a tag, or its digest) unless it is already there."""
    digest = _digest(data)
    if _tag_digest(repository, reference) != digest:
        base_images._request("PUT", f"/v2/{repository}/manifests/{reference}", data=data,
                             headers={"Content-Type": media_type})
    return digest


def _manifest(config: bytes, layers: list[dict]) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": _digest(config), "size": len(config)},
        "layers": layers,
    }, sort_keys=True).encode()


def _index(manifests: dict[str, bytes]) -> bytes:
    """A manifest list of one manifest an arch (arch -> its manifest's bytes)."""
    return json.dumps({
        "schemaVersion": 2, "mediaType": INDEX,
        "manifests": [{"mediaType": MANIFEST, "digest": _digest(m), "size": len(m),
                       "platform": {"architecture": arch, "os": "linux"}}
                      for arch, m in manifests.items()],
    }, sort_keys=True).encode()


def _copy_manifests(base: Base, repository: str, arches: tuple[str, ...]) -> None:
    """The base image's own per-arch manifests (and their blobs) in `repository`, by digest."""
    for arch in arches:
        _mount(repository, base.layer(arch)["digest"])
        _mount(repository, _digest(base.configs[arch]))
        _push_manifest(repository, _digest(base.manifests[arch]), base.manifests[arch],
                       MANIFEST)


def _split(ref: str) -> tuple[str, str]:
    return base_images._split(ref)


def _push_mislabelled(base: Base) -> str:
    """amd64: the base's own; arm64: the amd64 layer under a config that says arm64."""
    repository, tag = _split(MISLABELLED)
    _copy_manifests(base, repository, ("amd64",))
    config = json.loads(base.configs["amd64"])
    config["architecture"] = "arm64"
    config["history"].append({"created_by": "archfarm lab test image: the amd64 layer"
                              " labelled arm64 (mislabelled on purpose)", "empty_layer": True})
    config_bytes = json.dumps(config, sort_keys=True).encode()
    _push_blob(repository, config_bytes)
    arm64 = _manifest(config_bytes, [base.layer("amd64")])
    _push_manifest(repository, _digest(arm64), arm64, MANIFEST)
    return _push_manifest(repository, tag, _index({"amd64": base.manifests["amd64"],
                                                   "arm64": arm64}), INDEX)


def _push_no_command(base: Base) -> str:
    """The base image with its Cmd taken away: nothing says what the image runs."""
    repository, tag = _split(NO_COMMAND)
    manifests = {}
    for arch in ARCHES:
        _mount(repository, base.layer(arch)["digest"])
        config = json.loads(base.configs[arch])
        config["config"].pop("Cmd", None)
        config["config"].pop("Entrypoint", None)
        config_bytes = json.dumps(config, sort_keys=True).encode()
        _push_blob(repository, config_bytes)
        manifests[arch] = _manifest(config_bytes, [base.layer(arch)])
        _push_manifest(repository, _digest(manifests[arch]), manifests[arch], MANIFEST)
    return _push_manifest(repository, tag, _index(manifests), INDEX)


def push_test_images() -> dict[str, str]:
    """READY_IMAGE, AMD64_ONLY, TOOL_MULTIARCH, MISLABELLED and NO_COMMAND in the lab registry
    (pushed unless already there); each ref -> its digest."""
    base = Base()
    ready, ready_tag = _split(READY_IMAGE)
    _copy_manifests(base, ready, ARCHES)
    tool, amd64_tag = _split(AMD64_ONLY)
    _copy_manifests(base, tool, ARCHES)
    return {
        READY_IMAGE: _push_manifest(ready, ready_tag, base.index, INDEX),
        AMD64_ONLY: _push_manifest(tool, amd64_tag, base.manifests["amd64"], MANIFEST),
        TOOL_MULTIARCH: _push_manifest(tool, _split(TOOL_MULTIARCH)[1], base.index, INDEX),
        MISLABELLED: _push_mislabelled(base),
        NO_COMMAND: _push_no_command(base),
    }


def _small_layer(path: str, text: str) -> tuple[bytes, str]:
    """A gzip layer holding one file, the same bytes on every call; (blob, diff_id)."""
    data = text.encode()
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(path)
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        tar.addfile(info, io.BytesIO(data))
    raw = tar_bytes.getvalue()
    return gzip.compress(raw, mtime=0), _digest(raw)


def bench_image(i: int) -> str:
    return f"{REGISTRY}/checkarm/bench-{i:02d}:1.0"


def _push_bench_image(base: Base, i: int) -> str:
    repository, tag = _split(bench_image(i))
    manifests = {}
    for arch in ARCHES:
        _mount(repository, base.layer(arch)["digest"])
        blob, diff_id = _small_layer(f"etc/bench-{i}", f"bench image {i}, linux/{arch}\n")
        layer_digest = _push_blob(repository, blob)
        config = json.loads(base.configs[arch])
        config["config"].update(Entrypoint=["/bin/sh"], Cmd=["-c", f"cat /etc/bench-{i}"])
        config["rootfs"]["diff_ids"] = [base.diff_id(arch), diff_id]
        config["history"].append({"created_by": f"archfarm bench image {i}: /etc/bench-{i}"})
        config_bytes = json.dumps(config, sort_keys=True).encode()
        _push_blob(repository, config_bytes)
        manifests[arch] = _manifest(config_bytes, [
            base.layer(arch), {"mediaType": LAYER, "digest": layer_digest, "size": len(blob)}])
        _push_manifest(repository, _digest(manifests[arch]), manifests[arch], MANIFEST)
    return _push_manifest(repository, tag, _index(manifests), INDEX)


def bench_images(n: int) -> list[str]:
    """n distinct multi-arch images in the lab registry (pushed unless already there)."""
    base = Base()
    for i in range(1, n + 1):
        _push_bench_image(base, i)
    return [bench_image(i) for i in range(1, n + 1)]


def pod(name: str, **containers: str) -> str:
    """A Pod's manifest running each image under its container's name (name=image)."""
    listed = "".join(f'    - {{name: {c}, image: "{image}"}}\n' for c, image in containers.items())
    return f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n{listed}"
