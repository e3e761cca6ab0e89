"""`inv vms` and `inv destroy`: observe the farm's VMs and rule, plan, show, --check or
confirm, apply under the runner, recap."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..cli import Session, confirm, load_with_clients, task
from ..errors import UserError
from ..inventory import Farm
from ..runner import Job, Outcome, Recap, merge, run
from .plan import Action


def show_and_apply(session: Session, title: str, actions: Sequence[Action],
                   make_job: Callable[[Action], Job], *, check: bool,
                   question: str | None = None, yes: bool = False,
                   first: Callable[[], Recap] | None = None) -> Recap:
    """The one place every cloud stage shows its plan, honours --check, asks and applies."""
    from ..gce.operations import describe

    session.reporter.plan(title, [(a.verb, a.key, a.target, a.detail) for a in actions])
    changes = [a for a in actions if a.changes]
    cancel = session.cancel
    if check:
        session.say(f"check mode: nothing was changed ({len(changes)} change(s) planned)")
        return Recap({a.key: planned(a) for a in actions}, cancel.is_set())
    if question is not None:
        if not changes:
            return Recap({})
        cancel.check()  # a Ctrl-C that came before the prompt: no prompt
        if not yes and not confirm(question):
            raise UserError(f"{question.rstrip('?')}: not confirmed, nothing was changed."
                            " Fix: answer y, or pass --yes.")
    cancel.check()
    before = first() if first else Recap({})  # confirmed: what must go first
    return merge(before, run([(a.key, make_job(a)) for a in actions], cancel,
                             say=session.node, describe=describe))


def planned(action: Action) -> Outcome:
    """An action as --check reports it: a change to come, or the item as it should be."""
    item = [action.target]
    return Outcome(changes=item if action.changes else [],
                   converged=[] if action.changes else item, note=action.detail)


@task
def vms(session: Session, *, inventory: str | None, check: bool = False,
        limit: str | None = None, prune: bool = False) -> int:
    from ..costs import estimate
    from ..inventory import parse_limit
    from . import plan
    from .apply import Apply
    from .observe import observe

    farm, clients = load_with_clients(inventory)
    nodes = parse_limit(limit, farm)
    actions = plan.vms(farm, observe(clients, farm, session.cancel), nodes, prune)
    recap = show_and_apply(session, title(farm, "VMs"), actions,
                           Apply(clients, farm, session.say).job, check=check)
    if not check:
        update_hosts(farm, actions)
    return session.finish(recap, estimate(farm, nodes) if check else None)


def title(farm: Farm, what: str) -> str:
    return f"farm {farm.farm}: {what} in project {farm.gcp.project}"


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
    rule = any(a.changes and a.rule is not None for a in actions)
    question = (f"Delete {vms} VM(s) of farm {farm.farm}"
                f"{' and its firewall rule' if rule else ''}?")
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
        session.reporter.plan(title(farm, "destroy"),
                              [(a.verb, a.key, a.target, a.detail) for a in actions])
    local = unregister(farm, check)
    if not check and local.results:
        _forget_hosts(farm)
    if not local.results:
        session.say(f"farm {farm.farm}: nothing to destroy")
    return session.finish(merge(local, Recap({a.key: planned(a) for a in actions})))


def _forget_hosts(farm: Farm) -> None:
    from ..hosts import cache

    cache.forget(farm.gcp.project, farm.farm)


def update_hosts(farm: Farm, actions: Sequence[Action]) -> None:
    """Keep the hosts cache in step with the VMs, at no API call: VMs created, started,
    resumed, deleted or still coming up may have a new address or new host keys, so they
    are dropped; a running VM the cache does not know as it is gets its address written
    down (configure then fetches its host keys from its guest attributes)."""
    from ..gce import labels
    from ..hosts import cache
    from .plan import Verb

    hosts = cache.load(farm.gcp.project, farm.farm)
    for a in actions:
        node = a.node.name if a.node else (labels.node_of(a.vm) if a.vm else None)
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

