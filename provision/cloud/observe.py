"""What exists now: the farm's VMs (by label), its firewall rule, same-named strangers."""

from __future__ import annotations

from typing import Any

from .. import names
from ..gce import firewall, instances, labels
from ..gce.operations import Cancel
from ..inventory import Farm
from .plan import Observed


def observe(clients: Any, farm: Farm, cancel: Cancel, strangers: bool = False) -> Observed:
    project = farm.gcp.project
    vms = instances.find(clients, project, labels.farm_filter(farm.farm), cancel)
    rule = firewall.get(clients, project, names.rule(farm.farm), cancel)
    others = []
    if strangers:
        others = [vm for vm in instances.find(clients, project,
                                              labels.named_like_filter(farm.farm), cancel)
                  if not labels.owned(vm, farm.farm)]
    return Observed(vms, rule, others)
