"""What every resource backend shares: the lock, the clock, faults and addresses.

The core knows no resource: each backend keeps its own records, per project, and imports the
core, never the reverse. One lock for the whole fake (GCE's consistency is per project; one
lock is simplest and fast enough). No HTTP here: backends take plain values and request bodies
as dicts, return model objects and raise `errors.GceError`.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import random
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ..backends import BootBackend, MemoryBackend
from ..errors import GceError
from ..faults import Faults
from .clock import Scheduler

EMPTY_FINGERPRINT = "42WmSpB8rSM="  # what GCE returns for an empty label set or tag list
WAIT_SECONDS = 120.0  # zoneOperations.wait returns after about two minutes, done or not


def new_id() -> str:
    """A resource id: uint64, sent as a decimal string."""
    return str(random.randrange(10**18, 2**63))


def fingerprint(value: object, version: int) -> str:
    """8 bytes, base64url with padding, as GCE's fingerprints look; fixed for an empty set."""
    if not value and version == 0:
        return EMPTY_FINGERPRINT
    data = json.dumps([value, version], sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()[:8]).decode()


class AddressPool:
    """Addresses handed out from one range: loopback, or a backend's own private subnet, so
    nothing a client is told routes off this machine."""

    def __init__(self, first: str, last: str):
        self._first = int(ipaddress.IPv4Address(first))
        self._last = int(ipaddress.IPv4Address(last))
        self._used: set[int] = set()
        self._next = self._first  # handed out in turn: a released address is not the next

    def take(self) -> str:
        size = self._last - self._first + 1
        for i in range(size):
            n = self._first + (self._next - self._first + i) % size
            if n not in self._used and (n & 0xFF) not in (0, 255):
                self._used.add(n)
                self._next = n + 1 if n < self._last else self._first
                return str(ipaddress.IPv4Address(n))
        raise GceError("No addresses left in the fake's address pool.", status=503,
                       reason="backendError")

    def release(self, address: str | None) -> None:
        if address:
            self._used.discard(int(ipaddress.IPv4Address(address)))

    def clear(self) -> None:
        self._used.clear()
        self._next = self._first


class Core:
    """The shared machinery. `lock` guards all state, the backends' records included;
    `changed` wakes operation waiters."""

    def __init__(self, backend: BootBackend | None, operation_seconds: float,
                 boot_seconds: float, wait_seconds: float):
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.defaults = Faults(operation_seconds=operation_seconds, boot_seconds=boot_seconds)
        self.faults = Faults(operation_seconds=operation_seconds, boot_seconds=boot_seconds)
        self.backend = backend or MemoryBackend(lambda: self.faults.boot_seconds)
        self.wait_seconds = wait_seconds
        self.scheduler = Scheduler()
        # Backend calls (a container start or stop can take a second): never under the lock.
        self._effects = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fakegce-backend")
        self.nat_ips = AddressPool(*self.backend.nat_range)
        self.internal_ips = AddressPool(*self.backend.internal_range)

    def steps(self, steps: list[tuple[float, Callable[[], None]]]) -> None:
        """Run each step at its fraction of the operation time; all at once when it is 0."""
        seconds = self.faults.operation_seconds
        for fraction, fn in steps:
            if seconds <= 0:
                fn()
            else:
                self.scheduler.later(seconds * fraction, self.locked(fn))
        self.changed.notify_all()

    def locked(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            with self.lock:
                fn()
                self.changed.notify_all()
        return run

    def off_lock(self, work: Callable[[], None], then: Callable[[], None] | None = None) -> None:
        """Run `work` (a backend call) on the effects pool, then `then` under the lock."""
        def run() -> None:
            try:
                work()
            except Exception as e:  # noqa: BLE001 (a broken VM must not break the fake)
                print(f"fakegce: backend {self.backend.name}: {e}", file=sys.stderr, flush=True)
            if then:
                self.locked(then)()
        self._effects.submit(run)

    def clear(self) -> None:
        """Forget every pending step, address and fault (under the lock)."""
        self.scheduler.clear()
        self.nat_ips.clear()
        self.internal_ips.clear()
        self.faults.configure({}, self.defaults)
        self.changed.notify_all()

    def close(self) -> None:
        self.scheduler.stop()
        self._effects.shutdown(wait=True)
        self.backend.close()

