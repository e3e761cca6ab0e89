"""The lab's base images: Debian 12 from Debian packages, for linux/amd64 and linux/arm64, in
the lab registry (no base image can be pulled from Docker Hub in the lab).

- `BUILD_IMAGE`: a compiler image (debootstrap minbase with gcc and libc6-dev);
- `RUN_IMAGE`: a small runtime image (base-files, libc6, libgcc-s1 and busybox, about 5 MB);
- `SBOM_IMAGE`: BuildKit's SBOM generator for the lab, standing in for Docker Hub's
  docker/buildkit-syft-scanner: `RUN_IMAGE`'s root with `base/sbom-scan.sh` (POSIX sh and awk)
  as its command, which lists the Debian packages dpkg records in the scanned root file system.

They stay on Debian 12 while nodes boot Debian 13: they are the content of test images, not the
node platform, and moving them would only cost a rebuild.

The recipe is everything under `base/`; a hash of it is a tag of its own on each image's index
(`bookworm-<hash>`), so `ensure` asks the registry (two HEAD requests an image) and builds only
when the recipe changed or the registry lost its storage. Each platform's root file system is
built by `base/build.sh` as one layer; this module pushes it with an image config naming its
architecture (per-arch tags `bookworm-amd64` / `bookworm-arm64`), then
`docker buildx imagetools create` publishes the multi-arch index.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urljoin

from .. import platforms
from ..errors import UserError
from .image import debian_mirror, run_logged, tree_hash
from .services import REGISTRY, state_dir

RECIPE_DIR = Path(__file__).resolve().parent / "base"
REGISTRY_ADDRESS = "{}:{}".format(*REGISTRY)
SUITE = "bookworm"
BUILD_IMAGE = f"{REGISTRY_ADDRESS}/lab/debian-build:{SUITE}"
RUN_IMAGE = f"{REGISTRY_ADDRESS}/lab/debian-run:{SUITE}"
SBOM_IMAGE = f"{REGISTRY_ADDRESS}/lab/sbom-scanner:{SUITE}"
IMAGES = {BUILD_IMAGE: "build", RUN_IMAGE: "run", SBOM_IMAGE: "sbom"}  # ref -> build.sh KIND
ARCHES = tuple(a.dpkg for a in platforms.ARCHES)

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
INDEXES = ("application/vnd.docker.distribution.manifest.list.v2+json",
           "application/vnd.oci.image.index.v1+json")
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Say = Callable[[str], None]


def recipe_hash() -> str:
    return tree_hash(RECIPE_DIR)


def _split(ref: str) -> tuple[str, str]:
    """`127.0.0.1:5000/lab/x:tag` -> (`lab/x`, `tag`)."""
    name, tag = ref.removeprefix(REGISTRY_ADDRESS + "/").rsplit(":", 1)
    return name, tag


def _request(method: str, path: str, data=None, headers: dict | None = None,
             ) -> tuple[int, dict[str, str]]:
    url = urljoin(f"http://{REGISTRY_ADDRESS}", path)
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return 404, {}
        raise UserError(f"the lab registry refused {method} {path}: {e.code}"
                        f" {e.read()[:300]!r}") from None


def index_digest(ref: str) -> str | None:
    """The digest of the multi-arch index `ref` names in the lab registry, or None."""
    name, tag = _split(ref)
    try:
        status, headers = _request("HEAD", f"/v2/{name}/manifests/{tag}",
                                   headers={"Accept": ", ".join(INDEXES)})
    except (OSError, UserError):
        return None
    if status != 200 or headers.get("Content-Type") not in INDEXES:
        return None
    return headers.get("Docker-Content-Digest")


def published() -> dict[str, str | None]:
    """Each base image's ref and the digest of its index in the registry (None: not there)."""
    return {ref: index_digest(ref) for ref in IMAGES}


def _push_blob(name: str, digest: str, size: int, body) -> None:
    if _request("HEAD", f"/v2/{name}/blobs/{digest}")[0] == 200:
        return
    status, headers = _request("POST", f"/v2/{name}/blobs/uploads/")
    location = headers["Location"]
    location += ("&" if "?" in location else "?") + f"digest={digest}"
    _request("PUT", location, data=body, headers={
        "Content-Type": "application/octet-stream", "Content-Length": str(size)})


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def push_layer_image(ref: str, arch: str, out: Path, comment: str) -> str:
    """Push the one-layer image build.sh left in `out` as `ref` for linux/`arch`; its digest."""
    name, tag = _split(ref)
    layer = out / "layer.tar.gz"
    layer_digest, layer_size = _sha256_file(layer), layer.stat().st_size
    config = json.dumps({
        "architecture": arch, "os": "linux",
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": {"Env": [PATH_ENV], "Cmd": json.loads((out / "cmd.json").read_text())},
        "rootfs": {"type": "layers",
                   "diff_ids": ["sha256:" + (out / "diff-id").read_text().strip()]},
        "history": [{"created_by": comment}],
    }, sort_keys=True).encode()
    config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    with open(layer, "rb") as body:
        _push_blob(name, layer_digest, layer_size, body)
    _push_blob(name, config_digest, len(config), config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": LAYER, "digest": layer_digest, "size": layer_size}],
    }).encode()
    _request("PUT", f"/v2/{name}/manifests/{tag}", data=manifest,
             headers={"Content-Type": MANIFEST})
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def _imagetools_create(tags: list[str], sources: list[str]) -> None:
    result = subprocess.run(["docker", "buildx", "imagetools", "create",
                             *(f"--tag={t}" for t in tags), *sources],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise UserError(f"publishing {tags[0]} failed: {result.stderr.strip()[-500:]}")


@contextmanager
def _locked() -> Iterator[None]:
    """One `ensure` at a time on this host (two `lab.up` at once build once)."""
    with open(state_dir() / "base-images.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build(ref: str, arch: str, work: Path, log: Path) -> tuple[str, float]:
    """Build and push `ref`'s linux/`arch` image (output appended to `log`); digest, seconds."""
    started = time.monotonic()
    kind = IMAGES[ref]
    out = work / f"{kind}-{arch}"
    code, _, tail = run_logged([str(RECIPE_DIR / "build.sh"), kind, arch, debian_mirror(),
                                str(out)], work / f"{kind}-{arch}.log", log, f"{ref} linux/{arch}")
    if code != 0:
        raise UserError(f"building the lab base image {ref} for linux/{arch} failed: {tail}."
                        f" Fix: see {log}.")
    digest = push_layer_image(f"{ref}-{arch}", arch, out,
                              f"archfarm lab base image ({kind}), Debian {SUITE} packages,"
                              f" recipe {recipe_hash()}")
    shutil.rmtree(out)
    return digest, time.monotonic() - started


def ensure(say: Say, log: Path) -> dict[str, str]:
    """Each base image's ref -> its index digest, built and pushed unless the registry already
    has the current recipe's (build output in `log`)."""
    with _locked():
        recipe = recipe_hash()
        pinned = {ref: index_digest(f"{ref}-{recipe}") for ref in IMAGES}
        current = published()
        if all(pinned[ref] and current[ref] == pinned[ref] for ref in IMAGES):
            say(f"lab base images: cached (recipe {recipe})")
            return {ref: str(pinned[ref]) for ref in IMAGES}
        missing = [ref for ref in IMAGES if not pinned[ref]]
        if missing:
            say("lab base images: building from Debian packages (a few minutes the first"
                f" time; log in {log})")
            log.write_text("")
            with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="archfarm-lab-base.") as tmp, \
                    ThreadPoolExecutor(len(missing) * len(ARCHES)) as pool:
                jobs = {(ref, arch): pool.submit(_build, ref, arch, Path(tmp), log)
                        for ref in missing for arch in ARCHES}
                built = {key: job.result() for key, job in jobs.items()}
            for ref in missing:
                name = f"{REGISTRY_ADDRESS}/{_split(ref)[0]}"
                _imagetools_create([f"{ref}-{recipe}", ref],
                                   [f"{name}@{built[ref, arch][0]}" for arch in ARCHES])
                seconds = max(built[ref, arch][1] for arch in ARCHES)
                say(f"lab base image {ref}: built for {', '.join(ARCHES)} in {seconds:.0f} s")
        for ref in IMAGES:
            if ref not in missing and current[ref] != pinned[ref]:
                _imagetools_create([ref], [f"{ref}-{recipe}"])  # the moving tag, re-pointed
        digests = published()
        lost = [ref for ref, digest in digests.items() if not digest]
        if lost:
            raise UserError(f"the lab registry does not list {', '.join(lost)} after pushing."
                            f" Fix: see {log} and {state_dir() / 'registry.log'}.")
        return {ref: str(digest) for ref, digest in digests.items()}
