"""One error type for every service, and the one table that maps it.

A core raises `SluiceError(Reason.X, message)`. The server wrapper turns it into
a gRPC status with google.rpc details (ErrorInfo always; BadRequest,
QuotaFailure and RetryInfo when present). A caller turns the status back into
a `SluiceError` with `from_rpc_error`, and the HTTP facade renders it as
Anthropic's error JSON with `REASONS[reason].http_status`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from sluice.rpc import headers

ERROR_DOMAIN = "sluice.dev"
# ErrorInfo metadata: the upstream's HTTP status and error type, for errors it gave.
UPSTREAM_STATUS = "upstream_status"
UPSTREAM_TYPE = "upstream_type"
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


MAX_MESSAGE_CHARS = 2048
MAX_METADATA_CHARS = 256


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


class Mapping(NamedTuple):
    grpc_code: grpc.StatusCode
    http_status: int
    anthropic_type: str
    # False: the same request will fail the same way, so clients must not
    # retry it (on HTTP, `x-should-retry: false`), whatever the status.
    retryable: bool = True


class Reason(enum.Enum):
    """Stable, UPPER_SNAKE reasons carried in ErrorInfo.reason."""

    INVALID_REQUEST = "INVALID_REQUEST"
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    MISSING_API_KEY = "MISSING_API_KEY"
    MALFORMED_API_KEY = "MALFORMED_API_KEY"
    INVALID_API_KEY = "INVALID_API_KEY"
    INVALID_ADMIN_CREDENTIAL = "INVALID_ADMIN_CREDENTIAL"
    REVISION_CONFLICT = "REVISION_CONFLICT"
    MODEL_NOT_ALLOWED = "MODEL_NOT_ALLOWED"
    WRONG_REGION = "WRONG_REGION"
    POLICY_BLOCKED = "POLICY_BLOCKED"
    # The tenant's safety profile is in no loaded policy pack: refused, not
    # served under some other policy.
    POLICY_UNAVAILABLE = "POLICY_UNAVAILABLE"
    MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
    # The model retired (catalog lifecycle): requests naming it fail, as at the API.
    MODEL_RETIRED = "MODEL_RETIRED"
    NOT_FOUND = "NOT_FOUND"
    RATE_LIMITED = "RATE_LIMITED"
    # The request needs more than a limit's whole capacity (e.g. more tokens
    # than the per-minute budget): waiting cannot help, so never retry it.
    LIMIT_EXCEEDED_BY_REQUEST = "LIMIT_EXCEEDED_BY_REQUEST"
    UPSTREAM_RATE_LIMITED = "UPSTREAM_RATE_LIMITED"
    UPSTREAM_OVERLOADED = "UPSTREAM_OVERLOADED"
    UPSTREAM_ERROR = "UPSTREAM_ERROR"
    UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
    UPSTREAM_REJECTED = "UPSTREAM_REJECTED"
    UPSTREAM_NOT_FOUND = "UPSTREAM_NOT_FOUND"
    UPSTREAM_TOO_LARGE = "UPSTREAM_TOO_LARGE"
    NO_UPSTREAM = "NO_UPSTREAM"
    # Sluice itself is overloaded and sheds the request's priority class.
    OVERLOADED = "OVERLOADED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    CANCELLED = "CANCELLED"
    DEPENDENCY_UNAVAILABLE = "DEPENDENCY_UNAVAILABLE"
    INTERNAL = "INTERNAL"


_C = grpc.StatusCode
REASONS: dict[Reason, Mapping] = {
    Reason.INVALID_REQUEST: Mapping(_C.INVALID_ARGUMENT, 400, "invalid_request_error"),
    Reason.REQUEST_TOO_LARGE: Mapping(_C.INVALID_ARGUMENT, 413, "request_too_large"),
    Reason.MISSING_API_KEY: Mapping(_C.UNAUTHENTICATED, 401, "authentication_error"),
    Reason.MALFORMED_API_KEY: Mapping(_C.UNAUTHENTICATED, 401, "authentication_error"),
    Reason.INVALID_API_KEY: Mapping(_C.UNAUTHENTICATED, 401, "authentication_error"),
    Reason.INVALID_ADMIN_CREDENTIAL: Mapping(_C.UNAUTHENTICATED, 401, "authentication_error"),
    Reason.REVISION_CONFLICT: Mapping(_C.ABORTED, 409, "invalid_request_error"),
    Reason.MODEL_NOT_ALLOWED: Mapping(_C.PERMISSION_DENIED, 403, "permission_error"),
    Reason.WRONG_REGION: Mapping(_C.PERMISSION_DENIED, 403, "permission_error"),
    Reason.POLICY_BLOCKED: Mapping(_C.PERMISSION_DENIED, 403, "permission_error"),
    Reason.POLICY_UNAVAILABLE: Mapping(_C.FAILED_PRECONDITION, 500, "api_error"),
    Reason.MODEL_NOT_FOUND: Mapping(_C.NOT_FOUND, 404, "not_found_error"),
    Reason.MODEL_RETIRED: Mapping(_C.NOT_FOUND, 404, "not_found_error"),
    Reason.NOT_FOUND: Mapping(_C.NOT_FOUND, 404, "not_found_error"),
    Reason.RATE_LIMITED: Mapping(_C.RESOURCE_EXHAUSTED, 429, "rate_limit_error"),
    Reason.LIMIT_EXCEEDED_BY_REQUEST: Mapping(_C.RESOURCE_EXHAUSTED, 429, "rate_limit_error", retryable=False),
    Reason.UPSTREAM_RATE_LIMITED: Mapping(_C.RESOURCE_EXHAUSTED, 429, "rate_limit_error"),
    Reason.UPSTREAM_OVERLOADED: Mapping(_C.UNAVAILABLE, 529, "overloaded_error"),
    Reason.UPSTREAM_ERROR: Mapping(_C.INTERNAL, 500, "api_error"),
    Reason.UPSTREAM_UNAVAILABLE: Mapping(_C.UNAVAILABLE, 502, "api_error"),
    # The upstream refused the request itself: its 400, 404 and 413 reach the
    # client as such, with the upstream's own message. Not retryable.
    Reason.UPSTREAM_REJECTED: Mapping(_C.INVALID_ARGUMENT, 400, "invalid_request_error"),
    Reason.UPSTREAM_NOT_FOUND: Mapping(_C.NOT_FOUND, 404, "not_found_error"),
    Reason.UPSTREAM_TOO_LARGE: Mapping(_C.INVALID_ARGUMENT, 413, "request_too_large"),
    Reason.NO_UPSTREAM: Mapping(_C.FAILED_PRECONDITION, 500, "api_error"),
    Reason.OVERLOADED: Mapping(_C.UNAVAILABLE, 529, "overloaded_error"),
    Reason.DEADLINE_EXCEEDED: Mapping(_C.DEADLINE_EXCEEDED, 504, "timeout_error"),
    Reason.CANCELLED: Mapping(_C.CANCELLED, 499, "api_error"),
    Reason.DEPENDENCY_UNAVAILABLE: Mapping(_C.UNAVAILABLE, 503, "api_error"),
    Reason.INTERNAL: Mapping(_C.INTERNAL, 500, "api_error"),
}
assert set(REASONS) == set(Reason), "every Reason needs a mapping"

# What a status with no (or an unknown) ErrorInfo reason means, by code.
_REASON_FOR_CODE: dict[grpc.StatusCode, Reason] = {
    _C.INVALID_ARGUMENT: Reason.INVALID_REQUEST,
    _C.UNAUTHENTICATED: Reason.INVALID_API_KEY,
    _C.PERMISSION_DENIED: Reason.MODEL_NOT_ALLOWED,
    _C.NOT_FOUND: Reason.NOT_FOUND,
    _C.RESOURCE_EXHAUSTED: Reason.RATE_LIMITED,
    _C.DEADLINE_EXCEEDED: Reason.DEADLINE_EXCEEDED,
    _C.CANCELLED: Reason.CANCELLED,
    _C.UNAVAILABLE: Reason.DEPENDENCY_UNAVAILABLE,
}


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


@dataclass(frozen=True)
class QuotaViolation:
    subject: str
    description: str


@dataclass
class SluiceError(Exception):
    """A failure with a stable reason; see REASONS for how it is reported."""

    reason: Reason
    message: str
    field_violations: list[FieldViolation] = field(default_factory=list)
    quota_violations: list[QuotaViolation] = field(default_factory=list)
    retry_after_s: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Messages and metadata echo what a client sent (a model name, a
        # field): bounded, so an error always fits a gRPC status (16 KiB of
        # metadata) and a log line.
        self.message = _clip(self.message, MAX_MESSAGE_CHARS)
        self.metadata = {k: _clip(v, MAX_METADATA_CHARS) for k, v in self.metadata.items()}
        self.field_violations = [FieldViolation(_clip(v.field, MAX_METADATA_CHARS), _clip(v.description,
                                                                                         MAX_MESSAGE_CHARS))
                                 for v in self.field_violations]
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.message}"

    @property
    def mapping(self) -> Mapping:
        return REASONS[self.reason]

    @classmethod
    def bad_request(cls, field_name: str, description: str) -> SluiceError:
        return cls(
            Reason.INVALID_REQUEST,
            f"{field_name}: {description}",
            field_violations=[FieldViolation(field_name, description)],
        )

    # -- to and from google.rpc.Status ---------------------------------------

    def to_status(self) -> status_pb2.Status:
        details: list[any_pb2.Any] = []
        info = error_details_pb2.ErrorInfo(
            reason=self.reason.value, domain=ERROR_DOMAIN, metadata=self.metadata
        )
        details.append(_pack(info))
        if self.field_violations:
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                    for v in self.field_violations
                ]
            )
            details.append(_pack(bad))
        if self.quota_violations:
            quota = error_details_pb2.QuotaFailure(
                violations=[
                    error_details_pb2.QuotaFailure.Violation(subject=v.subject, description=v.description)
                    for v in self.quota_violations
                ]
            )
            details.append(_pack(quota))
        if self.retry_after_s is not None:
            delay = duration_pb2.Duration()
            delay.FromMilliseconds(int(self.retry_after_s * 1000))
            details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
        return status_pb2.Status(
            code=self.mapping.grpc_code.value[0], message=self.message, details=details
        )

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return ((_STATUS_DETAILS_KEY, self.to_status().SerializeToString()),)

    @classmethod
    def from_status(cls, code: grpc.StatusCode, message: str, status: status_pb2.Status | None) -> SluiceError:
        reason: Reason | None = None
        fields: list[FieldViolation] = []
        quotas: list[QuotaViolation] = []
        retry_after: float | None = None
        metadata: dict[str, str] = {}
        for any_detail in status.details if status else ():
            if any_detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                any_detail.Unpack(info)
                reason = Reason.__members__.get(info.reason)
                metadata = dict(info.metadata)
            elif any_detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                any_detail.Unpack(bad)
                fields = [FieldViolation(v.field, v.description) for v in bad.field_violations]
            elif any_detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
                quota = error_details_pb2.QuotaFailure()
                any_detail.Unpack(quota)
                quotas = [QuotaViolation(v.subject, v.description) for v in quota.violations]
            elif any_detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info_retry = error_details_pb2.RetryInfo()
                any_detail.Unpack(info_retry)
                retry_after = info_retry.retry_delay.ToMilliseconds() / 1000
        if reason is None:
            reason = _REASON_FOR_CODE.get(code, Reason.INTERNAL)
        return cls(reason, message, fields, quotas, retry_after, metadata)


def _pack(message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def from_rpc_error(err: grpc.RpcError) -> SluiceError:
    """Rebuilds the SluiceError a downstream service raised from its status."""
    code = err.code()
    details = err.details() or ""
    status: status_pb2.Status | None = None
    for key, value in err.trailing_metadata() or ():
        if key == _STATUS_DETAILS_KEY:
            status = status_pb2.Status.FromString(value)
            break
    return SluiceError.from_status(code, details, status)


def http_error_headers(err: SluiceError, request_id: str) -> dict[str, str]:
    """The headers an Anthropic-style HTTP error response carries, wherever
    it is rendered (the gateway's facade, or Envoy from ext_authz/ratelimit)."""
    out = {headers.ANTHROPIC_REQUEST_ID: request_id} if request_id else {}
    # A limit's rejection carries the same rate-limit headers a success would.
    out.update({k: v for k, v in err.metadata.items() if k.startswith(headers.RATE_LIMIT_PREFIX)})
    if err.retry_after_s is not None:
        out[headers.RETRY_AFTER] = str(max(1, round(err.retry_after_s)))
    status = err.mapping.http_status
    if not err.mapping.retryable or (status < 500 and status not in (408, 409, 429)):
        # It will fail the same way again: tell SDKs (which retry 408, 409,
        # 429 and 5xx by default) not to.
        out[headers.SHOULD_RETRY] = "false"
    return out


def anthropic_error_type(err: SluiceError) -> str:
    """The error type a client sees: the upstream's own for an error the
    upstream gave (it may name a type this table does not know, e.g.
    billing_error), else the table's."""
    upstream = err.metadata.get(UPSTREAM_TYPE)
    return upstream if upstream and err.reason.value.startswith("UPSTREAM_") else err.mapping.anthropic_type


def anthropic_error_body(err: SluiceError, request_id: str) -> dict:
    """Anthropic's error JSON for `err`."""
    return {
        "type": "error",
        "error": {"type": anthropic_error_type(err), "message": err.message},
        "request_id": request_id,
    }
