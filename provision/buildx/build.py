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
from ..inventory import Farm, Node
from ..runner import Cancel, Job, Outcome, Progress, Recap, run
from . import docker_cli, reference

HEARTBEAT_SECONDS = 10.0
BUILD_TIMEOUT = 3600.0
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


def check_request(farm: Farm, req: Request) -> dict[str, Node]:
    """Bad input, before anything runs (exit 2): returns platform -> the node that builds it."""
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
    return _nodes_for(farm, req)


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


def _nodes_for(farm: Farm, req: Request) -> dict[str, Node]:
    """--platform (or the farm's platforms) -> the node that builds each."""
    farm_platforms = farm.platforms
    wanted = farm_platforms
    if req.platforms is not None:  # given, even as '': an empty selection is never "all"
        wanted = [p.strip() for p in req.platforms.split(",") if p.strip()]
        if not wanted:
            raise UserError(f"--platform {req.platforms!r}: names no platform. Fix: name some,"
                            f" e.g. --platform {','.join(farm_platforms)}, or leave --platform"
                            " out to build every platform of the farm.")
    chosen: dict[str, Node] = {}
    for platform in wanted:
        native = [n for n in farm.expanded() if n.platform == platform]
        if native:
            chosen[platform] = native[0]
        elif req.allow_emulation:
            chosen[platform] = farm.expanded()[0]
        else:
            raise UserError(f"--platform {platform}: no node of farm {farm.farm} runs it"
                            f" natively (its platforms: {', '.join(farm_platforms)}). Fix: add"
                            " such a node, drop the platform, or pass --allow-emulation to"
                            " build it under QEMU.")
    return chosen


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
                 cancel: Cancel, step: str = "", timeout: float = BUILD_TIMEOUT):
        self.argv, self.log, self.progress, self.cancel = argv, log, progress, cancel
        self.last_step, self.timeout = step, timeout

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
                if time.monotonic() - started > self.timeout:
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
    return args


def _timed_build(argv: list[str], log: Path, progress: Progress, where: Where, farm: Farm
                 ) -> tuple[float, Outcome | None]:
    """(seconds, None) when the build succeeded, else (seconds, the failure with the cause,
    where the whole log is, and its tail)."""
    started = time.monotonic()
    build = Streamed(argv, log, progress, progress.cancel, step=progress.last)
    code = build.run()
    seconds = round(time.monotonic() - started, 1)
    if code == 0:
        return seconds, None
    tail = build.tail()
    if where.context:  # docker names an ssh engine by a placeholder URL: say which it is
        tail = tail.replace("http://docker.example.com", f"ssh://{where.context}")
    return seconds, Outcome(failures=["build"],
                            note=f"{_why_failed(tail, where, farm)}; whole log: {log}, its"
                                 f" tail:\n{tail}",
                            extra={"seconds": seconds, "log": str(log)})


def merge_strategy(farm: Farm, req: Request, chosen: dict[str, Node], workdir: Path,
                   say: Callable[[str, str], None], cancel: Cancel) -> Recap:
    """Each platform on its node's own engine, in parallel, pushed under its own tag (the
    index is made afterwards, by `build`)."""
    def job_for(platform: str, node: Node) -> Job:
        def job(progress: Progress) -> Outcome:
            slug = platform.replace("/", "-")
            metadata, pushed = workdir / f"{slug}.json", platform_tag(req.tag, platform)
            context = names.alias(farm.farm, node.name)
            argv = [docker_cli.binary(), "--context", context, *_common_args(req, metadata),
                    "--platform", platform, "--output", f"type=image,name={pushed},push=true",
                    str(req.context_dir)]
            progress(f"building on {node.name}")
            seconds, failed = _timed_build(argv, workdir / f"{slug}.log", progress,
                                           Where(f"node {node.name}", context), farm)
            if failed:
                failed.extra.update(platform=platform, node=node.name)
                return failed
            digest = json.loads(metadata.read_text())["containerimage.digest"]
            return Outcome(changes=["build"], note=f"{digest[:19]} in {seconds} s on {node.name}",
                           extra={"platform": platform, "node": node.name, "digest": digest,
                                  "seconds": seconds, "pushed": pushed})
        return job

    return run([(p, job_for(p, n)) for p, n in chosen.items()], cancel, say=say)


def builder_strategy(farm: Farm, req: Request, chosen: dict[str, Node], workdir: Path,
                     say: Callable[[str, str], None], cancel: Cancel) -> Recap:
    """One build on the farm's builder; buildx routes each platform to its pinned node."""
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
        seconds, failed = _timed_build(argv, workdir / "builder.log", progress,
                                       Where(f"builder {builder}"), farm)
        if failed:
            return failed
        return Outcome(changes=["build"], note=f"built in {seconds} s", extra={"seconds": seconds})

    recap = run([(name, job)], cancel, say=say)
    result = recap.results[name]
    if result.bad:
        return Recap({p: result for p in chosen}, recap.interrupted)
    return Recap({p: Outcome(changes=["build"], note=result.note, extra={
        "platform": p, "node": chosen[p].name, "seconds": result.extra["seconds"]})
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
    return ["buildx", "imagetools", "create", "--tag", req.tag,
            *(f"{repo}@{r.extra['digest']}" for r in pushed.values())]


def finish_command(req: Request, pushed: dict[str, Outcome]) -> str:
    """The merge as a command to paste, quoted for the shell (an IPv6 registry's brackets)."""
    return shlex.join(["docker", *merge_args(req, pushed)])


def index_job(req: Request, chosen: dict[str, Node], pushed: dict[str, Outcome],
              workdir: Path) -> Job:
    """The index: made from the platforms' digests (merge strategy), then read back."""
    def job(progress: Progress) -> Outcome:
        try:
            if req.strategy == "merge":
                progress(f"merging {len(pushed)} platform(s) into {req.tag}")
                merge = Streamed([docker_cli.binary(), *merge_args(req, pushed)],
                                 workdir / "index.log", progress, progress.cancel,
                                 step=progress.last, timeout=MERGE_TIMEOUT)
                if merge.run() != 0:
                    tail = merge.tail()
                    lost = _registry_lost(tail)
                    said = f"this machine {lost}" if lost else tail.strip().split("\n")[-1]
                    return Outcome(failures=["index"], note=f"the merge failed: {said}")
            progress(f"reading {req.tag} back")
            digest, listed, problem = verify(req.tag, list(chosen))
        except DockerError:
            progress.cancel.check()  # Ctrl-C reached docker too: this was the interrupt
            raise
        if problem:
            return Outcome(failures=["index"], note=problem, extra={"digest": digest})
        return Outcome(converged=["index"], note=f"{req.tag}@{digest} lists {', '.join(chosen)}",
                       extra={"digest": digest, "listed": listed})
    return job


def state(result: Outcome) -> str:
    """A platform's (or the index's) state in words, when it has no digest to show."""
    return "interrupted" if result.interrupted else "failed" if result.bad else "-"


def build(farm: Farm, req: Request, say: Callable[[str, str], None], cancel: Cancel
          ) -> tuple[Recap, dict]:
    """Build, push or export, merge (merge strategy), verify; the outcome and the --json."""
    chosen = check_request(farm, req)
    workdir = Path(tempfile.mkdtemp(prefix="archfarm-build-"))
    results: dict[str, Outcome] = {}
    try:
        strategy = merge_strategy if req.strategy == "merge" else builder_strategy
        results.update(strategy(farm, req, chosen, workdir, say, cancel).results)
        if req.push and not any(r.bad for r in results.values()):
            results["index"] = _index(req, chosen, dict(results), workdir, say, cancel)
    finally:
        failed_logs = [r for r in results.values() if r.failures and "log" in r.extra]
        if not failed_logs:
            shutil.rmtree(workdir, ignore_errors=True)
    index = results.get("index", Outcome())
    report: dict = {
        "image": req.tag if req.push else req.output, "digest": index.extra.get("digest"),
        "logs": str(workdir) if failed_logs else None,
        "platforms": [{"platform": p, "node": chosen[p].name,
                       "digest": results[p].extra.get("digest")
                       or index.extra.get("listed", {}).get(p),
                       "seconds": results[p].extra.get("seconds"),
                       **({"pushed": results[p].extra["pushed"]}
                          if "pushed" in results[p].extra else {})}
                      for p in chosen]}
    return Recap(results, cancel.is_set()), report


def _index(req: Request, chosen: dict[str, Node], pushed: dict[str, Outcome], workdir: Path,
           say: Callable[[str, str], None], cancel: Cancel) -> Outcome:
    """The index's outcome; when the merge did not happen, or not wholly, what is left."""
    if cancel.is_set():
        index = Outcome(interrupted=True, note="interrupted before " + (
            "the merge" if req.strategy == "merge" else "the index was read back"))
    else:
        index = run([("index", index_job(req, chosen, pushed, workdir))], cancel,
                    say=say).results["index"]
    if index.bad and req.strategy == "merge":
        command = finish_command(req, pushed)
        index.note += (f"; every platform is pushed, to finish run `{command}` (or the same"
                       " build again)")
        index.extra["finish"] = command
    return index
