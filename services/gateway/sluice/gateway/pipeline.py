"""The request path: auth, routing and admission, then safety + cache at
once, then inference.

The pipeline knows the other services only as stubs it was given (local or
remote, it cannot tell) and speaks only protos to them. Requests and answers
travel as the API's JSON (`sluice.wire`): the pipeline reads what it needs
through the codec's views and sends on what the client sent, apart from the
edits a stage declared. Downstream failures arrive as gRPC errors and leave
as SluiceError with the downstream's reason.

Order: what the API answers with a 400 or 404 (an unknown or retired
model, max_tokens above the model's output, a prompt beyond its context
window) is answered so, rather than with a 429 from a token limit the
request could never fit: routing is judged before admission (in process,
one after the other; over the network, at once).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any, TypeVar

import grpc

from sluice.auth.v1 import auth_service_pb2, principal_pb2
from sluice.cache.v1 import cache_service_pb2
from sluice.catalog.pricing import cost_micro_usd, usd
from sluice.events.v1 import events_pb2
from sluice.gateway import observe
from sluice.gateway.accounting import COUNT_TOKENS, MESSAGES, EventRecorder, RequestRecord
from sluice.gateway.flights import Flight, Flights
from sluice.inference.v1 import inference_service_pb2
from sluice.llm.v1 import wire_pb2
from sluice.resilience.shedding import LoadShedder, shed_class
from sluice.routing.v1 import model_pb2, routing_service_pb2
from sluice.rpc import headers
from sluice.rpc.batching import carrying, ready_batches
from sluice.rpc.errors import Reason, SluiceError, from_rpc_error
from sluice.safety.v1 import safety_service_pb2, verdict_pb2
from sluice.storage.response_cache import resolve_mode
from sluice.telemetry import metrics, tracing
from sluice.wire import events as wire_events
from sluice.wire import jsontext
from sluice.wire.assemble import MessageAssembler, StreamProtocolError
from sluice.wire.events import Event
from sluice.wire.jsontext import JsonTextError, parse_pointer
from sluice.wire.request import MAX_BETAS, MessagesRequest, check_headers

T = TypeVar("T")
log = logging.getLogger(__name__)

# Members of a Messages request that /v1/messages/count_tokens does not take
# (the SDKs' count params lack them): dropped when Sluice asks the upstream
# to count a request's prompt itself.
_NOT_COUNTED = frozenset({"model", "stream", "max_tokens", "stop_sequences", "metadata", "temperature", "top_p",
                          "top_k", "service_tier", "inference_geo", "container", "diagnostics"})


@dataclass
class RequestInfo:
    """What the pipeline learns about a request that its caller reports
    alongside the response (headers on HTTP, metadata on gRPC)."""

    headers: dict[str, str] = field(default_factory=dict)
    # The client's x-sluice-priority: interactive (default), batch or
    # background; it can only lower the request's importance under overload.
    priority: str = "interactive"
    # The client's x-sluice-cache mode ("" = the tenant's) and
    # x-sluice-prompt-version tag.
    cache_mode: str = ""
    prompt_version: str = ""


@dataclass(frozen=True)
class Stages:
    """Stubs for the services the gateway calls."""

    auth: Any
    safety: Any
    cache: Any
    routing: Any
    inference: Any
    # Safety, cache and routing answer in this process (`all` mode): their
    # checks are CPU work that never waits, so running them as concurrent
    # tasks only interleaves a burst of requests on the event loop and delays
    # every one of them. Over the network they run concurrently.
    checks_in_process: bool = False


async def _call(awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from None


async def _all_or_nothing(*awaitables: Awaitable[Any], concurrently: bool = True) -> list[Any]:
    """Runs all (concurrently, or one after another); the first failure
    cancels or skips the rest and is raised."""
    if not concurrently:
        results = []
        try:
            for awaitable in awaitables:
                results.append(await awaitable)
        finally:
            for rest in awaitables[len(results) + 1:]:
                if asyncio.iscoroutine(rest):
                    rest.close()  # never started: no "never awaited" warning
        return results
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _replay(events: list[wire_pb2.WireEvent]) -> AsyncGenerator[Event, None]:
    for event in events:
        yield Event(event.type, event.data)


async def _cancelling(events: AsyncIterator[Event], call: Any) -> AsyncGenerator[Event, None]:
    """`events`, cancelling the model call `call` when closed early."""
    try:
        async for event in events:
            yield event
    finally:
        call.cancel()


def input_digest(safety: safety_service_pb2.CheckInputResponse) -> bytes:
    """Digest of the input check's redactions (empty: none): a cached
    answer is served only to a request redacted the same way."""
    if not safety.edits:
        return b""
    digest = hashlib.sha256()
    for edit in safety.edits:
        digest.update(edit.pointer.encode("utf-8", "surrogatepass") + b"\x00" +
                      edit.text.encode("utf-8", "surrogatepass") + b"\x01")
    return digest.digest()


def prompt_cache_header(plan: Any) -> str:
    """The x-sluice-prompt-cache value: the forecast for the deployment
    first in line, and the plan's warnings (headers.PROMPT_CACHE)."""
    first = plan.forecasts[0] if plan.forecasts else None
    out = f"read={first.read_tokens}; write={first.write_5m_tokens + first.write_1h_tokens}" if first else ""
    if plan.warnings:
        out += ("; " if out else "") + "warning=" + ",".join(plan.warnings)
    return out


def _carried(response: Any, part: str) -> list[Event]:
    """The answer's events a Generate or FilterOutput response carries: one
    (`event`) or a buffered answer's batch (`events`); none for another part."""
    if part == "event":
        return [Event(response.event.type, response.event.data)]
    if part == "events":
        return [Event(e.type, e.data) for e in response.events.events]
    return []


async def _events_of(call: Any, record: RequestRecord, info: RequestInfo) -> AsyncGenerator[Event, None]:
    """The answer's events; inference's attempt reports and its timing go
    on the record, and the serving deployment into the x-sluice-deployment
    header (the report comes before the first event, so before the headers
    go out)."""
    async for response in call:
        part = response.WhichOneof("part")
        if part in ("event", "events"):
            for event in _carried(response, part):
                yield event
        elif part == "attempt":
            record.attempt(response.attempt)
            if response.attempt.outcome == "served":
                info.headers[headers.DEPLOYMENT] = response.attempt.deployment
        elif part == "timing":
            record.upstream_ms = response.timing.upstream_ms


def _plain_text_delta(event: Event) -> bool:
    """A text_delta with nothing but index and text: one that can be joined
    with its neighbours without losing a field."""
    if event.type != wire_events.CONTENT_BLOCK_DELTA or b'"text_delta"' not in event.data:
        return False
    view = event.view
    delta = view.get("delta")
    return (len(view) == 3 and isinstance(view.get("index"), int) and isinstance(delta, dict) and len(delta) == 2
            and delta.get("type") == "text_delta" and isinstance(delta.get("text"), str))


async def _gather_text(events: AsyncIterator[Event], batch_chars: int) -> AsyncGenerator[Event, None]:
    """Joins consecutive plain text deltas of one block until batch_chars or
    any other event: the output filter releases text in such steps anyway,
    and each message to it costs (a network round of gRPC in the mesh). A
    delta that is not joined with another passes unchanged."""
    held: list[Event] = []
    size = 0

    def flush() -> Event:
        nonlocal held, size
        out = held[0] if len(held) == 1 else wire_events.text_delta(
            held[0].view["index"], "".join(e.view["delta"]["text"] for e in held))
        held, size = [], 0
        return out

    try:
        async for event in events:
            if _plain_text_delta(event):
                if held and held[0].view["index"] != event.view["index"]:
                    yield flush()
                held.append(event)
                size += len(event.view["delta"]["text"])
                if size >= batch_chars:
                    yield flush()
                continue
            if held:
                yield flush()
            yield event
    except Exception:
        if held:  # the model failed mid-batch: what it said before still counts
            yield flush()
        raise
    if held:
        yield flush()


_DONE = object()
# Deadline of the prompt-cache settlement made before an answer's last
# events, seconds: a cache service that is slow delays the end of an answer
# by at most this much (the ledger then simply misses one write).
_PREFIX_INLINE_TIMEOUT_S = 0.25


async def with_pings(events: AsyncIterator[Event], interval_s: float) -> AsyncGenerator[Event, None]:
    """`events`, with a `ping` whenever none came for `interval_s` seconds
    once the first has (0: none added), for a consumer that cannot write
    concurrently (a gRPC stream). Before the first event nothing is added: a
    request can still fail with its own status then. A reader task takes the
    events; closing this iterator cancels it, which the source sees as its
    consumer going away."""
    if interval_s <= 0:
        async for event in events:
            yield event
        return
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1)

    async def read() -> None:
        try:
            async for event in events:
                await queue.put(event)
            await queue.put(_DONE)
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, raised there
            await queue.put(exc)

    reader = asyncio.get_running_loop().create_task(read())
    started = False
    try:
        while True:
            try:
                async with asyncio.timeout(interval_s if started else None):
                    item = await queue.get()
            except TimeoutError:
                metrics.STREAM_PINGS.inc()
                yield wire_events.ping()
                continue
            if item is _DONE:
                return
            if isinstance(item, Exception):
                raise item
            started = True
            yield item
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


def _check_residency(request: MessagesRequest, allowed_geos: Any) -> None:
    """A client's own inference_geo must be one its residency allows: asking
    for another is refused (400), never served there."""
    geo = request.doc.get("inference_geo")
    if geo is not None and not isinstance(geo, str):
        raise SluiceError.bad_request("inference_geo", f"must be a string, not {jsontext.kind_name(geo)}")
    if isinstance(geo, str) and allowed_geos and geo not in allowed_geos:
        raise SluiceError.bad_request("inference_geo", f"{geo[:40]!a} is outside where this tenant's "
                                      f"inference may run ({', '.join(allowed_geos)})")


def _single(name: str, values: tuple[str, ...]) -> str:
    """The one value of an x-sluice-* header ("" when not sent). Raises
    INVALID_REQUEST naming the header when sent more than once."""
    if len(values) > 1:
        raise SluiceError.bad_request(f"header {name}", "must be sent at most once")
    return values[0] if values else ""


def _choice(name: str, values: tuple[str, ...], allowed: tuple[str, ...]) -> str:
    """The header's value, one of `allowed` or "" when not sent. Raises
    INVALID_REQUEST naming the header for any other value."""
    value = _single(name, values)
    if value and value not in allowed:
        # ascii(): the value may hold any bytes; the message stays printable.
        raise SluiceError.bad_request(f"header {name}",
                                      f"must be one of {', '.join(allowed)}; got {value[:40]!a}")
    return value


def parse_priority(values: tuple[str, ...]) -> str:
    """The client's x-sluice-priority (default interactive), from every
    value it sent. Raises INVALID_REQUEST naming the header for a value
    Sluice does not know, or for more than one."""
    return _choice(headers.PRIORITY, values, headers.PRIORITIES) or "interactive"


def parse_options(sent: Mapping[str, tuple[str, ...]], info: RequestInfo) -> None:
    """The client's x-sluice-priority, x-sluice-cache and
    x-sluice-prompt-version headers (every value sent of each) into `info`.
    Raises INVALID_REQUEST naming the header for a value Sluice does not
    take, or for one sent more than once."""
    info.priority = parse_priority(sent.get(headers.PRIORITY, ()))
    info.cache_mode = _choice(headers.CACHE, sent.get(headers.CACHE, ()), headers.CACHE_MODES)
    version = _single(headers.PROMPT_VERSION, sent.get(headers.PROMPT_VERSION, ()))
    if version and not headers.PROMPT_VERSION_FORMAT.match(version):
        raise SluiceError.bad_request(f"header {headers.PROMPT_VERSION}", "must be 1 to 128 letters, digits and "
                                      f"._:/+- starting with a letter or digit; got {version[:40]!a}")
    info.prompt_version = version


def _ending(exc: BaseException) -> tuple[events_pb2.Outcome, str]:
    """How a request that raised `exc` ended: (outcome, error reason)."""
    if isinstance(exc, SluiceError):
        return events_pb2.OUTCOME_ERROR, exc.reason.name
    if isinstance(exc, (GeneratorExit, asyncio.CancelledError)):
        return events_pb2.OUTCOME_CANCELLED, ""
    return events_pb2.OUTCOME_ERROR, Reason.INTERNAL.name


def deprecation_headers(model: model_pb2.ModelInfo) -> dict[str, str]:
    """Response headers for a deprecated model: `deprecation` (RFC 9745,
    the date it was deprecated), `sunset` (RFC 8594, when it retires) and a
    human-readable `warning` (RFC 7234 code 299). Empty for an active model."""
    if model.lifecycle != "deprecated":
        return {}
    out = {}
    if model.HasField("deprecated_at"):
        out["deprecation"] = f"@{model.deprecated_at.seconds}"
    text = f"model {model.id} is deprecated"
    if model.HasField("retires_at"):
        retires = model.retires_at.ToDatetime()
        out["sunset"] = format_datetime(retires.replace(tzinfo=None), usegmt=False).replace("-0000", "GMT")
        text += f" and retires on {retires:%Y-%m-%d}"
    out["warning"] = f'299 sluice "{text}; see GET /v1/models for the models you can use"'
    return out


class Pipeline:
    def __init__(self, stages: Stages, stage_timeout_s: float, recorder: EventRecorder,
                 shedder: LoadShedder | None = None, tenant_label: bool = False, mode: str = "all") -> None:
        self._s = stages
        self.mode = mode  # the process's run mode (all, mesh), for metrics and spans
        self._tenant_label = tenant_label
        self._stage_timeout = stage_timeout_s
        self._recorder = recorder
        self.shedder = shedder
        self._settling: set[asyncio.Future[None]] = set()
        self._flights = Flights()

    async def drain(self) -> None:
        """Waits for settlements still in flight (at shutdown)."""
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)

    async def authenticate(self, api_key: str, route: str | None = None) -> principal_pb2.Principal:
        """The caller's principal. A refusal of a Messages API request
        (`route`: messages or count_tokens) is counted as its answer."""
        try:
            response = await _call(self._s.auth.Authenticate(auth_service_pb2.AuthenticateRequest(api_key=api_key),
                                                             timeout=self._stage_timeout))
        except SluiceError as err:
            if route is not None:
                observe.refused(self.mode, route, err)
            raise
        return response.principal

    def _check_serving(self, principal: principal_pb2.Principal) -> None:
        if principal.region != self._recorder.region:
            # Served and recorded only in its home region; nothing is kept here.
            raise SluiceError(Reason.WRONG_REGION, f"tenant {principal.tenant_id} belongs to region "
                              f"{principal.region}; this deployment serves {self._recorder.region}")
        if not self._recorder.accepting:
            raise SluiceError(Reason.DEPENDENCY_UNAVAILABLE,
                              "event spool is full: requests cannot be billed until Kafka takes the backlog")

    # -- messages ----------------------------------------------------------------------

    def parse(self, principal: principal_pb2.Principal, raw: bytes, anthropic_version: str | None,
              anthropic_beta: tuple[str, ...] = (), count_tokens: bool = False,
              options: Mapping[str, tuple[str, ...]] | None = None, info: RequestInfo | None = None
              ) -> MessagesRequest:
        """The request the client sent, checked (`MessagesRequest`); a
        version of None means the client sent no anthropic-version header,
        which the API refuses. `options`: the x-sluice-* request headers
        sent, by name (checked with `parse_options`, kept in `info`). A
        refused request of this deployment's region is recorded (billing
        and audit, outcome ERROR) like any other."""
        version = anthropic_version or ""
        try:
            check_headers(anthropic_version, anthropic_beta)
            parse_options(options or {}, info if info is not None else RequestInfo())
            return MessagesRequest(raw, version, anthropic_beta, count_tokens)
        except SluiceError as err:
            if principal.region == self._recorder.region:
                clipped = (version[:64], tuple(b[:64] for b in anthropic_beta[:MAX_BETAS]))  # a record, not a dump
                record = RequestRecord(principal, MessagesRequest.unparsed(raw, *clipped, count_tokens),
                                       operation=COUNT_TOKENS if count_tokens else MESSAGES)
                self._record(record, events_pb2.OUTCOME_ERROR, err.reason.name)
            raise

    async def stream(self, principal: principal_pb2.Principal, request: MessagesRequest,
                     info: RequestInfo | None = None, buffered: bool = False) -> AsyncGenerator[Event, None]:
        """Events of the response, in Messages API order, as the upstream
        sent them (apart from declared edits). However it ends, the request
        leaves one billing and one audit event and settles its quota. With
        tracing on, the request's span is current while the pipeline runs
        (each step; never while the caller handles an event), and its trace
        id goes into the x-sluice-trace-id header."""
        info = info if info is not None else RequestInfo()
        span = None
        if tracing.ENABLED:
            span = observe.request_span(principal, request, MESSAGES, self.mode)
            info.headers[headers.TRACE_ID] = tracing.trace_id(span)
        inner = self._stream(principal, request, info, buffered, span)
        try:
            async with aclosing(tracing.stepping(inner, tracing.in_context(span))) as steps:
                async for event in steps:
                    yield event
        finally:
            await inner.aclose()  # its billing and audit now, not at garbage collection

    async def _stream(self, principal: principal_pb2.Principal, request: MessagesRequest, info: RequestInfo,
                      buffered: bool, span: Any) -> AsyncGenerator[Event, None]:
        try:
            self._check_serving(principal)
        except SluiceError as err:
            observe.refused(self.mode, MESSAGES, err, span)
            raise
        record = RequestRecord(principal, request)
        record.span, record.trace_id = span, info.headers.get(headers.TRACE_ID, "")
        outcome, error_reason = events_pb2.OUTCOME_OK, ""
        entered = False
        delivered: list[wire_pb2.WireEvent] | None = None
        try:
            entered = self._enter(principal, info)
            events, upstream = await self._prepare(record, info, buffered)
            delivered = [] if record.store_as else None
            try:
                async for event in events:
                    record.observe(event)
                    if delivered is not None:
                        delivered.append(wire_pb2.WireEvent(type=event.type, data=event.data))
                    if event.type == wire_events.MESSAGE_DELTA and record.prefix is not None:
                        # Before the answer ends: a client's next turn must find the
                        # ledger written (a short deadline: it holds the last events).
                        await self._settle_prefix(record, _PREFIX_INLINE_TIMEOUT_S)
                    yield event
            except grpc.RpcError as exc:
                raise from_rpc_error(exc) from None
            finally:
                if upstream is not None:
                    # Reaches the upstream when the client went away mid-stream,
                    # or the output filter stopped the answer.
                    upstream.cancel()
                await events.aclose()  # and the output filter's call, now rather than at GC
        except BaseException as exc:
            outcome, error_reason = _ending(exc)
            raise
        finally:
            if entered:
                self.shedder.exit()  # type: ignore[union-attr]  # entered only with a shedder
            flight = record.flight
            if flight is not None and not flight.done:
                # The shared call is still going (the client left while others
                # read on, or the last event is just through): this request is
                # billed for the whole answer once it is whole.
                self._later(self._finish_after(flight, record, outcome, error_reason, delivered))
            else:
                self._finish(record, outcome, error_reason, delivered)

    def _finish(self, record: RequestRecord, outcome: events_pb2.Outcome, error_reason: str,
                delivered: list[wire_pb2.WireEvent] | None) -> None:
        """However a request ended: its quota settled, a served answer kept
        (response cache, prefix ledger), its billing and audit events. A
        flight's leader is billed the flight's usage, however much of the
        answer its own client read."""
        flight = record.flight
        if flight is not None:
            record.adopt_usage(flight.events)
        if record.reservation is not None:
            self._later(self._settle(auth_service_pb2.SettleRequest(
                principal=record.principal, reservation=record.reservation, usage=record.settled_usage(),
                model=record.served_model or record.request.model)))
        stored = self._keep(record, delivered if outcome == events_pb2.OUTCOME_OK else None)
        if flight is not None and not stored:
            self._flights.release(flight)
        self._record(record, outcome, error_reason)

    async def _finish_after(self, flight: Flight, record: RequestRecord, outcome: events_pb2.Outcome,
                            error_reason: str, delivered: list[wire_pb2.WireEvent] | None) -> None:
        await flight.ended.wait()
        self._finish(record, outcome, error_reason, delivered)

    def _enter(self, principal: principal_pb2.Principal, info: RequestInfo) -> bool:
        """Admits the request under the gateway's overload signal, or
        raises OVERLOADED (529 with retry-after) for a class being shed:
        background, then free and batch, then standard; enterprise only at
        the hard cap (Google SRE book, "Handling Overload": criticality)."""
        if self.shedder is None:
            return False
        cls = shed_class(principal.tier, info.priority)
        if self.shedder.enter(cls):
            return True
        metrics.SHED.labels("gateway", str(cls)).inc()
        raise SluiceError(Reason.OVERLOADED, "Sluice is overloaded; this request's priority is being shed, "
                          "retry later", retry_after_s=self.shedder.retry_after_s())

    async def _route(self, record: RequestRecord, count_tokens: bool = False) -> routing_service_pb2.RouteResponse:
        route = await _call(self._s.routing.Route(routing_service_pb2.RouteRequest(
            principal=record.principal, requested_model=record.request.model, max_tokens=record.request.max_tokens,
            count_tokens=count_tokens, request=self._as_sent(record.request),
            estimated_input_tokens=record.request.estimated_input_tokens()), timeout=self._stage_timeout))
        record.candidates, record.catalog_version = list(route.candidates), route.catalog_version
        record.allowed_geos, record.deployments_version = tuple(route.allowed_geos), route.deployments_version
        record.route = route.decision
        return route

    async def _admit(self, record: RequestRecord, input_tokens: int, model: str,
                     requests_only: bool = False) -> auth_service_pb2.AdmitResponse:
        try:
            admitted = await _call(self._s.auth.Admit(auth_service_pb2.AdmitRequest(
                principal=record.principal, model=model, estimated_input_tokens=input_tokens,
                max_output_tokens=record.request.max_tokens, requests_only=requests_only), timeout=self._stage_timeout))
        except SluiceError as err:
            record.refusal_reason = err.reason.name
            raise
        if not requests_only:
            record.reservation = admitted.reservation
        return admitted

    async def _fits_context(self, record: RequestRecord, route: routing_service_pb2.RouteResponse) -> int:
        """The request's input tokens as far as Sluice knows them: its
        estimate, or, when the estimate exceeds the model's context window,
        the upstream's own count. Raises the API's 400 ("prompt is too long:
        N tokens > M maximum") when the upstream's count exceeds it too; a
        count that cannot be had leaves the upstream to judge."""
        estimate = record.request.estimated_input_tokens()
        window = route.candidates[0].context_window if route.candidates else 0
        if not window or estimate <= window:
            return estimate
        try:
            counted = await _call(self._s.inference.CountTokens(inference_service_pb2.CountTokensRequest(
                candidates=route.candidates, request=self._wire(record.request, _NOT_COUNTED),
                allowed_geos=route.allowed_geos),
                timeout=None))  # an upstream round trip over a long prompt: the request's own deadline
        except SluiceError as err:
            if err.reason is Reason.UPSTREAM_REJECTED and err.message.startswith("prompt is too long"):
                raise  # the upstream's own verdict on this prompt, in its words
            log.info("could not confirm an over-long prompt's size upstream (%s); the upstream will judge", err)
            return window
        if counted.input_tokens > window:
            raise SluiceError.bad_request("messages", f"prompt is too long: {counted.input_tokens} tokens > "
                                          f"{window} maximum")
        return counted.input_tokens

    @staticmethod
    def _wire(request: MessagesRequest, drop: frozenset[str] = frozenset({"model", "stream"})) -> wire_pb2.WireRequest:
        """The request for an upstream: its body without the members the upstream sets."""
        return wire_pb2.WireRequest(body=request.template(drop), anthropic_version=request.anthropic_version,
                                    anthropic_beta=request.anthropic_beta)

    @staticmethod
    def _as_sent(request: MessagesRequest) -> wire_pb2.WireRequest:
        """The request as the client sent it, for the stages that judge it."""
        return wire_pb2.WireRequest(body=request.raw, anthropic_version=request.anthropic_version,
                                    anthropic_beta=request.anthropic_beta)

    async def _check_input(self, record: RequestRecord) -> safety_service_pb2.CheckInputResponse:
        """The input verdict; raises POLICY_BLOCKED on a block, applies redactions."""
        safety = await _call(self._s.safety.CheckInput(safety_service_pb2.CheckInputRequest(
            principal=record.principal, request=self._as_sent(record.request)), timeout=self._stage_timeout))
        self._judge(record, safety)
        return safety

    @staticmethod
    def _judge(record: RequestRecord, safety: safety_service_pb2.CheckInputResponse) -> None:
        verdict = record.verdict = safety.verdict
        if verdict.action == verdict_pb2.ACTION_BLOCK:
            rule_ids = ",".join(h.rule_id for h in verdict.hits if h.action == verdict_pb2.ACTION_BLOCK)
            raise SluiceError(Reason.POLICY_BLOCKED, f"request blocked by safety policy {verdict.policy_version} "
                              f"(profile {verdict.profile}): rule {rule_ids}", metadata={
                                  "rule_ids": rule_ids, "policy_version": verdict.policy_version})
        if safety.edits:  # redact rules fired, whatever else did
            try:
                record.redacted = record.request.with_edits([(parse_pointer(e.pointer), e.text) for e in safety.edits])
            except (JsonTextError, KeyError) as exc:
                raise SluiceError(Reason.INTERNAL, f"safety returned an edit that does not apply: {exc}") from None

    async def _route_and_admit(self, record: RequestRecord
                               ) -> tuple[routing_service_pb2.RouteResponse, auth_service_pb2.AdmitResponse]:
        """Routing, the context-window check, and admission. What the API
        answers with a 400 or 404 wins over a limit's 429: in process they
        run in that order; over the network routing and admission run at
        once and a routing refusal is answered even when admission passed
        (its reservation is settled to nothing with the rest)."""
        if self._s.checks_in_process:
            route = await self._route(record)
            input_tokens = await self._fits_context(record, route)
            return route, await self._admit(record, input_tokens, route.model.id)
        routed, admitted = await asyncio.gather(
            self._route(record), self._admit(record, record.request.estimated_input_tokens(), record.request.model),
            return_exceptions=True)
        if isinstance(routed, BaseException):
            raise routed
        await self._fits_context(record, routed)
        if isinstance(admitted, BaseException):
            raise admitted
        return routed, admitted

    async def _prepare(self, record: RequestRecord, info: RequestInfo, buffered: bool = False
                       ) -> tuple[AsyncGenerator[Event, None], Any]:
        """Routing and admission, then safety and the cache lookup. Returns
        the answer's events (from the cache, an identical request's call in
        flight, or the model; through the output filter when the tenant's
        policy has output rules and the answer was not already filtered
        under the same policy) and the model call the request owns, if any."""
        principal, request = record.principal, record.request
        route, admitted = await self._route_and_admit(record)
        _check_residency(request, route.allowed_geos)
        info.headers[headers.ROUTE] = record.route_text = route_header(route.decision, route.model.id)
        info.headers.update(deprecation_headers(route.model))
        info.headers.update(admitted.rate_limit_headers)
        if route.HasField("prefix"):
            record.prefix = route.prefix
            info.headers[headers.PROMPT_CACHE] = prompt_cache_header(route.prefix)
        safety, cached = await _all_or_nothing(
            self._check_input(record),
            self._lookup(record, route, info),
            concurrently=not self._s.checks_in_process,
        )
        digest = input_digest(safety)
        policy = f"{safety.verdict.profile}@{safety.verdict.policy_version}"
        refilter = True
        if cached.hit and cached.answer.input_digest != digest:
            cached.hit, cached.status, cached.reason = False, "miss", "stale_input"
        record.cache_status, record.cache_reason = cached.status, cached.reason
        upstream = None
        if cached.hit:
            events: AsyncGenerator[Event, None] = _replay(list(cached.events))
            record.cache_origin = cached.answer.origin_request_id
            refilter = cached.answer.policy_version != policy
            if refilter and safety.filter_output:
                metrics.CACHE_REFILTERED.inc()
        else:
            flight = self._flights.find(cached.key) if cached.key else None
            if flight is not None and flight.input_digest == digest:
                record.cache_status, record.cache_reason, record.cache_origin = "hit", "single_flight", flight.leader
                events = flight.subscribe()
            else:
                upstream = self._s.inference.Generate(inference_service_pb2.GenerateRequest(
                    request=self._wire(record.redacted or request), candidates=route.candidates,
                    allowed_geos=route.allowed_geos, priority=shed_class(principal.tier, info.priority),
                    continue_midstream=principal.continue_midstream, buffered=buffered))
                events = _events_of(upstream, record, info)
                if cached.key and flight is None:
                    # The flight owns the call from here: a leader that goes
                    # away leaves its followers' answer running.
                    record.flight = self._flights.start(cached.key, record.request_id, digest,
                                                        _cancelling(events, upstream))
                    events = record.flight.subscribe()
                    upstream = None
                    if cached.mode == "read-write":
                        record.store_as = (cached.key, policy, digest)
        metrics.CACHE_LOOKUPS.labels(record.cache_status, record.cache_reason).inc()
        info.headers[headers.CACHE] = record.cache_status
        if record.from_cache:
            info.headers.pop(headers.PROMPT_CACHE, None)  # no upstream call to forecast
        if record.cache_origin:
            info.headers[headers.CACHE_ORIGIN] = record.cache_origin
        if safety.filter_output and refilter:
            events = self._filter_output(record, _gather_text(events, safety.output_batch_chars), buffered)
        return events, upstream

    async def _lookup(self, record: RequestRecord, route: routing_service_pb2.RouteResponse,
                      info: RequestInfo) -> cache_service_pb2.LookupResponse:
        """The cache's answer for this request; a cache service that fails
        or is late is a bypass (reason store_unavailable), never an error.
        A request whose mode is off is a bypass without asking."""
        mode, reason = resolve_mode(record.principal.cache, info.cache_mode, record.request.model)
        if mode == "off":
            return cache_service_pb2.LookupResponse(status="bypass", reason=reason, mode=mode)
        try:
            return await _call(self._s.cache.Lookup(cache_service_pb2.LookupRequest(
                principal=record.principal, request=self._as_sent(record.request), model=route.model.id,
                catalog_version=route.catalog_version, mode=info.cache_mode, prompt_version=info.prompt_version,
                task=route.decision.task), timeout=self._stage_timeout))
        except SluiceError as err:
            log.warning("response cache lookup failed (bypassed): %s", err)
            return cache_service_pb2.LookupResponse(status="bypass", reason="store_unavailable")

    async def _filter_output(self, record: RequestRecord, events: AsyncIterator[Event], buffered: bool = False
                             ) -> AsyncGenerator[Event, None]:
        """The answer through the safety service's output filter; a buffered
        request's answer goes (and comes back) as one batch, since its caller
        waits for all of it anyway."""
        failure: list[BaseException] = []

        async def requests() -> AsyncIterator[safety_service_pb2.FilterOutputRequest]:
            yield safety_service_pb2.FilterOutputRequest(principal=record.principal)
            batch: list[wire_pb2.WireEvent] = []
            try:
                if buffered:
                    async for event in events:
                        batch.append(wire_pb2.WireEvent(type=event.type, data=event.data))
                elif self._s.safety.local:  # in process a message costs little: no batching task
                    async for event in events:
                        yield safety_service_pb2.FilterOutputRequest(
                            event=wire_pb2.WireEvent(type=event.type, data=event.data))
                else:  # over the network, a stream's events that are ready together go as one message
                    async for ready in ready_batches(events):
                        yield carrying(safety_service_pb2.FilterOutputRequest,
                                       [wire_pb2.WireEvent(type=e.type, data=e.data) for e in ready])
            except Exception as exc:  # noqa: BLE001 - the model's failure, raised below once the filter let go
                # Ending the request stream lets the filter release what it holds.
                failure.append(exc)
            if batch:  # what came before a failure too: it is billed, so it is filtered and observed
                yield safety_service_pb2.FilterOutputRequest(events=wire_pb2.WireEvents(events=batch))

        call = self._s.safety.FilterOutput(requests())
        try:
            async for response in call:
                part = response.WhichOneof("part")
                if part == "verdict":
                    record.output_verdict = response.verdict
                for event in _carried(response, part):
                    yield event
        finally:
            call.cancel()
        if failure:
            raise failure[0]

    def _record(self, record: RequestRecord, outcome: events_pb2.Outcome, error_reason: str) -> None:
        """The request's billing and audit events, then its metrics and the
        end of its span (`observe.finished`)."""
        if outcome == events_pb2.OUTCOME_ERROR and not record.admitted:
            metrics.REQUESTS_REFUSED.labels(record.operation, error_reason).inc()
        summary = None
        span = tracing.start("sluice.events.record", parent=tracing.in_context(record.span)) \
            if record.span is not None else None
        try:
            summary = self._recorder.finish(record, outcome, error_reason)
        except Exception as exc:  # a failing disk must not turn a served answer into an error
            metrics.EVENTS_RECORD_FAILURES.inc()
            log.exception("recording billing/audit events for request %s failed", record.request_id)
            if span is not None:
                tracing.fail(span, type(exc).__name__)
        finally:
            if span is not None:
                span.end()
        observe.finished(record, summary, outcome, error_reason, self.mode, self._tenant_label)

    def _later(self, work: Awaitable[None]) -> None:
        # Off the response path; `drain` waits for these at shutdown.
        task = asyncio.ensure_future(work)
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    def _keep(self, record: RequestRecord, delivered: list[wire_pb2.WireEvent] | None) -> bool:
        """After a served answer: store it in the response cache (a
        read-write miss that led its flight, whole and from the model it
        was keyed under) and settle the prompt-cache plan on the deployment
        that served it, when the stream did not already. Both off the
        response path; True when a store was started (it releases the
        flight when done)."""
        served = record.served()
        stored = False
        if record.store_as and delivered and record.finished and served is not None \
                and served.model_id == record.candidates[0].model_id:
            key, policy, digest = record.store_as
            usage = record.answer_usage()
            answer = cache_service_pb2.CachedAnswer(
                events=delivered, origin_request_id=record.request_id, policy_version=policy, input_digest=digest,
                model=record.served_model, usage=usage, cost_usd=usd(cost_micro_usd(usage, served.prices)))
            answer.stored_at.GetCurrentTime()
            record.cache_stored = stored = True
            self._later(self._store(cache_service_pb2.StoreRequest(principal=record.principal, key=key,
                                                                   answer=answer), record.flight))
        if record.prefix is not None and not record.prefix_settled and served is not None and record.finished:
            self._later(self._settle_prefix(record))
        return stored

    async def _store(self, request: cache_service_pb2.StoreRequest, flight: Flight | None = None) -> None:
        try:
            await _call(self._s.cache.Store(request, timeout=self._stage_timeout))
        except SluiceError as err:
            metrics.CACHE_STORES.labels("skipped", "cache_unavailable").inc()
            log.warning("storing an answer in the response cache failed: %s", err)
        finally:
            if flight is not None:  # from now on identical requests find the answer in the store
                self._flights.release(flight)

    async def _settle_prefix(self, record: RequestRecord, timeout_s: float | None = None) -> None:
        """Settles the prompt-cache plan on the deployment that served, with
        the answer's usage (once; a failure is counted, never raised), within
        `timeout_s` (default the stage deadline)."""
        served = record.served()
        if record.prefix_settled or record.from_cache or served is None:
            return
        record.prefix_settled = True
        try:
            await _call(self._s.cache.RecordPrefix(cache_service_pb2.RecordPrefixRequest(
                principal=record.principal, plan=record.prefix, deployment=served.deployment,
                usage=record.answer_usage(), model=served.model_id),
                timeout=min(timeout_s or self._stage_timeout, self._stage_timeout)))
        except SluiceError as err:
            metrics.PREFIX_LEDGER_FAILURES.labels("gateway").inc()
            log.warning("recording a prompt-cache plan failed: %s", err)

    async def _settle(self, request: auth_service_pb2.SettleRequest) -> None:
        try:
            await _call(self._s.auth.Settle(request, timeout=self._stage_timeout))
        except SluiceError as err:
            # The reservation stands and expires with its window: over-counted, never leaked.
            metrics.QUOTA_SETTLE_FAILURES.inc()
            log.warning("settling quota for tenant %s failed: %s", request.principal.tenant_id, err)

    async def create(self, principal: principal_pb2.Principal, request: MessagesRequest,
                     info: RequestInfo | None = None) -> MessageAssembler:
        """The whole response, assembled from the stream with the SDKs'
        accumulation rules (`sluice.wire.assemble`)."""
        assembler = MessageAssembler()
        try:
            async for event in self.stream(principal, request, info, buffered=True):
                assembler.feed(event)
        except StreamProtocolError as exc:
            raise SluiceError(Reason.UPSTREAM_ERROR, f"upstream stream was malformed: {exc}") from None
        if not assembler.done:
            raise SluiceError(Reason.UPSTREAM_ERROR, "upstream stream ended before message_stop")
        return assembler

    # -- count_tokens ------------------------------------------------------------------

    async def count_tokens(self, principal: principal_pb2.Principal, request: MessagesRequest,
                           info: RequestInfo | None = None) -> tuple[int, bytes]:
        """(input_tokens, the upstream's answer JSON) for a count_tokens
        request. Counted against the request-rate limit only; the input
        policy applies (a blocked prompt is refused, a redacted one is
        counted as it would be sent); recorded in billing (free) and audit."""
        span = token = None
        if tracing.ENABLED:
            span = observe.request_span(principal, request, COUNT_TOKENS, self.mode)
            token = tracing.attach(span) if span is not None else None
            if info is not None:
                info.headers[headers.TRACE_ID] = tracing.trace_id(span)
        try:
            return await self._count_tokens(principal, request, info, span)
        finally:
            if token is not None:
                tracing.detach(token)

    async def _count_tokens(self, principal: principal_pb2.Principal, request: MessagesRequest,
                            info: RequestInfo | None, span: Any) -> tuple[int, bytes]:
        try:
            self._check_serving(principal)
        except SluiceError as err:
            observe.refused(self.mode, COUNT_TOKENS, err, span)
            raise
        record = RequestRecord(principal, request, operation=COUNT_TOKENS)
        record.span, record.trace_id = span, tracing.trace_id(span) if tracing.ENABLED else ""
        outcome, error_reason = events_pb2.OUTCOME_OK, ""
        try:
            route = await self._route(record, count_tokens=True)
            record.route_text = route_header(route.decision, route.model.id)
            if info is not None:
                info.headers[headers.ROUTE] = record.route_text
                info.headers.update(deprecation_headers(route.model))
            admitted = await self._admit(record, 0, route.model.id, requests_only=True)
            if info is not None:
                info.headers.update(admitted.rate_limit_headers)
            await self._check_input(record)
            counted = await _call(self._s.inference.CountTokens(inference_service_pb2.CountTokensRequest(
                candidates=route.candidates, request=self._wire(record.redacted or request, frozenset({"model"})),
                allowed_geos=route.allowed_geos), timeout=None))
            record.served_model, record.counted_tokens = counted.model_id, counted.input_tokens
            return counted.input_tokens, counted.body
        except BaseException as exc:
            outcome, error_reason = _ending(exc)
            raise
        finally:
            self._record(record, outcome, error_reason)

    # -- models ------------------------------------------------------------------------

    async def list_models(self, principal: principal_pb2.Principal, limit: int, before_id: str, after_id: str,
                          lifecycle: tuple[str, ...] = ()) -> routing_service_pb2.ListModelsResponse:
        """One page of the models the tenant may use (GET /v1/models)."""
        return await _call(self._s.routing.ListModels(routing_service_pb2.ListModelsRequest(
            principal=principal, limit=limit, before_id=before_id, after_id=after_id, lifecycle=lifecycle),
            timeout=self._stage_timeout))

    async def get_model(self, principal: principal_pb2.Principal, model_id: str) -> model_pb2.ModelInfo:
        """One model by id or alias (GET /v1/models/{id})."""
        response = await _call(self._s.routing.GetModel(routing_service_pb2.GetModelRequest(
            principal=principal, model_id=model_id), timeout=self._stage_timeout))
        return response.model


def route_header(decision: Any, model: str) -> str:
    """The x-sluice-route value: the decision as `key=value` pairs joined by
    "; ", empty ones left out (headers.ROUTE)."""
    pairs = [("policy", decision.policy), ("version", str(decision.policy_version) if decision.policy else ""),
             ("task", decision.task), ("complexity", decision.complexity), ("tier", decision.tier),
             ("reason", decision.reason), ("model", model),
             ("cost_shift", f"{decision.cost_shift:.3f}" if decision.policy else ""),
             ("experiment", decision.experiment), ("arm", decision.arm), ("affinity", decision.cache_affinity)]
    return "; ".join(f"{k}={v}" for k, v in pairs if v)


def models_page_json(page: routing_service_pb2.ListModelsResponse) -> bytes:
    """GET /v1/models's answer: data, has_more, first_id, last_id."""
    data = list(page.data)
    ends = jsontext.dumps({"has_more": page.has_more, "first_id": data[0].id if data else None,
                           "last_id": data[-1].id if data else None})
    return b'{"data":[' + b",".join(m.json for m in data) + b"]," + ends[1:].encode("utf-8")
