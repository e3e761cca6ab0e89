"""The cloud stage run as a whole, for `inv vms`, `inv destroy` and `inv provision`: show the
plan, stop there under --check, ask when asked to, apply under the runner; and keep the hosts
cache in step with the VMs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..cli import Session, confirm
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

    show_plan(session, title, actions)
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


def show_plan(session: Session, title: str, actions: Sequence[Action]) -> None:
    session.reporter.plan(title, [(a.verb, a.key, a.target, a.detail) for a in actions])


def planned(action: Action) -> Outcome:
    """An action as --check reports it: a change to come, or the item as it should be."""
    item = [action.target]
    return Outcome(changes=item if action.changes else [],
                   converged=[] if action.changes else item, note=action.detail)


def title(farm: Farm, what: str) -> str:
    return f"farm {farm.farm}: {what} in project {farm.gcp.project}"


def update_hosts(farm: Farm, actions: Sequence[Action]) -> None:
    """Keep the hosts cache in step with the VMs, at no API call: VMs created, started,
    resumed, deleted or still coming up may have a new address or new host keys, so they
    are dropped; a running VM the cache does not know as it is gets its address written
    down (configure then fetches its host keys from its guest attributes)."""
    from ..gce import labels
    from ..hosts import cache
    from ..hosts.directory import reach
    from .plan import Verb

    hosts = cache.load(farm.gcp.project, farm.farm)
    for a in actions:
        node = a.node.name if a.node else (labels.node_of(a.vm) if a.vm else None)
        if node is None:
            continue
        if a.changes or a.verb is Verb.WAIT:
            hosts.pop(node, None)
        elif a.verb is Verb.KEEP and a.vm:
            address, via = reach(farm, a.vm)
            known = hosts.get(node)
            if address and (not known or (known.vm_id, known.address, known.via)
                            != (a.vm.id, address, via)):
                hosts[node] = cache.Host(node=node, vm=a.vm.name, zone=a.vm.zone,
                                         vm_id=a.vm.id, address=address, via=via)
    cache.save(farm.gcp.project, farm.farm, hosts)
