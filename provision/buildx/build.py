"""`inv build`: one multi-arch image, each platform compiled on a node of that architecture.

Two strategies. `merge`: each platform is a piece scheduled on the least busy node of its
platform and built on that node's own engine (through its docker context), pushed, and the
per-platform digests are merged into one index with `imagetools create`; it needs no buildkit
image (`pieces.py` schedules and builds the pieces). `builder`: one `buildx build` on the
farm's builder, whose nodes are pinned to their platforms, so buildx sends each platform to
its native node. Either way the pushed index is read back and must list every platform.

The logs go to a temporary `archfarm-build-*` directory (`buildlog.py` reads them for a
failure's cause). It is removed at the end unless a build failed; then each failure names its
log, and the recap the directory.
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import names
from ..errors import DockerError
from ..inventory import Farm
from ..runner import Cancel, Job, Outcome, Progress, Recap, run
from . import attest, docker_cli, reference
from .buildlog import Streamed, Where, registry_lost, timed_build
from .pieces import (
    BuildPlan,
    Piece,
    build_pieces,
    cache_args,
    common_args,
    plan,
    platform_row,
    unplaced_results,
)
from .request import Request, check_request, on_index

MERGE_TIMEOUT = 300.0


def tag_args(req: Request) -> list[str]:
    """`--tag` for each tag of the request: every one names the same index."""
    return [arg for tag in (req.tag, *req.also_tags) for arg in ("--tag", tag)]


def builder_argv(req: Request, builder: str, platforms: list[str], metadata: Path
                 ) -> list[str]:
    """The builder strategy's one `buildx build`: every tag names its index."""
    where = [*tag_args(req), "--push"] if req.push else \
        ["--output", f"type=oci,dest={(req.output or ':').split(':', 1)[1]}"]
    return [docker_cli.binary(), *common_args(req, metadata), *cache_args(req, None),
            "--builder", builder, "--platform", ",".join(platforms), *where,
            str(req.context_dir)]


def builder_strategy(farm: Farm, req: Request, chosen: dict[str, str], workdir: Path,
                     say: Callable[[str, str], None], cancel: Cancel,
                     stall: float | None = None) -> Recap:
    """One build on the farm's builder; buildx routes each platform to its pinned node
    (`chosen`: platform -> the node named in the table)."""
    builder = names.builder(farm.farm)
    argv = builder_argv(req, builder, list(chosen), workdir / "builder.json")
    name = ",".join(chosen)

    def job(progress: Progress) -> Outcome:
        progress(f"building on builder {builder}")
        seconds, failed, _ = timed_build(argv, workdir / "builder.log", progress,
                                          Where(f"builder {builder}"), farm, stall)
        if failed:
            return failed
        return Outcome(changes=["build"], note=f"built in {seconds} s", extra={"seconds": seconds})

    recap = run([(name, job)], cancel, say=say)
    result = recap.results[name]
    if result.bad:
        return Recap({p: result for p in chosen}, recap.interrupted)
    return Recap({p: Outcome(changes=["build"], note=result.note, extra={
        "platform": p, "node": chosen[p], "seconds": result.extra["seconds"]})
        for p in chosen}, recap.interrupted)


def verify(tag: str, platforms: list[str], annotations: Sequence[str] = ()
           ) -> tuple[str, dict[str, str], set[str], str | None]:
    """(index digest, platform -> manifest digest, the platforms an attestation manifest
    refers to, problem): the pushed index, read back; every platform listed and every
    `index:` annotation on it."""
    index, digest = docker_cli.raw_manifest(tag)
    manifests = index.get("manifests", [])
    listed = {docker_cli.platform_of(m): m["digest"] for m in manifests
              if docker_cli.platform_of(m) != "unknown/unknown"}
    # buildx names the attested image under either key (the com. one is older)
    referred = {(m.get("annotations") or {}).get(key) for m in manifests
                for key in ("vnd.docker.reference.digest", "com.docker.reference.digest")}
    attested = {p for p, d in listed.items() if d in referred}
    wanted = dict(a.removeprefix("index:").split("=", 1) for a in annotations
                  if a.startswith("index:"))
    held = index.get("annotations") or {}
    lacking = [f"{k}={v}" for k, v in wanted.items() if held.get(k) != v]
    missing = [p for p in platforms if p not in listed]
    problem = (f"the index {tag} does not list {', '.join(missing)}"
               f" (it lists {', '.join(sorted(listed)) or 'nothing'})") if missing else None
    if lacking and not problem:
        # a Docker manifest list (the nodes pushed Docker media types: the classic store)
        # has no annotations; only an OCI index does
        problem = (f"the index {tag} ({index.get('mediaType', '?')}) lacks the annotation"
                   f" {', '.join(lacking)}: the nodes push Docker media types on the classic"
                   " image store. Fix: the containerd image store (docker.containerd_store:"
                   " true on Docker 24+, then inv configure)")
    return digest, listed, attested, problem


def merge_args(req: Request, pushed: dict[str, Outcome]) -> list[str]:
    """`imagetools create` of the index from the platforms pushed, by digest."""
    repo = reference.repository(req.tag)
    annotations = [f"--annotation={a}" for a in req.annotations if on_index(a)]
    return ["buildx", "imagetools", "create", *tag_args(req), *annotations,
            *(f"{repo}@{r.extra['digest']}" for r in pushed.values())]


def finish_command(req: Request, pushed: dict[str, Outcome]) -> str:
    """The merge as a command to paste, quoted for the shell (an IPv6 registry's brackets)."""
    return shlex.join(["docker", *merge_args(req, pushed)])


def index_job(req: Request, platforms: list[str], pushed: dict[str, Outcome],
              workdir: Path, log: str = "index.log") -> Job:
    """The index: made from the platforms' digests (merge strategy), then read back."""
    def job(progress: Progress) -> Outcome:
        try:
            if req.strategy == "merge":
                progress(f"merging {len(pushed)} platform(s) into {req.tag}")
                merge = Streamed([docker_cli.binary(), *merge_args(req, pushed)],
                                 workdir / log, progress, progress.cancel,
                                 step=progress.last, timeout=MERGE_TIMEOUT)
                if merge.run() != 0:
                    tail = merge.tail()
                    lost = registry_lost(tail)
                    said = f"this machine {lost}" if lost else tail.strip().split("\n")[-1]
                    return Outcome(failures=["index"], note=f"the merge failed: {said}")
            progress(f"reading {req.tag} back")
            digest, listed, attested_platforms, problem = verify(
                req.tag, platforms, req.annotations if req.strategy == "merge" else [])
            kinds = attest.wanted(req.provenance, req.sbom)
            # none asked for: buildx may still have added its default (a minimal provenance)
            attested = {} if kinds else {p: ["buildx default"]
                                         for p in sorted(attested_platforms)}
            if kinds and not problem:
                progress(f"reading the {' and '.join(kinds)} of {req.tag} back")
                attested, problem = attest.read_back(req.tag, platforms, kinds)
        except DockerError:
            progress.cancel.check()  # Ctrl-C reached docker too: this was the interrupt
            raise
        if problem:
            return Outcome(failures=["index"], note=problem,
                           extra={"digest": digest, "attested": attested})
        held = f" with {' and '.join(kinds)}" if kinds else ""
        return Outcome(converged=["index"], note=f"{req.tag}@{digest} lists"
                       f" {', '.join(platforms)}{held}",
                       extra={"digest": digest, "listed": listed, "attested": attested})
    return job


def state(result: Outcome) -> str:
    """A platform's (or the index's) state in words, when it has no digest to show."""
    return "interrupted" if result.interrupted else "failed" if result.bad else "-"


def build(farm: Farm, req: Request, say: Callable[[str, str], None], cancel: Cancel,
          show_plan: Callable[[BuildPlan], None] = lambda plan: None) -> tuple[Recap, dict]:
    """Schedule (merge strategy), build, push or export, merge, verify; the outcome and the
    --json. `show_plan` is given the schedule before anything is built."""
    platforms, per_node, stall = check_request(farm, req)
    the_plan: BuildPlan | None = None
    workdir = Path(tempfile.mkdtemp(prefix="archfarm-build-"))
    results: dict[str, Outcome] = {}
    try:
        if req.strategy == "builder":
            native = {n.platform: n.name for n in reversed(farm.expanded())}
            chosen = {p: native.get(p, "emulated") for p in platforms}
            if req.check:
                say("builder", "nothing to schedule: buildx sends each platform to the node"
                               " the builder pins it to (`inv register`)")
            else:
                results.update(builder_strategy(farm, req, chosen, workdir, say, cancel,
                                                stall).results)
        else:
            the_plan = plan(farm, [Piece(p, req, p) for p in platforms], per_node,
                            req.allow_emulation, cancel, say)
            show_plan(the_plan)
            results.update(unplaced_results(the_plan))
            if not req.check and not results:
                results.update(build_pieces(farm, [Piece(p, req, p) for p in platforms],
                                            the_plan, per_node, stall, workdir, say,
                                            cancel).results)
        built = not req.check and len(results) == len(platforms)
        if built and req.push and not any(r.bad for r in results.values()):
            results["index"] = _index(req, platforms, dict(results), workdir, say, cancel)
    finally:
        failed_logs = [r for r in results.values() if r.failures and "log" in r.extra]
        if not failed_logs:
            shutil.rmtree(workdir, ignore_errors=True)
    index = results.get("index", Outcome())
    report: dict = {
        "image": req.tag if req.push else req.output, "digest": index.extra.get("digest"),
        "logs": str(workdir) if failed_logs else None, "check": req.check,
        "platforms": [platform_row(p, p, results.get(p, Outcome()), the_plan, index)
                      for p in platforms],
        "schedule": the_plan.to_json() if the_plan else [],
        "down": the_plan.down if the_plan else {}}
    return Recap(results, cancel.is_set()), report


def _index(req: Request, platforms: list[str], pushed: dict[str, Outcome], workdir: Path,
           say: Callable[[str, str], None], cancel: Cancel) -> Outcome:
    """The index's outcome; when the merge did not happen, or not wholly, what is left."""
    if cancel.is_set():
        index = Outcome(interrupted=True, note="interrupted before " + (
            "the merge" if req.strategy == "merge" else "the index was read back"))
    else:
        index = run([("index", index_job(req, platforms, pushed, workdir))], cancel,
                    say=say).results["index"]
    return with_finish(index, req, pushed)


def with_finish(index: Outcome, req: Request, pushed: dict[str, Outcome]) -> Outcome:
    """A merge that failed, or did not happen wholly, says the command that finishes it."""
    if index.bad and req.strategy == "merge":
        command = finish_command(req, pushed)
        index.note += (f"; every platform is pushed, to finish run `{command}` (or the same"
                       " build again)")
        index.extra["finish"] = command
    return index
