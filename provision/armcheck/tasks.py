"""The task bodies of `inv check-arm`: one image (run on an arm64 node), or a whole workload
(`--manifests`, `--compose`: read from the registry, optionally run with `--run`)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..cli import Session, fail, load, task
from ..errors import UserError


@task  # a stage: Ctrl-C and SIGTERM set session.cancel, and the check stops its container
def check_arm(session: Session, *, inventory: str | None, image: str, command: list[str],
              workload_only: tuple[str, ...] | list[str] = ()) -> int:
    """READY (exit 0) or NOT READY with the reason (exit 1); the registry or the node out of
    reach: exit 1 with the cause and the repair; interrupted: 130."""
    if workload_only:
        raise UserError(f"{', '.join(workload_only)}: only for a workload. Fix: add --manifests"
                        " PATH or --compose FILE, or leave it out (one IMAGE is always run on"
                        " an arm64 node).")
    from rich.markup import escape

    from ..runner import Interrupted
    from .run import Unreachable, check, describe

    farm = load(inventory)
    try:
        verdict = check(farm, image, command, session.cancel, inventory)
    except Unreachable as e:
        return fail(session, str(e), 1)
    except Interrupted as e:
        return fail(session, str(e) or f"interrupted: nothing was decided about {image}, and"
                    " nothing of the check is left running", 130)
    session.say(escape(f"{image}: platforms {', '.join(verdict.platforms) or 'none'}"))
    if verdict.ran_on:
        what = ("in place of the image's entrypoint" if command else
                "the image's entrypoint, with its own arguments")
        session.say(f"ran on {verdict.ran_on}: {escape(describe(command))} ({what})")
    if verdict.output:
        session.say(f"output:\n{escape(verdict.output)}")
    session.say(escape(("READY: " if verdict.ready else "NOT READY: ") + verdict.reason))
    session.emit({"image": image, **verdict.to_json()})
    return 0 if verdict.ready else 1


@task  # a stage: Ctrl-C stops the registry reads at their next request, and --run's container
def check_workload(session: Session, *, manifests: str | None, compose: str | None,
                   image: str | None, manifest_only: bool, run: bool, sarif: str | None,
                   inventory: str | None, command: list[str]) -> int:
    """Every image of the workload: READY (all of them: exit 0) or not (exit 1), bad input 2."""
    from . import report
    from .registry import Client
    from .verdict import Judge, pinned_elsewhere
    from .workload import merge, read_compose, read_manifests

    if image:
        raise UserError(f"IMAGE {image} and a workload (--manifests/--compose) were both given."
                        " Fix: check one image, or put it in the workload's manifests.")
    if command and not run:
        raise UserError(f"-- {' '.join(command)}: a command to run needs --run. Fix: add --run"
                        " (each READY image then runs it on an arm64 node), or leave -- out.")
    sarif_path = sarif_target(sarif)
    workload = merge(*([read_manifests(manifests)] if manifests else []),
                     *([read_compose(compose)] if compose else []))
    farm = load(inventory) if run else None  # a bad inventory is bad input, before any work
    client = Client()
    try:
        judge = Judge(client, manifest_only=manifest_only, cancel=session.cancel)
        keys = list(workload.images)
        found = judge.all([workload.written[k] for k in keys],
                          done=lambda f: session.node(f.image, f.verdict),
                          uses=[workload.images[k] for k in keys])
    finally:
        client.close()
    findings = dict(zip(keys, found, strict=True))
    if farm is not None:
        run_ready(session, farm, inventory, findings, command, workload)
    for key, finding in findings.items():
        pinned_elsewhere(finding, workload.images[key])
    report.show(session, workload, findings)
    if sarif_path is not None:
        write_atomically(sarif_path, json.dumps(report.sarif(workload, findings), indent=2))
        session.say(f"SARIF written to {sarif_path}")
    out = report.to_json(workload, findings)
    session.emit(out)
    return 0 if out["ready"] else 1


def run_ready(session: Session, farm, inventory: str | None, findings: dict,
              command: list[str], workload) -> None:
    """--run: each image the registry found READY, or could not decide about although it has
    an arm64 variant, started on an arm64 node of the farm: with `command` (-- CMD), else
    with what the workload runs (the command of its uses when they all give one, else the
    image's entrypoint). READY if it runs, NOT READY if it fails there."""
    from ..platforms import is_arm64
    from .run import Unreachable, check
    from .verdict import NOT_READY, READY, UNKNOWN, Judge

    for key, finding in findings.items():
        undecided = finding.verdict == UNKNOWN and any(map(is_arm64, finding.platforms))
        if finding.verdict != READY and not undecided:
            continue
        uses = workload.images[key]
        runs = command or (list(uses[0].command + uses[0].args)
                           if all(u.command for u in uses) else [])
        session.node(finding.image, "running on an arm64 node (--run)")
        try:
            verdict = check(farm, finding.image, runs, session.cancel, inventory)
        except Unreachable as e:
            finding.verdict, finding.why = UNKNOWN, f"--run: {e}"
            continue
        finding.ran = verdict.to_json()
        if not verdict.ready:
            finding.verdict, finding.why = NOT_READY, f"--run: {verdict.reason}"
            finding.fix = ("see what the run said (its output, `ran` in --json); if its"
                           " binaries are not arm64 (exec format error), "
                           + Judge.rebuild(finding.image))
        elif finding.verdict == READY:
            finding.why += f"; {verdict.reason}"
        else:  # what the registry could not settle, the run did
            finding.verdict, finding.why, finding.fix = READY, f"--run: {verdict.reason}", None


def sarif_target(path: str | None) -> Path | None:
    """--sarif FILE, checked before any work: its directory must exist and be writable."""
    if path is None:
        return None
    target = Path(path)
    if not path.strip() or target.is_dir():
        raise UserError(f"--sarif {path!r}: names no file. Fix: pass the file to write, e.g."
                        " --sarif check-arm.sarif.")
    parent = target.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UserError(f"--sarif {path}: cannot write there ({parent} is not a writable"
                        " directory). Fix: create the directory, or write the file elsewhere.")
    return target


def write_atomically(path: Path, text: str) -> None:
    """A reader (CI uploading the SARIF) never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
