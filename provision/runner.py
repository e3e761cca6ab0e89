"""One runner for every stage: each node's work in isolation, in parallel, stoppable by Ctrl-C.

A job is one node's (or one resource's) work: a function of a `Progress` returning a
`Outcome`. Whatever a job raises becomes that job's failure, described by the stage's
`describe`; the other jobs go on. The first Ctrl-C cancels: jobs see it at their next
checkpoint (before any mutating call, and in their waits), the runner stops waiting for them
within `grace` seconds and reports what was done and what was left in flight. A second Ctrl-C
exits at once. Jobs run on daemon threads, so one stuck in a network call never holds the
process.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

GRACE_SECONDS = 2.0
MAX_PARALLEL = 32


class Interrupted(Exception):
    """The run was cancelled (Ctrl-C) before this job could go on."""


class Cancel:
    """A run's cancellation flag, checked by jobs before each mutating call and while waiting."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Interrupted()

    def sleep(self, seconds: float) -> None:
        """Sleep, or raise Interrupted as soon as the run is cancelled."""
        if self._event.wait(seconds):
            raise Interrupted()


@dataclass
class Outcome:
    """What one job (a node's, or a resource's) did, as lists of named items: those it found
    as wanted, those it changed (or, in check mode, would change) and those that failed. The
    recap's counts are derived from these lists, never added up by hand."""

    converged: list[str] = field(default_factory=list)
    changes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    unreachable: bool = False
    interrupted: bool = False
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # stage-specific keys for --json

    @classmethod
    def of(cls, items: Sequence[str], changes: Sequence[str], failed: str | None = None,
           note: str = "", extra: dict[str, Any] | None = None) -> Outcome:
        """The outcome of going through `items` in order: `changes` were changed, `failed`
        (if any) failed, and items after a failure were never reached."""
        if failed is not None and failed not in items:
            raise ValueError(f"{failed!r} is not one of {items}")
        reached = list(items[:items.index(failed)]) if failed else list(items)
        return cls(converged=[i for i in reached if i not in changes],
                   changes=[c for c in changes if c in reached],
                   failures=[failed] if failed else [], note=note, extra=extra or {})

    @property
    def ok(self) -> int:
        return len(self.converged)

    @property
    def changed(self) -> int:
        return len(self.changes)

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def bad(self) -> bool:
        return bool(self.failures or self.unreachable or self.interrupted)

    def to_json(self) -> dict:
        out = {"ok": self.ok, "changed": self.changed, "failed": self.failed,
               "unreachable": self.unreachable, "changes": self.changes, **self.extra}
        if self.note:
            out["note"] = self.note
        if self.failures:
            out["error"] = self.note
        if self.interrupted:
            out["interrupted"] = True
        return out


class Progress:
    """A job's progress callback; remembers the last thing said, for the interrupted recap."""

    def __init__(self, key: str, say: Callable[[str, str], None], cancel: Cancel):
        self.key, self._say, self.cancel = key, say, cancel
        self.last = ""
        self.closed = False  # a job abandoned after the recap must not print under it

    def __call__(self, text: str) -> None:
        self.last = text
        if not self.closed:
            self._say(self.key, text)


Job = Callable[[Progress], Outcome]


@dataclass
class Recap:
    """A stage's outcomes by key (a node, a platform, a resource) and whether it was
    interrupted: what the recap table and `--json` show."""

    results: dict[str, Outcome]
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if any(r.bad for r in self.results.values()) else 0


def merge(*recaps: Recap) -> Recap:
    """Several stages' recaps as one: per key, the lists add up and notes join."""
    results: dict[str, Outcome] = {}
    for recap in recaps:
        for key, r in recap.results.items():
            into = results.setdefault(key, Outcome())
            into.converged += r.converged
            into.changes += r.changes
            into.failures += r.failures
            into.unreachable |= r.unreachable
            into.interrupted |= r.interrupted
            into.note = "; ".join(n for n in (into.note, r.note) if n)
            into.extra.update(r.extra)
    return Recap(results, any(r.interrupted for r in recaps))


def default_describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def run(jobs: Sequence[tuple[str, Job]], cancel: Cancel,
        say: Callable[[str, str], None] = lambda key, text: None,
        describe: Callable[[BaseException], str] = default_describe,
        grace: float = GRACE_SECONDS) -> Recap:
    """Run every job (keyed for the recap) in parallel and collect one Outcome each."""
    keys = [key for key, _ in jobs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"job keys must be unique: {sorted(keys)}")
    done: queue.Queue[tuple[str, Outcome]] = queue.Queue()
    slots = threading.Semaphore(MAX_PARALLEL)
    progress = {key: Progress(key, say, cancel) for key, _ in jobs}

    def work(key: str, job: Job) -> None:
        result = Outcome(failures=["job"],
                         note="internal error: the job ended without a result")
        try:
            with slots:
                cancel.check()
                result = job(progress[key])
        except Interrupted:
            result = Outcome(interrupted=True, note=_in_flight(progress[key]))
        except Exception as e:  # noqa: BLE001 (one job's failure is that job's alone)
            result = Outcome(failures=[key], note=_safely(describe, e))
        finally:
            done.put((key, result))  # always: the wait below counts on one result per job

    for key, job in jobs:
        threading.Thread(target=work, args=(key, job), name=f"job-{key}", daemon=True).start()

    results: dict[str, Outcome] = {}
    give_up: float | None = None
    while len(results) < len(jobs):
        try:
            key, result = done.get(timeout=0.1)
            results[key] = result
        except queue.Empty:
            if cancel.is_set():
                give_up = give_up or time.monotonic() + grace
                if time.monotonic() >= give_up:
                    break
    for key, _ in jobs:  # still in flight after the grace period
        progress[key].closed = True
        results.setdefault(key, Outcome(interrupted=True, note=_in_flight(progress[key])))
    return Recap(results, cancel.is_set())


def _safely(describe: Callable[[BaseException], str], exc: BaseException) -> str:
    try:
        return describe(exc)
    except Exception:  # noqa: BLE001 (a broken description must not lose the result)
        return default_describe(exc)


def _in_flight(progress: Progress) -> str:
    return (f"interrupted while {progress.last}" if progress.last
            else "interrupted before it started")


@contextmanager
def interruptible(cancel: Cancel) -> Iterator[None]:
    """First Ctrl-C (or SIGTERM) cancels the run; a second exits at once with 130.

    Signal handlers can only be set from the main thread; elsewhere (a test's worker thread)
    the run is simply not interruptible.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        # A raw write: the main thread may be inside a print of its own, and rich (like
        # Python's streams) must not be re-entered from a signal handler.
        if cancel.is_set():
            os.write(2, b"\ninterrupted again: exiting now\n")
            os._exit(130)
        cancel.set()
        os.write(2, b"\ninterrupted: no new changes will be started;"
                    b" Ctrl-C again to exit at once\n")

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def plain_ctrl_c() -> Iterator[None]:
    """While a prompt waits for the user, Ctrl-C raises KeyboardInterrupt at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
