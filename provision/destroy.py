"""`inv destroy`: delete, in parallel, only what carries this farm's labels; then the rule."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from .gce import firewall, instances
from .inventory import Farm
from .report import NodeResult, Reporter
from .vms import guarded


def plan(clients, farm: Farm) -> tuple[list[instances.FoundVm], list[instances.FoundVm], object]:
    """(VMs to delete, same-named VMs without our labels to spare, firewall rule or None)."""
    owned = instances.find_farm(clients, farm)
    spared = [vm for vm in instances.find_named_like_farm(clients, farm)
              if not vm.owned_by(farm.farm)]
    return owned, spared, firewall.get(clients, farm)


def show(reporter: Reporter, farm: Farm, owned, spared, rule) -> None:
    rows = [("delete", vm.node or "?", vm.name, f"{vm.status.lower()} in {vm.zone}")
            for vm in owned]
    rows += [("spare", "-", vm.name, f"in {vm.zone}, lacks this farm's labels") for vm in spared]
    if rule is not None:
        mine = firewall.owned(rule, farm)
        rows.append(("delete" if mine else "spare", "-", rule.name,
                     "firewall rule" if mine else "firewall rule not made by archfarm"))
    if rows:
        reporter.plan(f"farm {farm.farm}: destroy in project {farm.gcp.project}", rows)
    else:
        reporter.say(f"farm {farm.farm}: nothing to destroy")


def run(clients, farm: Farm, reporter: Reporter, owned, rule) -> dict[str, NodeResult]:
    def delete(vm: instances.FoundVm) -> NodeResult:
        reporter.node(vm.node or vm.name, f"deleting {vm.name} in {vm.zone}")
        instances.delete(clients, farm.gcp.project, vm.zone, vm.name)
        return NodeResult(changed=1, note=f"deleted {vm.name}")

    with ThreadPoolExecutor(max_workers=max(1, min(32, len(owned)))) as pool:
        futures = [(vm, pool.submit(guarded, delete, vm)) for vm in owned]
        results = {(vm.node or vm.name): f.result() for vm, f in futures}
    if rule is not None and firewall.owned(rule, farm):
        def delete_rule() -> NodeResult:
            firewall.delete(clients, farm)
            return NodeResult(changed=1, note="deleted")

        results[firewall.rule_name(farm)] = guarded(delete_rule)
    return results
