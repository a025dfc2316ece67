"""An Anthropic Messages API stand-in over HTTP (JSON and SSE), also
serving simulated deployments on the Vertex AI and Bedrock wires: the thin
HTTP layer. The API's rules are `rules.py`'s, scripted answers
`scripts.py`'s (played by `player.py`), deterministic default answers and
token counts `generator.py`'s, request recording `recording.py`'s, the
Models API `models_api.py`'s, deployment profiles and failure scripts
`deployments.py`'s, and what differs per provider wire `wires.py`'s
(`vertex.py`, `bedrock.py`, `sigv4.py`, `eventstream.py`).

Endpoints (the unprefixed ones are deployment "default"; ``{dep}`` is
``[A-Za-z0-9._-]{1,64}``, any name, unconfigured ones behave as "default"):
- ``POST /v1/messages``: JSON or SSE (``"stream": true``). The default
  answer is words chosen by the prompt's hash, paced by
  time_to_first_token_ms / inter_token_ms, tokens_per_delta words a delta;
  in-prompt directives (`generator.py`) and scripts (`scripts.py`) change it.
- ``POST /v1/messages/count_tokens``: ``{"input_tokens": N}``.
- ``GET /v1/models``, ``GET /v1/models/{model_id}``: the catalog.
- The same under ``/d/{dep}`` (``/d/{dep}/v1/messages`` ...), with that
  deployment's profile.
- Vertex AI: ``POST /d/{dep}/v1/projects/{project}/locations/{location}/
  publishers/anthropic/models/{model}:rawPredict`` / ``:streamRawPredict``
  / ``models/count-tokens:rawPredict``; ``POST /oauth2/token`` issues the
  bearer tokens (google-auth's token_uri).
- Bedrock: ``POST /d/{dep}/model/{modelId}/invoke`` and
  ``.../invoke-with-response-stream`` (AWS event-stream), SigV4-signed.
- ``POST /_sim/scripts`` -> ``{"id": ...}``; ``GET /_sim/requests``
  (``?script=<id>``, ``?deployment=<dep>``, ``?last=N``); ``GET /_sim/stats``;
  ``GET /_sim/deployments``, ``PUT`` / ``DELETE /_sim/deployments/{dep}``.

Every API answer carries a ``request-id`` header (Bedrock:
``x-amzn-RequestId``); errors are the API's error JSON
(``{"type":"error","error":{type, message},"request_id":...}``), Bedrock's
``{"message"}`` with ``x-amzn-ErrorType`` on that wire.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from sluice.catalog import load_catalog
from sluice.catalog.catalog import Catalog, ModelEntry
from sluice.config.simulator import SimulatedDeployment, SimulatorSettings
from sluice.simulator import models_api, vertex
from sluice.simulator.deployments import DEFAULT, Deployments, Outcome, failure, parse_profile
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
    check_prompt_length,
    check_request,
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
from sluice.simulator.wires import (
    AnthropicWire,
    BedrockWire,
    VertexWire,
    api_error,
    api_headers,
    request_id,
)
from sluice.wire.events import Event

log = logging.getLogger(__name__)
# The API's request size limit for the Messages API is 32 MB; the simulator
# takes up to 64 MiB and answers 413 request_too_large above it.
MAX_BODY_BYTES = 64 * 1024 * 1024
# Words of the default answer's thinking block (thinking enabled or adaptive).
THINKING_WORDS = 8


@dataclass
class Stats:
    requests: int = 0  # Messages requests, on every wire
    streams_started: int = 0
    streams_completed: int = 0
    client_disconnects: int = 0
    injected_failures: int = 0  # directives, random failures, script statuses
    count_tokens_requests: int = 0
    scripted_requests: int = 0
    rejected_requests: int = 0  # refused by the API's rules (auth, version, body, model)
    internal_errors: int = 0  # bugs: a request the simulator failed to process (answered 400)
    oauth_tokens_issued: int = 0  # by POST /oauth2/token


Wire = AnthropicWire | VertexWire | BedrockWire
# A deployment path segment (settings check configured names by the same rule).
_DEP = "/d/{dep:[A-Za-z0-9._-]{1,64}}"


def _scripted_error(script: dict[str, Any]) -> ApiError:
    status = script["status"]
    error = script.get("error") or {}
    kind = error.get("type") or ERROR_TYPES.get(status, "api_error")
    return ApiError(status, error.get("message", f"simulated {kind}"), kind, dict(script.get("headers") or {}))


@dataclass(frozen=True)
class _Turn:
    """Who answers one Messages request: the wire, the deployment's profile
    and the outcome it drew."""

    wire: Wire
    profile: SimulatedDeployment
    outcome: Outcome = Outcome()


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
        # One prompt cache per deployment ("" for the root API) and model, as
        # each provider account and endpoint keeps its own for each model.
        self.caches: dict[tuple[str, str], PromptCache] = {}
        self.signer = Signer()
        self.scripts = ScriptStore()
        self.recorder = Recorder(settings.recorded_requests)
        self.deployments = Deployments(settings)
        self._rng = random.Random()

    def _prompt_cache(self, turn: _Turn, model: str) -> PromptCache:
        return self.caches.setdefault((turn.wire.deployment or "", model), PromptCache())

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        for prefix in ("", _DEP):
            app.router.add_post(prefix + "/v1/messages", self.messages)
            app.router.add_post(prefix + "/v1/messages/count_tokens", self.count_tokens)
            app.router.add_get(prefix + "/v1/models", self.list_models)
            app.router.add_get(prefix + "/v1/models/{model_id}", self.get_model)
        # One catch-all: Vertex's method suffix (":rawPredict") shares a segment with the model.
        app.router.add_post(_DEP + "/v1/projects/{rest:.*}", self.vertex_predict)
        app.router.add_post(_DEP + "/model/{model_id}/invoke", self.bedrock_invoke)
        app.router.add_post(_DEP + "/model/{model_id}/invoke-with-response-stream", self.bedrock_invoke)
        app.router.add_post("/oauth2/token", self.oauth_token)
        app.router.add_get("/_sim/stats", self.get_stats)
        app.router.add_post("/_sim/scripts", self.post_script)
        app.router.add_get("/_sim/requests", self.get_requests)
        app.router.add_get("/_sim/deployments", self.get_deployments)
        app.router.add_put(_DEP.replace("/d/", "/_sim/deployments/"), self.put_deployment)
        app.router.add_delete(_DEP.replace("/d/", "/_sim/deployments/"), self.delete_deployment)
        return app

    # -- test controls ----------------------------------------------------------------------

    async def get_stats(self, _: web.Request) -> web.Response:
        return web.json_response(asdict(self.stats))

    async def post_script(self, request: web.Request) -> web.Response:
        try:
            script = parse_script(parse_body(await request.read()))
        except ApiError as problem:
            return api_error(problem)
        except ScriptError as problem:
            return api_error(ApiError(400, f"script: {problem}"))
        except web.HTTPRequestEntityTooLarge:
            return api_error(ApiError(413, "script too large"))
        return web.json_response({"id": self.scripts.add(script)})

    async def get_deployments(self, _: web.Request) -> web.Response:
        return web.json_response(self.deployments.snapshot())

    async def put_deployment(self, request: web.Request) -> web.Response:
        name = request.match_info["dep"]
        try:
            profile = parse_profile(parse_body(await request.read()))
        except ApiError as problem:
            return api_error(problem)
        except ValueError as problem:
            return api_error(ApiError(400, f"deployment {name}: {problem}"))
        except web.HTTPRequestEntityTooLarge:
            return api_error(ApiError(413, "profile too large"))
        self.deployments.put(name, profile)
        return web.json_response(self.deployments.describe(name))

    async def delete_deployment(self, request: web.Request) -> web.Response:
        name = request.match_info["dep"]
        self.deployments.reset(name)
        return web.json_response(self.deployments.describe(name))

    async def get_requests(self, request: web.Request) -> web.Response:
        last = request.query.get("last")
        if last is not None:
            try:
                count = int(last)
                if count < 0:
                    raise ValueError
            except ValueError:
                return api_error(ApiError(400, "last: must be a non-negative integer"))
        records = self.recorder.query(request.query.get("script"), int(last) if last is not None else None,
                                      deployment=request.query.get("deployment"))
        return web.json_response(records)

    # -- Vertex's OAuth2 token endpoint -------------------------------------------------------

    async def oauth_token(self, request: web.Request) -> web.Response:
        form = await request.post()
        status, body = vertex.token_answer({k: v for k, v in form.items() if isinstance(v, str)})
        if status == 200:
            self.stats.oauth_tokens_issued += 1
        return web.json_response(body, status=status, headers={"cache-control": "no-store"})

    # -- Models API ---------------------------------------------------------------------------

    async def list_models(self, request: web.Request) -> web.Response:
        try:
            api_headers(request)
            page = models_api.list_page(self.catalog, request.query, self.now())
        except ApiError as problem:
            return api_error(problem)
        return web.json_response(page, headers={"request-id": request_id()})

    async def get_model(self, request: web.Request) -> web.Response:
        try:
            api_headers(request)
            info = models_api.retrieve(self.catalog, request.match_info["model_id"], self.now())
        except ApiError as problem:
            return api_error(problem)
        return web.json_response(info, headers={"request-id": request_id()})

    # -- Messages API, on each wire -----------------------------------------------------------

    async def messages(self, request: web.Request) -> web.StreamResponse:
        self.stats.requests += 1
        return await self._api(request, AnthropicWire(request.match_info.get("dep", DEFAULT)), count_tokens=False)

    async def count_tokens(self, request: web.Request) -> web.StreamResponse:
        self.stats.count_tokens_requests += 1
        return await self._api(request, AnthropicWire(request.match_info.get("dep", DEFAULT)), count_tokens=True)

    async def vertex_predict(self, request: web.Request) -> web.StreamResponse:
        dep = request.match_info["dep"]
        wire = VertexWire(dep, request.match_info["rest"], self.deployments.profile(dep).region)
        if wire.count_tokens:
            self.stats.count_tokens_requests += 1
        else:
            self.stats.requests += 1
        return await self._api(request, wire, count_tokens=wire.count_tokens)

    async def bedrock_invoke(self, request: web.Request) -> web.StreamResponse:
        self.stats.requests += 1
        dep = request.match_info["dep"]
        wire = BedrockWire(dep, request.match_info["model_id"], request.path.endswith("-with-response-stream"),
                           self.deployments.profile(dep).region, self.settings.aws_credentials,
                           request.headers.get("authorization"))
        return await self._api(request, wire, count_tokens=False)

    async def _api(self, request: web.Request, wire: Wire, count_tokens: bool) -> web.StreamResponse:
        """Records the request, answers it, and records the status answered."""
        where = {"deployment": wire.deployment, "provider": wire.provider, "location": wire.location}
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            exchange = _Exchange(self.recorder.record(request, b"", None, **where))
            self.stats.rejected_requests += 1
            refused = wire.error(ApiError(413, "Request exceeds the maximum allowed number of bytes."))
            exchange.record["status"] = refused.status
            return refused
        doc: Any = None
        problem: ApiError | None = None
        try:
            doc = parse_body(raw)
        except ApiError as exc:
            problem = exc
        script_id = marker(last_user_text(doc)) if self.settings.allow_directives else None
        exchange = _Exchange(self.recorder.record(request, raw, script_id, **where))
        try:
            response = await self._answer(request, wire, exchange, raw, doc, problem, script_id, count_tokens)
        except ApiError as exc:
            response = wire.error(exc)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception:  # a bug: never a 500, never a crash
            log.exception("simulator failed on a request")
            self.stats.internal_errors += 1
            if exchange.response is not None and exchange.response.prepared:
                return exchange.response
            response = wire.error(ApiError(400, "request could not be processed by the simulator"))
        if exchange.record["status"] is None and not exchange.dropped:
            exchange.record["status"] = response.status
        return response

    async def _answer(self, request: web.Request, wire: Wire, exchange: _Exchange, raw: bytes, doc: Any,
                      problem: ApiError | None, script_id: str | None, count_tokens: bool) -> web.StreamResponse:
        try:
            version, doc = wire.admit(request, raw, doc, problem, self.catalog)
            entry = check_request(doc, version=version, catalog=self.catalog, now=self.now(),
                                  signer=self.signer, count_tokens=count_tokens)
            prompt = measure(doc)
            check_prompt_length(prompt.total, entry)
        except ApiError:
            self.stats.rejected_requests += 1
            raise
        profile = self.deployments.profile(wire.deployment)
        outcome = Outcome()
        if not count_tokens:
            # Drawn before the script is taken: a refused request leaves a
            # `times` script for the retry that goes elsewhere.
            outcome = self.deployments.draw(wire.deployment)
            exchange.record["outcome"] = outcome.label
            if outcome.status is not None:
                self.stats.injected_failures += 1
                raise failure(outcome, profile)
        turn = _Turn(wire, profile, outcome)
        script = self.scripts.take(script_id)
        if script is not None:
            self.stats.scripted_requests += 1
            if script.get("status") is not None:
                self.stats.injected_failures += 1
                raise _scripted_error(script)
        if count_tokens:
            count = script.get("input_tokens") if script is not None else None
            return web.json_response({"input_tokens": prompt.total if count is None else count},
                                     headers={**wire.answer_headers(), **((script or {}).get("headers") or {})})
        if script is not None:
            return await self._scripted(request, turn, exchange, doc, entry, prompt, script)
        return await self._default(request, turn, exchange, doc, entry, prompt)

    def _usage(self, turn: _Turn, doc: dict[str, Any], entry: ModelEntry, cache: CacheUse,
               output: int) -> dict[str, Any]:
        usage: dict[str, Any] = {**cache.usage(), "output_tokens": output, "service_tier": "standard"}
        geo = turn.wire.inference_geo(doc, entry, turn.profile)
        if geo:
            usage["inference_geo"] = geo
        return usage

    def _pace(self, turn: _Turn, d: Directives, script: dict[str, Any] | None = None) -> tuple[float, float]:
        """(time to first token, inter-token interval), seconds: the
        deployment's, then the prompt's directives, then the script's; a
        "slow" outcome sets the first token's wait whatever they say."""
        ttft, itl = self.deployments.pacing(turn.wire.deployment)
        script = script or {}
        for ttft_ms, itl_ms in ((d.ttft_ms, d.itl_ms), (script.get("ttft_ms"), script.get("itl_ms"))):
            ttft = ttft if ttft_ms is None else ttft_ms / 1000
            itl = itl if itl_ms is None else itl_ms / 1000
        if turn.outcome.slow:
            ttft = turn.profile.slow_ttft_ms / 1000
        return ttft, itl

    async def _open_stream(self, request: web.Request, exchange: _Exchange, wire: Wire,
                           headers: dict[str, str] | None = None
                           ) -> tuple[web.StreamResponse, Callable[[bytes], Awaitable[None]]]:
        """Starts the stream: it, and the function that writes SSE bytes to
        it in the wire's framing."""
        response = web.StreamResponse(headers={**wire.stream_headers(), **(headers or {})})
        exchange.response = response
        self.stats.streams_started += 1
        await response.prepare(request)
        exchange.record["status"] = response.status
        encode = wire.encoder()

        async def write(sse: bytes) -> None:
            data = encode(sse)
            if data:
                await response.write(data)
        return response, write

    # -- scripted answers ---------------------------------------------------------------------

    async def _scripted(self, request: web.Request, turn: _Turn, exchange: _Exchange, doc: dict[str, Any],
                        entry: ModelEntry, prompt: Prompt, script: dict[str, Any]) -> web.StreamResponse:
        ttft, itl = self._pace(turn, directives(last_user_text(doc)), script)
        midstream = turn.outcome.midstream
        cache = self._prompt_cache(turn, entry.id).account(prompt, entry.min_cacheable_tokens)
        if script.get("events") is not None:
            steps = event_steps(script)
        else:
            usage = self._usage(turn, doc, entry, cache, output_tokens(script))
            steps = content_steps(script, message_id=_message_id(), model=doc["model"], usage=usage,
                                  signer=self.signer)
        headers = dict(script.get("headers") or {})
        if doc.get("stream"):
            response, write = await self._open_stream(request, exchange, turn.wire, headers)
            try:
                played = await play(steps, script, write, _dropper(request), ttft=ttft, itl=itl,
                                    midstream=midstream)
                if played == DONE:
                    await response.write_eof()
                    self.stats.streams_completed += 1
            except (ConnectionResetError, asyncio.CancelledError):
                self.stats.client_disconnects += 1
                raise
            return response
        buffer = bytearray()

        async def collect(data: bytes) -> None:
            buffer.extend(data)

        played = await play(steps, script, collect, lambda: None, ttft=ttft, itl=itl, midstream=midstream)
        if played == DISCONNECTED:
            exchange.dropped = True
            _dropper(request)()
            return web.Response()  # never sent: the connection is closed
        try:
            body = await assemble(bytes(buffer))
        except ApiError as problem:
            problem.headers = {**headers, **problem.headers}
            raise
        return web.Response(body=body, content_type="application/json",
                            headers={**turn.wire.answer_headers(), **headers})

    # -- the default answer -------------------------------------------------------------------

    async def _default(self, request: web.Request, turn: _Turn, exchange: _Exchange, doc: dict[str, Any],
                       entry: ModelEntry, prompt: Prompt) -> web.StreamResponse:
        d = directives(last_user_text(doc)) if self.settings.allow_directives else Directives()
        status = d.status if d.status is not None and 400 <= d.status <= 599 else self._random_failure()
        if status:
            self.stats.injected_failures += 1
            extra = {"retry-after": "1"} if status in (429, 529) else {}
            raise ApiError(status, f"simulated {ERROR_TYPES.get(status, 'error')}", headers=extra)

        cache = self._prompt_cache(turn, entry.id).account(prompt, entry.min_cacheable_tokens)
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
        usage = self._usage(turn, doc, entry, cache, len(words) + thinking_tokens)
        message_id = _message_id()
        ttft, itl = self._pace(turn, d)
        if doc.get("stream"):
            return await self._stream(request, turn, exchange, doc, d, (ttft, itl), message_id, words, thinking,
                                      usage, stop_reason, stop_sequence, max_tokens > 0)
        # Paced by the same generator as the stream, so JSON and SSE take the same time.
        async for _ in self._deltas(words, _clock() + ttft, itl):
            pass
        if turn.outcome.midstream:
            # Not streamed, a failure during generation is the whole answer.
            raise ApiError(529, "Overloaded", "overloaded_error")
        content: list[dict[str, Any]] = []
        if thinking is not None:
            content.append({"type": "thinking", "thinking": thinking, "signature": self.signer.sign(thinking)})
        if max_tokens > 0:
            content.append({"type": "text", "text": text})
        message = {
            "id": message_id, "type": "message", "role": "assistant", "model": doc["model"],
            "content": content, "stop_reason": stop_reason, "stop_sequence": stop_sequence, "usage": usage,
        }
        return web.json_response(message, headers=turn.wire.answer_headers())

    async def _stream(self, request: web.Request, turn: _Turn, exchange: _Exchange, doc: dict[str, Any],
                      d: Directives, pace: tuple[float, float], message_id: str, words: list[str],
                      thinking: str | None, usage: dict[str, Any], stop_reason: str, stop_sequence: str | None,
                      has_text: bool) -> web.StreamResponse:
        try:
            first_at = _clock() + pace[0]
            response, write = await self._open_stream(request, exchange, turn.wire)
            await _sleep_until(first_at)

            async def send(data: dict[str, Any]) -> None:
                await write(Event.of(data).sse())

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
            async for n, text in self._deltas(words, first_at, pace[1]):
                if d.disconnect_after is not None and n >= d.disconnect_after:
                    # A mid-stream drop: close the socket with the body unfinished.
                    _dropper(request)()
                    return response
                if d.error_after is not None and n >= d.error_after:
                    await send({"type": "error", "error": {
                        "type": "overloaded_error", "message": "simulated overload mid-stream"}})
                    return response
                if turn.outcome.midstream and n >= 1:  # the deployment's failure, after the first delta
                    break
                await send({"type": "content_block_delta", "index": index,
                            "delta": {"type": "text_delta", "text": text}})
            if turn.outcome.midstream:
                await send({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
                return response
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

    async def _deltas(self, words: list[str], first_at: float, itl: float):
        """(index, text) of each content delta, `tokens_per_delta` words at a
        time. Delta n is due at `first_at + n * itl` on a fixed schedule,
        like a model that decodes at its own pace: time spent writing
        earlier deltas does not stretch the answer."""
        per = self.settings.tokens_per_delta
        for n, i in enumerate(range(0, len(words), per)):
            await _sleep_until(first_at + n * itl)
            yield n, "".join(words[i:i + per])

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
