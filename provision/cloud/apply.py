"""Carry out one planned action of the cloud stage, as a runner job.

A VM that vanishes while archfarm waits on it (deleted by hand, or a spot VM reclaimed) is
created again, with zone failover, in the same run.
"""

from __future__ import annotations

import threading
from typing import Any

from google.api_core import exceptions

from .. import names
from ..gce import firewall, instances
from ..inventory import Farm
from ..keys import ensure_keypair
from ..runner import Job, Outcome, Progress
from . import spec
from .plan import GOING_UP, STOPPED, Action, Verb

UP = GOING_UP | {"RUNNING"}
VANISH_RETRIES = 3
DONE = {Verb.CREATE: "created", Verb.UPDATE: "updated", Verb.DELETE: "deleted"}


class Apply:
    """Jobs for the cloud stage's actions, sharing clients, the farm key and look-ups."""

    def __init__(self, clients: Any, farm: Farm, say: Any = None):
        self.clients, self.farm, self.project = clients, farm, farm.gcp.project
        self.machine_types = instances.MachineTypes(clients, self.project)
        self._key: str | None = None
        self._key_lock = threading.Lock()
        self._say = say or (lambda text: None)

    def job(self, action: Action) -> Job:
        return lambda progress: self.run(action, progress)

    def public_key(self) -> str:
        """The farm key, generated on first need (only VMs being created need it)."""
        with self._key_lock:
            if self._key is None:
                self._key, made = ensure_keypair(self.farm.key_path,
                                                 names.farm_tag(self.farm.farm))
                if made:
                    self._say(f"generated SSH key {self.farm.key_path} (ed25519, 0600)")
            return self._key

    def run(self, action: Action, progress: Progress) -> Outcome:
        """The action carried out; its one item is the VM or rule it acts on."""
        cancel, verb, item = progress.cancel, action.verb, [action.target]
        if action.rule is not None:
            return self._firewall(action, progress)
        if verb in (Verb.KEEP, Verb.SPARE):
            return Outcome(converged=item, note=action.detail)
        if verb in (Verb.ORPHAN, Verb.BLOCKED):
            note = (f"{action.detail}; --prune deletes it" if verb is Verb.ORPHAN
                    else action.detail)
            return Outcome(failures=item if verb is Verb.BLOCKED else [], note=note)
        if verb is Verb.DELETE:
            vm = action.vm
            assert vm is not None
            progress(f"deleting {vm.name} in {vm.zone}")
            instances.delete(self.clients, self.project, vm.zone, vm.name, cancel)
            return Outcome(changes=item, note=f"deleted {vm.name}")
        if verb is not Verb.CREATE:
            try:
                return self._bring_up(action, progress)
            except exceptions.NotFound:
                progress(f"{action.target} vanished; creating it again")
        for _ in range(VANISH_RETRIES):
            try:
                return self._create(action, progress)
            except exceptions.NotFound:  # deleted (or reclaimed) while it was coming up
                progress(f"{action.target} vanished while coming up; creating it again")
        return Outcome(failures=item, note=f"{action.target} vanished {VANISH_RETRIES} times"
                                            " while coming up; look for what deletes it")

    def _bring_up(self, action: Action, progress: Progress) -> Outcome:
        vm, cancel, item = action.vm, progress.cancel, [action.target]
        assert vm is not None
        args = (self.clients, self.project, vm.zone, vm.name)
        if action.verb is Verb.WAIT:
            progress(f"waiting for {vm.name} ({vm.status.lower()})")
            instances.wait_running(*args, cancel)
            return Outcome(converged=item, note=f"running in {vm.zone}")
        if action.verb is Verb.START:
            down, bring_up, done = STOPPED, instances.start, "started"
            progress(f"waiting for {vm.name} to stop, then starting it")
        else:
            down, bring_up, done = {"SUSPENDED"}, instances.resume, "resumed"
            progress(f"waiting for {vm.name} to suspend, then resuming it")
        # Someone (a concurrent run, a person) may bring it up meanwhile: then only wait.
        now = instances.wait_status(*args, down | UP, cancel)
        if now.status in down:
            bring_up(*args, cancel)
        instances.wait_running(*args, cancel)
        if now.status not in down:
            return Outcome(converged=item,
                           note=f"brought up meanwhile by someone else, in {vm.zone}")
        return Outcome(changes=item, note=f"{done} in {vm.zone}")

    def _create(self, action: Action, progress: Progress) -> Outcome:
        node, item = action.node, [action.target]
        assert node is not None
        vm = spec.vm_spec(self.farm, node, self.public_key())
        placement = instances.create(self.clients, self.project, vm, progress, progress.cancel,
                                     self.machine_types)
        if placement.error:
            return Outcome(failures=item, note=placement.error)
        if placement.adopted:
            return Outcome(converged=item, note=placement.summary,
                           extra={"zone": placement.zone})
        return Outcome(changes=item, note=placement.summary, extra={"zone": placement.zone})

    def _firewall(self, action: Action, progress: Progress) -> Outcome:
        rule, cancel, item = action.rule, progress.cancel, [action.target]
        assert rule is not None
        if action.verb is Verb.KEEP:
            return Outcome(converged=item, note=action.detail)
        progress(f"{action.verb} firewall rule {rule.name}: {action.detail}")
        if action.verb is Verb.CREATE:
            firewall.create(self.clients, self.project, rule, cancel)
        elif action.verb is Verb.UPDATE:
            firewall.patch(self.clients, self.project, rule, cancel)
        elif not firewall.delete(self.clients, self.project, rule.name, cancel):
            return Outcome(converged=item, note=f"{action.detail}: deleted meanwhile, by"
                                                " another run or by hand")
        return Outcome(changes=item, note=f"{DONE[action.verb]}: {action.detail}")
