"""What `inv build` is asked to build, checked before anything runs: bad input is exit 2 with the
flag and the fix."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..inventory import Farm
from . import attest, docker_cli, reference, secrets


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
    secrets: list[str] = field(default_factory=list)      # id=ID,src=PATH | id=ID,env=VAR
    ssh: list[str] = field(default_factory=list)          # default | ID=PATH[,PATH]
    annotations: list[str] = field(default_factory=list)  # [index:|manifest:]KEY=VALUE
    provenance: str | None = None    # buildx's --provenance; None: the inventory's default
    sbom: str | None = None          # buildx's --sbom; None: the inventory's default
    cache_from: list[str] = field(default_factory=list)   # buildx's --cache-from (bake)
    cache_to: list[str] = field(default_factory=list)     # buildx's --cache-to (bake)
    cache: str | None = None         # registry | none; None: the inventory's buildx.cache
    # as given on the command line; check_request makes them numbers (or says why not)
    per_node: int | str = 1          # builds at once on one node (merge strategy)
    stall_timeout: float | str | None = None  # None: the inventory's stall_timeout_seconds
    check: bool = False              # print the schedule, build nothing


def check_request(farm: Farm, req: Request) -> tuple[list[str], int, float]:
    """Bad input, before anything runs (exit 2): returns the platforms to build, the builds
    per node and the stall limit."""
    if req.context_dir is None or not req.tag:
        raise UserError("--context DIR and --tag REF are both needed. Fix: e.g. inv build"
                        " --context examples/hello --tag 127.0.0.1:5000/hello:demo --push.")
    for tag in (req.tag, *req.also_tags):
        check_tag(tag)
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
    settle_options(farm, req)
    per_node, stall = run_options(farm, req.per_node, req.stall_timeout)
    if req.strategy == "builder" and per_node > 1:
        raise UserError(f"--per-node {per_node}: only the merge strategy schedules builds on"
                        " nodes (buildx routes the builder strategy's platforms itself). Fix:"
                        " drop --per-node, or use --strategy merge.")
    return platforms_for(farm, req.platforms, req.allow_emulation, "--platform"), per_node, stall


def cache_kind(farm: Farm, given: str | None) -> str:
    """--cache as given (registry or none), else the inventory's buildx.cache."""
    if given is None:
        return farm.buildx.cache
    if given not in ("registry", "none"):
        raise UserError(f"--cache {given}: not a kind of cache. Fix: --cache registry (kept"
                        " in the image's repository, per platform) or --cache none.")
    return given


def check_tag(tag: str) -> None:
    problem = reference.problem(tag)
    if problem:
        raise UserError(f"--tag {tag!r}: not an image reference docker accepts ({problem})."
                        " Fix: write REGISTRY/REPOSITORY[:TAG] as docker reads it, e.g."
                        " 127.0.0.1:5000/team/app:1.0: repository components of lowercase"
                        " letters and digits (with one '.', '_' or '__', or dashes, between"
                        " them) joined by '/'; a tag of at most 128 letters, digits, '_', '.'"
                        " and '-', not starting with '.' or '-'; no scheme, no digest.")


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
    check_stage(req.stage, dockerfile, "--target")


def check_stage(stage: str | None, dockerfile: Path, what: str) -> None:
    """A stage to build that the Dockerfile names (`FROM ... AS stage`), or bad input."""
    if stage is None:
        return
    stages = stages_of(dockerfile.read_text(errors="replace"))
    if stage.lower() not in stages:
        raise UserError(f"{what} {stage}: {dockerfile} has no stage of that name (its stages:"
                        f" {', '.join(stages) or 'none named'}). Fix: name one of them, or"
                        " add `AS " + stage + "` to the FROM line of the stage to build.")


def on_index(annotation: str) -> bool:
    """An annotation the merge puts on the merged index (`index:`) or on a platform's entry
    in it (`manifest-descriptor:`), rather than each platform's build on its image."""
    return annotation.startswith(("index:", "manifest-descriptor:"))


def stages_of(dockerfile: str) -> list[str]:
    """The named stages of a Dockerfile, in order (stage names are case-insensitive)."""
    # A backslash at a line's end (blanks may follow) continues it, past comment lines:
    # `FROM --platform=$X \ base AS name` is one instruction.
    text = re.sub(r"\\[ \t]*\r?\n(?:[ \t]*#[^\n]*\n)*", " ", dockerfile)
    return [m.group(1).lower() for m in re.finditer(
        r"^\s*FROM\s+(?:--\S+\s+)*\S+\s+AS\s+(\S+)\s*$", text, re.I | re.M)]


def settle_options(farm: Farm, req: Request,
                   what: Callable[[str], str] = lambda flag: flag) -> None:
    """The buildx options checked (bad input: exit 2), then the inventory's defaults filled in
    for those not given (attestations, cache): for `inv build` and each bake target alike."""
    check_options(req, what)
    req.provenance, req.sbom = attest.defaults(farm, req.provenance, req.sbom)
    req.cache = cache_kind(farm, req.cache)


def check_options(req: Request, what: Callable[[str], str] = lambda flag: flag) -> None:
    """buildx's options as given: KEY=VALUE where needed, a secret's file or variable there, an
    agent for --ssh default (bad input: exit 2 before anything is built or pushed). `what`
    says where an option was given (a bake target's field names)."""
    for arg in req.build_args:
        if "=" not in arg:
            raise UserError(f"{what('--build-arg')} {arg!r}: not KEY=VALUE. Fix: write it as"
                            " KEY=VALUE.")
    for flag, values in (("--label", req.labels), ("--annotation", req.annotations)):
        for value in values:
            if "=" not in value or value.startswith("="):
                raise UserError(f"{what(flag)} {value!r}: not KEY=VALUE. Fix: write it as"
                                " KEY=VALUE.")
    for value in req.annotations:
        key = value.partition("=")[0]
        level = key.partition(":")[0] if ":" in key else ""
        if level and not re.fullmatch(r"(index|manifest|manifest-descriptor)(\[[^]]*\])?",
                                      level):
            raise UserError(f"{what('--annotation')} {value!r}: {level} is not a level the"
                            " farm's images have. Fix: index:KEY=VALUE (the merged index),"
                            " manifest:KEY=VALUE or KEY=VALUE (each platform's image), or"
                            " manifest-descriptor:KEY=VALUE (its entry in the index).")
    for secret in req.secrets:
        secrets.check_secret(secret, what("--secret"))
    for ssh in req.ssh:
        secrets.check_ssh(ssh, what("--ssh"))
    attest.check_value("--provenance", req.provenance, what("--provenance"))
    attest.check_value("--sbom", req.sbom, what("--sbom"))


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
