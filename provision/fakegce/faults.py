"""Fault injection: stockouts, regional quota, synchronous HTTP errors, operation latency.

A fault set is replaced as a whole by each `configure` call (and `POST /_fake/faults`):
keys left out return to their defaults.

`http_errors` entries: {"method": "instances.insert", "status": 503, "reason": "backendError",
"count": 1, "after": false}. Without `count` the error repeats forever; with `"after": true` the
request takes effect before the error is returned, as when a response is lost on the way back.

`quota_exceeded` fails every insert in a region (optionally of one machine family) whatever
the usage; `quotas` entries {"region": "us-central1", "metric": "T2A_CPUS", "limit": 4} set a
regional quota's limit instead of its fresh-project default (state/quotas.py), and inserts
then fail only when they would go over it.

Two faults act at once rather than being set (server.py's control API), each taking
{"project", "zone", "instance"}:

- `POST /_fake/preempt`: Compute Engine takes a RUNNING Spot (or preemptible) VM back. Its
  host loses power at once (the lab's container is killed, the host's QEMU handlers kept) and
  the VM goes STOPPING -> TERMINATED (deleted when its instanceTerminationAction is DELETE)
  through a zone operation of operationType `compute.instances.preempted`, statusMessage
  "Instance was preempted.", which is the answer; lastStopTimestamp is set. Any other VM is a
  400 saying why (not Spot, or not RUNNING); an unknown one 404.
- `POST /_fake/guest-poweroff`: the guest powers itself off (the memory backend reports it at
  once; the lab runs `systemctl poweroff` in the VM's container). The VM goes STOPPING ->
  TERMINATED with a `compute.instances.guestTerminate` operation, as when a real guest halts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

KEYS = {"stockouts", "quota_exceeded", "quotas", "http_errors", "operation_seconds",
        "boot_seconds"}


@dataclass
class Faults:
    operation_seconds: float = 0.2
    boot_seconds: float = 0.0
    stockouts: list[dict] = field(default_factory=list)
    quota_exceeded: list[dict] = field(default_factory=list)
    quotas: list[dict] = field(default_factory=list)
    http_errors: list[dict] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def configure(self, spec: dict, defaults: Faults) -> None:
        unknown = set(spec) - KEYS
        if unknown:
            raise ValueError(f"unknown fault keys {sorted(unknown)}; known: {sorted(KEYS)}")
        for rule in spec.get("http_errors", []):
            if "method" not in rule or "status" not in rule:
                raise ValueError("each http_errors entry needs 'method' and 'status'")
        for rule in spec.get("quotas", []):
            if not {"region", "metric", "limit"} <= set(rule):
                raise ValueError("each quotas entry needs 'region', 'metric' and 'limit'")
            float(rule["limit"])  # a number, or the configure call fails here
        with self._lock:
            self.operation_seconds = float(spec.get("operation_seconds",
                                                    defaults.operation_seconds))
            self.boot_seconds = float(spec.get("boot_seconds", defaults.boot_seconds))
            self.stockouts = [dict(r) for r in spec.get("stockouts", [])]
            self.quota_exceeded = [dict(r) for r in spec.get("quota_exceeded", [])]
            self.quotas = [dict(r) for r in spec.get("quotas", [])]
            self.http_errors = [dict(r) for r in spec.get("http_errors", [])]

    def spec(self) -> dict:
        """The fault set in force, in the form `configure` takes."""
        with self._lock:
            return {"operation_seconds": self.operation_seconds,
                    "boot_seconds": self.boot_seconds,
                    "stockouts": [dict(r) for r in self.stockouts],
                    "quota_exceeded": [dict(r) for r in self.quota_exceeded],
                    "quotas": [dict(r) for r in self.quotas],
                    "http_errors": [dict(r) for r in self.http_errors]}

    @staticmethod
    def _matches(rule: dict, family: str) -> bool:
        return rule.get("machine_family") in (None, family)

    def stockout(self, zone: str, family: str) -> bool:
        return any(r.get("zone") == zone and self._matches(r, family) for r in self.stockouts)

    def quota(self, region: str, family: str) -> dict | None:
        return next((r for r in self.quota_exceeded
                     if r.get("region") == region and self._matches(r, family)), None)

    def quota_limit(self, region: str, metric: str) -> float | None:
        """The limit a `quotas` fault sets for this regional metric, if any (the last wins)."""
        limits = [float(r["limit"]) for r in self.quotas
                  if r["region"] == region and r["metric"] == metric]
        return limits[-1] if limits else None

    def take_http_error(self, method: str) -> dict | None:
        """The next injected error for `method`, consuming one of its `count` (absent: forever)."""
        with self._lock:
            for rule in self.http_errors:
                if rule["method"] != method:
                    continue
                if "count" in rule:
                    if rule["count"] <= 0:
                        continue
                    rule["count"] -= 1
                return rule
        return None
