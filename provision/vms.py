"""The cloud stage: make the farm's VMs exist and run, in parallel, with zone failover.

bootstrap (key, firewall) -> run_instances (create/start in parallel) -> wait (RUNNING)
-> report. Two API calls when nothing needs doing: one aggregated list, one firewall get.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from google.api_core.exceptions import GoogleAPICallError

from . import plan as planning
from .errors import UserError
from .gce import firewall, instances
from .gce.operations import OperationError
from .inventory import Farm
from .keys import ensure_keypair
from .report import NodeResult, Reporter

RUNNING_DEADLINE = 600.0


def _firewall_action(clients, farm: Farm) -> str:
    """'keep' or 'create'; exit 2 if it must be created and no source ranges are given."""
    rule = firewall.get(clients, farm)
    if rule is not None:
        return "keep"
    if not farm.gcp.ssh_source_ranges:
        raise UserError(
            f"The firewall rule {firewall.rule_name(farm)} does not exist and"
            " gcp.ssh_source_ranges is empty, so archfarm cannot open SSH to the farm."
            " Fix: set gcp.ssh_source_ranges in the inventory to the CIDR ranges SSH comes"
            " from (e.g. [203.0.113.7/32]); archfarm never opens 0.0.0.0/0 by itself.")
    return "create"


def show_plan(reporter: Reporter, farm: Farm, actions: list[planning.Action],
              fw_action: str) -> None:
    rows = [(a.kind, a.node, a.vm_name, a.detail) for a in actions]
    ranges = ", ".join(farm.gcp.ssh_source_ranges) or "-"
    rows.append((fw_action, "-", firewall.rule_name(farm), f"tcp:22 from {ranges}"))
    reporter.plan(f"farm {farm.farm}: VMs in project {farm.gcp.project}", rows)


def _wait_running(clients, farm: Farm, vm: instances.FoundVm) -> instances.FoundVm:
    deadline = time.monotonic() + RUNNING_DEADLINE
    while vm.status != "RUNNING":
        if time.monotonic() > deadline:
            raise TimeoutError(f"{vm.name} still {vm.status} after {RUNNING_DEADLINE:.0f} s")
        time.sleep(2)
        vm = instances.get(clients, farm.gcp.project, vm.zone, vm.name)
    return vm


def _apply(clients, farm: Farm, action: planning.Action, key: str | None,
           reporter: Reporter) -> NodeResult:
    project = farm.gcp.project
    if action.kind == "keep":
        return NodeResult(ok=1, note=f"running in {action.vm.zone}")
    if action.kind == "orphan":
        return NodeResult(note=f"orphan {action.vm_name} ({action.detail}); --prune deletes it")
    if action.kind == "blocked":
        return NodeResult(failed=1, note=action.detail)
    if action.kind == "wait":
        _wait_running(clients, farm, action.vm)
        return NodeResult(ok=1, note=f"running in {action.vm.zone}")
    if action.kind == "start":
        reporter.node(action.node, f"starting {action.vm_name} in {action.vm.zone}")
        instances.start(clients, project, action.vm.zone, action.vm_name)
        return NodeResult(changed=1, note=f"started in {action.vm.zone}")
    if action.kind == "delete":
        reporter.node(action.node, f"deleting orphan {action.vm_name} in {action.vm.zone}")
        instances.delete(clients, project, action.vm.zone, action.vm_name)
        return NodeResult(changed=1, note=f"orphan {action.vm_name} deleted")
    placement = instances.create(clients, farm, action.spec, key,
                                 lambda text: reporter.node(action.node, text))
    skipped = "; ".join(f"skipped {z}: {why}" for z, why in placement.skipped)
    if placement.error:
        reporter.node(action.node, f"failed: {placement.error}", "red")
        return NodeResult(failed=1, note=placement.error)
    reporter.node(action.node, f"created in {placement.zone}", "yellow")
    return NodeResult(changed=1, note="; ".join(filter(None, [f"created in {placement.zone}",
                                                              skipped])))


def guarded(fn, *args) -> NodeResult:
    """One node's failure is that node's alone: it never stops the others."""
    try:
        return fn(*args)
    except (OperationError, TimeoutError, GoogleAPICallError) as e:
        return NodeResult(failed=1, note=getattr(e, "message", None) or str(e))


def run(clients, farm: Farm, reporter: Reporter, check: bool = False,
        limit: set[str] | None = None, prune: bool = False) -> dict[str, NodeResult]:
    found = instances.find_farm(clients, farm)
    actions = planning.vms(farm, found, limit, prune)
    fw_action = _firewall_action(clients, farm)
    show_plan(reporter, farm, actions, fw_action)
    if check:
        return {a.recap_name: NodeResult(changed=int(a.changes)) for a in actions}

    key = None  # only a VM being created needs the public key, in its metadata
    if any(a.kind == "create" for a in actions):
        key, made = ensure_keypair(farm.key_path, f"archfarm-{farm.farm}")
        if made:
            reporter.say(f"generated SSH key {farm.key_path} (ed25519, 0600)")

    with ThreadPoolExecutor(max_workers=max(1, min(32, len(actions) + 1))) as pool:
        fw_future = (pool.submit(firewall.create, clients, farm) if fw_action == "create"
                     else None)
        futures = [(a, pool.submit(guarded, _apply, clients, farm, a, key, reporter))
                   for a in actions]
        results = {a.recap_name: f.result() for a, f in futures}
        if fw_future:
            try:
                fw_future.result()
                reporter.say(f"created firewall rule {firewall.rule_name(farm)}")
            except Exception as e:  # noqa: BLE001 (reported in the recap, exit 1)
                results[firewall.rule_name(farm)] = NodeResult(failed=1, note=str(e))
    return results
