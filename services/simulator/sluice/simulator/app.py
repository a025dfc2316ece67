"""An Anthropic Messages API stand-in over HTTP (JSON and SSE): the thin
HTTP layer. The API's rules are `rules.py`'s, scripted answers
`scripts.py`'s (played by `player.py`), deterministic default answers and
token counts `generator.py`'s, request recording `recording.py`'s and the
Models API `models_api.py`'s.

Endpoints:
- ``POST /v1/messages``: JSON or SSE (``"stream": true``). The default
  answer is words chosen by the prompt's hash, paced by
  time_to_first_token_ms / inter_token_ms, tokens_per_delta words a delta;
  in-prompt directives (`generator.py`) and scripts (`scripts.py`) change it.
- ``POST /v1/messages/count_tokens``: ``{"input_tokens": N}``.
- ``GET /v1/models``, ``GET /v1/models/{model_id}``: the catalog.
- ``POST /_sim/scripts`` -> ``{"id": ...}``; ``GET /_sim/requests``
  (``?script=<id>``, ``?last=N``); ``GET /_sim/stats``.

Every API answer carries a ``request-id`` header; errors are the API's
error JSON (``{"type":"error","error":{type, message},"request_id":...}``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from sluice.catalog import load_catalog
from sluice.catalog.catalog import Catalog, ModelEntry
from sluice.config.settings import SimulatorSettings
from sluice.simulator import models_api
from sluice.simulator.generator import (
    CacheUse,
    Directives,
    Prompt,
    PromptCache,
    completion_words,
    directives,
    echo_chunks,
    last_user_text,
    measure,
)
from sluice.simulator.player import DISCONNECTED, DONE, assemble, play
from sluice.simulator.recording import Recorder
from sluice.simulator.rules import (
    ERROR_TYPES,
    ApiError,
    check_auth,
    check_prompt_length,
    check_request,
    check_version,
    parse_body,
)
from sluice.simulator.scripts import (
    ScriptError,
    ScriptStore,
    content_steps,
    event_steps,
    marker,
    output_tokens,
    parse_script,
)
from sluice.simulator.signing import Signer
from sluice.wire.events import Event

log = logging.getLogger(__name__)
# The API's request size limit for the Messages API is 32 MB; the simulator
# takes up to 64 MiB and answers 413 request_too_large above it.
MAX_BODY_BYTES = 64 * 1024 * 1024
# Words of the default answer's thinking block (thinking enabled or adaptive).
THINKING_WORDS = 8


@dataclass
class Stats:
    requests: int = 0  # to /v1/messages
    streams_started: int = 0
    streams_completed: int = 0
    client_disconnects: int = 0
    injected_failures: int = 0  # directives, random failures, script statuses
    count_tokens_requests: int = 0
    scripted_requests: int = 0
    rejected_requests: int = 0  # refused by the API's rules (auth, version, body, model)
    internal_errors: int = 0  # bugs: a request the simulator failed to process (answered 400)


def _request_id() -> str:
    return "req_sim_" + secrets.token_hex(8)


def _error(problem: ApiError) -> web.Response:
    rid = _request_id()
    body = {"type": "error", "error": {"type": problem.error_type, "message": problem.message},
            "request_id": rid}
    return web.json_response(body, status=problem.status, headers={"request-id": rid, **problem.headers})


def _scripted_error(script: dict[str, Any]) -> ApiError:
    status = script["status"]
    error = script.get("error") or {}
    kind = error.get("type") or ERROR_TYPES.get(status, "api_error")
    return ApiError(status, error.get("message", f"simulated {kind}"), kind, dict(script.get("headers") or {}))


class _Exchange:
    """One API request in flight: its record and any stream begun."""

    __slots__ = ("record", "response", "dropped")

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        self.response: web.StreamResponse | None = None
        self.dropped = False  # closed without an answer


class Simulator:
    def __init__(self, settings: SimulatorSettings, catalog: Catalog | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.catalog = catalog or load_catalog(settings.catalog_path or None)
        self.now = clock or (lambda: datetime.now(UTC))
        self.stats = Stats()
        self.cache = PromptCache()
        self.signer = Signer()
        self.scripts = ScriptStore()
        self.recorder = Recorder(settings.recorded_requests)
        self._rng = random.Random()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", self.count_tokens)
        app.router.add_get("/v1/models", self.list_models)
        app.router.add_get("/v1/models/{model_id}", self.get_model)
        app.router.add_get("/_sim/stats", self.get_stats)
        app.router.add_post("/_sim/scripts", self.post_script)
        app.router.add_get("/_sim/requests", self.get_requests)
        return app

    # -- test controls ----------------------------------------------------------------------

    async def get_stats(self, _: web.Request) -> web.Response:
        return web.json_response(asdict(self.stats))

    async def post_script(self, request: web.Request) -> web.Response:
        try:
            script = parse_script(parse_body(await request.read()))
        except ApiError as problem:
            return _error(problem)
        except ScriptError as problem:
            return _error(ApiError(400, f"script: {problem}"))
        except web.HTTPRequestEntityTooLarge:
            return _error(ApiError(413, "script too large"))
        return web.json_response({"id": self.scripts.add(script)})

    async def get_requests(self, request: web.Request) -> web.Response:
        last = request.query.get("last")
        if last is not None:
            try:
                count = int(last)
                if count < 0:
                    raise ValueError
            except ValueError:
                return _error(ApiError(400, "last: must be a non-negative integer"))
        records = self.recorder.query(request.query.get("script"), int(last) if last is not None else None)
        return web.json_response(records)

    # -- Models API ---------------------------------------------------------------------------

    async def list_models(self, request: web.Request) -> web.Response:
        try:
            self._check_headers(request)
            page = models_api.list_page(self.catalog, request.query, self.now())
        except ApiError as problem:
            return _error(problem)
        return web.json_response(page, headers={"request-id": _request_id()})

    async def get_model(self, request: web.Request) -> web.Response:
        try:
            self._check_headers(request)
            info = models_api.retrieve(self.catalog, request.match_info["model_id"], self.now())
        except ApiError as problem:
            return _error(problem)
        return web.json_response(info, headers={"request-id": _request_id()})

    @staticmethod
    def _check_headers(request: web.Request) -> str:
        check_auth(request.headers.get("x-api-key"), request.headers.get("authorization"))
        # A header sent twice reads as one comma-joined value, as the API saw
        # it in https://github.com/decolua/9router/issues/2357.
        versions = request.headers.getall("anthropic-version", [])
        return check_version(", ".join(versions) if versions else None)

    # -- Messages API -------------------------------------------------------------------------

    async def messages(self, request: web.Request) -> web.StreamResponse:
        self.stats.requests += 1
        return await self._api(request, count_tokens=False)

    async def count_tokens(self, request: web.Request) -> web.StreamResponse:
        self.stats.count_tokens_requests += 1
        return await self._api(request, count_tokens=True)

    async def _api(self, request: web.Request, count_tokens: bool) -> web.StreamResponse:
        """Records the request, answers it, and records the status answered."""
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            exchange = _Exchange(self.recorder.record(request, b"", None))
            exchange.record["status"] = 413
            self.stats.rejected_requests += 1
            return _error(ApiError(413, "Request exceeds the maximum allowed number of bytes."))
        doc: Any = None
        problem: ApiError | None = None
        try:
            doc = parse_body(raw)
        except ApiError as exc:
            problem = exc
        script_id = marker(last_user_text(doc)) if self.settings.allow_directives else None
        exchange = _Exchange(self.recorder.record(request, raw, script_id))
        try:
            response = await self._answer(request, exchange, doc, problem, script_id, count_tokens)
        except ApiError as exc:
            response = _error(exc)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception:  # a bug: never a 500, never a crash
            log.exception("simulator failed on a request")
            self.stats.internal_errors += 1
            if exchange.response is not None and exchange.response.prepared:
                return exchange.response
            response = _error(ApiError(400, "request could not be processed by the simulator"))
        if exchange.record["status"] is None and not exchange.dropped:
            exchange.record["status"] = response.status
        return response

    async def _answer(self, request: web.Request, exchange: _Exchange, doc: Any, problem: ApiError | None,
                      script_id: str | None, count_tokens: bool) -> web.StreamResponse:
        try:
            version = self._check_headers(request)
            if problem is not None:
                raise problem
            entry = check_request(doc, version=version, catalog=self.catalog, now=self.now(),
                                  signer=self.signer, count_tokens=count_tokens)
            prompt = measure(doc)
            check_prompt_length(prompt.total, entry)
        except ApiError:
            self.stats.rejected_requests += 1
            raise
        script = self.scripts.take(script_id)
        if script is not None:
            self.stats.scripted_requests += 1
            if script.get("status") is not None:
                self.stats.injected_failures += 1
                raise _scripted_error(script)
        if count_tokens:
            count = script.get("input_tokens") if script is not None else None
            return web.json_response({"input_tokens": prompt.total if count is None else count},
                                     headers={"request-id": _request_id(), **((script or {}).get("headers") or {})})
        if script is not None:
            return await self._scripted(request, exchange, doc, entry, prompt, script)
        return await self._default(request, exchange, doc, entry, prompt)

    def _usage(self, doc: dict[str, Any], entry: ModelEntry, cache: CacheUse, output: int) -> dict[str, Any]:
        usage: dict[str, Any] = {**cache.usage(), "output_tokens": output, "service_tier": "standard"}
        if entry.accepts.inference_geo:
            usage["inference_geo"] = doc.get("inference_geo") or "global"
        return usage

    async def _open_stream(self, request: web.Request, exchange: _Exchange,
                           headers: dict[str, str] | None = None) -> web.StreamResponse:
        response = web.StreamResponse(headers={
            "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache",
            "request-id": _request_id(), **(headers or {})})
        exchange.response = response
        self.stats.streams_started += 1
        await response.prepare(request)
        exchange.record["status"] = response.status
        return response

    # -- scripted answers ---------------------------------------------------------------------

    async def _scripted(self, request: web.Request, exchange: _Exchange, doc: dict[str, Any],
                        entry: ModelEntry, prompt: Prompt, script: dict[str, Any]) -> web.StreamResponse:
        d = directives(last_user_text(doc))
        ttft = self._ttft(d) if script.get("ttft_ms") is None else script["ttft_ms"] / 1000
        itl = self._itl(d) if script.get("itl_ms") is None else script["itl_ms"] / 1000
        cache = self.cache.account(prompt, entry.min_cacheable_tokens)
        if script.get("events") is not None:
            steps = event_steps(script)
        else:
            usage = self._usage(doc, entry, cache, output_tokens(script))
            steps = content_steps(script, message_id=_message_id(), model=doc["model"], usage=usage,
                                  signer=self.signer)
        headers = dict(script.get("headers") or {})
        if doc.get("stream"):
            response = await self._open_stream(request, exchange, headers)
            try:
                outcome = await play(steps, script, response.write, _dropper(request), ttft=ttft, itl=itl)
                if outcome == DONE:
                    await response.write_eof()
                    self.stats.streams_completed += 1
            except (ConnectionResetError, asyncio.CancelledError):
                self.stats.client_disconnects += 1
                raise
            return response
        buffer = bytearray()

        async def collect(data: bytes) -> None:
            buffer.extend(data)

        outcome = await play(steps, script, collect, lambda: None, ttft=ttft, itl=itl)
        if outcome == DISCONNECTED:
            exchange.dropped = True
            _dropper(request)()
            return web.Response()  # never sent: the connection is closed
        try:
            body = await assemble(bytes(buffer))
        except ApiError as problem:
            problem.headers = {**headers, **problem.headers}
            raise
        return web.Response(body=body, content_type="application/json",
                            headers={"request-id": _request_id(), **headers})

    # -- the default answer -------------------------------------------------------------------

    async def _default(self, request: web.Request, exchange: _Exchange, doc: dict[str, Any],
                       entry: ModelEntry, prompt: Prompt) -> web.StreamResponse:
        d = directives(last_user_text(doc)) if self.settings.allow_directives else Directives()
        status = d.status if d.status is not None and 400 <= d.status <= 599 else self._random_failure()
        if status:
            self.stats.injected_failures += 1
            extra = {"retry-after": "1"} if status in (429, 529) else {}
            raise ApiError(status, f"simulated {ERROR_TYPES.get(status, 'error')}", headers=extra)

        cache = self.cache.account(prompt, entry.min_cacheable_tokens)
        max_tokens = int(doc["max_tokens"])
        prompt_key = json.dumps(doc["messages"], sort_keys=True)
        chunks = echo_chunks(d.echo, d.chunk_chars) if d.echo is not None else None
        wanted = len(chunks) if chunks is not None else d.tokens or self.settings.output_tokens
        count = min(wanted, max_tokens)
        words = completion_words(prompt_key, count) if chunks is None else chunks[:count]
        stop_reason, stop_sequence = ("max_tokens" if count < wanted else "end_turn"), None
        text = "".join(words)
        for seq in doc.get("stop_sequences") or ():
            at = text.find(seq)
            if seq and at >= 0:
                text, stop_reason, stop_sequence = text[:at], "stop_sequence", seq
                words = _rechunk(words, len(text))
        thinking: str | None = None
        thinking_tokens = 0
        config = doc.get("thinking")
        if max_tokens > 0 and isinstance(config, dict) and config.get("type") in ("enabled", "adaptive"):
            thought = completion_words(prompt_key + "\x00thinking", THINKING_WORDS)
            thinking_tokens = len(thought)
            thinking = "" if config.get("display") == "omitted" else "".join(thought)
        usage = self._usage(doc, entry, cache, len(words) + thinking_tokens)
        message_id = _message_id()
        if doc.get("stream"):
            return await self._stream(request, exchange, doc, d, message_id, words, thinking, usage,
                                      stop_reason, stop_sequence, max_tokens > 0)
        # Paced by the same generator as the stream, so JSON and SSE take the same time.
        async for _ in self._deltas(d, words, _clock() + self._ttft(d)):
            pass
        content: list[dict[str, Any]] = []
        if thinking is not None:
            content.append({"type": "thinking", "thinking": thinking, "signature": self.signer.sign(thinking)})
        if max_tokens > 0:
            content.append({"type": "text", "text": text})
        message = {
            "id": message_id, "type": "message", "role": "assistant", "model": doc["model"],
            "content": content, "stop_reason": stop_reason, "stop_sequence": stop_sequence, "usage": usage,
        }
        return web.json_response(message, headers={"request-id": _request_id()})

    async def _stream(self, request: web.Request, exchange: _Exchange, doc: dict[str, Any], d: Directives,
                      message_id: str, words: list[str], thinking: str | None, usage: dict[str, Any],
                      stop_reason: str, stop_sequence: str | None, has_text: bool) -> web.StreamResponse:
        try:
            first_at = _clock() + self._ttft(d)
            response = await self._open_stream(request, exchange)
            await _sleep_until(first_at)

            async def send(data: dict[str, Any]) -> None:
                await response.write(Event.of(data).sse())

            await send({"type": "message_start", "message": {
                "id": message_id, "type": "message", "role": "assistant", "model": doc["model"],
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": dict(usage, output_tokens=1)}})
            index = 0
            if thinking is not None:
                await send({"type": "content_block_start", "index": 0,
                            "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
                await send({"type": "ping"})
                for piece in ([thinking[i:i + 16] for i in range(0, len(thinking), 16)]):
                    await send({"type": "content_block_delta", "index": 0,
                                "delta": {"type": "thinking_delta", "thinking": piece}})
                await send({"type": "content_block_delta", "index": 0,
                            "delta": {"type": "signature_delta", "signature": self.signer.sign(thinking)}})
                await send({"type": "content_block_stop", "index": 0})
                index = 1
            if has_text:
                await send({"type": "content_block_start", "index": index,
                            "content_block": {"type": "text", "text": ""}})
            if thinking is None:
                await send({"type": "ping"})
            async for n, text in self._deltas(d, words, first_at):
                if d.disconnect_after is not None and n >= d.disconnect_after:
                    # A mid-stream drop: close the socket with the body unfinished.
                    _dropper(request)()
                    return response
                if d.error_after is not None and n >= d.error_after:
                    await send({"type": "error", "error": {
                        "type": "overloaded_error", "message": "simulated overload mid-stream"}})
                    return response
                await send({"type": "content_block_delta", "index": index,
                            "delta": {"type": "text_delta", "text": text}})
            if has_text:
                await send({"type": "content_block_stop", "index": index})
            await send({"type": "message_delta", "delta": {"stop_reason": stop_reason,
                                                           "stop_sequence": stop_sequence}, "usage": usage})
            await send({"type": "message_stop"})
            await response.write_eof()
            self.stats.streams_completed += 1
            return response
        except (ConnectionResetError, asyncio.CancelledError):
            self.stats.client_disconnects += 1
            raise

    async def _deltas(self, d: Directives, words: list[str], first_at: float):  # type: ignore[no-untyped-def]
        """(index, text) of each content delta, `tokens_per_delta` words at a
        time. Delta n is due at `first_at + n * inter_token` on a fixed
        schedule, like a model that decodes at its own pace: time spent
        writing earlier deltas does not stretch the answer."""
        per = self.settings.tokens_per_delta
        itl = self._itl(d)
        for n, i in enumerate(range(0, len(words), per)):
            await _sleep_until(first_at + n * itl)
            yield n, "".join(words[i:i + per])

    def _ttft(self, d: Directives) -> float:
        return (d.ttft_ms if d.ttft_ms is not None else self.settings.time_to_first_token_ms) / 1000

    def _itl(self, d: Directives) -> float:
        return (d.itl_ms if d.itl_ms is not None else self.settings.inter_token_ms) / 1000

    def _random_failure(self) -> int | None:
        roll = self._rng.random()
        if roll < self.settings.failure_rate_529:
            return 529
        if roll < self.settings.failure_rate_529 + self.settings.failure_rate_500:
            return 500
        return None


def _message_id() -> str:
    return "msg_sim_" + secrets.token_hex(10)


def _dropper(request: web.Request) -> Callable[[], None]:
    def drop() -> None:
        if request.transport is not None:
            request.transport.close()
    return drop


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
