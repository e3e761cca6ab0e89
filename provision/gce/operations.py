"""Calling Compute Engine: one retry policy, and waiting on operations with our own clients.

`ExtendedOperation.result()` polls a hard-coded endpoint and ignores errors that lack an HTTP
status, so archfarm waits with `zoneOperations.wait` / `globalOperations.wait` and reads
`error.errors` itself.
"""

from __future__ import annotations

import time
import uuid

from google.api_core import exceptions
from google.api_core.retry import Retry

DONE_STATUS = 2104194  # compute_v1.Operation.Status.DONE (avoids importing the enum early)
OPERATION_DEADLINE = 900.0


def _retryable(exc: Exception) -> bool:
    """Rate limits (403 rateLimitExceeded on GCE, never 429) and server-side failures."""
    if isinstance(exc, exceptions.Forbidden):
        return any(e.get("reason") in ("rateLimitExceeded", "userRateLimitExceeded")
                   for e in (exc.errors or []) if isinstance(e, dict))
    return isinstance(exc, (exceptions.TooManyRequests, exceptions.InternalServerError,
                            exceptions.BadGateway, exceptions.ServiceUnavailable,
                            exceptions.GatewayTimeout))


# Exponential backoff with jitter under one deadline (api_core's own retry helper).
RETRY = Retry(predicate=_retryable, initial=0.5, maximum=10.0, multiplier=2.0, timeout=120.0)


def call(fn, *args, **kwargs):
    """Call a client method under the retry policy. Inserts must carry a requestId."""
    return RETRY(fn)(*args, **kwargs)


def new_request_id() -> str:
    return str(uuid.uuid4())


class OperationError(Exception):
    """A DONE operation that carries errors; `code` is the first error's code."""

    def __init__(self, op):
        self.errors = [(e.code, e.message) for e in op.error.errors]
        self.code, self.message = self.errors[0]
        self.http_status = op.http_error_status_code or None
        super().__init__(f"{self.code}: {self.message}")


def _zone_of(op) -> str | None:
    return op.zone.rsplit("/", 1)[-1] if op.zone else None


def wait(clients, project: str, op, deadline: float = OPERATION_DEADLINE):
    """Block until the operation is DONE; raise OperationError if it failed."""
    stop = time.monotonic() + deadline
    zone = _zone_of(op)
    while op.status != DONE_STATUS:
        if time.monotonic() > stop:
            raise TimeoutError(f"operation {op.name} not done after {deadline:.0f} s")
        if zone:
            op = call(clients.zone_operations.wait, project=project, zone=zone,
                      operation=op.name)
        else:
            op = call(clients.global_operations.wait, project=project, operation=op.name)
    if op.error.errors:
        raise OperationError(op)
    return op
