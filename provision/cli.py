"""What each task does between parsing flags and exiting: load, observe, plan, then in one
place show / --check / confirm / apply under the runner, recap, exit code.

Exit codes: 0 success, 1 a stage failed somewhere (the recap says where), 2 bad input,
130 interrupted.
"""

from __future__ import annotations

import os
import select
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .buildx.docker import DockerError
from .errors import UserError
from .report import Reporter
from .runner import (
    Cancel,
    Job,
    NodeResult,
    RunResult,
    interruptible,
    merge,
    plain_ctrl_c,
    run,
)

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
    except DockerError as e:
        if cancel.is_set():  # Ctrl-C reached the docker child too: this was the interrupt
            return _fail(reporter, json_mode, "interrupted; run the same task again to"
                         " converge", 130)
        return _fail(reporter, json_mode, str(e), 1)
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


def _load(inventory: str | None) -> Farm:
    """Load and validate everything local (inventory, key) before any remote call."""
    from .inventory import load
    from .keys import load_public_key

    farm = load(inventory)
    load_public_key(farm.key_path)
    return farm


def _setup(inventory: str | None) -> tuple[Farm, Any]:
    """The farm and Compute Engine clients (the client library is imported here)."""
    from .configure import make_clients_for

    farm = _load(inventory)
    return farm, make_clients_for(farm)()


def _apply(reporter: Reporter, title: str, actions: Sequence[Action],
           make_job: Callable[[Action], Job], cancel: Cancel, *, check: bool,
           question: str | None = None, yes: bool = False,
           first: Callable[[], RunResult] | None = None) -> RunResult:
    """The one place every cloud stage shows its plan, honours --check, asks and applies."""
    from .gce.operations import describe

    reporter.plan(title, [(a.verb, a.key, a.target, a.detail) for a in actions])
    changes = [a for a in actions if a.changes]
    if check:
        reporter.say(f"check mode: nothing was changed ({len(changes)} change(s) planned)")
        results = {a.key: NodeResult(changed=int(a.changes), ok=int(not a.changes),
                                     note=a.detail) for a in actions}
        return RunResult(results, cancel.is_set())
    if question is not None:
        if not changes:
            return RunResult({}, False)
        cancel.check()  # a Ctrl-C that came before the prompt: no prompt
        if not yes and not _confirm(question):
            raise UserError(f"{question.rstrip('?')}: not confirmed, nothing was changed."
                            " Fix: answer y, or pass --yes.")
    cancel.check()
    before = first() if first else RunResult({}, False)  # confirmed: what must go first
    return merge(before, run([(a.key, make_job(a)) for a in actions], cancel,
                             say=lambda key, text: reporter.node(key, text),
                             describe=describe))


def _finish(reporter: Reporter, outcome: RunResult, json_mode: bool,
            cost: Estimate | None = None) -> int:
    """The recap (then the estimated cost, when given), the --json object, the exit code."""
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
        outcome = _apply(reporter, f"farm {farm.farm}: VMs in project {farm.gcp.project}",
                         actions, Apply(clients, farm, reporter.say).job, cancel, check=check)
        if not check:
            _update_hosts(farm, actions)
        return _finish(reporter, outcome, json_mode, estimate(farm, nodes) if check else None)

    return _guard(reporter, json_mode, body)


def destroy(inventory: str | None, yes: bool, check: bool, json_mode: bool) -> int:
    reporter = Reporter(json_mode)

    def body(cancel: Cancel) -> int:
        from .buildx.register import unregister
        from .cloud import plan
        from .cloud.apply import Apply
        from .cloud.observe import observe

        farm, clients = _setup(inventory)
        actions = plan.destroy(farm, observe(clients, farm, cancel, strangers=True))
        if not any(a.changes for a in actions):  # no VM of ours left: only what is local
            if actions:
                reporter.plan(f"farm {farm.farm}: destroy in project {farm.gcp.project}",
                              [(a.verb, a.key, a.target, a.detail) for a in actions])
            local = unregister(farm, check)
            if not check and local.results:
                from .hosts import cache

                cache.forget(farm.gcp.project, farm.farm)
            if not local.results:
                reporter.say(f"farm {farm.farm}: nothing to destroy")
            return _finish(reporter, merge(local, RunResult(
                {a.key: NodeResult(ok=1, note=a.detail) for a in actions}, False)), json_mode)
        vms = sum(1 for a in actions if a.changes and a.vm is not None)
        rule = any(a.changes and a.rule is not None for a in actions)
        question = (f"Delete {vms} VM(s) of farm {farm.farm}"
                    f"{' and its firewall rule' if rule else ''}?")
        outcome = _apply(reporter, f"farm {farm.farm}: destroy in project {farm.gcp.project}",
                         actions, Apply(clients, farm, reporter.say).job, cancel, check=check,
                         question=question, yes=yes,
                         # before the VMs: removing the builder needs its nodes reachable
                         first=lambda: unregister(farm, False))
        if check:
            outcome = merge(unregister(farm, True), outcome)
        elif outcome.results:
            from .hosts import cache

            cache.forget(farm.gcp.project, farm.farm)
        return _finish(reporter, outcome, json_mode)

    return _guard(reporter, json_mode, body)


def _update_hosts(farm: Farm, actions: Sequence[Action]) -> None:
    """Keep the hosts cache in step with the VMs, at no API call: VMs created, started,
    resumed, deleted or still coming up may have a new address or new host keys, so they
    are dropped; a running VM the cache does not know as it is gets its address written
    down (configure then fetches its host keys from its guest attributes)."""
    from .cloud import spec
    from .cloud.plan import Verb
    from .hosts import cache

    hosts = cache.load(farm.gcp.project, farm.farm)
    for a in actions:
        node = a.node.name if a.node else (spec.node_of(a.vm) if a.vm else None)
        if node is None:
            continue
        if a.changes or a.verb is Verb.WAIT:
            hosts.pop(node, None)
        elif a.verb is Verb.KEEP and a.vm and a.vm.external_ip:
            known = hosts.get(node)
            if not known or (known.vm_id, known.address) != (a.vm.id, a.vm.external_ip):
                hosts[node] = cache.Host(node=node, vm=a.vm.name, zone=a.vm.zone,
                                         vm_id=a.vm.id, address=a.vm.external_ip)
    cache.save(farm.gcp.project, farm.farm, hosts)


def _configure(reporter: Reporter, farm: Farm, nodes: set[str] | None, cancel: Cancel,
               check: bool, make_clients: Callable[[], Any]) -> RunResult:
    from .configure import Configure
    from .hosts.directory import Directory

    targets = farm.selected(nodes)
    if not targets:
        return RunResult({}, cancel.is_set())
    stage = Configure(farm, Directory(farm, make_clients), check)
    reporter.say(f"farm {farm.farm}: configuring {len(targets)} host(s)"
                 f"{' (check mode: nothing will be changed)' if check else ''}")
    return run([(n.name, stage.job(n)) for n in targets], cancel,
               say=lambda key, text: reporter.node(key, text))


def _register(reporter: Reporter, farm: Farm, nodes: set[str] | None, cancel: Cancel,
              check: bool, make_clients: Callable[[], Any]) -> RunResult:
    """The register stage for the nodes given (None: every node); a node with no known
    address and host keys is asked of the API, and one that has none is reported."""
    from .buildx.register import register
    from .hosts.directory import Directory, NotUp

    targets = farm.selected(nodes)
    if not targets:
        return RunResult({}, cancel.is_set())
    reporter.say(f"farm {farm.farm}: registering {len(targets)} node(s) as buildx nodes"
                 f"{' (check mode: nothing will be changed)' if check else ''}")
    directory = Directory(farm, make_clients)
    missing: dict[str, NodeResult] = {}
    for node in targets:
        if directory.cached(node.name) is None:
            try:
                directory.refresh(node.name, cancel, 0, lambda text: None)
            except NotUp as e:
                missing[node.name] = NodeResult(unreachable=True, note=str(e))
    ready = [n for n in targets if n.name not in missing]
    hosts = {n: h for n, h in directory.hosts.items() if directory.cached(n)}
    return merge(register(farm, hosts, ready, check, cancel), RunResult(missing, False))


def register(inventory: str | None, check: bool, json_mode: bool) -> int:
    reporter = Reporter(json_mode)

    def body(cancel: Cancel) -> int:
        from .configure import make_clients_for

        farm = _load(inventory)
        outcome = _register(reporter, farm, None, cancel, check, make_clients_for(farm))
        return _finish(reporter, outcome, json_mode)

    return _guard(reporter, json_mode, body)


def build(inventory: str | None, request: Any, json_mode: bool) -> int:
    """`inv build`: see provision/buildx/build.py. Ends with a table platform -> node ->
    digest -> seconds; on a failure, the failing platform's log tail."""
    reporter = Reporter(json_mode)

    def body(cancel: Cancel) -> int:
        from .buildx import build as stage

        farm = _load(inventory)
        outcome, report = stage.build(farm, request, lambda k, t: reporter.node(k, t), cancel)
        reporter.table(f"image {report['image']}" + (f"@{report['digest']}"
                                                      if report["digest"] else ""),
                       ["platform", "node", "digest", "seconds"],
                       [[e["platform"], e["node"], e["digest"] or "-", str(e["seconds"])]
                        for e in report["platforms"]])
        for key, result in sorted(outcome.results.items()):
            if result.failed:
                reporter.node(key, f"FAILED: {result.note}", style="red")
        if json_mode:
            reporter.emit_json({**report, "nodes": {k: r.to_json()
                                                    for k, r in outcome.results.items()}})
        return outcome.exit_code

    return _guard(reporter, json_mode, body)


def check_arm(inventory: str | None, image: str, command: list[str], json_mode: bool) -> int:
    """READY (exit 0) or NOT READY with the reason (exit 1)."""
    reporter = Reporter(json_mode)

    def body(cancel: Cancel) -> int:
        from .buildx.check_arm import check

        farm = _load(inventory)
        verdict = check(farm, image, command)
        reporter.say(f"{image}: platforms {', '.join(verdict.platforms) or 'none'}")
        if verdict.output:
            reporter.say(f"output on {verdict.ran_on}:\n{verdict.output}")
        reporter.say(("READY: " if verdict.ready else "NOT READY: ") + verdict.reason)
        if json_mode:
            reporter.emit_json({"image": image, **verdict.to_json()})
        return 0 if verdict.ready else 1

    return _guard(reporter, json_mode, body, stages=False)


def configure(inventory: str | None, check: bool, limit: str | None, json_mode: bool) -> int:
    reporter = Reporter(json_mode)

    def body(cancel: Cancel) -> int:
        from .configure import make_clients_for
        from .inventory import parse_limit

        farm = _load(inventory)
        nodes = parse_limit(limit, farm)
        outcome = _configure(reporter, farm, nodes, cancel, check, make_clients_for(farm))
        return _finish(reporter, outcome, json_mode)

    return _guard(reporter, json_mode, body)


def provision(inventory: str | None, check: bool, limit: str | None, json_mode: bool) -> int:
    """`vms`, then `configure` on the nodes whose VM is up, with one recap for both."""
    reporter = Reporter(json_mode)

    def body(cancel: Cancel) -> int:
        from .cloud import plan
        from .cloud.apply import Apply
        from .cloud.observe import observe
        from .costs import estimate
        from .hosts.steps import STEPS
        from .inventory import parse_limit

        farm, clients = _setup(inventory)
        nodes = parse_limit(limit, farm)
        actions = plan.vms(farm, observe(clients, farm, cancel), nodes, prune=False)
        vms_outcome = _apply(reporter, f"farm {farm.farm}: VMs in project {farm.gcp.project}",
                             actions, Apply(clients, farm, reporter.say).job, cancel,
                             check=check)
        if vms_outcome.interrupted:
            return _finish(reporter, vms_outcome, json_mode)
        if not check:
            _update_hosts(farm, actions)
        # Configure the nodes whose VM is up; in check mode, a VM still to be created or
        # started cannot be looked at: all its steps are counted as changes to come.
        pending = {a.key for a in actions if a.node and check and a.changes}
        failed = {k for k, r in vms_outcome.results.items() if r.bad}
        wanted = {n.name for n in farm.selected(nodes)}
        ready = wanted - pending - failed
        outcome = _configure(reporter, farm, ready, cancel, check, lambda: clients)
        later = RunResult({key: NodeResult(changed=len(STEPS) + 3, note="configure and"
                                           " register: every step, once the VM is up")
                           for key in pending}, False)
        if outcome.interrupted:
            return _finish(reporter, merge(vms_outcome, outcome, later), json_mode)
        configured = {k for k, r in outcome.results.items() if not r.bad}
        registered = _register(reporter, farm, configured, cancel, check, lambda: clients)
        return _finish(reporter, merge(vms_outcome, outcome, registered, later), json_mode,
                       estimate(farm, nodes) if check else None)

    return _guard(reporter, json_mode, body)


def status(inventory: str | None, json_mode: bool) -> int:
    reporter = Reporter(json_mode)

    def body(cancel: Cancel) -> int:
        from . import status as stage

        farm, clients = _setup(inventory)
        state = stage.collect(clients, farm, cancel)
        stage.add_live_facts(farm, clients, state, cancel)
        stage.add_builder_platforms(farm, state)
        stage.show(reporter, state)
        if json_mode:
            reporter.emit_json(state)
        return 130 if cancel.is_set() else 0

    return _guard(reporter, json_mode, body)


def doctor(inventory: str | None, json_mode: bool) -> int:
    """Check every prerequisite (tools, key, credentials, project, nodes, quotas, firewall)
    without changing anything: exit 1 if any check found a problem, 2 for a bad inventory."""
    reporter = Reporter(json_mode)

    def body(cancel: Cancel) -> int:
        from . import doctor as stage
        from .gce.clients import Clients, resolve_endpoint
        from .inventory import load

        farm = load(inventory)
        reporter.say(f"farm {farm.farm}: prerequisites in project {farm.gcp.project}")
        checks = stage.run(farm, Clients(resolve_endpoint(farm.gcp.api_endpoint)))
        stage.show(reporter, checks)
        report = stage.to_json(checks)
        if json_mode:
            reporter.emit_json(report)
        return 1 if report["problems"] else 0

    return _guard(reporter, json_mode, body, stages=False)


def _confirm(question: str) -> bool:
    """Ask on a terminal; Ctrl-C at the prompt interrupts at once (exit 130)."""
    if not sys.stdin.isatty():
        return False
    with plain_ctrl_c():
        sys.stdout.write(f"{question} [y/N] ")
        sys.stdout.flush()
        # Wake up often: a Ctrl-C the kernel delivers to another thread (a client library's)
        # does not interrupt a blocked read here, and Python only acts on it between waits.
        while not select.select([sys.stdin], [], [], 0.1)[0]:
            pass
        return sys.stdin.readline().strip().lower() in ("y", "yes")


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
