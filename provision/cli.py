"""The frame every task runs in: where it reports, how Ctrl-C reaches it, and how it ends.

Each task's body lives next to its stage (`cloud/tasks.py`, `configure.py`, `pipeline.py`,
`buildx/tasks.py`, `status.py`, `doctor.py`, `lab/tasks.py`) and is wrapped by `@task`: the
body gets a `Session` and the task's flags (keyword-only) and returns an exit code. Whatever
it raises ends here as one message and an exit code, never a traceback.

Exit codes: 0 success, 1 a stage failed somewhere (the recap says where), 2 bad input,
130 interrupted.
"""

from __future__ import annotations

import functools
import importlib
import os
import select
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import DockerError, UserError
from .report import Reporter
from .runner import Cancel, Recap, interruptible, plain_ctrl_c

if TYPE_CHECKING:
    from .costs import Estimate
    from .inventory import Farm

INTERRUPTED = "interrupted; run the same task again to converge"


@dataclass
class Session:
    """One task's run: its reporter, its Ctrl-C flag, and whether it ends with --json."""

    reporter: Reporter
    cancel: Cancel
    json_mode: bool

    def say(self, text: str) -> None:
        self.reporter.say(text)

    def node(self, key: str, text: str) -> None:
        self.reporter.node(key, text)

    def emit(self, obj: dict) -> None:
        """The --json object, when asked for."""
        if self.json_mode:
            self.reporter.emit_json(obj)

    def finish(self, recap: Recap, cost: Estimate | None = None) -> int:
        """The recap (then the estimated cost, when given), the --json object, the exit code."""
        if recap.results:
            self.reporter.recap(recap.results)
        if cost is not None:
            self.reporter.costs(cost)
        if recap.interrupted:
            left = sorted(k for k, r in recap.results.items() if r.interrupted)
            self.say(f"interrupted: {len(left)} left in flight ({', '.join(left) or 'none'});"
                     " run the same task again to converge")
        out: dict[str, Any] = {"nodes": {k: r.to_json() for k, r in recap.results.items()}}
        if recap.interrupted:
            out["interrupted"] = True
        if cost is not None:
            out["cost"] = cost.to_json()
        self.emit(out)
        return recap.exit_code


def task(body: Callable[..., int] | None = None, *, stage: bool = True) -> Any:
    """Wrap a task body `body(session, **flags) -> exit code` as `f(*, json_mode, **flags)`.

    A stage (the default) takes Ctrl-C and SIGTERM through the runner's cancel flag, so jobs
    stop at their next checkpoint and the recap is kept; other tasks get KeyboardInterrupt."""
    def wrap(body: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(body)
        def run_task(*, json_mode: bool = False, **flags: Any) -> int:
            session = Session(Reporter(json_mode), Cancel(), json_mode)
            return _guard(session, lambda: body(session, **flags), stage)
        return run_task
    return wrap(body) if body is not None else wrap


def call(target: str, *, json_mode: bool = False, **flags: Any) -> int:
    """Import a task body (`module:function`) and run it. The import is part of the task: a
    Ctrl-C while the Compute Engine client loads (seconds) ends as one later does."""
    module, _, name = target.partition(":")
    try:
        body = getattr(importlib.import_module(module), name)
        code = body(json_mode=json_mode, **flags)
    except KeyboardInterrupt:
        code = fail(Session(Reporter(json_mode), Cancel(), json_mode), INTERRUPTED, 130)
    if code == 130:
        # Exit now, as documented. Left to the interpreter's own exit, CPython kills itself
        # with SIGINT (status -2) once a KeyboardInterrupt has left code run by exec() (a
        # dataclass's generated methods, say, while the client library loads), even though
        # it was caught; and there is nothing left to finish after an interrupt's recap.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    return code


def _guard(session: Session, body: Callable[[], int], stage: bool) -> int:
    """Every way a task can fail ends here as one message and an exit code, never a traceback
    (ARCHFARM_DEBUG=1 shows it)."""
    cancel = session.cancel
    try:
        if not stage:
            return body()
        with interruptible(cancel):
            return body()
    except UserError as e:
        return fail(session, str(e), e.exit_code)
    except DockerError as e:
        if cancel.is_set():  # Ctrl-C reached the docker child too: this was the interrupt
            return fail(session, INTERRUPTED, 130)
        return fail(session, str(e), 1)
    except KeyboardInterrupt:
        return fail(session, INTERRUPTED, 130)
    except Exception as e:  # noqa: BLE001 (the API layer's errors, put in words)
        if cancel.is_set():  # whatever the interrupted call raised, this was Ctrl-C
            return fail(session, INTERRUPTED, 130)
        if os.environ.get("ARCHFARM_DEBUG"):
            traceback.print_exc()
        from .gce.operations import describe, is_api_error

        what = describe(e).rstrip(".")
        if not is_api_error(e):
            return fail(session, f"internal error: {what}. Please report it, with the output"
                        " of the same command under ARCHFARM_DEBUG=1.", 1)
        hint = " For the lab, start it with `inv lab.up`." if "cannot reach" in what else ""
        return fail(session, f"Compute Engine: {what}.{hint}", 1)


def fail(session: Session, message: str, code: int) -> int:
    session.reporter.error(message)
    session.emit({"error": message})
    return code


def load(inventory: str | None) -> Farm:
    """Load and validate everything local (inventory, key) before any remote call."""
    from .inventory import load as load_inventory
    from .keys import load_public_key

    farm = load_inventory(inventory)
    load_public_key(farm.key_path)
    return farm


def load_with_clients(inventory: str | None) -> tuple[Farm, Any]:
    """The farm and Compute Engine clients (the client library is imported here)."""
    from .gce.clients import lazy_clients

    farm = load(inventory)
    return farm, lazy_clients(farm.gcp.api_endpoint)()


def confirm(question: str) -> bool:
    """Ask on a terminal; Ctrl-C at the prompt interrupts at once (exit 130)."""
    if not sys.stdin.isatty():
        return False
    with plain_ctrl_c():
        sys.stdout.write(f"{question} [y/N] ")
        sys.stdout.flush()
        # Wake up often: a Ctrl-C the kernel delivers to another thread (a client library's)
        # does not interrupt a blocked read here, and Python only acts on it between waits.
        while not select.select([sys.stdin], [], [], 0.1)[0]:
            pass
        return sys.stdin.readline().strip().lower() in ("y", "yes")
