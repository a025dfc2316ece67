"""An Anthropic Messages API stand-in over HTTP (JSON and SSE).

Matches the wire format the `anthropic` SDK expects: the SSE event sequence
message_start, content_block_start, ping, content_block_delta..., 
content_block_stop, message_delta (stop reason, cumulative usage),
message_stop; Anthropic's error JSON with a request-id header; 529
overloaded_error. Latency, output length and failures are configurable, and
`/_sim/stats` reports what happened, including clients that went away
mid-stream.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web

from sluice.config.settings import SimulatorSettings
from sluice.simulator.generator import PromptCache, completion_words, directives, echo_chunks, text_of

_ERRORS = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
    500: "api_error", 504: "timeout_error", 529: "overloaded_error",
}


@dataclass
class Stats:
    requests: int = 0
    streams_started: int = 0
    streams_completed: int = 0
    client_disconnects: int = 0
    injected_failures: int = 0


def _request_id() -> str:
    return "req_sim_" + secrets.token_hex(8)


def _error(status: int, message: str, extra_headers: dict[str, str] | None = None) -> web.Response:
    rid = _request_id()
    body = {"type": "error", "error": {"type": _ERRORS.get(status, "api_error"), "message": message},
            "request_id": rid}
    headers = {"request-id": rid, **(extra_headers or {})}
    return web.json_response(body, status=status, headers=headers)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class Simulator:
    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.stats = Stats()
        self.cache = PromptCache()
        self._rng = random.Random()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_get("/_sim/stats", self.get_stats)
        return app

    async def get_stats(self, _: web.Request) -> web.Response:
        return web.json_response(asdict(self.stats))

    async def messages(self, request: web.Request) -> web.StreamResponse:
        self.stats.requests += 1
        if not request.headers.get("x-api-key") and not request.headers.get("authorization"):
            return _error(401, "x-api-key header is required")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "request body is not valid JSON")
        problem = _validate(body)
        if problem:
            return _error(400, problem)

        last_user = next((m for m in reversed(body["messages"]) if m.get("role") == "user"), {})
        d = directives(text_of(last_user.get("content"))) if self.settings.allow_directives else directives("")
        status = d.status or self._random_failure()
        if status:
            self.stats.injected_failures += 1
            extra = {"retry-after": "1"} if status in (429, 529) else {}
            return _error(status, f"simulated {_ERRORS.get(status, 'error')}", extra)

        input_tokens, cache_write, cache_read = self.cache.account(body)
        prompt = json.dumps(body["messages"], sort_keys=True)
        chunks = echo_chunks(d.echo, d.chunk_chars) if d.echo is not None else None
        wanted = len(chunks) if chunks is not None else d.tokens or self.settings.output_tokens
        count = min(wanted, body["max_tokens"])
        words = completion_words(prompt, count) if chunks is None else chunks[:count]
        stop_reason, stop_sequence = ("max_tokens" if count < wanted else "end_turn"), None
        text = "".join(words)
        for seq in body.get("stop_sequences") or ():
            at = text.find(seq)
            if seq and at >= 0:
                text, stop_reason, stop_sequence = text[:at], "stop_sequence", seq
                words = _rechunk(words, len(text))
        usage = {"input_tokens": input_tokens, "cache_creation_input_tokens": cache_write,
                 "cache_read_input_tokens": cache_read, "output_tokens": len(words)}
        message_id = "msg_sim_" + secrets.token_hex(10)
        if body.get("stream"):
            return await self._stream(request, body, d, message_id, words, usage, stop_reason, stop_sequence)
        # Paced by the same generator as the stream, so JSON and SSE take the same time.
        async for _ in self._deltas(d, words, _clock() + self._ttft(d)):
            pass
        message = {
            "id": message_id, "type": "message", "role": "assistant", "model": body["model"],
            "content": [{"type": "text", "text": text}], "stop_reason": stop_reason,
            "stop_sequence": stop_sequence, "usage": usage,
        }
        return web.json_response(message, headers={"request-id": _request_id()})

    async def _stream(self, request: web.Request, body: dict[str, Any], d: Any, message_id: str,
                      words: list[str], usage: dict[str, int], stop_reason: str, stop_sequence: str | None
                      ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache",
                     "request-id": _request_id()}
        )
        self.stats.streams_started += 1
        try:
            first_at = _clock() + self._ttft(d)
            await response.prepare(request)
            await _sleep_until(first_at)
            start_usage = dict(usage, output_tokens=1)
            await response.write(_sse("message_start", {"type": "message_start", "message": {
                "id": message_id, "type": "message", "role": "assistant", "model": body["model"],
                "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}}))
            await response.write(_sse("content_block_start", {"type": "content_block_start", "index": 0,
                                                              "content_block": {"type": "text", "text": ""}}))
            await response.write(_sse("ping", {"type": "ping"}))
            async for n, text in self._deltas(d, words, first_at):
                if d.disconnect_after is not None and n >= d.disconnect_after:
                    # A mid-stream drop: close the socket with the body unfinished.
                    assert request.transport is not None
                    request.transport.close()
                    return response
                if d.error_after is not None and n >= d.error_after:
                    await response.write(_sse("error", {"type": "error", "error": {
                        "type": "overloaded_error", "message": "simulated overload mid-stream"}}))
                    return response
                await response.write(_sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "text_delta", "text": text}}))
            await response.write(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
            await response.write(_sse("message_delta", {"type": "message_delta",
                                      "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                                      "usage": usage}))
            await response.write(_sse("message_stop", {"type": "message_stop"}))
            await response.write_eof()
            self.stats.streams_completed += 1
            return response
        except (ConnectionResetError, asyncio.CancelledError):
            self.stats.client_disconnects += 1
            raise

    async def _deltas(self, d: Any, words: list[str], first_at: float) -> AsyncIterator[tuple[int, str]]:
        """(index, text) of each content delta, `tokens_per_delta` words at a
        time. Delta n is due at `first_at + n * inter_token` on a fixed
        schedule, like a model that decodes at its own pace: time spent
        writing earlier deltas does not stretch the answer."""
        per = self.settings.tokens_per_delta
        itl = self._itl(d)
        for n, i in enumerate(range(0, len(words), per)):
            await _sleep_until(first_at + n * itl)
            yield n, "".join(words[i:i + per])

    def _ttft(self, d: Any) -> float:
        return (d.ttft_ms if d.ttft_ms is not None else self.settings.time_to_first_token_ms) / 1000

    def _itl(self, d: Any) -> float:
        return (d.itl_ms if d.itl_ms is not None else self.settings.inter_token_ms) / 1000

    def _random_failure(self) -> int | None:
        roll = self._rng.random()
        if roll < self.settings.failure_rate_529:
            return 529
        if roll < self.settings.failure_rate_529 + self.settings.failure_rate_500:
            return 500
        return None


def _clock() -> float:
    return asyncio.get_running_loop().time()


async def _sleep_until(deadline: float) -> None:
    delay = deadline - _clock()
    if delay > 0:
        await asyncio.sleep(delay)


def _rechunk(words: list[str], length: int) -> list[str]:
    out, used = [], 0
    for w in words:
        if used + len(w) > length:
            if length - used > 0:
                out.append(w[: length - used])
            break
        out.append(w)
        used += len(w)
    return out


def _validate(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        return "max_tokens: must be a positive integer"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: must be 'user' or 'assistant'"
    return None
