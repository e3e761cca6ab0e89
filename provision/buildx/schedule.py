"""Which node builds which job: pure, like the cloud stage's plan (no SSH, no docker here).

A job is one image for one platform. Each goes to a node of that platform that is up (RUNNING
and answering), and among those to the least loaded: builds already in flight on its engine
(other runs, seen through their held slots) plus what this schedule has given it so far.
Ties go to the node that last built the same context and Dockerfile (its cache is warm), then
to the inventory's order. A node that is asleep (its VM stopped or suspended, as idle stop
leaves it) is woken for a job when its platform has no node up, or when the nodes up would
queue the job two builds deep: a wake costs about one build's wait, so it counts as one.
A node runs at most `per_node` builds at once; jobs beyond that wait in its queue, so the
schedule is also the order of work. The result is printed before
anything runs, is part of --json, and is where --check stops.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class NodeState:
    """One node as observed just before the schedule: up or not (and why), builds in flight
    on its engine, and the cache keys of what it built last."""

    name: str
    platform: str
    up: bool = True
    why_down: str = ""
    in_flight: int = 0
    warm: frozenset[str] = frozenset()
    asleep: str = ""         # its VM's status when stopped or suspended: a build may wake it


@dataclass(frozen=True)
class Job:
    key: str                 # the recap's row: the platform, or target/platform for bake
    platform: str
    cache_key: str = ""      # the context and Dockerfile it builds (cache affinity)


@dataclass(frozen=True)
class Assignment:
    job: Job
    node: str | None         # None: nothing can build it (why says what)
    why: str
    wave: int = 0            # 0: starts at once; n: in the node's n+1th round of builds
    emulated: bool = False   # built on a node of another platform, under QEMU
    wake: bool = False       # its node is asleep: started before the job runs


@dataclass
class _Load:
    node: NodeState
    given: list[Job] = field(default_factory=list)

    @property
    def load(self) -> int:
        return self.node.in_flight + len(self.given)

    @property
    def wake_cost(self) -> int:
        """A node still to be woken counts one build more (the wait for it to boot)."""
        return 1 if self.node.asleep and not self.given else 0


def schedule(jobs: Sequence[Job], nodes: Sequence[NodeState], per_node: int = 1,
             allow_emulation: bool = False) -> list[Assignment]:
    """Every job's node, in the jobs' order. A platform with no node up gets no node (the
    reason names each node and why it is down), unless emulation is allowed and some node
    of another platform is up."""
    loads = {n.name: _Load(n) for n in nodes}
    order = {n.name: i for i, n in enumerate(nodes)}
    out = []
    for job in jobs:
        native = [loads[n.name] for n in nodes if n.platform == job.platform
                  and (n.up or n.asleep)]
        emulated = not native and allow_emulation
        pool = native or ([loads[n.name] for n in nodes if n.up] if emulated else [])
        if not pool:
            out.append(Assignment(job, None, _nothing_up(job, nodes, allow_emulation)))
            continue
        best = min(pool, key=lambda c: (c.load + c.wake_cost, job.cache_key not in c.node.warm,
                                        bool(c.node.asleep), order[c.node.name]))
        wave = best.load // max(per_node, 1)
        why = _why(best, job, len(pool), per_node)
        if best.node.asleep:
            why = (f"woken for an earlier job, {why}" if best.given
                   else f"wakes it ({best.node.asleep}), {why}")
        out.append(Assignment(job, best.node.name, why, wave, emulated, bool(best.node.asleep)))
        best.given.append(job)
    return out


def _why(chosen: _Load, job: Job, choices: int, per_node: int) -> str:
    ahead = chosen.load - max(per_node, 1) + 1  # builds to finish before a slot is free
    parts = [f"waits for {ahead} build(s) there" if ahead > 0 else
             f"starts at once beside {chosen.load} build(s)" if chosen.load else "idle"]
    if job.cache_key and job.cache_key in chosen.node.warm:
        parts.append("warm cache")
    if choices > 1:
        parts.append(f"least busy of {choices}")
    return ", ".join(parts)


def _nothing_up(job: Job, nodes: Sequence[NodeState], allow_emulation: bool) -> str:
    same = [n for n in nodes if n.platform == job.platform]
    if not same:
        where = "no node of the farm runs it" + ("" if allow_emulation else
                                                 "; --allow-emulation builds it under QEMU")
        return f"{job.platform}: {where}"
    down = "; ".join(f"{n.name}: {n.why_down or 'down'}" for n in same)
    return f"no node of {job.platform} is up ({down})"

