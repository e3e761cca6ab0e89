"""Builds in flight on a node's engine, counted with no server of ours.

The docker driver does not show builds in flight (`docker ps` does not list them; buildx 0.13
has no `history`). So a build holds a slot on its node for as long as it runs: a lock on a file
of its own under /run/lock/archfarm, held by a shell on the node whose standard input is this
process's pipe. When the build ends, or this process dies (SIGKILL included), the pipe closes,
the shell ends and the lock goes with it: a killed run never leaves a node looking busy.
Counting the held locks is one more section of the facts round trip (`hosts/facts.py`).
"""

from __future__ import annotations

import select
import subprocess
from collections.abc import Sequence

DIR = "/run/lock/archfarm"
HELD = "held"
# A slot's file is removed when its build ends. One left by a dropped session is unlocked, and
# a count removes it once it is a minute old (a younger one may be about to be locked).


def hold_script(directory: str = DIR) -> str:
    return (f"mkdir -p -m 1777 {directory} && f=$(mktemp {directory}/build.XXXXXX) &&"
            f" flock \"$f\" sh -c 'echo {HELD}; exec cat >/dev/null'; rm -f \"$f\"")


def count_script(directory: str = DIR) -> str:
    return (f"n=0; for f in {directory}/build.*; do [ -e \"$f\" ] || continue;"
            " if flock -n \"$f\" true; then find \"$f\" -mmin +1 -delete;"
            " else n=$((n+1)); fi; done; echo $n")


class SlotError(Exception):
    """The node did not give a slot (unreachable, or no shell there)."""


class Slot:
    """One build's slot on a node, held from `__enter__` to `__exit__`. `remote` is the
    command prefix that runs a shell command on the node (`ssh ALIAS` for a farm node)."""

    def __init__(self, remote: Sequence[str], timeout: float = 15.0, directory: str = DIR):
        self.remote, self.timeout, self.directory = list(remote), timeout, directory
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Slot:
        # A session of its own: the user's Ctrl-C reaches archfarm, which then lets go here.
        self.proc = subprocess.Popen([*self.remote, hold_script(self.directory)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True, text=True)
        assert self.proc.stdout is not None
        if not select.select([self.proc.stdout], [], [], self.timeout)[0] or \
                self.proc.stdout.readline().strip() != HELD:
            self.__exit__()
            raise SlotError(f"no build slot from `{' '.join(self.remote)}` within"
                            f" {self.timeout:.0f} s")
        return self

    def __exit__(self, *exc: object) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        assert proc.stdin is not None
        proc.stdin.close()  # the remote `cat` ends, the lock goes
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def parse_count(text: str) -> int:
    """The builds section: builds in flight (0 when the section is missing or garbled)."""
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    return int(first) if first.isascii() and first.isdigit() else 0  # not int("²")
