"""One runner for every stage: each node's work in isolation, in parallel, stoppable by Ctrl-C.

A job is one node's (or one resource's) work: a function of a `Progress` returning a
`NodeResult`. Whatever a job raises becomes that job's failure, described by the stage's
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
class NodeResult:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: bool = False
    interrupted: bool = False
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # stage-specific keys for --json

    @property
    def bad(self) -> bool:
        return bool(self.failed or self.unreachable or self.interrupted)

    def to_json(self) -> dict:
        out = {"ok": self.ok, "changed": self.changed, "failed": self.failed,
               "unreachable": self.unreachable, **self.extra}
        if self.note:
            out["note"] = self.note
        if self.failed:
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


Job = Callable[[Progress], NodeResult]


@dataclass
class RunResult:
    results: dict[str, NodeResult]
    interrupted: bool

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if any(r.bad for r in self.results.values()) else 0


def merge(*outcomes: RunResult) -> RunResult:
    """Several stages' outcomes as one recap: per key, counts add up and notes join."""
    results: dict[str, NodeResult] = {}
    for outcome in outcomes:
        for key, r in outcome.results.items():
            into = results.setdefault(key, NodeResult())
            into.ok += r.ok
            into.changed += r.changed
            into.failed += r.failed
            into.unreachable |= r.unreachable
            into.interrupted |= r.interrupted
            into.note = "; ".join(n for n in (into.note, r.note) if n)
            into.extra.update(r.extra)
    return RunResult(results, any(o.interrupted for o in outcomes))


def default_describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def run(jobs: Sequence[tuple[str, Job]], cancel: Cancel,
        say: Callable[[str, str], None] = lambda key, text: None,
        describe: Callable[[BaseException], str] = default_describe,
        grace: float = GRACE_SECONDS) -> RunResult:
    """Run every job (keyed for the recap) in parallel and collect one NodeResult each."""
    keys = [key for key, _ in jobs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"job keys must be unique: {sorted(keys)}")
    done: queue.Queue[tuple[str, NodeResult]] = queue.Queue()
    slots = threading.Semaphore(MAX_PARALLEL)
    progress = {key: Progress(key, say, cancel) for key, _ in jobs}

    def work(key: str, job: Job) -> None:
        result = NodeResult(failed=1, note="internal error: the job ended without a result")
        try:
            with slots:
                cancel.check()
                result = job(progress[key])
        except Interrupted:
            result = NodeResult(interrupted=True, note=_in_flight(progress[key]))
        except Exception as e:  # noqa: BLE001 (one job's failure is that job's alone)
            result = NodeResult(failed=1, note=_safely(describe, e))
        finally:
            done.put((key, result))  # always: the wait below counts on one result per job

    for key, job in jobs:
        threading.Thread(target=work, args=(key, job), name=f"job-{key}", daemon=True).start()

    results: dict[str, NodeResult] = {}
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
        results.setdefault(key, NodeResult(interrupted=True, note=_in_flight(progress[key])))
    return RunResult(results, cancel.is_set())


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
