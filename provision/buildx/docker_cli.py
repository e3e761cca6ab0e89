"""The docker CLI and its buildx plugin, driven through their machine-readable outputs
(`--format json`, `--metadata-file`, `imagetools inspect --raw`), never by scraping text."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .. import platforms
from ..errors import DockerError, UserError
from ..runner import Cancel

__all__ = ["DockerError", "Done", "binary", "run", "contexts", "builders",
           "raw_manifest", "platform_of", "config_dir", "json_lines"]

POLL_SECONDS = 0.2


@dataclass
class Done:
    stdout: str
    stderr: str
    code: int = 0


def binary() -> str:
    found = shutil.which("docker")
    if not found:
        raise UserError("the docker CLI is not installed here. Fix: install it (Debian:"
                        " `apt-get install docker.io docker-buildx`), then run `inv doctor`.")
    return found


def run(*args: str, context: str | None = None, timeout: float = 120,
        check: bool = True, cancel: Cancel | None = None) -> Done:
    """`docker [--context C] ARGS`. With `cancel`, the child is killed as soon as the run is
    cancelled and Interrupted is raised: a signal sent to this process alone (not its group)
    never reaches the docker child, so it is stopped here."""
    argv = [binary(), *(["--context", context] if context else []), *args]
    deadline = time.monotonic() + timeout
    with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as child:
        while True:
            try:  # communicate() may be called again after a timeout, losing no output
                out, err = child.communicate(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                if (cancel is not None and cancel.is_set()) or time.monotonic() > deadline:
                    child.kill()
                    child.communicate()
                    if cancel is not None:
                        cancel.check()
                    raise DockerError(args, 124, f"no answer within {timeout:.0f} s") from None
    if cancel is not None:
        cancel.check()  # a Ctrl-C on the terminal reaches the child too: it ended by it
    if check and child.returncode != 0:
        raise DockerError(args, child.returncode, err or out)
    return Done(out, err, child.returncode)


def json_lines(text: str) -> list[dict]:
    """`--format json` output: one JSON object per line (some commands print an array)."""
    out: list[dict] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        value = json.loads(line)
        out.extend(value if isinstance(value, list) else [value])
    return out


def contexts() -> dict[str, tuple[str, str]]:
    """Docker contexts: name -> (docker endpoint, description)."""
    return {c["Name"]: (c.get("DockerEndpoint", ""), c.get("Description", ""))
            for c in json_lines(run("context", "ls", "--format", "json").stdout)}


def builders() -> dict[str, dict]:
    """buildx builders by name, each `{"Driver", "Nodes": [{"Name", "Endpoint", "Platforms"}]}`
    (buildx lists a builder once per node; the entries are the same)."""
    return {b["Name"]: b for b in json_lines(run("buildx", "ls", "--format", "json",
                                                   timeout=60).stdout)}


def raw_manifest(ref: str) -> tuple[dict, str]:
    """The manifest or index of `ref` as the registry serves it, and its digest."""
    import hashlib

    raw = run("buildx", "imagetools", "inspect", "--raw", ref, timeout=120).stdout
    return json.loads(raw), "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


def platform_of(entry: dict) -> str:
    """The platform of an index entry, `os/arch[/variant]`."""
    return platforms.named(entry.get("platform", {}))


def config_dir() -> Path:
    """The docker CLI's configuration directory: $DOCKER_CONFIG, else ~/.docker."""
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
