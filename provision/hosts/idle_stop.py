"""Idle stop on a node: a script, a oneshot service and a systemd timer that power the VM off
once it has had no build for the inventory's `idle_stop_minutes`. Compute Engine then shows it
TERMINATED and bills only its disk; `inv build` (or `inv vms`) starts it again.

Busy is any of: a running container of the node's engine (a build's RUN step, a builder's
buildkit), a build slot held under /run/lock/archfarm (`buildx/slots.py`: every `inv build`
and `inv bake` holds one while it runs), or a docker client session over SSH (a `docker system
dial-stdio` process: every buildx build through an ssh:// docker context has one). The script
records when the node was last busy in /run, which a boot empties: boot counts as busy, and so
does `inv configure` installing or changing the timer.

Everything here is pure text: `render` gives the three files for a number of minutes, `SECTION`
is the facts script's section that reads them back, `parse` its output.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass

from ..buildx import slots

SCRIPT = "/usr/local/sbin/archfarm-idle-stop"
UNIT = "archfarm-idle-stop"
SERVICE = f"/etc/systemd/system/{UNIT}.service"
TIMER = f"/etc/systemd/system/{UNIT}.timer"
LAST_BUSY = "/run/archfarm-idle-stop.last-busy"  # /run: emptied at boot
MINUTES_KEY = "ARCHFARM_IDLE_STOP_MINUTES"
FILES = (SCRIPT, SERVICE, TIMER)  # in this order for their digest


def script(slots_dir: str = slots.DIR, last_busy: str = LAST_BUSY, proc: str = "/proc") -> str:
    """The check the timer runs, `archfarm-idle-stop SECONDS`: record now as the last busy
    time if the node is busy (or nothing was recorded since boot), else power off once that
    was SECONDS ago. The paths are parameters for the tests only."""
    return f"""#!/bin/sh
# archfarm idle stop (written by `inv configure`): power the VM off after $1 seconds with no
# build. Busy: a running container, a held build slot, a docker session over ssh.
set -u
limit=$1
last_busy={last_busy}
now=$(date +%s)

busy() {{
    # A running container, save a buildx builder's buildkit (it stays up between builds; a
    # build on it comes through a docker session, below).
    containers=$(timeout 20 docker ps --format '{{{{.Names}}}}' 2>/dev/null); answer=$?
    # An engine that does not answer in time may be busy; one that is not there is not.
    [ "$answer" = 124 ] && return 0
    printf '%s\\n' "$containers" | grep -qv -e '^buildx_buildkit_' -e '^$' && return 0
    for slot in {slots_dir}/build.*; do
        [ -e "$slot" ] || continue
        # Opened read-only: a lock test must never create a slot's file (slots.py).
        {{ flock -n 9; }} 9<"$slot" 2>/dev/null || return 0
    done
    for cmdline in {proc}/[0-9]*/cmdline; do
        case "$(tr '\\000' ' ' <"$cmdline" 2>/dev/null)" in
            *"docker system dial-stdio"*) return 0 ;;
        esac
    done
    return 1
}}

if busy || ! [ -s "$last_busy" ]; then
    echo "$now" >"$last_busy"
    exit 0
fi
idle=$((now - $(cat "$last_busy")))
if [ "$idle" -ge "$limit" ]; then
    echo "no build for $idle s (limit $limit s): powering off"
    systemctl poweroff
fi
"""


def seconds(minutes: float) -> int:
    return max(1, round(minutes * 60))


def interval_ms(minutes: float) -> int:
    """How often the timer checks: every 30 s, or a quarter of the idle time if shorter."""
    return max(250, min(30_000, math.floor(minutes * 60_000 / 4)))


def service(minutes: float) -> str:
    return f"""[Unit]
Description=archfarm idle stop: power off after {minutes:g} min with no build
ConditionPathExists={SCRIPT}

[Service]
Type=oneshot
Environment={MINUTES_KEY}={minutes:g}
ExecStart={SCRIPT} {seconds(minutes)}
"""


def timer(minutes: float) -> str:
    every = interval_ms(minutes)
    return f"""[Unit]
Description=archfarm idle stop: look for builds every {every} ms

[Timer]
OnActiveSec={every}ms
OnUnitActiveSec={every}ms
AccuracySec={min(1000, max(100, every // 4))}ms

[Install]
WantedBy=timers.target
"""


def render(minutes: float) -> dict[str, str]:
    """path -> content of the three files, in `FILES` order."""
    return {SCRIPT: script(), SERVICE: service(minutes), TIMER: timer(minutes)}


# -- read back, in the facts round trip ---------------------------------------------------------

SECTION = (f"if [ -e {SCRIPT} ] || [ -e {SERVICE} ] || [ -e {TIMER} ]; then"
           f" echo \"minutes $(sed -n 's/^Environment={MINUTES_KEY}=//p' {SERVICE})\";"
           f" echo \"sha256 $(cat {' '.join(FILES)} | sha256sum)\";"
           f" echo \"timer $(systemctl is-active {UNIT}.timer)\"; fi")


@dataclass(frozen=True)
class Installed:
    """The idle stop found on a host (`present` False: none of its files is there)."""

    present: bool = False
    minutes: float | None = None      # as the service says; None if unreadable
    sha256: str | None = None         # of the three files, concatenated in `FILES` order
    timer_active: bool = False


def parse(text: str) -> Installed:
    fields = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        fields[key] = value.strip()
    if not fields.keys() & {"minutes", "sha256", "timer"}:
        return Installed()
    try:
        minutes: float | None = float(fields.get("minutes", ""))
    except ValueError:
        minutes = None
    digest = re.match(r"([0-9a-f]{64})\b", fields.get("sha256", ""))
    return Installed(present=True, minutes=minutes, sha256=digest.group(1) if digest else None,
                     timer_active=fields.get("timer") == "active")


def install_script(minutes: float) -> str:
    """Write the files, count now as busy, (re)start the timer."""
    writes = [f"printf %s {shlex.quote(content)} > {path}.archfarm && mv {path}.archfarm {path}"
              for path, content in render(minutes).items()]
    return " && ".join(["install -d -m 0755 /usr/local/sbin", *writes, f"chmod 0755 {SCRIPT}",
                        f"date +%s > {LAST_BUSY}", "systemctl daemon-reload",
                        f"systemctl enable {UNIT}.timer", f"systemctl restart {UNIT}.timer"])


def remove_script() -> str:
    return (f"systemctl disable --now {UNIT}.timer 2>/dev/null;"
            f" rm -f {' '.join(FILES)} {LAST_BUSY} && systemctl daemon-reload")

