"""The inference adapter's conversions: proto -> SDK request, SSE bytes -> proto events."""

from __future__ import annotations

import pytest

from sluice.gateway.anthropic_json import parse_request
from sluice.inference.anthropic_upstream import request_kwargs, sse_events, to_event
from sluice.llm.v1 import messages_pb2 as m
from sluice.rpc.errors import Reason, SluiceError


def test_request_kwargs_round_trip_the_facade_json():
    body = {
        "max_tokens": 9, "temperature": 0.2, "stop_sequences": ["X"], "metadata": {"user_id": "u"},
        "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "tools": [{"name": "t", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any"},
    }
    params, _ = parse_request(body)
    kwargs = request_kwargs(params, "claude-sonnet-4-6")
    assert kwargs["model"] == "claude-sonnet-4-6"
    assert kwargs["system"] == [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    assert kwargs["messages"] == body["messages"]
    assert kwargs["tools"] == [{"name": "t", "input_schema": {"type": "object"}}]
    assert kwargs["tool_choice"] == {"type": "any"}
    assert (kwargs["temperature"], kwargs["stop_sequences"], kwargs["metadata"]) == (0.2, ["X"], {"user_id": "u"})
    assert "top_p" not in kwargs and "top_k" not in kwargs


async def _chunks(*parts: bytes):
    for part in parts:
        yield part


async def _parse(*parts: bytes):
    return [e async for e in sse_events(_chunks(*parts))]


async def test_sse_parser_handles_split_chunks_crlf_and_comments():
    events = await _parse(b"event: message_start\r\ndata: {\"type\":\"message_st", b"art\"}\r\n\r\n: keepalive\n\n",
                          b"event: ping\ndata: {\"type\": \"ping\"}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
    assert [k for k, _ in events] == ["message_start", "ping", "message_stop"]


async def test_sse_parser_rejects_truncated_and_non_object_events():
    with pytest.raises(ValueError):
        await _parse(b"event: ping\ndata: {\"type\":")
    with pytest.raises(ValueError):
        await _parse(b"event: x\ndata: [1]\n\n")


def test_events_carry_cumulative_usage():
    usage = m.Usage()
    start = to_event("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "model": "up", "content": [],
        "usage": {"input_tokens": 11, "output_tokens": 1, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 7}}}, usage)
    assert start.message_start.message.usage.input_tokens == 11
    block = to_event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}, usage)
    assert block.content_block_start.content_block.WhichOneof("block") == "text"
    delta = to_event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "yo"}}, usage)
    assert delta.content_block_delta.text_delta == "yo"
    end = to_event("message_delta", {"delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                     "usage": {"output_tokens": 30, "input_tokens": None}}, usage)
    u = end.message_delta.usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_input_tokens) == (11, 30, 7)
    assert end.message_delta.stop_reason == "end_turn"
    assert to_event("ping", {"type": "ping"}, usage) is None


def test_unknown_block_types_are_refused_not_dropped():
    with pytest.raises(SluiceError) as err:
        to_event("content_block_start", {"index": 0, "content_block": {"type": "thinking"}}, m.Usage())
    assert err.value.reason is Reason.UPSTREAM_ERROR


# -- the adapter against a scripted upstream, through the real SDK -----------------


class _ScriptedServer:
    """A loopback HTTP server answering /v1/messages with a fixed response."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or {}

    async def __aenter__(self) -> str:
        from aiohttp import web

        async def handler(_):
            return web.Response(status=self.status, body=self.body, headers=self.headers,
                                content_type="text/event-stream" if self.status == 200 else "application/json")

        app = web.Application()
        app.router.add_post("/v1/messages", handler)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def __aexit__(self, *exc) -> None:
        await self._runner.cleanup()


async def _run_adapter(base_url: str) -> list[m.StreamEvent]:
    from sluice.config.settings import UpstreamSettings
    from sluice.inference.anthropic_upstream import AnthropicUpstream
    from sluice.routing.v1.candidate_pb2 import Candidate

    upstream = AnthropicUpstream("anthropic", UpstreamSettings(base_url=base_url, api_key="k"))
    params, _ = parse_request({"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    try:
        return [e async for e in upstream.stream(Candidate(model_id="claude-haiku-4-5", upstream_model="x"), params, 5)]
    finally:
        await upstream.aclose()


_START = (b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","model":"x",'
          b'"usage":{"input_tokens":3,"output_tokens":1}}}\n\n')


async def test_malformed_upstream_event_is_an_upstream_error_not_internal():
    body = _START + b'event: content_block_delta\ndata: {"type":"content_block_delta"}\n\n'
    async with _ScriptedServer(200, body) as base:
        with pytest.raises(SluiceError) as err:
            await _run_adapter(base)
    assert err.value.reason is Reason.UPSTREAM_ERROR
    assert "malformed" in err.value.message


async def test_error_event_after_start_keeps_its_type():
    body = _START + b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"busy"}}\n\n'
    async with _ScriptedServer(200, body) as base:
        with pytest.raises(SluiceError) as err:
            await _run_adapter(base)
    assert err.value.reason is Reason.UPSTREAM_OVERLOADED
    assert err.value.message == "upstream: busy"


async def test_status_error_carries_type_and_retry_after():
    body = b'{"type":"error","error":{"type":"overloaded_error","message":"try later"}}'
    async with _ScriptedServer(529, body, {"retry-after": "3"}) as base:
        with pytest.raises(SluiceError) as err:
            await _run_adapter(base)
    assert err.value.reason is Reason.UPSTREAM_OVERLOADED
    assert err.value.retry_after_s == 3.0
    assert err.value.metadata == {"upstream_status": "529", "upstream_type": "overloaded_error"}
