"""What each task does between parsing flags and exiting: load, observe, plan, then in one
place show / --check / confirm / apply under the runner, recap, exit code.

Exit codes: 0 success, 1 a stage failed somewhere (the recap says where), 2 bad input,
130 interrupted.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .errors import UserError
from .report import Reporter
from .runner import Cancel, Job, NodeResult, RunResult, interruptible, plain_ctrl_c, run

if TYPE_CHECKING:
    from .cloud.plan import Action
    from .costs import Estimate
    from .inventory import Farm


def _guard(reporter: Reporter, json_mode: bool, body: Callable[[Cancel], int],
           stages: bool = True) -> int:
    """Every way a task can fail ends here as one message and an exit code, never a traceback
    (ARCHFARM_DEBUG=1 shows it). Stages take Ctrl-C through the runner's cancel flag; other
    tasks get KeyboardInterrupt."""
    cancel = Cancel()
    try:
        if not stages:
            return body(cancel)
        with interruptible(cancel):
            return body(cancel)
    except UserError as e:
        return _fail(reporter, json_mode, str(e), e.exit_code)
    except KeyboardInterrupt:
        return _fail(reporter, json_mode, "interrupted; run the same task again to converge", 130)
    except Exception as e:  # noqa: BLE001 (the API layer's errors, put in words)
        if cancel.is_set():  # whatever the interrupted call raised, this was Ctrl-C
            return _fail(reporter, json_mode,
                         "interrupted before any change; run the same task again", 130)
        if os.environ.get("ARCHFARM_DEBUG"):
            traceback.print_exc()
        from .gce.operations import describe, is_api_error

        what = describe(e).rstrip(".")
        if not is_api_error(e):
            return _fail(reporter, json_mode, f"internal error: {what}. Please report it, with"
                         " the output of the same command under ARCHFARM_DEBUG=1.", 1)
        hint = " For the lab, start it with `inv lab.up`." if "cannot reach" in what else ""
        return _fail(reporter, json_mode, f"Compute Engine: {what}.{hint}", 1)


def _fail(reporter: Reporter, json_mode: bool, message: str, code: int) -> int:
    reporter.error(message)
    if json_mode:
        reporter.emit_json({"error": message})
    return code


def _setup(inventory: str | None) -> tuple[Farm, Any]:
    """Load and validate everything local (inventory, key) before the first API call."""
    from .gce.clients import Clients, resolve_endpoint
    from .inventory import load
    from .keys import load_public_key

    farm = load(inventory)
    load_public_key(farm.key_path)
    clients = Clients(resolve_endpoint(farm.gcp.api_endpoint))
    clients.check_credentials()
    return farm, clients


def _execute(reporter: Reporter, title: str, actions: Sequence[Action],
             make_job: Callable[[Action], Job], cancel: Cancel, *, check: bool,
             json_mode: bool, question: str | None = None, yes: bool = False,
             cost: Estimate | None = None) -> int:
    """The one place every stage shows its plan, honours --check, asks, applies, recaps.
    `cost`, when given, ends the output (and the JSON) with the estimated cost."""
    from .gce.operations import describe

    reporter.plan(title, [(a.verb, a.key, a.target, a.detail) for a in actions])
    changes = [a for a in actions if a.changes]
    if check:
        reporter.say(f"check mode: nothing was changed ({len(changes)} change(s) planned)")
        results = {a.key: NodeResult(changed=int(a.changes), ok=int(not a.changes),
                                     note=a.detail) for a in actions}
        return _finish(reporter, RunResult(results, cancel.is_set()), json_mode, cost)
    if question is not None:
        if not changes:
            return _finish(reporter, RunResult({}, False), json_mode, cost)
        if not yes and not _confirm(question):
            raise UserError(f"{question.rstrip('?')}: not confirmed, nothing was changed."
                            " Fix: answer y, or pass --yes.")
    cancel.check()
    outcome = run([(a.key, make_job(a)) for a in actions], cancel,
                  say=lambda key, text: reporter.node(key, text), describe=describe)
    return _finish(reporter, outcome, json_mode, cost)


def _finish(reporter: Reporter, outcome: RunResult, json_mode: bool,
            cost: Estimate | None = None) -> int:
    if outcome.results:
        reporter.recap(outcome.results)
    if cost is not None:
        reporter.costs(cost)
    if outcome.interrupted:
        left = sorted(k for k, r in outcome.results.items() if r.interrupted)
        reporter.say(f"interrupted: {len(left)} left in flight ({', '.join(left) or 'none'});"
                     " run the same task again to converge")
    if json_mode:
        out: dict[str, Any] = {"nodes": {k: r.to_json() for k, r in outcome.results.items()}}
        if outcome.interrupted:
            out["interrupted"] = True
        if cost is not None:
            out["cost"] = cost.to_json()
        reporter.emit_json(out)
    return outcome.exit_code


def vms(inventory: str | None, check: bool, limit: str | None, prune: bool,
        json_mode: bool) -> int:
    reporter = Reporter(json_mode)

    def body(cancel: Cancel) -> int:
        from .cloud import plan
        from .cloud.apply import Apply
        from .cloud.observe import observe
        from .costs import estimate
        from .inventory import parse_limit

        farm, clients = _setup(inventory)
        nodes = parse_limit(limit, farm)
        actions = plan.vms(farm, observe(clients, farm, cancel), nodes, prune)
        return _execute(reporter, f"farm {farm.farm}: VMs in project {farm.gcp.project}",
                        actions, Apply(clients, farm, reporter.say).job, cancel,
                        check=check, json_mode=json_mode,
                        cost=estimate(farm, nodes) if check else None)

    return _guard(reporter, json_mode, body)


def destroy(inventory: str | None, yes: bool, check: bool, json_mode: bool) -> int:
    reporter = Reporter(json_mode)

    def body(cancel: Cancel) -> int:
        from .cloud import plan
        from .cloud.apply import Apply
        from .cloud.observe import observe

        farm, clients = _setup(inventory)
        actions = plan.destroy(farm, observe(clients, farm, cancel, strangers=True))
        if not actions:
            reporter.say(f"farm {farm.farm}: nothing to destroy")
            return _finish(reporter, RunResult({}, False), json_mode)
        vms = sum(1 for a in actions if a.changes and a.vm is not None)
        rule = any(a.changes and a.rule is not None for a in actions)
        question = (f"Delete {vms} VM(s) of farm {farm.farm}"
                    f"{' and its firewall rule' if rule else ''}?")
        return _execute(reporter, f"farm {farm.farm}: destroy in project {farm.gcp.project}",
                        actions, Apply(clients, farm, reporter.say).job, cancel, check=check,
                        json_mode=json_mode, question=question, yes=yes)

    return _guard(reporter, json_mode, body)


def status(inventory: str | None, json_mode: bool) -> int:
    reporter = Reporter(json_mode)

    def body(cancel: Cancel) -> int:
        from . import status as stage

        farm, clients = _setup(inventory)
        state = stage.collect(clients, farm, cancel)
        stage.show(reporter, state)
        if json_mode:
            reporter.emit_json(state)
        return 0

    return _guard(reporter, json_mode, body)


def _confirm(question: str) -> bool:
    """Ask on a terminal; Ctrl-C at the prompt interrupts at once (exit 130)."""
    if not sys.stdin.isatty():
        return False
    with plain_ctrl_c():
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def lab_up(json_mode: bool) -> int:
    reporter = Reporter(json_mode)

    def body(cancel: Cancel) -> int:
        from .lab import control

        info = control.up(reporter.say)
        reporter.say(f"lab is up in {info['seconds']} s: Compute Engine at"
                     f" {info['compute_endpoint']}, registry at {info['registry']};"
                     f" state and logs in {info['state_dir']}")
        if json_mode:
            reporter.emit_json(info)
        return 0

    return _guard(reporter, json_mode, body, stages=False)


def lab_down(json_mode: bool) -> int:
    reporter = Reporter(json_mode)

    def body(cancel: Cancel) -> int:
        from .lab import control

        control.down(reporter.say)
        reporter.say("lab is down: no lab process, container or volume is left")
        if json_mode:
            reporter.emit_json(control.status())
        return 0

    return _guard(reporter, json_mode, body, stages=False)


def lab_status(json_mode: bool) -> int:
    reporter = Reporter(json_mode)

    def body(cancel: Cancel) -> int:
        from .lab import control

        info = control.status()
        rows = [[name, "running" if pid else "stopped", str(pid or "-")]
                for name, pid in info["services"].items()]
        reporter.table("lab", ["component", "state", "pid"], rows)
        reporter.say(f"docker engine {info['docker']}; {info['vm_containers']} VM container(s)"
                     f" running; Compute Engine at {info['compute_endpoint']}")
        if json_mode:
            reporter.emit_json(info)
        return 0

    return _guard(reporter, json_mode, body, stages=False)
