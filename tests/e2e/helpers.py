"""Small helpers shared by the end-to-end tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anthropic
import grpc
import httpx
from google.rpc import error_details_pb2
from grpc_status import rpc_status

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
