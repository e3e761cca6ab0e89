"""Builds in flight on a node's engine, counted with no server of ours.

The docker driver does not show builds in flight (`docker ps` does not list them; buildx 0.13
has no `history`). So a build holds a slot on its node for as long as it runs: a lock on a file
of its own under /run/lock/archfarm, held by a shell on the node whose standard input is this
process's pipe. When the build ends, or this process dies (SIGKILL included), the pipe closes,
the shell ends and the lock goes with it: a killed run never leaves a node looking busy. A
holder also sends a heartbeat; one gone silent (a laptop asleep, a CI VM preempted: no
connection closed) loses its slot after a few missed beats.
Counting the held locks is one more section of the facts round trip (`hosts/facts.py`).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
from collections.abc import Sequence

DIR = "/run/lock/archfarm"
HEARTBEAT_SECONDS = 10.0   # a holder silent for 3 beats loses its slot
HELD = "held"
BUSY = "busy"
# A slot's file is removed when its build ends. One left by a dropped session is unlocked: a
# holder, under the gate, removes it at once (a slot's file is locked before the gate is let
# go); a count, outside the gate, once it is a minute old (a younger one may be about to be
# locked).


def hold_script(directory: str = DIR, capacity: int = 0, grace: float = 30.0) -> str:
    """Take a slot and hold it while standard input stays open and a line (the heartbeat)
    comes at least every `grace` seconds; under the directory's gate lock, so two runs that
    look at once never both take a node's last slot. With `capacity` slots held already,
    print `busy N` and end instead (0: no limit)."""
    return (f"mkdir -p -m 1777 {directory} && exec 9>>{directory}/.gate && flock 9 && n=0 &&"
            f' for f in {directory}/build.*; do [ -e "$f" ] || continue;'
            f' if flock -n "$f" true; then rm -f "$f"; else n=$((n+1)); fi; done &&'
            f' if [ {capacity} -gt 0 ] && [ "$n" -ge {capacity} ]; then echo "{BUSY} $n"; exit 0;'
            f' fi && f=$(mktemp {directory}/build.XXXXXX) && exec 8>>"$f" && flock 8 &&'
            f' exec 9>&- && echo {HELD} &&'
            f" while timeout {grace:g} sh -c 'IFS= read -r _'; do :; done; rm -f \"$f\"")


def count_script(directory: str = DIR) -> str:
    return (f"n=0; for f in {directory}/build.*; do [ -e \"$f\" ] || continue;"
            " if flock -n \"$f\" true; then find \"$f\" -mmin +1 -delete;"
            " else n=$((n+1)); fi; done; echo $n")


class SlotError(Exception):
    """The node did not give a slot (unreachable, or no shell there)."""


class Busy(Exception):
    """Every slot of the node is taken (by this run or another); `held` says how many."""

    def __init__(self, held: int):
        super().__init__(f"{held} build(s) in flight")
        self.held = held


class Slot:
    """One build's slot on a node, held from `__enter__` to `__exit__`. `remote` is the
    command prefix that runs a shell command on the node (`ssh ALIAS` for a farm node)."""

    def __init__(self, remote: Sequence[str], timeout: float = 15.0, directory: str = DIR,
                 capacity: int = 0, heartbeat: float = HEARTBEAT_SECONDS):
        self.remote, self.timeout, self.directory = list(remote), timeout, directory
        self.capacity = capacity  # 0: take a slot whatever the count
        self.heartbeat = heartbeat
        self.proc: subprocess.Popen | None = None
        self.stopped = threading.Event()
        self.lock = threading.Lock()  # the heartbeat and __exit__ both touch stdin

    def __enter__(self) -> Slot:
        # A session of its own: the user's Ctrl-C reaches archfarm, which then lets go here.
        script = hold_script(self.directory, self.capacity, grace=3 * self.heartbeat)
        proc = self.proc = subprocess.Popen(
            [*self.remote, script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, start_new_session=True, text=True)
        assert proc.stdout is not None and proc.stderr is not None
        said, answered = "", bool(select.select([proc.stdout], [], [], self.timeout)[0])
        if answered:
            said = proc.stdout.readline().strip()
        if said == HELD:
            threading.Thread(target=self._beat, daemon=True).start()
            return self
        self._close(grace=0.5 if answered else 0)  # no answer: nothing worth waiting for
        word, _, held = said.partition(" ")
        if word == BUSY and held.isdigit():
            raise Busy(int(held))
        error = proc.stderr.read().strip().splitlines() if proc.poll() is not None else []
        raise SlotError(error[-1] if error else
                        f"no answer from `{' '.join(self.remote)}` within {self.timeout:.0f} s"
                        if not answered else f"`{' '.join(self.remote)}` gave no slot")

    def _beat(self) -> None:
        while not self.stopped.wait(self.heartbeat):
            with self.lock:
                if self.proc is None:
                    return
                try:
                    assert self.proc.stdin is not None
                    self.proc.stdin.write("\n")
                    self.proc.stdin.flush()
                except (OSError, ValueError):  # the holder is gone: nothing left to keep
                    return

    def __exit__(self, *exc: object) -> None:
        self._close(grace=5.0)

    def _close(self, grace: float) -> None:
        """Let go: end the holder's input, give it `grace` seconds to end, then kill it."""
        self.stopped.set()
        with self.lock:
            proc, self.proc = self.proc, None
        if proc is None:
            return
        assert proc.stdin is not None
        with contextlib.suppress(OSError):
            proc.stdin.close()  # the remote loop reads the end, the lock goes
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            # its session is its own (start_new_session): whatever it started goes too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def parse_count(text: str) -> int:
    """The builds section: builds in flight (0 when the section is missing or garbled)."""
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    return int(first) if first.isascii() and first.isdigit() else 0  # not int("²")
