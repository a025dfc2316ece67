"""Applying a profile's rules: to a request, and to an answer as it streams.

Pure logic: no I/O, no gRPC. `check_input` judges every text the model will
read (system prompt, each turn's text, tool results, tool descriptions) and
rewrites the request when a rule redacts. `OutputFilter` holds back the tail
of each text block of the answer (and a tool call's JSON until it is whole),
so a value split across chunks is seen whole before any of it is delivered,
and ends the answer with stop_reason "refusal" when a block rule fires.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from google.protobuf import struct_pb2
from google.protobuf.message import Message

from sluice.llm.v1 import messages_pb2 as m
from sluice.safety.detectors import Finding, Placeholders, Text, redact
from sluice.safety.policy import Profile, Rule
from sluice.safety.v1 import verdict_pb2 as v
from sluice.tokens.estimator import tokens_for_chars

# The strongest action decides the verdict.
_STRENGTH = {v.ACTION_ALLOW: 0, v.ACTION_REDACT: 1, v.ACTION_FLAG: 2, v.ACTION_BLOCK: 3}
REFUSAL = "refusal"  # the Messages API's stop_reason for a safety stop


@dataclass
class Hits:
    """What fired, in the order rules are listed, with how often."""

    counts: dict[str, int] = field(default_factory=dict)
    rules: dict[str, Rule] = field(default_factory=dict)

    def add(self, rule: Rule, n: int) -> None:
        self.rules[rule.id] = rule
        self.counts[rule.id] = self.counts.get(rule.id, 0) + n

    def action(self) -> v.Action.ValueType:
        return max((r.action for r in self.rules.values()), key=_STRENGTH.__getitem__, default=v.ACTION_ALLOW)

    def verdict(self, profile: Profile, stage: v.Stage.ValueType) -> v.Verdict:
        return v.Verdict(
            action=self.action(), rule_ids=list(self.rules), policy_version=profile.policy_version,
            profile=profile.name, stage=stage,
            hits=[v.RuleHit(rule_id=r.id, action=r.action, severity=r.severity, matcher=r.matcher_name,
                            count=self.counts[r.id]) for r in self.rules.values()],
        )


def scan(rules: tuple[Rule, ...], text: Text, hits: Hits) -> list[Finding]:
    """Runs the rules on one text, noting hits; returns the findings to redact."""
    to_redact: list[Finding] = []
    for rule in rules:
        findings = rule.match(text)
        if findings:
            hits.add(rule, len(findings))
            if rule.action == v.ACTION_REDACT:
                to_redact += findings
    return to_redact


# --- input ---------------------------------------------------------------------------

def _text_fields(params: m.MessageParams) -> Iterator[tuple[Message, str]]:
    """(message, field) of every text the model reads, in a fixed order, so the
    same walk over a copy finds the same fields: system, each turn's text,
    tool results, earlier tool calls' string arguments, tool descriptions."""
    def values(value: struct_pb2.Value) -> Iterator[tuple[Message, str]]:
        kind = value.WhichOneof("kind")
        if kind == "string_value":
            yield value, "string_value"
        elif kind == "struct_value":
            for key in sorted(value.struct_value.fields):
                yield from values(value.struct_value.fields[key])
        elif kind == "list_value":
            for item in value.list_value.values:
                yield from values(item)

    def blocks(content) -> Iterator[tuple[Message, str]]:  # type: ignore[no-untyped-def]
        for block in content:
            kind = block.WhichOneof("block")
            if kind == "text":
                yield block.text, "text"
            elif kind == "tool_result":
                yield from blocks(block.tool_result.content)
            elif kind == "tool_use":  # the arguments of an earlier tool call: strings, at any depth
                for key in sorted(block.tool_use.input.fields):
                    yield from values(block.tool_use.input.fields[key])

    yield from blocks(params.system)
    for message in params.messages:
        yield from blocks(message.content)
    for tool in params.tools:
        yield tool, "description"


def check_input(profile: Profile, params: m.MessageParams) -> tuple[v.Verdict, m.MessageParams | None]:
    """The input verdict and, when a rule redacted, the request to send instead."""
    hits, placeholders = Hits(), Placeholders()
    rewritten: dict[int, str] = {}
    if profile.input_rules:
        for i, (msg, name) in enumerate(_text_fields(params)):
            original = getattr(msg, name)
            if not original:
                continue
            to_redact = scan(profile.input_rules, Text(original), hits)
            if to_redact:
                rewritten[i] = redact(original, to_redact, placeholders)
    verdict = hits.verdict(profile, v.STAGE_INPUT)
    if not rewritten:
        return verdict, None
    redacted = m.MessageParams()
    redacted.CopyFrom(params)
    for i, (msg, name) in enumerate(_text_fields(redacted)):
        if i in rewritten:
            setattr(msg, name, rewritten[i])
    return verdict, redacted


# --- output ----------------------------------------------------------------------------

class _TextBlock:
    """One block of the answer being filtered: text, or a tool call's JSON."""

    __slots__ = ("index", "field", "pending", "context", "scanned")

    def __init__(self, index: int, field: str = "text_delta") -> None:
        self.index = index
        # "text_delta", or "input_json_delta" for a tool call's arguments:
        # those are held whole until the block ends, so what is delivered is
        # always whole JSON (or, after a block rule, none of it).
        self.field = field
        self.pending = ""  # received, not yet released
        self.context = ""  # the last released text, as received: context for the next scan
        self.scanned = 0  # len(pending) at the last scan that released nothing


class OutputFilter:
    """Filters one answer's events. `feed` returns the events to deliver now;
    after a block rule fired it returns nothing more (`stopped`)."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.hits = Hits()
        self.stopped = False
        self._rules = profile.output_rules
        self._holdback = profile.holdback_chars
        self._release_chars = profile.release_chars
        self._scan_at = profile.holdback_chars + profile.release_chars
        self._placeholders = Placeholders()
        self._blocks: dict[int, _TextBlock] = {}
        self._received_chars = 0
        self._usage = m.Usage()

    def verdict(self) -> v.Verdict:
        return self.hits.verdict(self.profile, v.STAGE_OUTPUT)

    def feed(self, event: m.StreamEvent) -> list[m.StreamEvent]:
        if self.stopped:
            return []
        kind = event.WhichOneof("event")
        if kind == "content_block_delta":
            delta = event.content_block_delta
            field = delta.WhichOneof("delta") or "text_delta"
            block = self._blocks.get(delta.index)
            if block is None:  # a delta without its start: filter it all the same
                block = self._blocks[delta.index] = _TextBlock(delta.index, field)
            piece = getattr(delta, field)
            block.pending += piece
            self._received_chars += len(piece)
            # Scan once enough is past the window; a finding held whole (a
            # long key still streaming) is rescanned only every release_chars.
            if block.field != "text_delta" or \
                    len(block.pending) < max(self._scan_at, block.scanned + self._release_chars):
                return []
            return self._release(block, final=False)
        if kind == "content_block_start":
            start = event.content_block_start
            block_kind = start.content_block.WhichOneof("block")
            if block_kind == "text":
                self._blocks[start.index] = _TextBlock(start.index)
            elif block_kind == "tool_use":
                self._blocks[start.index] = _TextBlock(start.index, "input_json_delta")
        elif kind == "content_block_stop":
            block = self._blocks.pop(event.content_block_stop.index, None)
            if block is not None:
                out = self._release(block, final=True)
                return out if self.stopped else [*out, event]
        elif kind == "message_start":
            self._usage.CopyFrom(event.message_start.message.usage)
        elif kind == "message_delta" and self._blocks:
            # A stream that ends a block without its stop still releases its text.
            out = []
            for block in list(self._blocks.values()):
                out += self._release(block, final=True)
                if self.stopped:
                    return out
            self._blocks.clear()
            return [*out, event]
        return [event]

    def _release(self, block: _TextBlock, final: bool) -> list[m.StreamEvent]:
        """Scans the held text (after the last released context) and releases
        all of it when final, else all but the holdback window; a finding
        that reaches into the window is held whole until it is complete."""
        window = block.context + block.pending
        offset = len(block.context)
        cut = len(block.pending) if final else len(block.pending) - self._holdback
        findings: list[tuple[Rule, Finding]] = []
        text = Text(window)
        for rule in self._rules:
            for f in rule.match(text):
                if f.end <= offset:
                    continue  # released earlier, and judged then
                findings.append((rule, f))
        if not final:
            for _, f in findings:
                if f.end - offset > cut:  # may still grow: hold it whole
                    cut = min(cut, max(0, f.start - offset))
        released = block.pending[:cut]
        to_redact: list[Finding] = []
        stop_at: int | None = None
        for rule, f in findings:
            start, end = max(f.start - offset, 0), f.end - offset
            if end > cut:
                continue  # judged when it is released
            self.hits.add(rule, 1)
            if rule.action == v.ACTION_REDACT:
                # Only the part not yet delivered can still be replaced.
                to_redact.append(Finding(f.detector, start, end, f.value))
            elif rule.action == v.ACTION_BLOCK:
                stop_at = start if stop_at is None else min(stop_at, start)
        if stop_at is not None:
            if block.field != "text_delta":
                stop_at = 0  # no half a tool call
            released, to_redact = released[:stop_at], [f for f in to_redact if f.end <= stop_at]
        out_text = redact(released, to_redact, self._placeholders) if to_redact else released
        block.context = (block.context + block.pending[:cut])[-self._holdback:]
        block.pending = block.pending[cut:]
        block.scanned = len(block.pending)
        out = [_delta(block, out_text)] if out_text else []
        if stop_at is not None:
            out += self._stop(block.index)
        return out

    def _stop(self, index: int) -> list[m.StreamEvent]:
        """Ends the answer: the open block, then stop_reason "refusal". The
        usage reports what the model produced up to here (it is billed)."""
        self.stopped = True
        usage = m.Usage()
        usage.CopyFrom(self._usage)
        usage.output_tokens = max(usage.output_tokens, tokens_for_chars(self._received_chars))
        return [
            m.StreamEvent(content_block_stop=m.ContentBlockStop(index=index)),
            m.StreamEvent(message_delta=m.MessageDelta(stop_reason=REFUSAL, usage=usage)),
            m.StreamEvent(message_stop=m.MessageStop()),
        ]

    def close(self) -> list[m.StreamEvent]:
        """The stream ended: releases what is still held (a stream cut short)."""
        out: list[m.StreamEvent] = []
        for block in list(self._blocks.values()):
            if self.stopped:
                break
            out += self._release(block, final=True)
        self._blocks.clear()
        return out


def _delta(block: _TextBlock, text: str) -> m.StreamEvent:
    delta = m.ContentBlockDelta(index=block.index)
    setattr(delta, block.field, text)
    return m.StreamEvent(content_block_delta=delta)
