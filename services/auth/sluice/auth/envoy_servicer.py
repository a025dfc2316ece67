"""Envoy's external authorization and rate limit services, on Sluice's keys
and limits, so an Envoy in front can turn traffic away before it reaches a
gateway (deploy/envoy/envoy.yaml wires both).

- Check (ext_authz): the key from `x-api-key` or `authorization: Bearer`.
  Allowed requests go on with `x-sluice-tenant` / `x-sluice-key-id` set
  (overwriting anything a client sent); refusals carry the same status,
  Anthropic-style JSON body and headers the gateway would answer with.
- ShouldRateLimit: descriptors of entries `tenant` and `key` (from those
  headers). Sluice charges each request once, when the gateway admits it;
  here the same buckets and budgets are only looked at (`hits_addend` is not
  charged), so traffic already over a limit is answered 429 at the edge,
  with the Anthropic error body, `retry-after` and rate-limit headers.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2 as authz
from envoy.service.ratelimit.v3 import rls_pb2 as rls
from envoy.type.v3 import http_status_pb2
from google.protobuf import duration_pb2
from google.rpc import status_pb2

from sluice.auth.core import Authenticator
from sluice.auth.quota import QuotaKeeper
from sluice.auth.v1 import principal_pb2
from sluice.rpc import headers
from sluice.rpc.errors import Reason, SluiceError, anthropic_error_body, http_error_headers
from sluice.telemetry import metrics

log = logging.getLogger(__name__)

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_JSON = {"content-type": "application/json"}


def _header_options(values: dict[str, str]) -> list[base_pb2.HeaderValueOption]:
    return [base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=k, value=v), append_action=_OVERWRITE)
            for k, v in values.items()]


def _body(err: SluiceError, request_id: str) -> str:
    return json.dumps(anthropic_error_body(err, request_id))


class EnvoyAuthorizationServicer:
    def __init__(self, core: Authenticator) -> None:
        self._core = core

    async def Check(self, request: authz.CheckRequest, context: Any) -> authz.CheckResponse:
        http = request.attributes.request.http
        request_id = http.headers.get(headers.REQUEST_ID, "")
        try:
            principal = await self._core.authenticate(headers.presented_api_key(http.headers.get))
        except SluiceError as err:
            metrics.ENVOY_DECISIONS.labels("ext_authz", err.reason.value).inc()
            return authz.CheckResponse(
                status=status_pb2.Status(code=err.mapping.grpc_code.value[0], message=err.message),
                denied_response=authz.DeniedHttpResponse(
                    status=http_status_pb2.HttpStatus(code=err.mapping.http_status),
                    headers=_header_options({**_JSON, **http_error_headers(err, request_id)}),
                    body=_body(err, request_id),
                ),
            )
        metrics.ENVOY_DECISIONS.labels("ext_authz", "OK").inc()
        return authz.CheckResponse(
            status=status_pb2.Status(code=0),
            ok_response=authz.OkHttpResponse(headers=_header_options({
                headers.TENANT: principal.tenant_id, headers.KEY_ID: principal.key_id})),
        )


class EnvoyRateLimitServicer:
    def __init__(self, quota: QuotaKeeper) -> None:
        self._quota = quota

    async def ShouldRateLimit(self, request: rls.RateLimitRequest, context: Any) -> rls.RateLimitResponse:
        response = rls.RateLimitResponse(overall_code=rls.RateLimitResponse.OK)
        for descriptor in request.descriptors:
            entries = {e.key: e.value for e in descriptor.entries}
            status = response.statuses.add(code=rls.RateLimitResponse.OK)
            if "tenant" not in entries or "key" not in entries:
                continue  # not a Sluice descriptor: nothing of ours to limit
            principal = principal_pb2.Principal(tenant_id=entries["tenant"], key_id=entries["key"])
            try:
                reported = await self._quota.peek(principal)
            except SluiceError as err:
                if err.reason is not Reason.RATE_LIMITED:
                    # Store trouble: the gateway applies the tier's policy itself.
                    metrics.ENVOY_DECISIONS.labels("ratelimit", err.reason.value).inc()
                    continue
                status.code = rls.RateLimitResponse.OVER_LIMIT
                _describe(status, err.metadata)
                if err.retry_after_s is not None:
                    status.duration_until_reset.CopyFrom(duration_pb2.Duration(seconds=round(err.retry_after_s)))
                response.overall_code = rls.RateLimitResponse.OVER_LIMIT
                response.response_headers_to_add.extend(
                    base_pb2.HeaderValue(key=k, value=v) for k, v in {**_JSON, **http_error_headers(err, "")}.items())
                response.raw_body = _body(err, "").encode()
                metrics.ENVOY_DECISIONS.labels("ratelimit", "OVER_LIMIT").inc()
                return response
            metrics.ENVOY_DECISIONS.labels("ratelimit", "OK").inc()
            _describe(status, reported)
        return response


def _describe(status: rls.RateLimitResponse.DescriptorStatus, reported: dict[str, str]) -> None:
    """The requests-per-minute limit, in the RLS's own terms."""
    limit = reported.get(f"{headers.RATE_LIMIT_PREFIX}requests-limit")
    if limit is None:
        return
    status.current_limit.CopyFrom(rls.RateLimitResponse.RateLimit(
        name="requests_per_minute", requests_per_unit=int(limit), unit=rls.RateLimitResponse.RateLimit.MINUTE))
    status.limit_remaining = int(reported.get(f"{headers.RATE_LIMIT_PREFIX}requests-remaining", "0"))
