"""The pieces of a merge build (or a bake): each platform of each image, scheduled over the
farm's nodes, then built on its node's own engine and pushed under a tag of its own.

`plan` observes the nodes and schedules the pieces (`observe.py`, `schedule.py`: nothing is
built); `build_pieces` runs them, each holding a slot on its node (`dispatch.py`), each failure
judged (did the node go away: then the piece moves once). The indexes are made by the caller.
docs/scheduling.md tells the whole story.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from .. import names
from ..inventory import Farm
from ..runner import Cancel, Outcome, Progress, Recap, run
from . import attest, docker_cli, observe, reference
from .buildlog import LOST, Where, timed_build
from .dispatch import Attempt, Dispatcher
from .request import Request, on_index
from .schedule import Assignment, NodeState, schedule
from .schedule import Job as BuildJob
from .slots import Slot
from .wake import Waker


# The merge strategy pushes each platform under a tag of its own, then makes the index from
# their digests. Docker's recipe for builds spread over machines pushes by digest instead
# (push-by-digest=true): no tag at all. But buildx refuses it for the docker driver, whatever
# the engine version ("push-by-digest is currently not implemented for docker driver",
# build/opt.go in github.com/docker/buildx, still so in its newest releases), and the merge
# strategy builds with each node's own engine through that driver: no buildkit image needed.
# So the per-platform tag has a fixed length, well within docker's 128 characters whatever
# the tag, and every build of the same tag reuses it.
def platform_tag(ref: str, platform: str) -> str:
    """Where one platform's image goes before the merge: `repo:archfarm-<hash>-linux-arm64`,
    the hash that of the whole reference."""
    digest = hashlib.sha256(ref.encode()).hexdigest()[:12]
    suffix = re.sub(r"[^A-Za-z0-9_.-]", "-", platform)[:64]
    return f"{reference.repository(ref)}:archfarm-{digest}-{suffix}"


def cache_args(req: Request, platform: str | None) -> list[str]:
    """`--cache registry`: the build cache of one platform in the image's repository, under a
    tag of its own, `buildcache-<os>-<arch>` (the builder strategy's one build: `buildcache`).
    Every platform is a build of its own, so one ref for all would keep only the last
    platform's cache. `mode=max` keeps every stage's layers, not only the final ones."""
    if req.cache != "registry":
        return []
    suffix = "-" + re.sub(r"[^A-Za-z0-9_.-]", "-", platform) if platform else ""
    ref = f"{reference.repository(req.tag)}:buildcache{suffix}"
    return [f"--cache-from=type=registry,ref={ref}",
            f"--cache-to=type=registry,ref={ref},mode=max"]


def common_args(req: Request, metadata: Path) -> list[str]:
    args = ["buildx", "build", "--progress", "plain", "--metadata-file", str(metadata)]
    if req.file:
        args += ["--file", str(Path(req.context_dir or ".") / req.file)]
    for arg in req.build_args:
        args += ["--build-arg", arg]
    for label in req.labels:
        args += ["--label", label]
    if req.stage:
        args += ["--target", req.stage]
    args += ["--no-cache"] * req.no_cache + ["--pull"] * req.pull
    for flag, values in (("--secret", req.secrets), ("--ssh", req.ssh),
                         ("--cache-from", req.cache_from), ("--cache-to", req.cache_to)):
        args += [f"{flag}={value}" for value in values]
    # The merged index's annotations are the merge strategy's to add (one platform's build
    # makes no such index, or only a small one of its own).
    args += [f"--annotation={a}" for a in req.annotations
             if req.strategy == "builder" or not on_index(a)]
    return args + attest.args(req.provenance, req.sbom)


@dataclass(frozen=True)
class Piece:
    """One platform of one image: a job of the schedule. `key` is its recap row (the platform
    for `inv build`, target/platform for `inv bake`)."""

    key: str
    req: Request
    platform: str

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]", "-", self.key)


@dataclass
class BuildPlan:
    """The nodes as observed and the schedule of the pieces on them."""

    nodes: list[NodeState]
    assignments: list[Assignment]

    @property
    def down(self) -> dict[str, str]:
        return {n.name: n.why_down for n in self.nodes if not n.up}

    @property
    def unplaced(self) -> list[Assignment]:
        return [a for a in self.assignments if a.node is None]

    def to_json(self) -> list[dict]:
        return [{"job": a.job.key, "platform": a.job.platform, "node": a.node, "why": a.why,
                 "wave": a.wave, "emulated": a.emulated} for a in self.assignments]


def plan(farm: Farm, pieces: list[Piece], per_node: int, allow_emulation: bool,
         cancel: Cancel, say: Callable[[str, str], None],
         nodes: Callable[[], list[NodeState]] | None = None) -> BuildPlan:
    """Observe the nodes (unless `nodes` gives them, observed meanwhile), then schedule the
    pieces on them (nothing is built here)."""
    seen = nodes() if nodes else observe_farm(farm, cancel, say)
    return BuildPlan(seen, schedule(jobs_of(pieces), seen, per_node, allow_emulation))


def observe_farm(farm: Farm, cancel: Cancel, say: Callable[[str, str], None]
                 ) -> list[NodeState]:
    return observe.observe(farm, farm.expanded(), cancel, observe.vm_status_from_api(farm),
                           say=say)


def jobs_of(pieces: list[Piece]) -> list[BuildJob]:
    return [BuildJob(p.key, p.platform, observe.cache_key(p.req.context_dir or Path("."),
                                                     p.req.file)) for p in pieces]


def build_pieces(farm: Farm, pieces: list[Piece], the_plan: BuildPlan, per_node: int,
                 stall: float, workdir: Path, say: Callable[[str, str], None],
                 cancel: Cancel,
                 when_done: Callable[[Piece, Outcome], None] = lambda piece, outcome: None
                 ) -> Recap:
    """Every piece on a node of its platform, in parallel as far as the nodes' slots allow,
    each pushed under its platform's own tag; `when_done` is called with each piece's outcome
    as it ends (in its thread, its node's slot let go)."""
    asleep = {a.node for a in the_plan.assignments if a.wake and a.node}
    waker = Waker(farm, cancel, asleep)
    # A node the schedule wakes is the dispatcher's to hand out: the job that gets it
    # first wakes it (`waker.ensure`), the others wait for that.
    nodes = [replace(n, up=True) if n.name in asleep else n for n in the_plan.nodes]
    dispatcher = Dispatcher(nodes, per_node, cancel, lambda node, capacity: Slot(
        observe.ssh_command(farm, node), capacity=capacity), wake=waker.ensure)
    by_key = {p.key: p for p in pieces}

    def job_for(ticket: int, assignment: Assignment) -> Callable[[Progress], Outcome]:
        piece = by_key[assignment.job.key]

        def attempt(node: str, n: int, progress: Progress) -> Attempt:
            req, platform = piece.req, piece.platform
            name = piece.slug if n == 0 else f"{piece.slug}.{node}"
            metadata, pushed = workdir / f"{name}.json", platform_tag(req.tag, platform)
            context = names.alias(farm.farm, node)
            woke = waker.seconds.get(node)  # the dispatcher woke it before its slot
            argv = [docker_cli.binary(), "--context", context, *common_args(req, metadata),
                    *cache_args(req, platform), "--platform", platform,
                    "--output", f"type=image,name={pushed},push=true", str(req.context_dir)]
            progress(f"building on {node}" + (" (moved)" if n else ""))
            seconds, failed, kind = timed_build(argv, workdir / f"{name}.log", progress,
                                                 Where(f"node {node}", context), farm, stall)
            woken = {} if woke is None else {"wake": woke}
            if failed:
                failed.extra.update(platform=platform, node=node, **woken)
                return judged(farm, node, failed, kind, progress, waker)
            digest = json.loads(metadata.read_text())["containerimage.digest"]
            return Attempt(Outcome(changes=["build"], note=f"{digest[:19]} in {seconds} s on"
                                   f" {node}", extra={"platform": platform, "node": node,
                                                      "digest": digest, "seconds": seconds,
                                                      "pushed": pushed, **woken}))

        def job(progress: Progress) -> Outcome:
            outcome = dispatcher.run(assignment, ticket, progress,
                                     lambda node, n: attempt(node, n, progress))
            when_done(piece, outcome)
            return outcome
        return job

    placed = [a for a in the_plan.assignments if a.node is not None]
    try:
        recap = run([(a.job.key, job_for(i, a)) for i, a in enumerate(placed)], cancel,
                    say=say)
    finally:
        dispatcher.close()
    observe.remember(farm, [(cache, r.extra["platform"], r.extra["node"])
                            for cache, r in _built(recap, the_plan)])
    return recap


def judged(farm: Farm, node: str, failed: Outcome, kind: str, progress: Progress,
           waker: Waker | None = None) -> Attempt:
    """A failed build: does its job move, is its node gone? The node is probed again (one
    ssh round trip, 5 s at most). Gone if it no longer answers; the job moves if its log said
    the node went away or the node is gone (a silent build on a node that answers is the
    build's own failure: another node would wait the same). A node gone with its VM
    stopped went to sleep under the build (a spot VM preempted; or idle stop, or a stop by
    hand, in the moment before the build took its slot): the job may be retried on it once
    it is started again."""
    if not kind:
        return Attempt(failed)
    progress(f"probing {node} again")
    gone = observe.probe(farm, node).engine is None
    if gone and waker is not None:
        status = observe.vm_statuses(farm).get(node, "")
        if status in observe.ASLEEP:
            spot = any(n.spot for n in farm.expanded() if n.name == node)
            _, _, log = failed.note.partition("; whole log:")
            failed.note = (f"its spot VM was preempted mid-build ({status})" if spot else
                           f"its VM stopped mid-build ({status})") + (
                f"; whole log:{log}" if log else "")
            waker.again(node)
            return Attempt(failed, move=True, node_gone=True, restart=True)
    return Attempt(failed, move=kind == LOST or gone, node_gone=gone)


def _built(recap: Recap, the_plan: BuildPlan) -> list[tuple[str, Outcome]]:
    """(cache key, outcome) of every piece that was built."""
    keys = {a.job.key: a.job.cache_key for a in the_plan.assignments}
    return [(keys[k], r) for k, r in recap.results.items() if r.changes and "node" in r.extra]


def unplaced_results(the_plan: BuildPlan) -> dict[str, Outcome]:
    """A failure for each piece no node can build (it is never started)."""
    return {a.job.key: Outcome(failures=["schedule"], note=a.why) for a in the_plan.unplaced}


def platform_row(key: str, platform: str, result: Outcome, the_plan: BuildPlan | None,
                 index: Outcome) -> dict:
    """One row of the result: where the piece ran (or was planned to), its digest, seconds,
    per-platform tag, and the nodes it left."""
    planned = next((a.node for a in the_plan.assignments if a.job.key == key), None) \
        if the_plan else None
    row = {"platform": platform, "node": result.extra.get("node", planned),
           # what the index lists: with attestations a platform is pushed as an index of
           # its own (image and attestation manifest), and the merge lists the image
           "digest": index.extra.get("listed", {}).get(platform) or result.extra.get("digest"),
           "seconds": result.extra.get("seconds"), "tried": result.extra.get("tried", []),
           # seconds its node took to wake (started from stopped) before this build; None
           "wake": result.extra.get("wake")}
    row["attestations"] = index.extra.get("attested", {}).get(platform, [])
    if "pushed" in result.extra:
        row["pushed"] = result.extra["pushed"]
    return row
