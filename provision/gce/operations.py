"""Calling Compute Engine: one retry policy, waiting on operations, and errors put in words.

`ExtendedOperation.result()` polls a hard-coded endpoint and ignores errors that lack an HTTP
status, so archfarm waits with `zoneOperations.wait` / `globalOperations.wait` and reads
`error.errors` itself (docs/compute-engine.md, "Operations").
"""

from __future__ import annotations

import os
import time
import uuid
from typing import TYPE_CHECKING, Any, Protocol

from google.api_core import exceptions
from google.api_core.retry import exponential_sleep_generator

if TYPE_CHECKING:
    from collections.abc import Callable

DONE_STATUS = 2104194  # compute_v1.Operation.Status.DONE (avoids importing the enum early)
OPERATION_DEADLINE = 900.0
# How long one call keeps retrying rate limits and server errors before it fails the node.
RETRY_SECONDS = float(os.environ.get("ARCHFARM_API_RETRY_SECONDS", "120"))


class Cancel(Protocol):
    """What the driver needs of a run's cancellation flag (provision.runner.Cancel)."""

    def check(self) -> None: ...

    def sleep(self, seconds: float) -> None: ...


class NoCancel:
    def check(self) -> None:
        pass

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def reasons(exc: exceptions.GoogleAPICallError) -> set[str]:
    """The `reason` of each error in a Compute Engine error body (rateLimitExceeded, ...)."""
    return {str(e["reason"]) for e in (exc.errors or []) if isinstance(e, dict) and e.get("reason")}


def _retryable(exc: Exception) -> bool:
    """Rate limits (403 rateLimitExceeded on GCE, never 429) and server-side failures."""
    if isinstance(exc, exceptions.Forbidden):
        return bool(reasons(exc) & {"rateLimitExceeded", "userRateLimitExceeded"})
    return isinstance(exc, (exceptions.TooManyRequests, exceptions.InternalServerError,
                            exceptions.BadGateway, exceptions.ServiceUnavailable,
                            exceptions.GatewayTimeout))


def call(fn: Callable[..., Any], *args: Any, cancel: Cancel | None = None, **kwargs: Any) -> Any:
    """Call a client method, retrying rate limits and server errors with exponential backoff
    and jitter (api_core's own sleep schedule) under one deadline. A cancelled run starts no
    attempt and stops sleeping at once. Inserts carry a requestId, so a retry after a lost
    response cannot act twice."""
    cancel = cancel or NoCancel()
    # The client's own retry (up to 600 s on reads) would nest inside ours: ours alone decides.
    kwargs.setdefault("retry", None)
    deadline = time.monotonic() + RETRY_SECONDS
    delays = exponential_sleep_generator(initial=0.5, maximum=10.0, multiplier=2.0)
    while True:
        cancel.check()
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            if not _retryable(e):
                raise
            delay = next(delays)
            if time.monotonic() + delay > deadline:
                raise exceptions.RetryError(
                    f"Timeout of {RETRY_SECONDS:.1f}s exceeded", e) from e
            cancel.sleep(delay)


def new_request_id() -> str:
    return str(uuid.uuid4())


class OperationError(Exception):
    """A DONE operation that carries errors; `code` is the first error's code."""

    def __init__(self, op: Any):
        self.errors = [(e.code, e.message) for e in op.error.errors]
        self.code, self.message = self.errors[0]
        self.http_status = op.http_error_status_code or None
        super().__init__(f"{self.code}: {self.message}")


def wait(clients: Any, project: str, op: Any, cancel: Cancel | None = None,
         deadline: float = OPERATION_DEADLINE) -> Any:
    """Block until the operation is DONE; raise OperationError if it failed."""
    cancel = cancel or NoCancel()
    stop = time.monotonic() + deadline
    zone = op.zone.rsplit("/", 1)[-1] if op.zone else None
    while op.status != DONE_STATUS:
        cancel.check()
        if time.monotonic() > stop:
            raise TimeoutError(f"operation {op.name} not done after {deadline:.0f} s")
        if zone:
            op = call(clients.zone_operations.wait, project=project, zone=zone,
                      operation=op.name, cancel=cancel)
        else:
            op = call(clients.global_operations.wait, project=project, operation=op.name,
                      cancel=cancel)
    if op.error.errors:
        raise OperationError(op)
    return op


def api_message(exc: exceptions.GoogleAPICallError) -> str:
    """The server's message without the request line the client prepends."""
    text = exc.message or str(exc)
    if text.startswith(("GET ", "POST ", "DELETE ", "PATCH ", "PUT ")):
        text = text.split(": ", 1)[-1]
    return text


def is_api_error(exc: BaseException) -> bool:
    """Raised by talking to Compute Engine (as opposed to a fault of archfarm's own)."""
    import requests

    return isinstance(exc, (exceptions.GoogleAPIError, OperationError, TimeoutError,
                            requests.exceptions.RequestException))


def describe(exc: BaseException) -> str:
    """One line for the recap: status, reason and message; never a raw request URL."""
    import requests

    if isinstance(exc, exceptions.RetryError):
        cause = exc.cause
        last = describe(cause) if cause is not None else "no answer"
        return f"gave up after retrying for {RETRY_SECONDS:.0f} s; last error: {last}"
    if isinstance(exc, exceptions.GoogleAPICallError):
        reason = ", ".join(sorted(reasons(exc)))
        status = f"{exc.code} {reason}".strip() if exc.code else reason
        return f"{status}: {api_message(exc)}" if status else api_message(exc)
    if isinstance(exc, OperationError):
        return f"{exc.code}: {exc.message}"
    if isinstance(exc, requests.exceptions.ConnectionError):
        host = getattr(getattr(exc, "request", None), "url", "") or ""
        where = host.split("/compute/")[0] or "the Compute Engine API"
        return f"cannot reach {where}: connection failed"
    if isinstance(exc, requests.exceptions.Timeout):
        return "the Compute Engine API did not answer in time"
    if isinstance(exc, TimeoutError):
        return str(exc) or "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
