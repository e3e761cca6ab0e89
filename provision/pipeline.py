"""`inv provision`: the cloud stage, then configure on the nodes whose VM is up, then register
on those configured, with one recap for all three."""

from __future__ import annotations

from .buildx import register
from .cli import Session, load_with_clients, task
from .configure import configure_nodes
from .hosts.steps import STEPS
from .inventory import Node
from .runner import Outcome, Recap, merge


def later_items(node: Node | None) -> list[str]:
    """For a VM still to come, in check mode: every item of configure and register (the idle
    stop only where the node has one)."""
    wanted = [s for s in STEPS if s != "idle stop" or (node and node.idle_stop_minutes)]
    return [*wanted, *register.ITEMS]


@task
def provision(session: Session, *, inventory: str | None, check: bool = False,
              limit: str | None = None, hours_a_day: str | None = None) -> int:
    from .cloud import plan
    from .cloud.apply import Apply
    from .cloud.observe import observe
    from .cloud.stage import show_and_apply, title, update_hosts
    from .costs import estimate, parse_hours_a_day
    from .inventory import parse_limit

    hours = parse_hours_a_day(hours_a_day, check)
    farm, clients = load_with_clients(inventory)
    nodes = parse_limit(limit, farm)
    actions = plan.vms(farm, observe(clients, farm, session.cancel), nodes, prune=False)
    vms = show_and_apply(session, title(farm, "VMs"), actions,
                         Apply(clients, farm, session.say).job, check=check)
    if vms.interrupted:
        return session.finish(vms)
    if not check:
        update_hosts(farm, actions)
    # Configure the nodes whose VM is up; in check mode, a VM still to be created or
    # started cannot be looked at: every item of configure and register is a change to come.
    pending = {a.key for a in actions if a.node and check and a.changes}
    failed = {k for k, r in vms.results.items() if r.bad}
    wanted = {n.name for n in farm.selected(nodes)}
    configured = configure_nodes(session, farm, wanted - pending - failed, check,
                                 lambda: clients)
    by_name = {n.name: n for n in farm.expanded()}
    later = Recap({key: Outcome(changes=later_items(by_name.get(key)),
                                note="configure and register: every step, once the VM is up")
                   for key in pending})
    if configured.interrupted:
        return session.finish(merge(vms, configured, later))
    ready = {k for k, r in configured.results.items() if not r.bad}
    registered = register.register_nodes(session, farm, ready, check, lambda: clients)
    return session.finish(merge(vms, configured, registered, later),
                          estimate(farm, nodes, hours) if check else None)
