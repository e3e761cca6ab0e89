"""A build's log: docker's output streamed to a file while the build runs (what it is doing said
every few seconds, a build silent too long stopped), then read for the cause of a failure and
the command that repairs it."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..inventory import Farm
from ..runner import Cancel, Outcome, Progress

HEARTBEAT_SECONDS = 10.0


def step_of(line: str) -> str | None:
    """What a line of buildx's plain progress says the build is doing, when it says."""
    if re.match(r"#\d+ (exporting to image|pushing )", line):
        # the build is done; the image goes to the registry (`#12 pushing layers`, or with
        # the docker driver `#13 pushing REF with docker`), which can take a while
        return "pushing the image"
    if re.match(r"#\d+ \[", line):  # `#7 [build 3/4] RUN gcc ...`
        return line.strip()
    return None


class Streamed:
    """A docker command with its output going to a log file; what it is doing (the last build
    step seen) is reported every few seconds; the log's tail is kept for a failure's note."""

    def __init__(self, argv: list[str], log: Path, progress: Callable[[str], None],
                 cancel: Cancel, step: str = "", timeout: float | None = None,
                 stall: float | None = None):
        self.argv, self.log, self.progress, self.cancel = argv, log, progress, cancel
        self.last_step, self.timeout, self.stall = step, timeout, stall
        self.stalled = False  # killed for a log silent longer than `stall` seconds
        self.last_line = time.monotonic()

    def run(self) -> int:
        with open(self.log, "w", buffering=1) as out:  # line by line: the log is live
            proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.PIPE, text=True,
                                    stdin=subprocess.DEVNULL)
            assert proc.stderr is not None
            reader = threading.Thread(target=self._read, args=(proc.stderr, out), daemon=True)
            reader.start()
            started = next_beat = time.monotonic()
            while True:
                try:
                    proc.wait(timeout=0.2)  # returns the moment docker exits
                    break
                except subprocess.TimeoutExpired:
                    pass
                if self.cancel.is_set():
                    proc.terminate()
                if self.timeout and time.monotonic() - started > self.timeout:
                    proc.kill()
                if self.stall and time.monotonic() - self.last_line > self.stall:
                    self.stalled = True
                    proc.kill()
                if time.monotonic() >= next_beat + HEARTBEAT_SECONDS:
                    next_beat = time.monotonic()
                    self.progress(f"{time.monotonic() - started:.0f} s: {self.last_step}"[:150])
            reader.join(timeout=5)
            self.cancel.check()
            return proc.returncode

    def _read(self, stream, out) -> None:
        for line in stream:
            out.write(line)
            self.last_line = time.monotonic()
            self.last_step = step_of(line) or self.last_step

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text().splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Where:
    """Who runs a build, in a failure's words: `node amd64` (and its docker context), or
    `builder bx`."""

    who: str
    context: str | None = None


REPAIR = "Fix: `inv status`, then `inv provision`"

# What buildx says when the docker driver lacks the containerd image store (Docker < 24, or
# the store off), and what it was asked for that needs it.
NEEDS_STORE = {"Attestation is not supported for the docker driver": "attestations",
               "Cache export is not supported for the docker driver": "build cache"}

REGISTRY_URL = re.compile(r'https?://([^/"\s]+)/v2/')


def why_failed(text: str, where: Where, farm: Farm) -> str:
    """The cause of a failed build from its log, with the command that repairs it."""
    who = where.who
    if where.context and f'context "{where.context}"' in text and (
            "not found" in text or "does not exist" in text):
        return f"{who} has no docker context {where.context} on this machine. Fix: `inv register`"
    if "Cannot connect to the Docker daemon" in text:
        return f"{who}: its docker engine does not answer (stopped, or its VM is down). {REPAIR}"
    if "error during connect" in text or "dial-stdio" in text:
        return f"{who} is unreachable (its docker context over ssh failed). {REPAIR}"
    if "error reading from server" in text or "code = Unavailable" in text:
        return (f"{who} was lost mid-build (its docker engine or the ssh connection to it went"
                f" away). {REPAIR}, then run the build again")
    # Only the builder strategy needs a buildkit container, and only its boot or pull says so
    # (a merge build's own log may well name moby/buildkit, in a FROM line say).
    if where.context is None and "ERROR" in text and (
            "booting buildkit" in text or (farm.buildx.buildkit_image or "\0") in text):
        return ("the nodes could not start the buildkit container (its image cannot be"
                " pulled). Fix: set buildx.buildkit_image in the inventory to a mirror the"
                " nodes can pull, or build with --strategy merge (no buildkit image needed)")
    needs = [what for sign, what in NEEDS_STORE.items() if sign in text]
    if needs:
        return (f"{who}: its engine cannot export {' or '.join(needs)} with its own docker"
                " driver on the classic image store. Fix: Docker 24 or later with the"
                " containerd image store (inventory docker.containerd_store: true, the"
                " default, on Debian 13 nodes or docker-ce), then `inv configure`")
    lost = registry_lost(text)
    if lost:
        return (f"{who} {lost}. Fix: make sure the registry is up and {who} reaches it,"
                " then run the build again")
    return f"the build failed on {who}"


def registry_lost(text: str) -> str | None:
    """`lost the registry HOST (what docker said)` when the last error is about reaching a
    registry: a connection refused, reset or cut (EOF) on its way to `http(s)://HOST/v2/`."""
    errors = [line for line in text.splitlines() if "ERROR" in line]
    last = errors[-1] if errors else ""
    found = REGISTRY_URL.search(last)
    if not found or not re.search(r"EOF|connection (refused|reset)|timeout|no route", last):
        return None
    said = last.rpartition('": ')[2].strip()  # after the URL docker quotes
    return f"lost the registry {found[1]} ({said})"


def node_lost(text: str, where: Where) -> bool:
    """Whether a failed build's log says its node went away (its engine, its ssh connection
    or its docker context) rather than the build failing on its own account. Only docker's
    own lines count: a step's output (`#7 0.52 ...`) may say anything."""
    said = "\n".join(line for line in text.splitlines() if not re.match(r"#\d+ ", line))
    return bool(where.context) and any(sign in said for sign in (
        f'context "{where.context}"', "Cannot connect to the Docker daemon",
        "error during connect", "dial-stdio", "error reading from server",
        "code = Unavailable"))


LOST, STALLED = "lost", "stalled"


def timed_build(argv: list[str], log: Path, progress: Progress, where: Where, farm: Farm,
                 stall: float | None = None) -> tuple[float, Outcome | None, str]:
    """(seconds, None, "") when the build succeeded, else (seconds, the failure with the
    cause, where the whole log is and its tail, and LOST when the log says the node went
    away, STALLED when it went silent, else "")."""
    started = time.monotonic()
    build = Streamed(argv, log, progress, progress.cancel, step=progress.last, stall=stall)
    code = build.run()
    seconds = round(time.monotonic() - started, 1)
    if code == 0:
        return seconds, None, ""
    tail = build.tail()
    if where.context:  # docker names an ssh engine by a placeholder URL: say which it is
        tail = tail.replace("http://docker.example.com", f"ssh://{where.context}")
    if build.stalled:
        cause = (f"{where.who} went silent: its build printed nothing for {stall:g} s"
                 " (--stall-timeout, or the inventory's buildx.stall_timeout_seconds), so it"
                 " was stopped. Fix: raise the limit for a long quiet step, or `inv status`"
                 " to see the node")
    else:
        cause = why_failed(tail, where, farm)
    kind = STALLED if build.stalled else LOST if node_lost(tail, where) else ""
    return seconds, Outcome(failures=["build"], note=f"{cause}; whole log: {log}, its"
                                                     f" tail:\n{tail}",
                            extra={"seconds": seconds, "log": str(log)}), kind
