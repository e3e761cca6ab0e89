"""What exists now: the farm's VMs (by label), its firewall rules, same-named strangers."""

from __future__ import annotations

from typing import Any

from .. import names
from ..gce import firewall, instances, labels
from ..gce.operations import Cancel
from ..inventory import Farm
from .plan import Observed
from .spec import has_private_nodes


def observe(clients: Any, farm: Farm, cancel: Cancel, strangers: bool = False) -> Observed:
    project = farm.gcp.project
    vms = instances.find(clients, project, labels.farm_filter(farm.farm), cancel)
    rule = firewall.get(clients, project, names.rule(farm.farm), cancel)
    others = []
    if strangers:
        others = [vm for vm in instances.find(clients, project,
                                              labels.named_like_filter(farm.farm), cancel)
                  if not labels.owned(vm, farm.farm)]
    # The bastion's rule exists only for a farm that has (or had: its SSH rule still targets
    # the public tag) private nodes; a farm that never had any is spared the call. destroy
    # (strangers) always looks.
    bastion_rule = None
    if strangers or has_private_nodes(farm) or (
            rule is not None and names.public_tag(farm.farm) in rule.target_tags):
        bastion_rule = firewall.get(clients, project, names.bastion_rule(farm.farm), cancel)
    return Observed(vms, rule, others, bastion_rule)
