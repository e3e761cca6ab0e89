"""What each task does between parsing flags and exiting: load, run a stage, report, exit code.

Returns exit codes: 0 success, 1 a stage failed somewhere (the recap says where), 2 bad input.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from .errors import UserError
from .report import NodeResult, Reporter


def _guard(reporter: Reporter, body: Callable[[], int]) -> int:
    import requests
    from google.api_core import exceptions

    try:
        return body()
    except UserError as e:
        reporter.error(str(e))
        return e.exit_code
    except requests.exceptions.ConnectionError as e:
        url = getattr(e.request, "url", "") or ""
        reporter.error(f"cannot reach the Compute Engine API ({url.split('/compute/')[0]}):"
                       " connection failed. For the lab, start it with `inv lab.up`.")
        return 1
    except (exceptions.GoogleAPICallError, exceptions.RetryError) as e:
        reporter.error(f"Compute Engine refused the request: {getattr(e, 'message', e)}")
        return 1
    except KeyboardInterrupt:
        reporter.error("interrupted; run the same task again to converge")
        return 130


def _setup(inventory: str | None):
    from .gce.clients import Clients, resolve_endpoint
    from .inventory import load

    farm = load(inventory)
    clients = Clients(resolve_endpoint(farm.gcp.api_endpoint))
    clients.check_credentials()
    return farm, clients


def _finish(reporter: Reporter, results: dict[str, NodeResult], json_mode: bool) -> int:
    if results:
        reporter.recap(results)
    if json_mode:
        reporter.emit_json({"nodes": {k: r.to_json() for k, r in results.items()}})
    return 1 if any(r.failed or r.unreachable for r in results.values()) else 0


def vms(inventory: str | None, check: bool, limit: str | None, prune: bool,
        json_mode: bool) -> int:
    reporter = Reporter(json_mode)

    def body() -> int:
        from . import vms as stage
        from .inventory import parse_limit

        farm, clients = _setup(inventory)
        results = stage.run(clients, farm, reporter, check=check,
                            limit=parse_limit(limit, farm), prune=prune)
        if check:
            reporter.say("check mode: nothing was changed")
        return _finish(reporter, results, json_mode)

    return _guard(reporter, body)


def status(inventory: str | None, json_mode: bool) -> int:
    reporter = Reporter(json_mode)

    def body() -> int:
        from . import status as stage

        farm, clients = _setup(inventory)
        state = stage.collect(clients, farm)
        stage.show(reporter, state)
        if json_mode:
            reporter.emit_json(state)
        return 0

    return _guard(reporter, body)


def destroy(inventory: str | None, yes: bool, check: bool, json_mode: bool) -> int:
    reporter = Reporter(json_mode)

    def body() -> int:
        from . import destroy as stage

        farm, clients = _setup(inventory)
        owned, spared, rule = stage.plan(clients, farm)
        stage.show(reporter, farm, owned, spared, rule)
        doomed = len(owned) + int(rule is not None)
        if check or not doomed:
            return _finish(reporter, {}, json_mode)
        if not yes and not _confirm(f"Delete {len(owned)} VM(s) of farm {farm.farm}"
                                    f"{' and its firewall rule' if rule is not None else ''}?"):
            raise UserError("destroy needs confirmation. Fix: answer y, or pass --yes.")
        return _finish(reporter, stage.run(clients, farm, reporter, owned, rule), json_mode)

    return _guard(reporter, body)


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def lab_up(json_mode: bool) -> int:
    reporter = Reporter(json_mode)

    def body() -> int:
        from .lab import control

        info = control.up(reporter.say)
        reporter.say(f"lab is up in {info['seconds']} s: Compute Engine at"
                     f" {info['compute_endpoint']}, registry at {info['registry']};"
                     f" state and logs in {info['state_dir']}")
        if json_mode:
            reporter.emit_json(info)
        return 0

    return _guard(reporter, body)


def lab_down(json_mode: bool) -> int:
    reporter = Reporter(json_mode)

    def body() -> int:
        from .lab import control

        control.down(reporter.say)
        reporter.say("lab is down: no lab process, container or volume is left")
        if json_mode:
            reporter.emit_json(control.status())
        return 0

    return _guard(reporter, body)


def lab_status(json_mode: bool) -> int:
    reporter = Reporter(json_mode)

    def body() -> int:
        from .lab import control

        info = control.status()
        rows = [[name, "running" if pid else "stopped", str(pid or "-")]
                for name, pid in info["services"].items()]
        reporter.table("lab", ["component", "state", "pid"], rows)
        reporter.say(f"docker engine {info['docker']}; {info['vm_containers']} VM container(s)"
                     f" running; Compute Engine at {info['compute_endpoint']}")
        if json_mode:
            reporter.emit_json(info)
        return 0

    return _guard(reporter, body)
