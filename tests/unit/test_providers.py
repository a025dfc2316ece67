"""The Anthropic adapter, through the real SDK against a loopback server:
what it sends (the client's bytes, model and stream set, the client's
version and betas) and how it reads what comes back."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from sluice.catalog.deployments import Deployment
from sluice.inference.providers import ProviderUpstream, build_upstream
from sluice.llm.v1 import wire_pb2
from sluice.routing.v1.candidate_pb2 import Candidate
from sluice.rpc.errors import Reason, SluiceError
from sluice.wire.request import MessagesRequest

CLIENT_BODY = (b'{"model": "claude-haiku-4-5-20251001", "max_tokens": 5, "stream": false, "temperature": 0.2,\n'
               b' "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t",'
               b' "content": "{\\"n\\": 17}"}]}], "x_new": {"big": 9007199254740993, "f": 1.50}}')


class _Server:
    """A loopback server answering with a fixed status and body; it keeps
    what each request carried."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or {}
        self.received: list[tuple[str, dict[str, str], bytes]] = []

    async def __aenter__(self) -> _Server:
        async def handler(request: web.Request) -> web.Response:
            self.received.append((request.path, dict(request.headers), await request.read()))
            return web.Response(status=self.status, body=self.body, headers=self.headers,
                                content_type="text/event-stream" if self.status == 200 else "application/json")

        app = web.Application()
        app.router.add_post("/v1/messages", handler)
        app.router.add_post("/v1/messages/count_tokens", handler)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.base = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


def _wire(version: str = "2023-06-01", betas: tuple[str, ...] = ()) -> wire_pb2.WireRequest:
    request = MessagesRequest(CLIENT_BODY, version, betas)
    return wire_pb2.WireRequest(body=request.template(), anthropic_version=version, anthropic_beta=betas)


def _anthropic(base: str) -> ProviderUpstream:
    return build_upstream("anthropic-test", Deployment(provider="anthropic", geo="global",
                                                       credentials={"api_key_env": "SLUICE_TEST_UPSTREAM_KEY"}),
                          simulator_url="", base_url=base, connect_timeout_s=5, max_connections=8)


CANDIDATE = Candidate(model_id="claude-haiku-4-5", upstream_model="claude-haiku-4-5", provider="anthropic")


@pytest.fixture(autouse=True)
def _upstream_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # The key comes from the variable the deployment names, as in production.
    monkeypatch.setenv("SLUICE_TEST_UPSTREAM_KEY", "k")


async def _events(server: _Server, request: wire_pb2.WireRequest | None = None):  # type: ignore[no-untyped-def]
    upstream = _anthropic(server.base)
    try:
        return [e async for e in upstream.stream(CANDIDATE, request or _wire(), 5)]
    finally:
        await upstream.aclose()


_START = (b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","model":"claude-haiku-4-5-x",'
          b'"usage":{"input_tokens":3,"output_tokens":1}}}\n\n')
_REST = (b'event: ping\ndata: {"type":"ping"}\n\n'
         b'event: x_future_event\ndata: {"type":"x_future_event","n":1.50}\n\n'
         b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


async def test_the_body_goes_upstream_as_the_client_wrote_it_with_model_and_stream_set():
    async with _Server(200, _START + _REST) as server:
        await _events(server, _wire("2026-10-21", ("context-management-2025-06-27", "fast-mode-2026-02-01")))
    path, headers, body = server.received[0]
    assert path == "/v1/messages"
    assert body.startswith(b'{"model":"claude-haiku-4-5","stream":true,')
    for member in (b'"max_tokens": 5', b'"temperature": 0.2', b'"x_new": {"big": 9007199254740993, "f": 1.50}',
                   b'"content": "{\\"n\\": 17}"'):
        assert member in body
    assert b'"stream": false' not in body and b"20251001" not in body
    assert headers["anthropic-version"] == "2026-10-21"
    assert headers["anthropic-beta"] == "context-management-2025-06-27,fast-mode-2026-02-01"
    assert headers["Authorization"] == "Bearer k"


async def test_events_pass_through_unchanged_but_the_served_models_id():
    async with _Server(200, _START + _REST) as server:
        events = await _events(server)
    assert [e.type for e in events] == ["message_start", "ping", "x_future_event", "message_stop"]
    assert events[0].view["message"]["model"] == "claude-haiku-4-5"
    assert events[2].data == b'{"type":"x_future_event","n":1.50}'


async def test_malformed_upstream_stream_is_an_upstream_error_not_internal():
    async with _Server(200, _START + b'event: content_block_delta\ndata: {"type":') as server:
        with pytest.raises(SluiceError) as err:
            await _events(server)
    assert err.value.reason is Reason.UPSTREAM_ERROR and "malformed" in err.value.message


async def test_error_event_after_start_keeps_its_type_and_words():
    body = _START + b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"busy"}}\n\n'
    async with _Server(200, body) as server:
        with pytest.raises(SluiceError) as err:
            await _events(server)
    assert err.value.reason is Reason.UPSTREAM_OVERLOADED
    assert err.value.message == "busy" and err.value.metadata["upstream_type"] == "overloaded_error"


async def test_status_error_carries_type_and_retry_after():
    body = b'{"type":"error","error":{"type":"overloaded_error","message":"try later"}}'
    async with _Server(529, body, {"retry-after": "3"}) as server:
        with pytest.raises(SluiceError) as err:
            await _events(server)
    assert err.value.reason is Reason.UPSTREAM_OVERLOADED and err.value.retry_after_s == 3.0
    assert err.value.metadata == {"upstream_status": "529", "upstream_type": "overloaded_error"}


@pytest.mark.parametrize("status,kind,reason,http", [
    (400, "invalid_request_error", Reason.UPSTREAM_REJECTED, 400),
    (404, "not_found_error", Reason.UPSTREAM_NOT_FOUND, 404),
    (413, "request_too_large", Reason.UPSTREAM_TOO_LARGE, 413),
])
async def test_the_upstreams_refusals_keep_their_status_and_words(status, kind, reason, http):
    message = "temperature: Extra inputs are not permitted"
    body = json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
    async with _Server(status, body) as server:
        with pytest.raises(SluiceError) as err:
            await _events(server)
    assert err.value.reason is reason and err.value.mapping.http_status == http
    assert err.value.message == message
    if status == 400:
        assert err.value.field_violations[0].field == "temperature"


async def test_count_tokens_sends_the_body_without_stream_and_reads_the_count():
    async with _Server(200, b'{"input_tokens": 42}') as server:
        upstream = _anthropic(server.base)
        request = MessagesRequest(b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}',
                                  "2023-06-01", count_tokens=True)
        try:
            tokens, body = await upstream.count_tokens(CANDIDATE, wire_pb2.WireRequest(
                body=request.template(frozenset({"model"})), anthropic_version="2023-06-01"), 5)
        finally:
            await upstream.aclose()
    assert (tokens, body) == (42, b'{"input_tokens": 42}')
    path, _, sent = server.received[0]
    assert path == "/v1/messages/count_tokens"
    assert json.loads(sent) == {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hi"}]}


# -- Vertex and Bedrock dialects ---------------------------------------------------------------

from sluice.inference.providers import _DIALECTS  # noqa: E402
from sluice.simulator import eventstream  # noqa: E402

HOSTILE = (b'{"max_tokens": 5, "anthropic_version": "1999-01-01", "anthropic_beta": ["evil"],'
           b' "inference_geo": "us", "messages": [{"role": "user", "content": "hi"}]}')


def _hostile(version: str = "2023-06-01", betas: tuple[str, ...] = ("b1",)) -> wire_pb2.WireRequest:
    return wire_pb2.WireRequest(body=HOSTILE, anthropic_version=version, anthropic_beta=betas)


def test_vertex_sets_its_own_version_and_takes_none_from_the_body():
    body = json.loads(_DIALECTS["vertex"].messages_body(CANDIDATE, _hostile()))
    assert body["anthropic_version"] == "vertex-2023-10-16" and body["stream"] is True
    assert not {"inference_geo", "model", "anthropic_beta"} & set(body)
    assert json.loads(_DIALECTS["vertex"].messages_body(CANDIDATE, _hostile("2026-10-21")))[
        "anthropic_version"] == "2026-10-21"
    counted = json.loads(_DIALECTS["vertex"].count_body(CANDIDATE, _hostile()))
    assert counted["model"] == "claude-haiku-4-5" and counted["anthropic_version"] == "vertex-2023-10-16"


def test_bedrock_puts_version_and_betas_in_the_body_from_the_headers_only():
    raw = _DIALECTS["bedrock"].messages_body(CANDIDATE, _hostile())
    body = json.loads(raw)
    assert body["anthropic_version"] == "bedrock-2023-05-31" and body["anthropic_beta"] == ["b1"]
    assert raw.count(b'"anthropic_version"') == 1 and raw.count(b'"anthropic_beta"') == 1
    assert not {"model", "stream", "inference_geo"} & set(body)
    assert "anthropic_beta" not in json.loads(_DIALECTS["bedrock"].messages_body(CANDIDATE, _hostile(betas=())))


async def _chunks(*parts: bytes):
    for part in parts:
        yield part


async def test_bedrock_event_stream_decodes_events_and_exceptions_across_chunk_boundaries():
    start = b'{"type":"message_start","message":{"id":"m","usage":{"input_tokens":3}}}'
    wire = eventstream.chunk(start) + eventstream.exception("throttlingException", "slow down")
    events = [e async for e in _DIALECTS["bedrock"].events(_chunks(wire[:7], wire[7:50], wire[50:]))]
    assert [e.type for e in events] == ["message_start", "error"]
    assert events[0].data == start
    assert events[1].view["error"] == {"type": "rate_limit_error", "message": "slow down"}


async def test_a_corrupt_bedrock_frame_is_a_malformed_stream_not_a_crash():
    wire = bytearray(eventstream.chunk(b'{"type":"ping"}'))
    wire[-1] ^= 0xFF  # the message checksum no longer matches
    with pytest.raises(ValueError, match="malformed AWS event stream"):
        [e async for e in _DIALECTS["bedrock"].events(_chunks(bytes(wire)))]
