"""Ctrl-C during `inv vms`: seconds from SIGINT to exit, and whether any insert started after.

    python bench/ctrl_c.py [--runs 3] [--quick]

Six nodes against the in-process fake; the arm nodes stock out in their first zone and every
operation takes 4 s, so each run is interrupted while six inserts are in flight and three
failover inserts are still to come. Target (issue 7): exit 130 within about 2 s of the
signal, no insert after it, no traceback. --quick: one run.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import add_quick, figures, sizes

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from provision.fakegce import FakeGCE  # noqa: E402
from tests.integration.conftest import SIX  # noqa: E402

FAULTS = {"operation_seconds": 4, "stockouts": [{"zone": "us-central1-a",
                                                 "machine_family": "t2a"}]}


def inserts(fake: FakeGCE) -> int:
    return sum(r["method"] == "instances.insert" for r in fake.requests())


def interrupted_run(fake: FakeGCE, inventory: Path) -> tuple[int, float, int, bool]:
    """One `inv vms` interrupted with six inserts in flight: (exit code, seconds from SIGINT to
    exit, inserts started after SIGINT, whether it printed a traceback)."""
    fake.reset()
    fake.set_faults(**FAULTS)
    cache = inventory.parent / "cache"  # the hosts cache inv vms writes: ours, not the user's
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "vms", "-i", str(inventory)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "XDG_CACHE_HOME": str(cache)})
    try:
        while inserts(fake) < 6:
            if proc.poll() is not None:  # it ended before the inserts: nothing to measure
                out, err = proc.communicate()
                sys.exit(f"inv vms exited {proc.returncode} before six inserts:\n"
                         f"{out[-2000:]}\n{err[-2000:]}")
            time.sleep(0.05)
        time.sleep(0.5)
        at_signal = inserts(fake)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate()
        return (proc.returncode, time.monotonic() - sent, inserts(fake) - at_signal,
                "Traceback" in err)
    finally:
        if proc.poll() is None:  # the bench itself was interrupted: stop our child
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, help="default 3; 1 with --quick")
    add_quick(parser)
    args = parser.parse_args()
    sizes(args, runs=(3, 1))
    with (FakeGCE() as fake, tempfile.TemporaryDirectory() as tmp,
          figures("ctrl_c.py, Ctrl-C during inv vms", args.quick)):
        inventory = Path(tmp) / "farm.yaml"
        inventory.write_text(SIX.format(endpoint=fake.endpoint, key=Path(tmp) / "key"))
        for n in range(args.runs):
            if n:
                time.sleep(FAULTS["operation_seconds"] + 0.5)  # the fake finishes what was sent
            code, seconds, late, traceback = interrupted_run(fake, inventory)
            print(f"run {n + 1}: exit {code} {seconds:.2f} s after SIGINT; inserts after it:"
                  f" {late}; traceback: {traceback}", flush=True)


if __name__ == "__main__":
    main()
