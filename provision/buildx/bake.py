"""`inv bake`: every target of a bake (or compose) file, each platform a job of the farm's
schedule, each target's platforms merged into its index as `inv build` does.

The file is read by the real `docker buildx bake --print` (its HCL, JSON and compose readers,
variables, inheritance and groups), in the current directory as buildx itself would, never by
a parser of our own. Each target must be pushed under a tag; one failing target never stops
the others.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..inventory import Farm
from ..runner import Cancel, Interrupted, Outcome, Progress, Recap
from . import docker_cli, reference
from .build import index_job, with_finish
from .pieces import (
    BuildPlan,
    Piece,
    build_pieces,
    observe_farm,
    plan,
    platform_row,
    unplaced_results,
)
from .request import Request, check_stage, platforms_for, run_options, settle_options
from .schedule import NodeState

# What `bake --print` gives for a target that a build on the farm honours: the rest is refused
# rather than silently dropped (a build without a target's secret or cache is not that build).
HONOURED = {"context", "dockerfile", "args", "tags", "platforms", "target", "labels",
            "no-cache", "pull", "description", "secret", "ssh", "attest", "cache-from",
            "cache-to", "annotations"}
PRINT_SECONDS = 60


@dataclass
class Options:
    file: str | None = None          # None: what buildx finds in the current directory
    targets: list[str] = field(default_factory=list)   # none: bake's default group
    per_node: int | str = 1
    stall_timeout: float | str | None = None
    check: bool = False
    allow_emulation: bool = False
    cache: str | None = None         # registry | none; None: the inventory's buildx.cache


def read(options: Options) -> dict[str, dict]:
    """Target name -> its definition, as `docker buildx bake --print` resolves it."""
    where = f"bake file {options.file}" if options.file else "the bake file here"
    if options.file and not Path(options.file).is_file():
        raise UserError(f"bake file {options.file}: no such file. Fix: give a docker-bake.hcl,"
                        " docker-bake.json or compose file, e.g. inv bake docker-bake.hcl.")
    argv = [docker_cli.binary(), "buildx", "bake", "--print",
            *(["--file", options.file] if options.file else []), "--", *options.targets]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PRINT_SECONDS,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise UserError(f"{where}: `docker buildx bake --print` gave no answer in"
                        f" {PRINT_SECONDS} s. Fix: check the file with that command.") from None
    if done.returncode != 0:
        said = [line.removeprefix("ERROR: ") for line in done.stderr.splitlines()
                if line.startswith("ERROR")] or done.stderr.strip().splitlines()[-1:]
        error = said[-1].rstrip(".") if said else f"exit {done.returncode}"
        raise UserError(f"{where}: {error}. Fix: {_fix_for(error)}.")
    return json.loads(done.stdout).get("target") or {}


def _fix_for(error: str) -> str:
    """The fix for what `docker buildx bake --print` said."""
    if error == "failed to find target default":
        return ("name the targets to build (the file has no default group): inv bake FILE"
                " TARGET ...")
    if "failed to find target" in error:
        return "name targets the file defines (or none, for its default group)"
    if "failed to stat" in error or ("failed to parse" in error and "ssh" in error):
        return ("a target's secret or ssh names a file that is missing or holds no key: fix"
                " its path (relative to where you run inv bake)")
    if "couldn't find a bake definition" in error:
        return ("name the file (inv bake FILE), or run where a docker-bake.hcl,"
                " docker-bake.json or compose.yaml is")
    return "fix the file until `docker buildx bake --print` reads it"


def requests(farm: Farm, options: Options, targets: dict[str, dict]
             ) -> dict[str, tuple[Request, list[str]]]:
    """Each target as a pushed build and its platforms; bad input (exit 2) names the file,
    the target and the fix."""
    where = options.file or "the bake file buildx found here"
    if not targets:
        raise UserError(f"{where}: no target to build. Fix: define targets, or name them:"
                        " inv bake FILE TARGET ...")
    out = {}
    for name, spec in targets.items():
        def bad(what: str, fix: str, name: str = name) -> UserError:
            return UserError(f"{where}, target {name}: {what}. Fix: {fix}.")
        refused = sorted(set(spec) - HONOURED)
        if refused:
            raise bad(f"{', '.join(refused)} cannot be built on the farm yet",
                      "drop them from the target, or build it with docker buildx bake")
        tags = spec.get("tags") or []
        if not tags:
            raise bad("no tag to push to", 'give it one, e.g. tags = ["127.0.0.1:5000/team/'
                      f'{name}:1"] (each target is pushed, then merged into its index)')
        for tag in tags:
            problem = reference.problem(tag)
            if problem:
                raise bad(f"tag {tag!r} is not an image reference docker accepts ({problem})",
                          "write REGISTRY/REPOSITORY[:TAG], e.g. 127.0.0.1:5000/team/app:1")
        provenance, sbom = _attest(spec.get("attest") or [])
        req = Request(context_dir=Path(spec.get("context") or "."), tag=tags[0],
                      also_tags=tags[1:], file=spec.get("dockerfile"), push=True,
                      build_args=[f"{k}={v}" for k, v in (spec.get("args") or {}).items()],
                      labels=[f"{k}={v}" for k, v in (spec.get("labels") or {}).items()],
                      stage=spec.get("target"), no_cache=bool(spec.get("no-cache")),
                      pull=bool(spec.get("pull")), allow_emulation=options.allow_emulation,
                      secrets=_csv_list(spec.get("secret")),
                      ssh=_csv_list(spec.get("ssh"), ssh=True),
                      annotations=list(spec.get("annotations") or []),
                      cache_from=_csv_list(spec.get("cache-from")),
                      cache_to=_csv_list(spec.get("cache-to")), provenance=provenance,
                      sbom=sbom, cache=options.cache)
        def field_of(flag: str, name: str = name) -> str:
            return f"{where}, target {name}: {FIELDS.get(flag, flag)}"
        settle_options(farm, req, what=field_of)
        context = req.context_dir or Path(".")
        if not context.is_dir():
            raise bad(f'context "{context}" is no directory', "give the target's build"
                      " context directory, relative to where you run inv bake")
        dockerfile = context / (req.file or "Dockerfile")
        if not dockerfile.is_file():
            raise bad(f'dockerfile "{req.file or "Dockerfile"}": {dockerfile} is no file',
                      "name the target's Dockerfile, relative to its context")
        check_stage(req.stage, dockerfile, f"{where}, target {name}: target")
        try:
            platforms = platforms_for(farm, spec.get("platforms"), options.allow_emulation,
                                      "platform")
        except UserError as e:
            raise UserError(f"{where}, target {name}: {e}") from None
        out[name] = (req, platforms)
    return out


# A target's field for the build option it became, in bad input's words.
FIELDS = {"--build-arg": "args", "--label": "labels", "--annotation": "annotations",
          "--secret": "secret", "--ssh": "ssh", "--provenance": "attest",
          "--sbom": "attest"}


def _csv(item: str | dict, ssh: bool = False) -> str:
    """One entry of a list field as buildx's flag takes it: `bake --print` gives strings
    (`id=x,src=f`), or (newer buildx) objects of the same keys; an ssh object is
    `{"id": ID, "paths": [...]}` for `ID[=PATH,...]`."""
    if not isinstance(item, dict):
        return str(item)
    if ssh:
        paths = ",".join(item.get("paths") or [])
        return f"{item.get('id', 'default')}{'=' + paths if paths else ''}"

    def text(value: object) -> str:
        if isinstance(value, bool):
            return str(value).lower()
        return ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return ",".join(f"{k}={text(v)}" for k, v in item.items())


def _csv_list(items: list | None, ssh: bool = False) -> list[str]:
    return [_csv(item, ssh) for item in items or []]


def _attest(items: list) -> tuple[str | None, str | None]:
    """A target's `attest` entries as --provenance and --sbom values."""
    asked: dict[str, str | None] = {"provenance": None, "sbom": None}
    for entry in _csv_list(items):
        fields = dict(part.partition("=")[::2] for part in entry.split(","))
        kind = fields.pop("type", "")
        if kind in asked:
            off = fields.pop("disabled", "false").lower() == "true"
            asked[kind] = "false" if off else ",".join(f"{k}={v}" for k, v in fields.items()) \
                or "true"
    return asked["provenance"], asked["sbom"]


def bake(farm: Farm, options: Options, say: Callable[[str, str], None], cancel: Cancel,
         show_plan: Callable[[BuildPlan], None]) -> tuple[Recap, dict]:
    """Read, check, schedule, build every target's platforms, merge each target; the outcome
    and the --json."""
    per_node, stall = run_options(farm, options.per_node, options.stall_timeout)
    docker_cli.binary()
    # The nodes are probed while buildx reads the file: neither waits for the other.
    looking = Background(lambda: observe_farm(farm, cancel, say))
    targets = requests(farm, options, read(options))
    pieces = [Piece(f"{name}/{p}", req, p) for name, (req, platforms) in targets.items()
              for p in platforms]
    the_plan = plan(farm, pieces, per_node, options.allow_emulation, cancel, say,
                    nodes=looking.result)
    show_plan(the_plan)
    results: dict[str, Outcome] = dict(unplaced_results(the_plan))
    # A target with a platform no node can build never gets its index: none of it is built.
    for name, (_, platforms) in targets.items():
        missing = [p for p in platforms if f"{name}/{p}" in results]
        for p in platforms:
            if missing and f"{name}/{p}" not in results:
                results[f"{name}/{p}"] = Outcome(failures=["schedule"], note=(
                    f"not started: {', '.join(missing)} of target {name} has no node up, so"
                    " its index could not be made"))
    workdir = Path(tempfile.mkdtemp(prefix="archfarm-build-"))
    try:
        if not options.check:
            placed = [p for p in pieces if p.key not in results]
            merges = Merges(targets, workdir, say, cancel)
            results.update(build_pieces(farm, placed, the_plan, per_node, stall, workdir, say,
                                        cancel, when_done=merges.done).results)
            results.update(merges.results)
    finally:
        kept = any(r.failures and "log" in r.extra for r in results.values())
        if not kept:
            shutil.rmtree(workdir, ignore_errors=True)
    report = {"file": options.file, "check": options.check,
              "targets": {name: _target_report(name, req, platforms, results, the_plan)
                          for name, (req, platforms) in targets.items()},
              "schedule": the_plan.to_json(), "down": the_plan.down,
              "logs": str(workdir) if kept else None}
    return Recap(results, cancel.is_set()), report


class Background:
    """A call run on a daemon thread: bad input found meanwhile never waits for it."""

    def __init__(self, call: Callable[[], list[NodeState]]):
        self.call = call
        self.value: list[NodeState] | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.value = self.call()
        except BaseException as e:  # noqa: BLE001 (raised where the result is wanted)
            self.error = e

    def result(self) -> list[NodeState]:
        self.thread.join()
        if self.error is not None:
            raise self.error
        assert self.value is not None
        return self.value


class Merges:
    """Each target merged into its index and read back the moment its last platform is
    pushed, in that platform's thread, while the other targets still build."""

    def __init__(self, targets: dict[str, tuple[Request, list[str]]], workdir: Path,
                 say: Callable[[str, str], None], cancel: Cancel):
        self.targets, self.workdir, self.say, self.cancel = targets, workdir, say, cancel
        self.pushed: dict[str, dict[str, Outcome]] = {name: {} for name in targets}
        self.results: dict[str, Outcome] = {}
        self.lock = threading.Lock()

    def done(self, piece: Piece, outcome: Outcome) -> None:
        name = piece.key.split("/", 1)[0]  # a target's name has no slash
        req, platforms = self.targets[name]
        with self.lock:
            pushed = self.pushed[name]
            pushed[piece.platform] = outcome
            if len(pushed) < len(platforms) or any(r.bad for r in pushed.values()):
                return
        key = f"{name}/index"
        if self.cancel.is_set():
            self.results[key] = with_finish(Outcome(
                interrupted=True, note="interrupted before the merge"), req, pushed)
            return
        try:
            index = index_job(req, platforms, pushed, self.workdir,
                              log=f"{name}-index.log")(Progress(key, self.say, self.cancel))
        except Interrupted:
            index = Outcome(interrupted=True, note="interrupted during the merge")
        except Exception as e:  # noqa: BLE001 (one target's merge is that target's alone)
            index = Outcome(failures=["index"], note=f"the merge failed: {e}")
        self.results[key] = with_finish(index, req, pushed)


def _target_report(name: str, req: Request, platforms: list[str], results: dict[str, Outcome],
                   the_plan: BuildPlan) -> dict:
    index = results.get(f"{name}/index", Outcome())
    failed = [results[k] for k in (*(f"{name}/{p}" for p in platforms), f"{name}/index")
              if k in results and results[k].bad]
    return {"image": req.tag, "tags": [req.tag, *req.also_tags],
            "digest": index.extra.get("digest"),
            "platforms": [platform_row(f"{name}/{p}", p, results.get(f"{name}/{p}", Outcome()),
                                       the_plan, index) for p in platforms],
            "error": failed[0].note if failed else None}

