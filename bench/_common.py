"""What every bench shares: the `--quick` switch and the figures block.

Not a bench (the leading underscore keeps the test suite from running it). A bench imports it
as `_common`: `python bench/X.py` puts bench/ first on sys.path.

`--quick` is a smoke run: the smallest sizes, one round, no warm-up a correct run can do
without, no peer tool installed from PyPI; the same code paths, so the test suite
(tests/benches.py) runs every bench that way to keep it from rotting. Its figures are printed
like any others but are not comparable with a full run's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SKIPPED_QUICK = "skipped (--quick)"


def add_quick(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: smallest sizes, one round, no peers' install")


def sizes(args: argparse.Namespace, **options: tuple) -> None:
    """Fill each option left unset (None) with its (full, quick) default."""
    for name, (full, quick) in options.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)


@contextlib.contextmanager
def figures(title: str, quick: bool) -> Iterator[None]:
    """The bench's figures between two marker lines; the end marker only when the block
    finished, so a bench that died half-way never looks as if it printed its figures."""
    note = " (--quick: smallest sizes, one round; not comparable with a full run)"
    print(f"\n=== figures: {title}{note if quick else ''} ===", flush=True)
    yield
    print("=== end of figures ===", flush=True)


def must(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("cwd", REPO)
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        sys.exit(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                 f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


class Load:
    """The 1-minute load average, sampled every few seconds while the bench runs."""

    def __init__(self, every: float = 5.0):
        self.samples: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self.thread.start()

    def _run(self, every: float) -> None:
        while not self.stop.wait(every):
            self.samples.append(os.getloadavg()[0])

    def summary(self) -> str:
        self.stop.set()
        s = self.samples or [os.getloadavg()[0]]
        return (f"1-min load average over the run: min {min(s):.2f}, median"
                f" {statistics.median(s):.2f}, max {max(s):.2f} ({len(s)} samples,"
                f" {os.cpu_count()} CPUs)")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def stamp(when: str) -> str:
    """`start: <date>; uptime: <uptime>`: when a bench ran, and how busy the machine was."""
    return f"{when}: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; uptime: {uptime()}"


def destroy_farm(cmd: list[str]) -> None:
    """`inv destroy --yes` (the command given) at a bench's end; a failure is said on stderr,
    never raised, so the rest of the clean-up still runs."""
    destroyed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if destroyed.returncode != 0:
        print(f"inv destroy failed (exit {destroyed.returncode}):"
              f" {destroyed.stderr[-2000:]}", file=sys.stderr)


def provision_converged(cmd: list[str]) -> None:
    """`inv provision` (the command given), run again once if it fails: as in configure.py, a
    second run converges what a first one left. The lab's binfmt handler is the machine's
    own, and another farm's VMs booting can reset it."""
    provisioned = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if provisioned.returncode != 0:
        print(f"inv provision failed (exit {provisioned.returncode}), running it again:\n"
              f"{provisioned.stdout[-1500:]}", flush=True)
        must(cmd, "inv provision")
