"""The request path: auth, then safety + cache + routing at once, then inference.

The pipeline knows the other services only as stubs it was given (local or
remote, it cannot tell) and speaks only protos to them. Downstream failures
arrive as gRPC errors and leave as SluiceError with the downstream's reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc

from sluice.auth.v1 import auth_service_pb2, principal_pb2
from sluice.cache.v1 import cache_service_pb2
from sluice.events.v1 import events_pb2
from sluice.gateway.accounting import EventRecorder, RequestRecord
from sluice.gateway.validation import validate
from sluice.inference.v1 import inference_service_pb2
from sluice.llm.stream import MessageAssembler, StreamProtocolError, message_to_events
from sluice.llm.v1 import messages_pb2 as m
from sluice.routing.v1 import routing_service_pb2
from sluice.rpc.errors import Reason, SluiceError, from_rpc_error
from sluice.safety.v1 import safety_service_pb2, verdict_pb2
from sluice.telemetry import metrics
from sluice.tokens.estimator import estimate_params_tokens

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass
class RequestInfo:
    """What the pipeline learns about a request that its caller reports
    alongside the response (headers on HTTP, metadata on gRPC)."""

    rate_limit_headers: dict[str, str] = field(default_factory=dict)


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


async def _replay(message: m.AssistantMessage) -> AsyncIterator[m.StreamEvent]:
    for event in message_to_events(message):
        yield event


async def _events_of(call: Any) -> AsyncIterator[m.StreamEvent]:
    async for response in call:
        yield response.event


async def _gather_text(events: AsyncIterator[m.StreamEvent], batch_chars: int) -> AsyncIterator[m.StreamEvent]:
    """Joins consecutive text deltas of one block until batch_chars or any
    other event: the output filter releases text in such steps anyway, and
    each message to it costs (a network round of gRPC in the mesh)."""
    held: m.StreamEvent | None = None
    try:
        async for event in events:
            if event.WhichOneof("event") == "content_block_delta" and \
                    event.content_block_delta.WhichOneof("delta") == "text_delta":
                if held is not None and held.content_block_delta.index == event.content_block_delta.index:
                    held.content_block_delta.text_delta += event.content_block_delta.text_delta
                else:
                    if held is not None:
                        yield held
                    held = m.StreamEvent()
                    held.CopyFrom(event)
                if len(held.content_block_delta.text_delta) >= batch_chars:
                    yield held
                    held = None
                continue
            if held is not None:
                yield held
                held = None
            yield event
    except Exception:
        if held is not None:  # the model failed mid-batch: what it said before still counts
            yield held
        raise
    if held is not None:
        yield held


class Pipeline:
    def __init__(self, stages: Stages, stage_timeout_s: float, recorder: EventRecorder) -> None:
        self._s = stages
        self._stage_timeout = stage_timeout_s
        self._recorder = recorder
        self._settling: set[asyncio.Task[None]] = set()

    async def drain(self) -> None:
        """Waits for settlements still in flight (at shutdown)."""
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)

    async def authenticate(self, api_key: str) -> principal_pb2.Principal:
        response = await _call(
            self._s.auth.Authenticate(auth_service_pb2.AuthenticateRequest(api_key=api_key), timeout=self._stage_timeout)
        )
        return response.principal

    async def stream(self, principal: principal_pb2.Principal, params: m.MessageParams,
                     info: RequestInfo | None = None) -> AsyncIterator[m.StreamEvent]:
        """Events of the response, in Messages API order. However it ends, the
        request leaves one billing and one audit event and settles its quota."""
        if principal.region != self._recorder.region:
            # Served and recorded only in its home region; nothing is kept here.
            raise SluiceError(Reason.WRONG_REGION, f"tenant {principal.tenant_id} belongs to region "
                              f"{principal.region}; this deployment serves {self._recorder.region}")
        if not self._recorder.accepting:
            raise SluiceError(Reason.DEPENDENCY_UNAVAILABLE,
                              "event spool is full: requests cannot be billed until Kafka takes the backlog")
        record = RequestRecord(principal, params)
        outcome, error_reason = events_pb2.OUTCOME_OK, ""
        try:
            events, upstream = await self._prepare(record, info)
            try:
                async for event in events:
                    record.observe(event)
                    yield event
            except grpc.RpcError as exc:
                raise from_rpc_error(exc) from None
            finally:
                if upstream is not None:
                    # Reaches the upstream when the client went away mid-stream,
                    # or the output filter stopped the answer.
                    upstream.cancel()
                await events.aclose()  # and the output filter's call, now rather than at GC
        except SluiceError as err:
            outcome, error_reason = events_pb2.OUTCOME_ERROR, err.reason.name
            raise
        except (GeneratorExit, asyncio.CancelledError):
            outcome = events_pb2.OUTCOME_CANCELLED
            raise
        except Exception:
            outcome, error_reason = events_pb2.OUTCOME_ERROR, Reason.INTERNAL.name
            raise
        finally:
            if record.reservation is not None:
                self._settle_later(auth_service_pb2.SettleRequest(
                    principal=principal, reservation=record.reservation, usage=record.settled_usage(),
                    model=record.served_model or params.model))
            self._record(record, outcome, error_reason)

    async def _prepare(self, record: RequestRecord, info: RequestInfo | None
                       ) -> tuple[AsyncIterator[m.StreamEvent], Any]:
        """Admission, then safety, cache and routing. Returns the answer's
        events (from the cache or the model, through the output filter when
        the tenant's policy has output rules) and the model call, if any."""
        principal, params = record.principal, record.params
        validate(params)
        t = self._stage_timeout
        try:
            admitted = await _call(self._s.auth.Admit(auth_service_pb2.AdmitRequest(
                principal=principal, model=params.model, estimated_input_tokens=estimate_params_tokens(params),
                max_output_tokens=params.max_tokens), timeout=t))
        except SluiceError as err:
            record.refusal_reason = err.reason.name
            raise
        record.reservation = admitted.reservation
        if info is not None:
            info.rate_limit_headers = dict(admitted.rate_limit_headers)
        safety, cached, route = await _all_or_nothing(
            _call(self._s.safety.CheckInput(
                safety_service_pb2.CheckInputRequest(principal=principal, params=params), timeout=t)),
            _call(self._s.cache.Lookup(cache_service_pb2.LookupRequest(principal=principal, params=params),
                                       timeout=t)),
            _call(self._s.routing.Route(
                routing_service_pb2.RouteRequest(principal=principal, requested_model=params.model), timeout=t)),
            concurrently=not self._s.checks_in_process,
        )
        verdict = record.verdict = safety.verdict
        record.candidates, record.catalog_version = list(route.candidates), route.catalog_version
        if verdict.action == verdict_pb2.ACTION_BLOCK:
            rule_ids = ",".join(h.rule_id for h in verdict.hits if h.action == verdict_pb2.ACTION_BLOCK)
            raise SluiceError(Reason.POLICY_BLOCKED, f"request blocked by safety policy {verdict.policy_version} "
                              f"(profile {verdict.profile}): rule {rule_ids}", metadata={
                                  "rule_ids": rule_ids, "policy_version": verdict.policy_version})
        if safety.HasField("redacted_params"):  # redact rules fired, whatever else did
            params = record.redacted_params = safety.redacted_params
        upstream = None
        if cached.hit:
            events: AsyncIterator[m.StreamEvent] = _replay(cached.message)
        else:
            upstream = self._s.inference.Generate(
                inference_service_pb2.GenerateRequest(params=params, candidates=route.candidates))
            events = _events_of(upstream)
        if safety.filter_output:
            events = self._filter_output(record, _gather_text(events, safety.output_batch_chars))
        return events, upstream

    async def _filter_output(self, record: RequestRecord, events: AsyncIterator[m.StreamEvent]
                             ) -> AsyncIterator[m.StreamEvent]:
        """The answer through the safety service's output filter."""
        failure: list[BaseException] = []

        async def requests() -> AsyncIterator[safety_service_pb2.FilterOutputRequest]:
            yield safety_service_pb2.FilterOutputRequest(principal=record.principal)
            try:
                async for event in events:
                    yield safety_service_pb2.FilterOutputRequest(event=event)
            except Exception as exc:  # noqa: BLE001 - the model's failure, raised below once the filter let go
                # Ending the request stream lets the filter release what it holds.
                failure.append(exc)

        call = self._s.safety.FilterOutput(requests())
        try:
            async for response in call:
                if response.WhichOneof("part") == "verdict":
                    record.output_verdict = response.verdict
                else:
                    yield response.event
        finally:
            call.cancel()
        if failure:
            raise failure[0]

    def _record(self, record: RequestRecord, outcome: events_pb2.Outcome.ValueType, error_reason: str) -> None:
        try:
            self._recorder.finish(record, outcome, error_reason)
        except Exception:  # noqa: BLE001 - a failing disk must not turn a served answer into an error
            metrics.EVENTS_RECORD_FAILURES.inc()
            log.exception("recording billing/audit events for request %s failed", record.request_id)

    def _settle_later(self, request: auth_service_pb2.SettleRequest) -> None:
        # Off the response path; `drain` waits for these at shutdown.
        task = asyncio.get_running_loop().create_task(self._settle(request))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _settle(self, request: auth_service_pb2.SettleRequest) -> None:
        try:
            await _call(self._s.auth.Settle(request, timeout=self._stage_timeout))
        except SluiceError as err:
            # The reservation stands and expires with its window: over-counted, never leaked.
            metrics.QUOTA_SETTLE_FAILURES.inc()
            log.warning("settling quota for tenant %s failed: %s", request.principal.tenant_id, err)

    async def create(self, principal: principal_pb2.Principal, params: m.MessageParams,
                     info: RequestInfo | None = None) -> m.AssistantMessage:
        """The whole response, assembled from the stream."""
        assembler = MessageAssembler()
        try:
            async for event in self.stream(principal, params, info):
                assembler.feed(event)
        except StreamProtocolError as exc:
            raise SluiceError(Reason.UPSTREAM_ERROR, f"upstream stream was malformed: {exc}") from None
        if not assembler.done:
            raise SluiceError(Reason.UPSTREAM_ERROR, "upstream stream ended before message_stop")
        return assembler.message
