"""The lab VM images: Debian debootstrapped from Debian packages, one image a suite, each
cached by recipe hash.

A node boots Debian 13 unless it pins a Debian 12 image (provision/gce/catalog.py), so the lab
has an image of each: `trixie` (Debian 13) boots every VM but those whose boot disk is a
Debian 12 image, which boot `bookworm` (`suite_for`). The recipe is everything under `image/`
(build.sh, the guest agent, the systemd units); its hash is the tag, so a changed recipe means
new images and an unchanged one is reused: `archfarm-lab-vm:<hash>-trixie` and
`archfarm-lab-vm:<hash>-bookworm`.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..errors import UserError

RECIPE_DIR = Path(__file__).resolve().parent / "image"
IMAGE_REPO = "archfarm-lab-vm"
DEFAULT_SUITE = "trixie"
SUITES = (DEFAULT_SUITE, "bookworm")  # Debian 13, Debian 12
# The public Debian 12 families (provision/fakegce/catalog.py); their images are named
# debian-12-bookworm-[arm64-]vYYYYMMDD.
BOOKWORM_FAMILY = re.compile(r"debian-12(-arm64)?")


def tree_hash(directory: Path) -> str:
    """A hash of every file under `directory`, names and contents (a recipe's hash)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def image_tag() -> str:
    """The current recipe's tag stem, `archfarm-lab-vm:<hash>`: its images are
    `<stem>-<suite>` (`suite_tags`). `inv lab.up` hands it to the lab's fake."""
    return f"{IMAGE_REPO}:{tree_hash(RECIPE_DIR)}"


def suite_tags(stem: str) -> dict[str, str]:
    """Each suite's image under the tag stem `stem`."""
    return {suite: f"{stem}-{suite}" for suite in SUITES}


def suite_for(image_project: str, image_family: str) -> str:
    """The suite of the lab image a VM boots: bookworm when its boot disk is a public Debian
    12 image, trixie for any other (Debian 13, and images the lab has no suite of)."""
    if image_project == "debian-cloud" and BOOKWORM_FAMILY.fullmatch(image_family):
        return "bookworm"
    return DEFAULT_SUITE


def debian_mirror() -> str:
    """The Debian mirror this machine's apt already uses for bookworm (it serves trixie too)."""
    texts = []
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
        try:
            texts.append(path.read_text())
        except OSError:
            continue
    for text in texts:
        for uris, suites in re.findall(r"URIs:\s*(\S+).*?\nSuites:\s*([^\n]+)", text, re.S):
            if "bookworm" in suites.split() and "security" not in uris:
                return uris.rstrip("/")
        m = re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", text, re.M)
        if m and "security" not in m.group(1):
            return m.group(1).rstrip("/")
    raise UserError("No Debian bookworm mirror found in /etc/apt/sources.list(.d). Fix: add"
                    " the bookworm 'main' suite of a Debian mirror to apt's sources.")


def run_logged(argv: Sequence[str], job_log: Path, log: Path, title: str,
               ) -> tuple[int, float, str]:
    """Run `argv` with its output in `job_log`, then append that to `log` under a line
    naming `title`, its exit status and time: (exit status, seconds, its last three lines)."""
    started = time.monotonic()
    with open(job_log, "w") as out:
        done = subprocess.run(list(argv), stdout=out, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - started
    output = job_log.read_text(errors="replace")
    with open(log, "a") as f:
        f.write(f"==== {title}: exit {done.returncode} in {seconds:.0f} s ====\n{output}")
    return done.returncode, seconds, " | ".join(output.strip().splitlines()[-3:])


def _docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True)


def _build(suite: str, tag: str, mirror: str, log: Path) -> float:
    """Build one suite's image as `tag` (output appended to `log`); its seconds."""
    job_log = log.with_name(f"{log.stem}-{suite}{log.suffix}")
    code, seconds, tail = run_logged([str(RECIPE_DIR / "build.sh"), suite, tag, mirror],
                                     job_log, log, f"{tag} (Debian {suite})")
    job_log.unlink()
    if code != 0:
        raise UserError(f"building the lab image {tag} failed: {tail}. Fix: see {log}.")
    return seconds


def ensure(say: Callable[[str], None], log: Path) -> dict[str, str]:
    """Each suite's image of the current recipe (suite -> tag), built unless the engine has
    it; the missing ones are built side by side, their output in `log`."""
    tags = suite_tags(image_tag())
    if _docker("image", "inspect", *tags.values()).returncode == 0:  # one call, warm
        say(f"lab images {', '.join(tags.values())}: cached")
        return tags
    missing = {suite: tag for suite, tag in tags.items()
               if _docker("image", "inspect", tag).returncode != 0}
    if not missing:  # the one call failed for another reason; each image is there
        return tags
    say(f"lab images {', '.join(missing.values())}: building from Debian packages (about a"
        f" minute; log in {log})")
    log.write_text("")
    mirror = debian_mirror()
    with ThreadPoolExecutor(len(missing)) as pool:
        jobs = {suite: pool.submit(_build, suite, tag, mirror, log)
                for suite, tag in missing.items()}
        for suite, job in jobs.items():
            say(f"lab image {missing[suite]}: built in {job.result():.0f} s")
    # Images of older recipes are only cache now (one a running VM still uses stays).
    old = _docker("images", "--filter", f"reference={IMAGE_REPO}",
                  "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    stale = [t for t in old if t not in tags.values()]
    if stale:
        _docker("rmi", *stale)
    return tags
