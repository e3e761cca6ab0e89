"""Running a schedule: each job takes a slot on a node of its platform once one is free, in the
schedule's order, and a job lost with its node is retried once on another (or, when its node
was a preempted spot VM and no other is left, on that node once it is started again).

The schedule (`schedule.py`) is the plan; this is where it meets the farm as it is. A job
starts on its planned node when that node is free, else on the best free node of its platform
(its planned node may still be busy with a slower build, or taken by another run). Every build
holds a slot on its node (`slots.py`) under the node's gate, so another `inv build` or `inv
bake` started at the same moment sees it and goes elsewhere; a node full with other runs'
builds is asked again a second later.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..runner import Cancel, Outcome, Progress
from .schedule import Assignment, NodeState
from .slots import Busy, Slot, SlotError

RECHECK_SECONDS = 1.0   # how soon a node full with other runs' builds is asked again


class NoNode(Exception):
    """No node is left that could run the job."""


class WakeFailed(Exception):
    """A node the run was to wake did not come back (`wake.py`)."""


@dataclass
class Attempt:
    """What one try of a job on a node gave: its outcome; whether the job should move to
    another node (its node went away under it, rather than the build failing on its own
    account); and whether the node is gone for the rest of the run (it no longer answers)."""

    outcome: Outcome
    move: bool = False
    node_gone: bool = False
    restart: bool = False  # the node went to sleep under it (a preempted spot VM): wake, retry


@dataclass
class _Waiting:
    pool: list[str]
    exclude: set[str] = field(default_factory=set)


class Dispatcher:
    """The nodes' slots as one run hands them out. `slot(node, capacity)` makes the slot a
    build holds on a node (ssh through its alias, for a farm); `wake(node, progress)` is
    called first, to start a node that is asleep."""

    def __init__(self, nodes: Sequence[NodeState], per_node: int, cancel: Cancel,
                 slot: Callable[[str, int], Slot],
                 wake: Callable[[str, Progress], object] = lambda node, progress: None):
        self.wake = wake  # called before a node's slot is taken: starts it if it is asleep
        self.nodes = {n.name: n for n in nodes}
        self.order = [n.name for n in nodes]
        self.per_node, self.cancel, self.slot = max(per_node, 1), cancel, slot
        self.ours = {n.name: 0 for n in nodes}       # this run's builds on each node
        self.lost: dict[str, str] = {}               # node -> why it was given up
        self.busy_until: dict[str, float] = {}       # full with other runs' builds until then
        self.waiting: dict[int, _Waiting] = {}       # ticket (schedule order) -> what it needs
        self.idle: dict[str, list[Slot]] = {}        # slots let go of, kept for a waiting job
        self.cond = threading.Condition()

    def pool(self, assignment: Assignment) -> list[str]:
        """The nodes that may run a job: its platform's up nodes (any up node, emulated)."""
        return [n for n in self.order if self.nodes[n].up and (
            assignment.emulated or self.nodes[n].platform == assignment.job.platform)]

    def _free(self, need: _Waiting, now: float) -> list[str]:
        return [n for n in need.pool if n not in self.lost and n not in need.exclude
                and self.ours[n] < self.per_node and self.busy_until.get(n, 0) <= now]

    def take(self, assignment: Assignment, ticket: int, progress: Progress,
             exclude: frozenset[str] = frozenset()) -> tuple[str, Slot]:
        """A node for the job, with its slot held: the planned node when free, else the best
        free node of its pool; waits its turn (the schedule's order) while none is free."""
        need = _Waiting(self.pool(assignment), set(exclude))
        told = False
        while True:
            with self.cond:
                name = self._choose(assignment, ticket, need, progress, told)
                told = True
                kept = self.idle.get(name, [])
                handed = kept.pop() if kept else None
                unused = self._unwanted()
            for slot in unused:
                slot.__exit__()
            if handed is not None:  # the slot a job of this run just let go of: no round trip
                return name, handed
            try:
                self.wake(name, progress)
                return name, self.slot(name, self.per_node).__enter__()
            except WakeFailed as e:
                with self.cond:
                    self.ours[name] -= 1
                progress(f"{name} did not wake ({e}); trying another node")
                self.lose(name, f"it did not wake ({e})")
            except Busy as e:
                with self.cond:
                    self.ours[name] -= 1
                    self.busy_until[name] = time.monotonic() + RECHECK_SECONDS
                    progress(f"{name} is busy with another run's builds ({e.held})")
                    self.cond.notify_all()
            except SlotError as e:
                with self.cond:
                    self.ours[name] -= 1
                progress(f"{name} gave no build slot ({e}); trying another node")
                self.lose(name, f"it gave no build slot ({e})")
            except BaseException:
                with self.cond:  # whatever went wrong, the node is not ours to hold
                    self.ours[name] -= 1
                    self.cond.notify_all()
                raise

    def _choose(self, assignment: Assignment, ticket: int, need: _Waiting, progress: Progress,
                told: bool) -> str:
        """Under the lock: wait for a free node this job may take, and count it taken."""
        self.waiting[ticket] = need
        try:
            while True:
                self.cancel.check()
                alive = [n for n in need.pool if n not in self.lost and n not in need.exclude]
                if not alive:
                    raise NoNode(self._none_left(assignment, need))
                now = time.monotonic()
                free = self._free(need, now)
                ahead = any(t < ticket and self._free(w, now) for t, w in self.waiting.items())
                if free and not ahead:
                    name = min(free, key=lambda n: (
                        n != assignment.node, self.ours[n] + self.nodes[n].in_flight,
                        assignment.job.cache_key not in self.nodes[n].warm,
                        self.order.index(n)))
                    self.ours[name] += 1
                    return name
                if not told:
                    progress(f"waiting for a free node ({', '.join(alive)} busy)")
                    told = True
                self.cond.wait(timeout=RECHECK_SECONDS / 2)
        finally:
            del self.waiting[ticket]

    def _none_left(self, assignment: Assignment, need: _Waiting) -> str:
        gone = [f"{n}: {self.lost[n]}" for n in need.pool if n in self.lost]
        what = "no other node" if need.exclude else "no node"
        return (f"{what} of {assignment.job.platform} is left to build on"
                + (f" ({'; '.join(gone)})" if gone else ""))

    def release(self, name: str, slot: Slot, keep: bool = True) -> None:
        """A job is done with its node. Its slot goes to a job of this run waiting for the
        node, if any (the node stays ours between the two builds), else it is let go (always,
        without `keep`)."""
        with self.cond:
            self.ours[name] -= 1
            wanted = keep and name not in self.lost and any(
                name in w.pool and name not in w.exclude for w in self.waiting.values())
            if wanted:
                self.idle.setdefault(name, []).append(slot)
            self.cond.notify_all()
        if not wanted:  # let go in the background: the merge or the recap need not wait for it
            threading.Thread(target=slot.__exit__, daemon=True).start()

    def _unwanted(self) -> list[Slot]:
        """Under the lock: the kept slots no waiting job can use any more, taken out."""
        out = []
        for name, kept in self.idle.items():
            if kept and (name in self.lost or not any(
                    name in w.pool and name not in w.exclude for w in self.waiting.values())):
                out += kept
                kept.clear()
        return out

    def close(self) -> None:
        """The run is over: let go of every slot still kept."""
        with self.cond:
            kept = [slot for slots in self.idle.values() for slot in slots]
            self.idle.clear()
        for slot in kept:
            slot.__exit__()

    def lose(self, name: str, why: str) -> None:
        """Give a node up for the rest of the run: its engine or connection is gone."""
        with self.cond:
            self.lost.setdefault(name, why)
            self.cond.notify_all()
            unused = self._unwanted()
        for slot in unused:
            slot.__exit__()

    def run(self, assignment: Assignment, ticket: int, progress: Progress,
            attempt: Callable[[str, int], Attempt]) -> Outcome:
        """The job on a node; once more on another node of its platform if it had to move.
        `attempt(node, n)` builds on the node (n: 0 first, 1 retry). The outcome's `tried`
        lists where it ran before and why it moved."""
        tried: list[dict[str, str]] = []
        first: Attempt | None = None
        for n in (0, 1):
            try:
                name, slot = self.take(assignment, ticket, progress,
                                       frozenset(t["node"] for t in tried))
            except NoNode as e:
                if first is None:
                    return Outcome(failures=["build"], note=str(e), extra={"tried": tried})
                if not first.restart:
                    return _not_retried(first, e)
                # No other node of the platform: the node it went to sleep on, woken again
                # (`wake` starts it before its slot is taken).
                progress(f"no other node of {assignment.job.platform}; retrying on"
                         f" {tried[-1]['node']} once it is started again")
                try:
                    name, slot = self.take(assignment, ticket, progress)
                except NoNode as again:
                    return _not_retried(first, again)
            try:
                done = attempt(name, n)
            except BaseException:
                self.release(name, slot)
                raise
            # A node gone to sleep under the build has no slot to hand on: the next job
            # to take it wakes it and takes a new one.
            self.release(name, slot, keep=not done.restart)
            done.outcome.extra["tried"] = list(tried)
            why = done.outcome.note.split("; whole log:")[0].removesuffix(
                ", then run the build again")  # it is run again, elsewhere
            if done.node_gone and not done.restart:
                # A node that went to sleep under the build stays in the pool: whichever
                # job takes it next wakes it first.
                self.lose(name, why)
            if not (done.move and done.outcome.failures) or n == 1:
                return done.outcome
            first = done
            tried.append({"node": name, "why": why})
            progress(f"{name} was lost; moving to another node of {assignment.job.platform}")
        raise AssertionError("unreachable")


def _not_retried(first: Attempt, e: NoNode) -> Outcome:
    """The first attempt's outcome, saying why it was not retried."""
    cause, _, log = first.outcome.note.partition("; whole log:")
    first.outcome.note = f"{cause}; not retried: {e}" + (f"; whole log:{log}" if log else "")
    return first.outcome
