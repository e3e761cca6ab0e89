"""`inv build`: one multi-arch image, each platform compiled on a node of that architecture.

Two strategies. `merge`: every platform is built at once on its own node's engine (through
the node's docker context), pushed, and the per-platform digests are merged into one index
with `imagetools create`; it needs no buildkit image. `builder`: one `buildx build` on the
farm's builder, whose nodes are pinned to their platforms, so buildx sends each platform to
its native node. Either way the pushed index is read back and must list every platform.

The logs go to a temporary `archfarm-build-*` directory. It is removed at the end unless a
build failed; then each failure names its log, and the recap the directory.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .. import names
from ..errors import DockerError, UserError
from ..inventory import Farm
from ..runner import Cancel, Job, Outcome, Progress, Recap, run
from . import docker_cli, observe, reference
from .dispatch import Attempt, Dispatcher
from .schedule import Assignment, NodeState, schedule
from .schedule import Job as BuildJob
from .slots import Slot

HEARTBEAT_SECONDS = 10.0
MERGE_TIMEOUT = 300.0


@dataclass
class Request:
    context_dir: Path | None
    tag: str  # "" when not given
    file: str | None = None
    platforms: str | None = None     # --platform as given (p,q); None: the farm's platforms
    strategy: str = "merge"
    push: bool = False
    output: str | None = None        # oci:PATH
    build_args: list[str] = field(default_factory=list)
    allow_emulation: bool = False
    also_tags: list[str] = field(default_factory=list)  # more tags naming the same index
    labels: list[str] = field(default_factory=list)     # KEY=VALUE
    stage: str | None = None         # the Dockerfile stage to build (buildx's --target)
    no_cache: bool = False
    pull: bool = False
    # as given on the command line; check_request makes them numbers (or says why not)
    per_node: int | str = 1          # builds at once on one node (merge strategy)
    stall_timeout: float | str | None = None  # None: the inventory's stall_timeout_seconds
    check: bool = False              # print the schedule, build nothing


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


def check_request(farm: Farm, req: Request) -> tuple[list[str], int, float]:
    """Bad input, before anything runs (exit 2): returns the platforms to build, the builds
    per node and the stall limit."""
    if req.context_dir is None or not req.tag:
        raise UserError("--context DIR and --tag REF are both needed. Fix: e.g. inv build"
                        " --context examples/hello --tag 127.0.0.1:5000/hello:demo --push.")
    problem = reference.problem(req.tag)
    if problem:
        raise UserError(f"--tag {req.tag!r}: not an image reference docker accepts ({problem})."
                        " Fix: write REGISTRY/REPOSITORY[:TAG] as docker reads it, e.g."
                        " 127.0.0.1:5000/team/app:1.0: repository components of lowercase"
                        " letters and digits (with one '.', '_' or '__', or dashes, between"
                        " them) joined by '/'; a tag of at most 128 letters, digits, '_', '.'"
                        " and '-', not starting with '.' or '-'; no scheme, no digest.")
    docker_cli.binary()  # the docker CLI, checked once here rather than in every platform's job
    _check_files(req)
    if req.strategy not in ("merge", "builder"):
        raise UserError(f"--strategy {req.strategy!r}: not a strategy. Fix: use merge or"
                        " builder.")
    if req.push == bool(req.output):
        raise UserError("say where the image goes: --push (to the registry in --tag) or"
                        " --output oci:PATH (builder strategy only). Fix: pass exactly one.")
    if req.output and (req.strategy == "merge" or not req.output.startswith("oci:")):
        raise UserError(f"--output {req.output}: only oci:PATH, with --strategy builder (merge"
                        " assembles its index in the registry). Fix: use --push, or"
                        " --strategy builder --output oci:PATH.")
    for arg in req.build_args:
        if "=" not in arg:
            raise UserError(f"--build-arg {arg!r}: not KEY=VALUE. Fix: write it as KEY=VALUE.")
    per_node, stall = run_options(farm, req.per_node, req.stall_timeout)
    if req.strategy == "builder" and per_node > 1:
        raise UserError(f"--per-node {per_node}: only the merge strategy schedules builds on"
                        " nodes (buildx routes the builder strategy's platforms itself). Fix:"
                        " drop --per-node, or use --strategy merge.")
    return platforms_for(farm, req.platforms, req.allow_emulation, "--platform"), per_node, stall


def run_options(farm: Farm, per_node: int | str, stall_timeout: float | str | None
                ) -> tuple[int, float]:
    """--per-node and --stall-timeout (else the inventory's) as numbers, or bad input."""
    given = str(per_node)
    if not given.isdigit() or int(given) < 1:
        raise UserError(f"--per-node {given}: not a whole number of builds, at least 1."
                        " Fix: e.g. --per-node 2, or leave it out (1).")
    if stall_timeout is None:
        return int(given), float(farm.buildx.stall_timeout_seconds)
    try:
        stall = float(stall_timeout)
    except ValueError:
        stall = -1.0
    if not 1 <= stall < float("inf"):
        raise UserError(f"--stall-timeout {stall_timeout}: not a number of seconds, 1 or more."
                        " Fix: e.g. --stall-timeout 600, or leave it out (the inventory's"
                        " buildx.stall_timeout_seconds).")
    return int(given), stall


def _check_files(req: Request) -> None:
    assert req.context_dir is not None
    if not req.context_dir.is_dir():
        raise UserError(f"--context {req.context_dir}: no such directory. Fix: give the build"
                        " context directory, e.g. --context examples/hello.")
    dockerfile = req.context_dir / (req.file or "Dockerfile")  # an absolute --file stays as is
    if dockerfile.is_dir():
        raise UserError(f"--file {req.file or 'Dockerfile'}: {dockerfile} is a directory, not a"
                        " Dockerfile. Fix: name the Dockerfile itself with --file, relative to"
                        " --context, e.g. --file Dockerfile.")
    if not dockerfile.is_file():
        raise UserError(f"--file: {dockerfile} does not exist. Fix: name the Dockerfile with"
                        " --file, relative to --context.")


def platforms_for(farm: Farm, given: str | list[str] | None, allow_emulation: bool,
                  what: str) -> list[str]:
    """The platforms asked for (None: the farm's), each checked to have a native node unless
    emulation is allowed; `what` names where they were asked for in the error."""
    farm_platforms = farm.platforms
    wanted = farm_platforms
    if given is not None:  # given, even as '': an empty selection is never "all"
        words = given.split(",") if isinstance(given, str) else given
        wanted = [p.strip() for p in words if p.strip()]
        if not wanted:
            raise UserError(f"{what} {given!r}: names no platform. Fix: name some,"
                            f" e.g. --platform {','.join(farm_platforms)}, or leave --platform"
                            " out to build every platform of the farm.")
    for platform in wanted:
        if platform not in farm_platforms and not allow_emulation:
            raise UserError(f"{what} {platform}: no node of farm {farm.farm} runs it"
                            f" natively (its platforms: {', '.join(farm_platforms)}). Fix: add"
                            " such a node, drop the platform, or pass --allow-emulation to"
                            " build it under QEMU.")
    return list(dict.fromkeys(wanted))


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
REGISTRY_URL = re.compile(r'https?://([^/"\s]+)/v2/')


def _why_failed(text: str, where: Where, farm: Farm) -> str:
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
    lost = _registry_lost(text)
    if lost:
        return (f"{who} {lost}. Fix: make sure the registry is up and {who} reaches it,"
                " then run the build again")
    return f"the build failed on {who}"


def _registry_lost(text: str) -> str | None:
    """`lost the registry HOST (what docker said)` when the last error is about reaching a
    registry: a connection refused, reset or cut (EOF) on its way to `http(s)://HOST/v2/`."""
    errors = [line for line in text.splitlines() if "ERROR" in line]
    last = errors[-1] if errors else ""
    found = REGISTRY_URL.search(last)
    if not found or not re.search(r"EOF|connection (refused|reset)|timeout|no route", last):
        return None
    said = last.rpartition('": ')[2].strip()  # after the URL docker quotes
    return f"lost the registry {found[1]} ({said})"


def _common_args(req: Request, metadata: Path) -> list[str]:
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
    return args


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


def _timed_build(argv: list[str], log: Path, progress: Progress, where: Where, farm: Farm,
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
        cause = _why_failed(tail, where, farm)
    kind = STALLED if build.stalled else LOST if node_lost(tail, where) else ""
    return seconds, Outcome(failures=["build"], note=f"{cause}; whole log: {log}, its"
                                                     f" tail:\n{tail}",
                            extra={"seconds": seconds, "log": str(log)}), kind


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
    dispatcher = Dispatcher(the_plan.nodes, per_node, cancel, lambda node, capacity: Slot(
        observe.ssh_command(farm, node), capacity=capacity))
    by_key = {p.key: p for p in pieces}

    def job_for(ticket: int, assignment: Assignment) -> Callable[[Progress], Outcome]:
        piece = by_key[assignment.job.key]

        def attempt(node: str, n: int, progress: Progress) -> Attempt:
            req, platform = piece.req, piece.platform
            name = piece.slug if n == 0 else f"{piece.slug}.{node}"
            metadata, pushed = workdir / f"{name}.json", platform_tag(req.tag, platform)
            context = names.alias(farm.farm, node)
            argv = [docker_cli.binary(), "--context", context, *_common_args(req, metadata),
                    "--platform", platform, "--output", f"type=image,name={pushed},push=true",
                    str(req.context_dir)]
            progress(f"building on {node}" + (" (moved)" if n else ""))
            seconds, failed, kind = _timed_build(argv, workdir / f"{name}.log", progress,
                                                 Where(f"node {node}", context), farm, stall)
            if failed:
                failed.extra.update(platform=platform, node=node)
                return judged(farm, node, failed, kind, progress)
            digest = json.loads(metadata.read_text())["containerimage.digest"]
            return Attempt(Outcome(changes=["build"], note=f"{digest[:19]} in {seconds} s on"
                                   f" {node}", extra={"platform": platform, "node": node,
                                                      "digest": digest, "seconds": seconds,
                                                      "pushed": pushed}))

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


def judged(farm: Farm, node: str, failed: Outcome, kind: str, progress: Progress
           ) -> Attempt:
    """A failed build: does its job move, is its node gone? The node is probed again (one
    ssh round trip, 5 s at most). Gone if it no longer answers; the job moves if its log said
    the node went away or the node is gone (a silent build on a node that answers is the
    build's own failure: another node would wait the same)."""
    if not kind:
        return Attempt(failed)
    progress(f"probing {node} again")
    gone = observe.probe(farm, node).engine is None
    return Attempt(failed, move=kind == LOST or gone, node_gone=gone)


def _built(recap: Recap, the_plan: BuildPlan) -> list[tuple[str, Outcome]]:
    """(cache key, outcome) of every piece that was built."""
    keys = {a.job.key: a.job.cache_key for a in the_plan.assignments}
    return [(keys[k], r) for k, r in recap.results.items() if r.changes and "node" in r.extra]


def builder_strategy(farm: Farm, req: Request, chosen: dict[str, str], workdir: Path,
                     say: Callable[[str, str], None], cancel: Cancel,
                     stall: float | None = None) -> Recap:
    """One build on the farm's builder; buildx routes each platform to its pinned node
    (`chosen`: platform -> the node named in the table)."""
    metadata = workdir / "builder.json"
    builder = names.builder(farm.farm)
    argv = [docker_cli.binary(), *_common_args(req, metadata), "--builder", builder,
            "--platform", ",".join(chosen)]
    argv += (["--tag", req.tag, "--push"] if req.push
             else ["--output", f"type=oci,dest={req.output.split(':', 1)[1]}"]  # type: ignore
             ) + [str(req.context_dir)]
    name = ",".join(chosen)

    def job(progress: Progress) -> Outcome:
        progress(f"building on builder {builder}")
        seconds, failed, _ = _timed_build(argv, workdir / "builder.log", progress,
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


def verify(tag: str, platforms: list[str]) -> tuple[str, dict[str, str], str | None]:
    """(index digest, platform -> manifest digest, problem): the pushed index, read back."""
    index, digest = docker_cli.raw_manifest(tag)
    listed = {docker_cli.platform_of(m): m["digest"] for m in index.get("manifests", [])
              if docker_cli.platform_of(m) != "unknown/unknown"}
    missing = [p for p in platforms if p not in listed]
    problem = (f"the index {tag} does not list {', '.join(missing)}"
               f" (it lists {', '.join(sorted(listed)) or 'nothing'})") if missing else None
    return digest, listed, problem


def merge_args(req: Request, pushed: dict[str, Outcome]) -> list[str]:
    """`imagetools create` of the index from the platforms pushed, by digest."""
    repo = reference.repository(req.tag)
    tags = [arg for tag in (req.tag, *req.also_tags) for arg in ("--tag", tag)]
    return ["buildx", "imagetools", "create", *tags,
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
                    lost = _registry_lost(tail)
                    said = f"this machine {lost}" if lost else tail.strip().split("\n")[-1]
                    return Outcome(failures=["index"], note=f"the merge failed: {said}")
            progress(f"reading {req.tag} back")
            digest, listed, problem = verify(req.tag, platforms)
        except DockerError:
            progress.cancel.check()  # Ctrl-C reached docker too: this was the interrupt
            raise
        if problem:
            return Outcome(failures=["index"], note=problem, extra={"digest": digest})
        return Outcome(converged=["index"], note=f"{req.tag}@{digest} lists {', '.join(platforms)}",
                       extra={"digest": digest, "listed": listed})
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
           "digest": result.extra.get("digest") or index.extra.get("listed", {}).get(platform),
           "seconds": result.extra.get("seconds"), "tried": result.extra.get("tried", [])}
    if "pushed" in result.extra:
        row["pushed"] = result.extra["pushed"]
    return row


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
