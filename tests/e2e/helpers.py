"""Small helpers shared by the end-to-end tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import anthropic
import grpc
import httpx
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from sluice.events.spool import pending_records
from sluice.events.v1 import events_pb2 as ev
from sluice.gateway.v1 import gateway_service_pb2_grpc
from sluice.llm.v1 import messages_pb2 as m


def sdk(base_url: str, api_key: str) -> anthropic.Anthropic:
    # No SDK retries: each test asserts exactly what one request did.
    return anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0)


def sim_stats(simulator_base: str) -> dict[str, int]:
    return httpx.get(f"{simulator_base}/_sim/stats", timeout=5).json()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def calls(cluster: Any) -> dict[str, int]:
    """Requests each simulated deployment received so far."""
    deployments = httpx.get(f"{cluster.simulator_base}/_sim/deployments", timeout=5).json()
    return {name: d["requests"] for name, d in deployments.items()}


def records(cluster: Any, kind: str = "audit") -> dict[str, ev.AuditEvent | ev.BillingEvent]:
    """The cluster region's spooled events of one kind, by request id."""
    out: dict[str, ev.AuditEvent | ev.BillingEvent] = {}
    for record in pending_records(cluster.spool_dir / cluster.config["region"]):
        if record.kind == kind:
            event = ev.AuditEvent() if kind == "audit" else ev.BillingEvent()
            event.ParseFromString(record.value)
            out[event.request.request_id] = event
    return out


def record_of(cluster: Any, request_id: str, kind: str = "audit") -> ev.AuditEvent | ev.BillingEvent:
    """One request's spooled event of `kind`, waiting up to 10 s for it."""
    found: dict[str, ev.AuditEvent | ev.BillingEvent] = {}

    def spooled() -> bool:
        found.update(records(cluster, kind))
        return request_id in found

    wait_until(spooled, 10, f"the {kind} record of {request_id}")
    return found[request_id]


def route(cluster: Any, tenant: str, tier: str, text: str, model: str = "auto") -> Any:
    """The routing service's own answer (RouteResponse) for a request of
    `tenant` in the cluster's region, asked over gRPC."""
    from sluice.auth.v1 import principal_pb2
    from sluice.llm.v1 import wire_pb2
    from sluice.routing.v1 import routing_service_pb2 as routing_pb
    from sluice.routing.v1 import routing_service_pb2_grpc as routing_grpc

    service = "gateway" if cluster.mode == "all" else "routing"
    body = json.dumps({"model": model, "max_tokens": 64, "messages": user(text)}).encode()
    with grpc.insecure_channel(cluster.config["services"][service]["grpc"]) as channel:
        return routing_grpc.RoutingServiceStub(channel).Route(routing_pb.RouteRequest(
            principal=principal_pb2.Principal(tenant_id=tenant, tier=tier, region=cluster.config["region"]),
            requested_model=model, max_tokens=64, request=wire_pb2.WireRequest(body=body)), timeout=5)


def user(text: str) -> list[dict[str, Any]]:
    # Block form, as the gateway forwards it, so a direct call prompts identically.
    return [{"role": "user", "content": [{"type": "text", "text": text}]}]


def grpc_params(text: str, model: str = "claude-sonnet-4-6", max_tokens: int = 64) -> m.MessageParams:
    return m.MessageParams(
        model=model, max_tokens=max_tokens,
        messages=[m.Message(role=m.ROLE_USER, content=[m.ContentBlock(text=m.TextBlock(text=text))])],
    )


def gateway_stub(channel: grpc.Channel) -> gateway_service_pb2_grpc.GatewayServiceStub:
    return gateway_service_pb2_grpc.GatewayServiceStub(channel)


def error_details(err: grpc.RpcError) -> dict[str, Any]:
    """ErrorInfo reason and BadRequest fields from a failed call."""
    status = rpc_status.from_call(err)
    out: dict[str, Any] = {"reason": None, "fields": []}
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            out["reason"], out["domain"] = info.reason, info.domain
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out["fields"] = [v.field for v in bad.field_violations]
    return out
