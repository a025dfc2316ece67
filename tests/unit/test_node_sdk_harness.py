"""The TypeScript SDK harness (tests/infra/node_sdk.py) against a stub Anthropic API.

A stdlib HTTP server on loopback answers POST /v1/messages with a fixed message, as JSON or as
SSE; the tests check what `run_ts` returns and what the SDK sent. Needs node, and npm's registry
the first time on a machine.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.infra.node_sdk import TS_SDK_API_VERSION, run_ts

pytestmark = pytest.mark.e2e

MESSAGE = {
    "id": "msg_stub", "type": "message", "role": "assistant", "model": "claude-stub",
    "content": [{"type": "text", "text": "Hello there"}],
    "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 5, "output_tokens": 2},
}

SSE_EVENTS = [
    ("message_start", {"type": "message_start", "message": {
        **MESSAGE, "content": [], "stop_reason": None,
        "usage": {"input_tokens": 5, "output_tokens": 1}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0,
                             "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": "Hello"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": " there"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("message_delta", {"type": "message_delta",
                       "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                       "usage": {"output_tokens": 2}}),
    ("message_stop", {"type": "message_stop"}),
]

PARAMS = {"model": "claude-stub", "max_tokens": 16,
          "messages": [{"role": "user", "content": "Hi"}]}


class _Stub(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.seen.append({"path": self.path, "headers": headers, "body": body})
        if self.path != "/v1/messages":
            self._send(404, "application/json", json.dumps(
                {"type": "error", "error": {"type": "not_found_error", "message": "no route"}}))
        elif body.get("stream"):
            self._send(200, "text/event-stream", "".join(
                f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in SSE_EVENTS))
        else:
            self._send(200, "application/json", json.dumps(MESSAGE))

    def _send(self, status: int, content_type: str, text: str) -> None:
        data = text.encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", "req_stub")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Stub", (_Stub,), {"seen": seen}))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_create_returns_the_message_and_records_the_attempt(stub):
    base_url, seen = stub
    out = run_ts(base_url, "sk-test", {"op": "create", "params": {**PARAMS, "sluice_extra": 1},
                                       "headers": {"anthropic-beta": "b1"}})
    assert out["ok"], out
    assert out["message"] == MESSAGE
    [attempt] = out["attempts"]
    assert (attempt["method"], attempt["path"], attempt["status"]) == ("POST", "/v1/messages", 200)
    assert attempt["request_headers"]["anthropic-version"] == TS_SDK_API_VERSION
    assert attempt["request_headers"]["anthropic-beta"] == "b1"
    assert attempt["response_headers"]["request-id"] == "req_stub"
    # What the server saw: the pinned version, the key as a bearer token, unknown params kept.
    [request] = seen
    assert request["headers"]["anthropic-version"] == TS_SDK_API_VERSION
    assert request["headers"]["authorization"] == "Bearer sk-test"
    assert "x-api-key" not in request["headers"]
    assert request["body"]["sluice_extra"] == 1


def test_stream_returns_events_final_message_and_text(stub):
    base_url, _ = stub
    out = run_ts(base_url, "sk-test", {"op": "stream", "params": PARAMS})
    assert out["ok"], out
    wire = [data for name, data in SSE_EVENTS if name != "ping"]
    assert out["events"] == wire
    assert out["text"] == "Hello there"
    # The helper's final message adds `parsed_output` (for structured outputs) to the wire fields.
    assert {k: out["final"][k] for k in MESSAGE} == MESSAGE
    assert out["attempts"][0]["request_headers"]["anthropic-version"] == TS_SDK_API_VERSION
    assert out["attempts"][0]["response_headers"]["content-type"] == "text/event-stream"


def test_x_api_key_auth_and_api_errors_are_results(stub):
    base_url, seen = stub
    out = run_ts(base_url, "sk-test", {"op": "count_tokens", "params": PARAMS, "auth": "x-api-key"})
    assert not out["ok"]
    assert out["error"]["status"] == 404
    assert out["error"]["type"] == "not_found_error"
    assert out["error"]["name"] == "NotFoundError"
    assert seen[0]["headers"]["x-api-key"] == "sk-test"
    assert "authorization" not in seen[0]["headers"]
