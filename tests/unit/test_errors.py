from __future__ import annotations

import grpc
import pytest

from sluice.rpc.errors import (
    REASONS,
    FieldViolation,
    QuotaViolation,
    Reason,
    SluiceError,
    anthropic_error_body,
)


def test_every_reason_has_one_mapping():
    assert set(REASONS) == set(Reason)


def test_status_round_trip_keeps_reason_and_details():
    err = SluiceError(Reason.RATE_LIMITED, "slow down", [FieldViolation("a", "b")],
                      [QuotaViolation("tenant:acme", "rpm")], retry_after_s=2.5, metadata={"limit": "60"})
    status = err.to_status()
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    back = SluiceError.from_status(grpc.StatusCode.RESOURCE_EXHAUSTED, status.message, status)
    assert back.reason is Reason.RATE_LIMITED
    assert back.field_violations == [FieldViolation("a", "b")]
    assert back.quota_violations == [QuotaViolation("tenant:acme", "rpm")]
    assert back.retry_after_s == 2.5
    assert back.metadata == {"limit": "60"}


@pytest.mark.parametrize("code,reason", [
    (grpc.StatusCode.UNAUTHENTICATED, Reason.INVALID_API_KEY),
    (grpc.StatusCode.DEADLINE_EXCEEDED, Reason.DEADLINE_EXCEEDED),
    (grpc.StatusCode.UNKNOWN, Reason.INTERNAL),
])
def test_status_without_error_info_maps_by_code(code, reason):
    assert SluiceError.from_status(code, "x", None).reason is reason


@pytest.mark.parametrize("reason,status,kind", [
    (Reason.INVALID_REQUEST, 400, "invalid_request_error"),
    (Reason.REQUEST_TOO_LARGE, 413, "request_too_large"),
    (Reason.INVALID_API_KEY, 401, "authentication_error"),
    (Reason.MODEL_NOT_ALLOWED, 403, "permission_error"),
    (Reason.MODEL_NOT_FOUND, 404, "not_found_error"),
    (Reason.RATE_LIMITED, 429, "rate_limit_error"),
    (Reason.INTERNAL, 500, "api_error"),
    (Reason.UPSTREAM_OVERLOADED, 529, "overloaded_error"),
])
def test_http_mapping_matches_anthropic(reason, status, kind):
    err = SluiceError(reason, "m")
    assert err.mapping.http_status == status
    assert anthropic_error_body(err, "req_1") == {"type": "error", "error": {"type": kind, "message": "m"},
                                                  "request_id": "req_1"}
