"""The lab VM image: Debian 12 debootstrapped from Debian packages, cached by recipe hash.

The recipe is everything under `image/` (build.sh, the guest agent, the systemd units); its
hash is the image tag, so a changed recipe means a new image and an unchanged one is reused.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from ..errors import UserError

RECIPE_DIR = Path(__file__).resolve().parent / "image"
IMAGE_REPO = "archfarm-lab-vm"


def image_tag() -> str:
    """The lab image's tag: a hash of its recipe."""
    digest = hashlib.sha256()
    for path in sorted(p for p in RECIPE_DIR.rglob("*") if p.is_file()):
        digest.update(path.relative_to(RECIPE_DIR).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return f"{IMAGE_REPO}:{digest.hexdigest()[:12]}"


def debian_mirror() -> str:
    """The Debian mirror this machine's apt already uses for bookworm."""
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


def _docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True)


def ensure(say: Callable[[str], None], log: Path) -> str:
    """The current recipe's image, built (output in `log`) unless the cache has it."""
    tag = image_tag()
    if _docker("image", "inspect", tag).returncode == 0:
        say(f"lab image {tag}: cached")
        return tag
    say(f"lab image {tag}: building from Debian packages (about a minute)")
    with open(log, "w") as out:
        built = subprocess.run([str(RECIPE_DIR / "build.sh"), tag, debian_mirror()],
                               stdout=out, stderr=subprocess.STDOUT)
    if built.returncode != 0:
        raise UserError(f"building the lab image failed. Fix: see {log}.")
    # Images of older recipes are only cache now.
    old = _docker("images", "--filter", f"reference={IMAGE_REPO}",
                  "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    stale = [t for t in old if t != tag]
    if stale:
        _docker("rmi", *stale)
    return tag
