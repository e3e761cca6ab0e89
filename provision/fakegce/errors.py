"""Compute Engine errors, one class per reason, as plain values.

Two kinds exist: synchronous HTTP errors (`GceError`, raised by the state and turned into
`{"error": {...}}` bodies by `serializers.error_body`) and operation errors (`OperationFailure`,
stored on a DONE operation, shown as `error.errors[]` plus `httpErrorStatusCode` and
`httpErrorMessage` by `serializers.operation_json`). See docs/compute-engine.md, "Errors and
retries".
"""

from __future__ import annotations

HTTP_MESSAGES = {
    400: "BAD REQUEST",
    403: "FORBIDDEN",
    404: "NOT FOUND",
    409: "CONFLICT",
    412: "PRECONDITION FAILED",
    429: "TOO MANY REQUESTS",
    500: "INTERNAL SERVER ERROR",
    503: "SERVICE UNAVAILABLE",
    504: "GATEWAY TIMEOUT",
}


class GceError(Exception):
    """A synchronous error: HTTP status, `reason` and message, as GCE sends them."""

    status = 400
    reason = "invalid"
    domain = "global"

    def __init__(self, message: str, *, status: int | None = None, reason: str | None = None,
                 domain: str | None = None, **extra: str):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if reason is not None:
            self.reason = reason
        if domain is not None:
            self.domain = domain
        self.extra = extra


class NotFound(GceError):
    status, reason = 404, "notFound"

    def __init__(self, resource_path: str):
        super().__init__(f"The resource '{resource_path}' was not found")


class AlreadyExists(GceError):
    status, reason = 409, "alreadyExists"

    def __init__(self, resource_path: str):
        super().__init__(f"The resource '{resource_path}' already exists")


class InvalidField(GceError):
    status, reason = 400, "invalid"

    def __init__(self, field: str, value: object, detail: str):
        super().__init__(f"Invalid value for field '{field}': '{value}'. {detail}")


class InvalidResourceUsage(GceError):
    status, reason = 400, "invalidResourceUsage"

    def __init__(self, detail: str):
        super().__init__(f"Invalid resource usage: '{detail}'.")


class BadRequest(GceError):
    status, reason = 400, "badRequest"


class Required(GceError):
    status, reason = 400, "required"

    def __init__(self, field: str):
        super().__init__(f"Required field '{field}' not specified")


class ConditionNotMet(GceError):
    status, reason = 412, "conditionNotMet"

    def __init__(self, message: str):
        super().__init__(message, location="If-Match", locationType="header")


class ResourceNotReady(GceError):
    status, reason = 400, "resourceNotReady"

    def __init__(self, resource_path: str):
        super().__init__(f"The resource '{resource_path}' is not ready")


class UnsupportedOperation(GceError):
    """A call the resource's state does not allow (suspend a stopped VM, start a suspended one)."""

    status, reason = 400, "unsupportedOperation"


class RateLimitExceeded(GceError):
    status, reason, domain = 403, "rateLimitExceeded", "usageLimits"

    def __init__(self, project: str = "archfarm"):
        super().__init__(
            "Quota exceeded for quota group 'ReadGroup' and limit 'Read requests per 100 seconds'"
            f" of service 'compute.googleapis.com' for consumer 'project_number:{project}'."
        )


def injected(status: int, reason: str, project: str) -> GceError:
    """The error a `http_errors` fault injects: realistic text where the reason is known."""
    if reason == "rateLimitExceeded":
        return RateLimitExceeded(project)
    text = {
        "backendError": "Internal error. Please try again or contact Google Support.",
        "internalError": "Internal error. Please try again or contact Google Support.",
        "serviceUnavailable": "The service is currently unavailable.",
        "quotaExceeded": "Quota 'CPUS' exceeded.  Limit: 8.0 in region us-central1.",
        # Both cited in docs/compute-engine.md, "Projects and regions".
        "notFound": f"The resource 'projects/{project}' was not found",
        "accessNotConfigured": (
            "Compute Engine API has not been used in project 123456789012 before or it is"
            " disabled. Enable it by visiting https://console.developers.google.com/apis/api/"
            "compute.googleapis.com/overview?project=123456789012 then retry. If you enabled"
            " this API recently, wait a few minutes for the action to propagate to our systems"
            " and retry."),
    }.get(reason, f"Injected {reason}.")
    if reason == "accessNotConfigured":
        return GceError(text, status=status, reason=reason, domain="usageLimits")
    return GceError(text, status=status, reason=reason)


class OperationFailure:
    """What a failed operation carries once DONE."""

    def __init__(self, code: str, message: str, http_status: int, details: list | None = None):
        self.code = code
        self.message = message
        self.http_status = http_status
        self.details = details or []


def stockout(project: str, zone: str, machine_type: str) -> OperationFailure:
    return OperationFailure(
        "ZONE_RESOURCE_POOL_EXHAUSTED",
        f"The zone 'projects/{project}/zones/{zone}' does not have enough resources available to"
        " fulfill the request.  Try a different zone, or try again later.",
        503,
        [{"errorInfo": {"reason": "resource_availability", "domain": "compute.googleapis.com",
                        "metadatas": {"vmType": machine_type, "zone": zone}}}],
    )


def quota_exceeded(region: str, metric: str, limit: float,
                   family: str | None = None) -> OperationFailure:
    """A regional quota failure. With a machine family the detail names the per-family limit,
    as real failures do (hashicorp/terraform-provider-google#20573); other metrics' names in
    the detail are [inferred] from it."""
    if family:
        info = {"metricName": "compute.googleapis.com/cpus_per_vm_family",
                "limitName": "CPUS-PER-VM-FAMILY-per-project-region",
                "dimensions": {"region": region, "vm_family": family.upper()}}
    else:
        info = {"metricName": f"compute.googleapis.com/{metric.lower()}",
                "limitName": f"{metric}-per-project-region", "dimensions": {"region": region}}
    return OperationFailure(
        "QUOTA_EXCEEDED",
        f"Quota '{metric}' exceeded.  Limit: {limit} in region {region}.",
        403,
        [{"quotaInfo": {**info, "limit": limit}}],
    )
