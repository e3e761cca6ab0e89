"""`inv register`, `inv build` and `inv bake`: the buildx side's task bodies."""

from __future__ import annotations

from typing import Any

from ..cli import Session, load, task


@task
def register(session: Session, *, inventory: str | None, check: bool = False) -> int:
    from ..gce.clients import lazy_clients
    from .register import register_nodes

    farm = load(inventory)
    return session.finish(register_nodes(session, farm, None, check,
                                         lazy_clients(farm.gcp.api_endpoint)))


def show_plan(session: Session, plan: Any) -> None:
    """The schedule, before anything is built: each job's node and why, and the nodes that
    are down with their reason."""
    up = sum(n.up for n in plan.nodes)
    rows = [[a.job.key, a.node or "-", ("emulated, " if a.emulated else "") + a.why]
            for a in plan.assignments]
    session.reporter.table(f"schedule: {len(rows)} job(s) on {up} node(s) up of"
                           f" {len(plan.nodes)}", ["job", "node", "why"], rows)
    for name, why in sorted(plan.down.items()):
        session.reporter.node(name, f"skipped: {why}", style="yellow")


def show_moves(session: Session, rows: list[tuple[str, dict]]) -> None:
    """Where a job first ran and why it moved (failover), one line each."""
    for key, row in rows:
        for tried in row.get("tried", []):
            where = (f"retried on {row['node']} once it was started again"
                     if tried["node"] == row["node"] else
                     f"first ran on {tried['node']}, moved to {row['node']}")
            session.reporter.node(key, f"{where}: {tried['why']}", style="yellow")


def wake_cell(row: dict) -> str:
    """The table's wake column: the seconds the node took to start, for a node woken."""
    return "-" if row.get("wake") is None else f"{row['wake']} s"


def finish(session: Session, recap: Any, report: dict, what: str,
           pushed: list[str] | None = None) -> int:
    """The end of a build or bake: each failed or interrupted job with its cause, the
    per-platform tags, the kept logs, what an interrupt left; the --json; the exit code."""
    from .build import state

    for key, result in sorted(recap.results.items()):
        if result.bad:
            session.reporter.node(key, f"{state(result).upper()}: {result.note}", style="red")
    if pushed:
        session.say(f"per-platform tags (the next build of this tag reuses them):"
                    f" {', '.join(pushed)}")
    if report["logs"]:
        session.say(f"logs of this {what}: {report['logs']} (kept for the failures above;"
                    " delete it when done)")
    if recap.interrupted:
        left = sorted(k for k, r in recap.results.items() if r.interrupted)
        session.say(f"interrupted: {len(left)} left in flight ({', '.join(left) or 'none'});"
                    f" run the same {what} again to finish")
    session.emit({**report, "nodes": {k: r.to_json() for k, r in recap.results.items()},
                  **({"interrupted": True} if recap.interrupted else {})})
    return recap.exit_code


@task
def build(session: Session, *, inventory: str | None, request: Any) -> int:
    """See build.py. Prints the schedule, then ends with a table platform -> node -> digest
    -> seconds; then where a platform moved and why, each failed or interrupted step with its
    cause (a failed build's log: its tail and where it is), the per-platform tags, the kept
    logs, and what an interrupt left."""
    from ..runner import Outcome
    from . import build as stage

    farm = load(inventory)
    recap, report = stage.build(farm, request, session.node, session.cancel,
                                show_plan=lambda plan: show_plan(session, plan))
    results = recap.results
    if request.check:
        session.say("check mode: nothing was built")
        session.emit({**report, "nodes": {k: r.to_json() for k, r in results.items()}})
        return recap.exit_code
    rows = [[e["platform"], e["node"] or "-",
             e["digest"] or stage.state(results.get(e["platform"], Outcome())),
             wake_cell(e), "-" if e["seconds"] is None else str(e["seconds"]),
             ", ".join(e["attestations"]) or "-"] for e in report["platforms"]]
    session.reporter.table(f"image {report['image']}" + (f"@{report['digest']}"
                                                         if report["digest"] else ""),
                           ["platform", "node", "digest", "wake", "seconds", "attestations"],
                           rows)
    show_moves(session, [(e["platform"], e) for e in report["platforms"]])
    pushed = [e["pushed"] for e in report["platforms"] if "pushed" in e]
    return finish(session, recap, report, "build", pushed)


@task
def bake(session: Session, *, inventory: str | None, options: Any) -> int:
    """See bake.py. Prints the schedule, then one table target -> platform -> node -> digest
    -> seconds, each target's index, where a job moved and why, and each failure."""
    from ..runner import Outcome
    from . import bake as stage
    from .build import state

    farm = load(inventory)
    recap, report = stage.bake(farm, options, session.node, session.cancel,
                               show_plan=lambda plan: show_plan(session, plan))
    results = recap.results
    nodes = {k: r.to_json() for k, r in results.items()}
    if options.check:
        session.say("check mode: nothing was built")
        session.emit({**report, "nodes": nodes})
        return recap.exit_code
    rows, moved = [], []
    for name, target in report["targets"].items():
        for e in target["platforms"]:
            key = f"{name}/{e['platform']}"
            rows.append([name, e["platform"], e["node"] or "-",
                         e["digest"] or state(results.get(key, Outcome())), wake_cell(e),
                         "-" if e["seconds"] is None else str(e["seconds"]),
                         ", ".join(e["attestations"]) or "-"])
            moved.append((key, e))
    session.reporter.table(f"bake {report['file'] or '(default file)'}",
                           ["target", "platform", "node", "digest", "wake", "seconds",
                            "attestations"], rows)
    for name, target in report["targets"].items():
        if target["digest"]:
            session.reporter.node(name, f"{', '.join(target['tags'])} -> {target['digest']}")
    show_moves(session, moved)
    return finish(session, recap, report, "bake")
