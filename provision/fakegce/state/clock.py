"""Time in the fake: GCE's timestamp format, and the scheduler that moves state along.

Time is real: operations and instance states advance on the scheduler's thread, so a client
polling sees PENDING -> RUNNING -> DONE and PROVISIONING -> STAGING -> RUNNING as on GCE.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

PACIFIC = timezone(timedelta(hours=-8))


def now_rfc3339() -> str:
    """RFC 3339 with milliseconds and a local offset, as GCE writes `insertTime` and friends."""
    return datetime.now(PACIFIC).isoformat(timespec="milliseconds")


class Scheduler:
    """One thread running callbacks at due times; `clear` drops everything pending.

    Callbacks run without the state lock: each takes it itself (see `Core.locked`).
    """

    def __init__(self) -> None:
        self._heap: list = []
        self._seq = itertools.count()
        self._wake = threading.Condition(threading.Lock())
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="fakegce-scheduler", daemon=True)
        self._thread.start()

    def later(self, delay: float, fn: Callable[[], None]) -> None:
        with self._wake:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), fn))
            self._wake.notify()

    def clear(self) -> None:
        with self._wake:
            self._heap.clear()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopped and (
                        not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._wake.wait(timeout)
                if self._stopped:
                    return
                _, _, fn = heapq.heappop(self._heap)
            fn()
