"""`inv lab.up`, `inv lab.down`, `inv lab.status`."""

from __future__ import annotations

from ..cli import Session, task
from . import control


@task(stage=False)
def up(session: Session) -> int:
    info = control.up(session.say)
    session.say(f"lab is up in {info['seconds']} s: Compute Engine at"
                f" {info['compute_endpoint']}, registry at {info['registry']};"
                f" state and logs in {info['state_dir']}")
    session.emit(info)
    return 0


@task(stage=False)
def down(session: Session) -> int:
    control.down(session.say)
    session.say("lab is down: no lab process, container, volume or network is left")
    session.emit(control.status())
    return 0


@task(stage=False)
def status(session: Session) -> int:
    info = control.status()
    rows = [[name, "running" if pid else "stopped", str(pid or "-")]
            for name, pid in info["services"].items()]
    session.reporter.table("lab", ["component", "state", "pid"], rows)
    session.say(f"docker engine {info['docker']}; {info['vm_containers']} VM container(s)"
                f" running; Compute Engine at {info['compute_endpoint']}")
    session.emit(info)
    return 0
