"""What one request used and how it ended.

A `RequestRecord` follows a request through the pipeline; at the end it
settles the quota reservation (the pipeline's job) and becomes exactly one
billing and one audit event (`EventRecorder.finish`), whatever the ending:
delivered, refused, failed or cancelled; and a review event when a safety
rule flagged it for a human.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time

from google.protobuf import json_format

from sluice.auth.v1 import auth_service_pb2, principal_pb2
from sluice.events.emitter import EventEmitter
from sluice.events.records import cost_usd
from sluice.events.v1 import events_pb2 as ev
from sluice.llm.v1 import messages_pb2 as m
from sluice.routing.v1 import candidate_pb2
from sluice.rpc import context as call_context
from sluice.safety.v1 import verdict_pb2
from sluice.tokens.estimator import tokens_for_chars

log = logging.getLogger(__name__)

_ROLES = {m.ROLE_USER: "user", m.ROLE_ASSISTANT: "assistant"}


class RequestRecord:
    """Filled in by the pipeline as the request goes; read once at the end."""

    def __init__(self, principal: principal_pb2.Principal, params: m.MessageParams) -> None:
        self.principal = principal
        self.params = params
        ctx = call_context.current()
        self.request_id = ctx.request_id if ctx else call_context.new_request_id()
        self.started = time.monotonic()
        self.refusal_reason = ""
        # Set once auth admitted the request: settled however it ends.
        self.reservation: auth_service_pb2.Reservation | None = None
        self.verdict = verdict_pb2.Verdict()
        # The output filter's verdict, when the answer went through it.
        self.output_verdict: verdict_pb2.Verdict | None = None
        # The params after the safety stage's redaction, when it redacted.
        self.redacted_params: m.MessageParams | None = None
        self.candidates: list[candidate_pb2.Candidate] = []
        self.catalog_version = ""
        self.usage = m.Usage()
        self.served_model = ""
        self.finished = False
        self.first_token_at: float | None = None
        self._completion: list[str] = []

    @property
    def admitted(self) -> bool:
        return self.reservation is not None

    def observe(self, event: m.StreamEvent) -> None:
        """Takes note of one event on its way to the client."""
        kind = event.WhichOneof("event")
        if kind == "content_block_delta":
            delta = event.content_block_delta
            text = delta.text_delta or delta.input_json_delta
            if text:
                if self.first_token_at is None:
                    self.first_token_at = time.monotonic()
                self._completion.append(text)
        elif kind == "message_delta":
            self.usage, self.finished = event.message_delta.usage, True
        elif kind == "message_start":
            self.usage, self.served_model = event.message_start.message.usage, event.message_start.message.model

    def settled_usage(self) -> m.Usage:
        """What upstream used as far as the stream got. A stream stopped before
        its final usage (cancelled, failed) is billed the output it delivered."""
        delivered_chars = 0 if self.finished else sum(map(len, self._completion))
        if not delivered_chars:
            return self.usage
        settled = m.Usage()
        settled.CopyFrom(self.usage)
        settled.output_tokens = max(self.usage.output_tokens, tokens_for_chars(delivered_chars))
        return settled

    def completion_text(self) -> str:
        return "".join(self._completion)


class EventRecorder:
    """Turns finished requests into billing and audit events for the emitter.
    The emitter accepts only this deployment's region; the pipeline never
    serves a tenant of another region, so every record it makes has a home."""

    def __init__(self, emitter: EventEmitter) -> None:
        self._emitter = emitter
        self.region = emitter.region

    @property
    def accepting(self) -> bool:
        return self._emitter.accepting

    def finish(self, record: RequestRecord, outcome: ev.Outcome.ValueType, error_reason: str = "") -> None:
        summary = self._summary(record, outcome, error_reason)
        principal = record.principal
        billing = ev.BillingEvent(event_id=_event_id(), request=summary)
        audit = ev.AuditEvent(
            event_id=_event_id(), request=summary,
            auth=ev.AuthDecision(key_id=principal.key_id, tier=principal.tier, admitted=record.admitted,
                                 refusal_reason=record.refusal_reason),
            safety_verdict=record.verdict,
            prompt=_prompt_record(principal.audit_content, record.params, record.redacted_params),
            completion=_text_record(principal.audit_content, record.completion_text()),
            output_verdict=record.output_verdict,
        )
        self._emitter.emit("billing", principal.region, principal.tenant_id, billing)
        self._emitter.emit("audit", principal.region, principal.tenant_id, audit)
        if _flagged(record.verdict) or (record.output_verdict is not None and _flagged(record.output_verdict)):
            review = ev.ReviewEvent(event_id=_event_id(), request=summary, input_verdict=record.verdict,
                                    output_verdict=record.output_verdict, prompt=audit.prompt,
                                    completion=audit.completion)
            self._emitter.emit("review", principal.region, principal.tenant_id, review)

    @staticmethod
    def _summary(record: RequestRecord, outcome: ev.Outcome.ValueType, error_reason: str) -> ev.RequestSummary:
        principal, usage = record.principal, record.settled_usage()
        now = time.monotonic()
        summary = ev.RequestSummary(
            request_id=record.request_id, tenant_id=principal.tenant_id, key_id=principal.key_id,
            region=principal.region, model_requested=record.params.model, model_served=record.served_model,
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
            cache_creation_input_tokens=usage.cache_creation_input_tokens,
            cache_read_input_tokens=usage.cache_read_input_tokens,
            catalog_version=record.catalog_version,
            time_to_first_token_ms=(record.first_token_at - record.started) * 1000 if record.first_token_at else 0.0,
            total_ms=(now - record.started) * 1000, outcome=outcome, error_reason=error_reason,
        )
        summary.occurred_at.seconds, summary.occurred_at.nanos = divmod(time.time_ns(), 1_000_000_000)
        for candidate in record.candidates:
            if candidate.model_id == record.served_model:
                summary.cost_usd = cost_usd(usage, candidate.prices)
                break
            if record.served_model:
                # Listed before the one that answered: tried and given up on.
                summary.fallbacks.append(candidate.model_id)
        return summary


def _flagged(verdict: verdict_pb2.Verdict) -> bool:
    return any(hit.action == verdict_pb2.ACTION_FLAG for hit in verdict.hits)


def _event_id() -> str:
    # 128 random bits, as uuid4 has, without building a UUID object.
    return os.urandom(16).hex()


def _prompt_record(mode: str, params: m.MessageParams, redacted: m.MessageParams | None) -> ev.ContentRecord:
    text = prompt_text(params)
    record = ev.ContentRecord(mode=mode or "hash", chars=len(text),
                              sha256=hashlib.sha256(params.SerializeToString(deterministic=True)).hexdigest())
    if mode == "full":
        record.text = text
    elif mode == "redacted":
        record.text = prompt_text(redacted) if redacted is not None else text
    return record


def _text_record(mode: str, text: str) -> ev.ContentRecord:
    record = ev.ContentRecord(mode=mode or "hash", chars=len(text),
                              sha256=hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest())
    if mode in ("full", "redacted"):
        # The completion as delivered: the output filter (when it redacts) ran before.
        record.text = text
    return record


def prompt_text(params: m.MessageParams) -> str:
    """The prompt as a reviewer reads it: one `role: text` paragraph per turn."""
    parts = []
    if params.system:
        parts.append("system: " + _blocks_text(params.system))
    parts += [f"{_ROLES.get(msg.role, 'user')}: {_blocks_text(msg.content)}" for msg in params.messages]
    return "\n\n".join(parts)


def _blocks_text(blocks) -> str:  # type: ignore[no-untyped-def]
    out = []
    for block in blocks:
        kind = block.WhichOneof("block")
        if kind == "text":
            out.append(block.text.text)
        elif kind == "tool_use":
            out.append(f"[tool_use {block.tool_use.name}] "
                       + json.dumps(json_format.MessageToDict(block.tool_use.input), ensure_ascii=False))
        elif kind == "tool_result":
            out.append(f"[tool_result {block.tool_result.tool_use_id}] " + _blocks_text(block.tool_result.content))
        elif kind == "image":
            out.append("[image]")
    return "\n".join(out)
