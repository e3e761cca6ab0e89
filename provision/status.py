"""`inv status`: what the farm looks like right now, from one aggregated list."""

from __future__ import annotations

from typing import Any

from .cloud import spec
from .gce import instances
from .inventory import Farm
from .report import Reporter


def collect(clients: Any, farm: Farm, cancel: Any = None) -> dict:
    vms = instances.find(clients, farm.gcp.project, spec.farm_filter(farm.farm), cancel)
    return {"farm": farm.farm, "nodes": [{
        "name": spec.node_of(vm) or vm.name, "vm": vm.name, "zone": vm.zone,
        "platform": spec.platform_of(vm),
        "machine_type": vm.machine_type, "status": vm.status, "external_ip": vm.external_ip,
        # filled in by the configure stage's facts once it exists
        "docker": None, "emulated": None,
    } for vm in vms]}


def show(reporter: Reporter, status: dict) -> None:
    cols = ["name", "zone", "platform", "machine_type", "status", "external_ip", "docker",
            "emulated"]
    rows = [["-" if n[c] is None else str(n[c]) for c in cols] for n in status["nodes"]]
    if rows:
        reporter.table(f"farm {status['farm']}", cols, rows)
    else:
        reporter.say(f"farm {status['farm']}: no VMs (run `inv vms` to create them)")
