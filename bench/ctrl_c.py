"""Ctrl-C during `inv vms`: seconds from SIGINT to exit, and whether any insert started after.

    python bench/ctrl_c.py [--runs 3]

Six nodes against the in-process fake; the arm nodes stock out in their first zone and every
operation takes 4 s, so each run is interrupted while six inserts are in flight and three
failover inserts are still to come. Target (issue 7): exit 130 within about 2 s of the
signal, no insert after it, no traceback.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from provision.fakegce import FakeGCE  # noqa: E402
from tests.integration.conftest import SIX  # noqa: E402

FAULTS = {"operation_seconds": 4, "stockouts": [{"zone": "us-central1-a",
                                                 "machine_family": "t2a"}]}


def inserts(fake: FakeGCE) -> int:
    return sum(r["method"] == "instances.insert" for r in fake.requests())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with FakeGCE() as fake, tempfile.TemporaryDirectory() as tmp:
        inventory = Path(tmp) / "farm.yaml"
        inventory.write_text(SIX.format(endpoint=fake.endpoint, key=Path(tmp) / "key"))
        for n in range(args.runs):
            fake.reset()
            fake.set_faults(**FAULTS)
            proc = subprocess.Popen([sys.executable, "-m", "invoke", "vms", "-i", str(inventory)],
                                    cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
            while inserts(fake) < 6:
                time.sleep(0.05)
            time.sleep(0.5)
            at_signal = inserts(fake)
            sent = time.monotonic()
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate()
            print(f"run {n + 1}: exit {proc.returncode} {time.monotonic() - sent:.2f} s after"
                  f" SIGINT; inserts after it: {inserts(fake) - at_signal};"
                  f" traceback: {'Traceback' in err}")
            time.sleep(FAULTS["operation_seconds"] + 0.5)  # let the fake finish what was sent


if __name__ == "__main__":
    main()
