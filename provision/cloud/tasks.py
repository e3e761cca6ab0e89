"""`inv vms` and `inv destroy`: observe the farm's VMs and rule, plan, show, --check or
confirm, apply under the runner, recap."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..cli import Session, load_with_clients, task
from ..inventory import Farm
from ..runner import Recap, merge
from .stage import planned, show_and_apply, show_plan, title, update_hosts

if TYPE_CHECKING:
    from .plan import Action


@task
def vms(session: Session, *, inventory: str | None, check: bool = False,
        limit: str | None = None, prune: bool = False, hours_a_day: str | None = None) -> int:
    from ..costs import estimate, parse_hours_a_day
    from ..inventory import parse_limit
    from . import plan
    from .apply import Apply
    from .observe import observe

    hours = parse_hours_a_day(hours_a_day, check)
    farm, clients = load_with_clients(inventory)
    nodes = parse_limit(limit, farm)
    actions = plan.vms(farm, observe(clients, farm, session.cancel), nodes, prune)
    recap = show_and_apply(session, title(farm, "VMs"), actions,
                           Apply(clients, farm, session.say).job, check=check)
    if not check:
        update_hosts(farm, actions)
    return session.finish(recap, estimate(farm, nodes, hours) if check else None)


@task
def destroy(session: Session, *, inventory: str | None, yes: bool = False,
            check: bool = False) -> int:
    from ..buildx.register import unregister
    from . import plan
    from .apply import Apply
    from .observe import observe

    farm, clients = load_with_clients(inventory)
    actions = plan.destroy(farm, observe(clients, farm, session.cancel, strangers=True))
    if not any(a.changes for a in actions):
        return _destroy_local(session, farm, actions, check)
    vms = sum(1 for a in actions if a.changes and a.vm is not None)
    rules = sum(1 for a in actions if a.changes and a.rule is not None)
    question = (f"Delete {vms} VM(s) of farm {farm.farm}"
                f"{' and its firewall rule' if rules else ''}{'s' if rules > 1 else ''}?")
    recap = show_and_apply(session, title(farm, "destroy"), actions,
                           Apply(clients, farm, session.say).job, check=check,
                           question=question, yes=yes,
                           # before the VMs: removing the builder needs its nodes reachable
                           first=lambda: unregister(farm, False))
    if check:
        recap = merge(unregister(farm, True), recap)
    elif recap.results:
        _forget_hosts(farm)
    return session.finish(recap)


def _destroy_local(session: Session, farm: Farm, actions: Sequence[Action],
                   check: bool) -> int:
    """No VM of ours is left in the cloud: only what is local (builder, contexts, ssh)."""
    from ..buildx.register import unregister

    if actions:
        show_plan(session, title(farm, "destroy"), actions)
    local = unregister(farm, check)
    if not check and local.results:
        _forget_hosts(farm)
    if not local.results:
        session.say(f"farm {farm.farm}: nothing to destroy")
    return session.finish(merge(local, Recap({a.key: planned(a) for a in actions})))


def _forget_hosts(farm: Farm) -> None:
    from ..hosts import cache

    cache.forget(farm.gcp.project, farm.farm)


