"""Applying a profile's rules: to a request, and to an answer as it streams.

Pure logic: no I/O, no gRPC. `check_input` judges every text the model will
read (the wire codec's `MessagesRequest.texts()`: system prompt, each turn's
text, tool results, earlier tool calls' string arguments, plain-text
documents, tool descriptions) and returns the redactions as edits, one per
text, at the text's JSON Pointer; the rest of the request is not touched.
`OutputFilter` holds back the tail of each text block of the answer (a tool
call's JSON until it is whole; a thinking block whole, since its signature
covers it byte for byte), so a value split across chunks is seen whole before
any of it is delivered, and ends the answer with stop_reason "refusal" when
a block rule fires. Events the filter has no rule for pass through as they
came.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from sluice.safety.detectors import Finding, Placeholders, Text, merge, redact
from sluice.safety.policy import Profile, Rule
from sluice.safety.v1 import verdict_pb2 as v
from sluice.telemetry import metrics
from sluice.wire import events as ev
from sluice.wire import jsontext
from sluice.wire.events import Event
from sluice.wire.jsontext import Path
from sluice.wire.request import MessagesRequest, json_leaves, tokens_for_chars

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

    def action(self) -> v.Action:
        return max((r.action for r in self.rules.values()), key=_STRENGTH.__getitem__, default=v.ACTION_ALLOW)

    def verdict(self, profile: Profile, stage: v.Stage) -> v.Verdict:
        return v.Verdict(
            action=self.action(), rule_ids=list(self.rules), policy_version=profile.policy_version,
            profile=profile.name, stage=stage,
            hits=[v.RuleHit(rule_id=r.id, action=r.action, severity=r.severity, matcher=r.matcher_name,
                            count=self.counts[r.id]) for r in self.rules.values()],
        )


def scan(rules: tuple[Rule, ...], text: Text, hits: Hits) -> tuple[list[Finding], v.Action]:
    """Runs the rules on one text, noting hits; returns the findings to
    redact and the strongest action of the rules that fired."""
    to_redact: list[Finding] = []
    action = v.ACTION_ALLOW
    for rule in rules:
        findings = rule.match(text)
        if findings:
            hits.add(rule, len(findings))
            if rule.action == v.ACTION_REDACT:
                to_redact += findings
            if _STRENGTH[rule.action] > _STRENGTH[action]:
                action = rule.action
    return to_redact, action


# --- input ---------------------------------------------------------------------------

def check_input(profile: Profile, request: MessagesRequest, region: str | None = None
                ) -> tuple[v.Verdict, list[tuple[Path, str]]]:
    """The input verdict and the redactions to make: (path, new text) for
    each text a redact rule changed, whatever else fired. Placeholders are
    numbered once across the whole request ([EMAIL_1] is the same address
    everywhere). `region` (the tenant's `country`, e.g. "GB") is a hint
    for locale-aware detectors.

    Every text the model reads (`MessagesRequest.readable()`) is checked as
    one document, so nothing hides in a seam: the texts of one turn are
    joined as the model reads them (a card split across two text blocks is
    one card), and turns are joined by a blank line (an attack split across
    two user turns is one attack). A finding that spans texts is redacted in
    each: its placeholder where it starts, nothing in the texts it runs on into."""
    hits, placeholders = Hits(), Placeholders()
    edits: list[tuple[Path, str]] = []
    if not profile.input_rules:
        return hits.verdict(profile, v.STAGE_INPUT), edits
    readable = request.readable()
    groups: dict[frozenset[str], list[Rule]] = {}
    for rule in profile.input_rules:  # rules reading the same roles share one document
        groups.setdefault(rule.reads, []).append(rule)
    pieces: dict[int, list[tuple[int, int, Finding, bool]]] = {}
    for reads, rules in groups.items():
        chosen = [i for i, text in enumerate(readable) if _role(text) in reads]
        if not chosen:
            continue
        document, starts = _document([readable[i] for i in chosen])
        to_redact, _ = scan(tuple(rules), Text(document, region=region), hits)
        if to_redact:
            for k, found in _by_text(merge(to_redact), starts, [readable[i] for i in chosen]).items():
                pieces.setdefault(chosen[k], []).extend(found)
    for index in sorted(pieces):
        text = readable[index]
        edits.append((text.path, _redacted(text.text, pieces[index], placeholders)))
    return hits.verdict(profile, v.STAGE_INPUT), edits


def _role(text: Any) -> str:
    return text.role if text.role in ("system", "user", "assistant") else "tools"


# Between the text blocks of one turn nothing (the model reads them as one
# run of text); between anything else a blank line.
_SAME_TURN, _NEW_TURN = "", "\n\n"


def _document(texts: list[Any]) -> tuple[str, list[int]]:
    """The texts joined into one document, and where each starts in it."""
    parts: list[str] = []
    starts: list[int] = []
    at = 0
    previous: Any = None
    for text in texts:
        if previous is not None:
            sep = _SAME_TURN if _turn(text) == _turn(previous) and _prose(text) and _prose(previous) else _NEW_TURN
            parts.append(sep)
            at += len(sep)
        starts.append(at)
        parts.append(text.text)
        at += len(text.text)
        previous = text
    return "".join(parts), starts


def _prose(text: Any) -> bool:
    """A text block's text or a turn's string content (not a tool's
    argument, a title or a schema string: those stay apart)."""
    path = text.path
    if text.kind != "string":
        return False
    if path[0] == "system":
        return path[-1] == "text" or len(path) == 1
    return path[0] == "messages" and (path[-1] == "text" or len(path) == 3)


def _turn(text: Any) -> tuple[Any, ...]:
    return tuple(text.path[:2]) if text.path and text.path[0] == "messages" else tuple(text.path[:1])


def _by_text(findings: list[Finding], starts: list[int], texts: list[Any]
             ) -> dict[int, list[tuple[int, int, Finding, bool]]]:
    """For each text a finding touches: (start, end in the text, the
    finding, whether the finding starts in this text)."""
    out: dict[int, list[tuple[int, int, Finding, bool]]] = {}
    for f in findings:
        i = max(bisect.bisect_right(starts, f.start) - 1, 0)
        first = True
        while i < len(texts):
            lo, hi = starts[i], starts[i] + len(texts[i].text)
            if lo >= f.end:
                break
            if hi > f.start:
                out.setdefault(i, []).append((max(f.start, lo) - lo, min(f.end, hi) - lo, f, first))
                first = False
            i += 1
    return out


def _redacted(text: str, pieces: list[tuple[int, int, Finding, bool]], placeholders: Placeholders) -> str:
    """`text` with each piece replaced: its placeholder where the finding
    starts, nothing where it runs on from another text. Overlapping pieces
    (two rules reading other parts of the request) are one span, named by
    the first, so no part of either value is left."""
    merged: list[list[Any]] = []
    for start, end, f, first in sorted(pieces, key=lambda p: (p[0], -p[1])):
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end, f, first])
    out, last = [], 0
    for start, end, f, first in merged:
        out.append(text[last:start])
        if first:
            out.append(placeholders.label(f.detector, f.value))
        last = end
    out.append(text[last:])
    return "".join(out)


# --- output ----------------------------------------------------------------------------

# How a block of the answer is filtered, by its content_block type.
_TEXT, _JSON, _WHOLE = "text", "json", "whole"
_KIND_OF_BLOCK = {"text": _TEXT, "tool_use": _JSON, "server_tool_use": _JSON, "mcp_tool_use": _JSON,
                  "thinking": _WHOLE}
_FIELD_OF_DELTA = {"text_delta": "text", "input_json_delta": "partial_json", "thinking_delta": "thinking"}


class _Block:
    """One block of the answer being filtered."""

    __slots__ = ("index", "kind", "pending", "context", "scanned", "received", "released", "markers", "held")

    def __init__(self, index: int, kind: str) -> None:
        self.index = index
        # _TEXT: text held back by the window, released as it clears;
        # _JSON: a tool call's arguments, held whole until the block ends, so
        # what is delivered is always whole JSON (or, after a block rule, none);
        # _WHOLE: a thinking block, every event held until it ends, then sent
        # as it came (a signature covers it) or not at all.
        self.kind = kind
        self.pending = ""  # received, not yet released
        self.context = ""  # the last released text, as received: context for the next scan
        self.scanned = 0  # len(pending) at the last scan that released nothing
        self.received = 0  # characters received in all
        self.released = 0  # characters released in all
        # Other events of the block (citations_delta, ...) and how much text
        # had arrived before them: they follow the text released before them.
        self.markers: list[tuple[int, Event]] = []
        self.held: list[Event] = []  # _WHOLE: the block's events as they came


# The longest unbroken run (no white space) held back whole. A value with
# spaces (a card, a phone number) is at most holdback_chars long to be
# caught; one without (a key, a token, a URL with a password, an address)
# is never released in part up to this length. So the filter holds back at
# most max(holdback_chars, MAX_RUN_CHARS) + release_chars characters, more
# only for a finding still growing (a private key until its END line).
MAX_RUN_CHARS = 4096
_SPACES = (" ", "\n", "\t", "\r")


def _has_space(text: str) -> bool:
    return any(ch in text for ch in _SPACES)


def _before_open_run(pending: str, cut: int) -> int:
    """`cut` moved back to the start of the unbroken run it would split,
    unless that run is already longer than MAX_RUN_CHARS."""
    if cut <= 0 or cut >= len(pending) or pending[cut] in _SPACES or pending[cut - 1] in _SPACES:
        return cut
    start = max(pending.rfind(ch, 0, cut) for ch in _SPACES) + 1
    return start if len(pending) - start <= MAX_RUN_CHARS else cut


class OutputFilter:
    """Filters one answer's events. `feed` returns the events to deliver now;
    after a block rule fired it returns nothing more (`stopped`). A thinking
    block that a redact rule matches is dropped whole (an edited thinking
    block would fail its signature on the next turn), and the blocks after it
    are renumbered so the indices the client sees stay contiguous."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.hits = Hits()
        self.stopped = False
        self._rules = profile.output_rules
        self._holdback = profile.holdback_chars
        self._release_chars = profile.release_chars
        self._scan_at = profile.holdback_chars + profile.release_chars
        self._placeholders = Placeholders()
        self._blocks: dict[int, _Block] = {}
        self._received_chars = 0
        self._usage: dict[str, Any] = {}
        self._dropped: list[int] = []  # indices of blocks not delivered

    def verdict(self) -> v.Verdict:
        return self.hits.verdict(self.profile, v.STAGE_OUTPUT)

    def feed(self, event: Event) -> list[Event]:
        if self.stopped:
            return []
        kind = event.type
        if kind == ev.CONTENT_BLOCK_DELTA:
            return self._delta(event)
        if kind == ev.CONTENT_BLOCK_START:
            view = event.view
            block_type = (view.get("content_block") or {}).get("type", "")
            block_kind = _KIND_OF_BLOCK.get(block_type)
            index = view.get("index")
            if block_kind is not None and isinstance(index, int):
                block = self._blocks[index] = _Block(index, block_kind)
                if block_kind == _WHOLE:
                    block.held.append(event)
                    return []
        elif kind == ev.CONTENT_BLOCK_STOP:
            block = self._blocks.pop(event.view.get("index"), None)  # type: ignore[arg-type]  # a missing index pops nothing
            if block is not None:
                if block.kind == _WHOLE:
                    return self._release_whole(block, event)
                out = self._release(block, final=True)
                return out if self.stopped else [*out, self._renumbered(event)]
        elif kind == ev.MESSAGE_START:
            message = event.view.get("message")
            self._usage = dict(message.get("usage") or {}) if isinstance(message, dict) else {}
        elif kind == ev.MESSAGE_DELTA and self._blocks:
            # A stream that ends a block without its stop still releases its text.
            out = self.close()
            return out if self.stopped else [*out, event]
        return [self._renumbered(event)]

    def _delta(self, event: Event) -> list[Event]:
        view = event.view
        index = view.get("index")
        delta = view.get("delta") or {}
        dtype = delta.get("type")
        block = self._blocks.get(index) if isinstance(index, int) else None
        if block is None:
            if dtype != "text_delta" or not isinstance(index, int):
                return [self._renumbered(event)]
            block = self._blocks[index] = _Block(index, _TEXT)  # a delta without its start: filtered all the same
        field = _FIELD_OF_DELTA.get(dtype)  # type: ignore[arg-type]  # a missing type gets nothing
        piece = delta.get(field) if field else None
        if block.kind == _WHOLE:
            block.held.append(event)
            if isinstance(piece, str):
                block.pending += piece
                self._received_chars += len(piece)
            return []
        if not isinstance(piece, str) or (block.kind == _TEXT) != (dtype == "text_delta"):
            block.markers.append((block.received, event))  # e.g. citations_delta
            return []
        block.pending += piece
        block.received += len(piece)
        self._received_chars += len(piece)
        # Scan once enough is past the window; a finding held whole (a long
        # key still streaming) is rescanned only every release_chars, and an
        # unbroken run held whole only once it ends or passes MAX_RUN_CHARS.
        if block.kind != _TEXT or len(block.pending) < max(self._scan_at, block.scanned + self._release_chars):
            return []
        if block.scanned and not _has_space(piece) and len(block.pending) <= MAX_RUN_CHARS + self._holdback:
            return []
        return self._release(block, final=False)

    def _renumbered(self, event: Event) -> Event:
        if not self._dropped:
            return event
        index = event.view.get("index")
        if not isinstance(index, int):
            return event
        out = self._out_index(index)
        return ev.with_index(event, out) if out != index else event

    def _out_index(self, index: int) -> int:
        """The index the client sees for block `index`, after dropped blocks."""
        return index - sum(1 for dropped in self._dropped if dropped < index)

    def _release_whole(self, block: _Block, stop: Event) -> list[Event]:
        """A thinking block at its end: delivered as it came, dropped when a
        redact rule matched its text, or the answer stopped by a block rule."""
        _, action = scan(self._rules, Text(block.pending), self.hits)
        if action == v.ACTION_BLOCK:
            return self._stop(block.index, opened=False)
        if action == v.ACTION_REDACT:
            metrics.SAFETY_THINKING_DROPPED.inc()
            self._dropped.append(block.index)
            return []
        return [self._renumbered(e) for e in (*block.held, stop)]

    def _release(self, block: _Block, final: bool) -> list[Event]:
        """Scans the held text (after the last released context) and releases
        all of it when final, else all but the holdback window; a finding
        that reaches into the window is held whole until it is complete.
        Other events of the block follow the text that came before them."""
        if block.kind == _JSON and final:
            redacted = self._redacted_json(block.pending)
            if redacted == "":  # a block rule: none of the call is delivered
                return self._stop(block.index)
            if redacted is not None:  # whole JSON: judged value by value
                block.pending = redacted
                return self._release_text(block, final=True, rescan=False)
        return self._release_text(block, final)

    def _redacted_json(self, arguments: str) -> str | None:
        """A tool call's arguments with each string and number judged as a
        value, not as JSON text (so a match cannot eat a quote or an escape,
        and a card sent as a number becomes a string placeholder); None when
        the arguments are not whole JSON (a stream cut short: judged as text).
        A block rule empties them ("")."""
        try:
            value = jsontext.read(arguments.encode("utf-8", "surrogatepass"))
        except (ValueError, RecursionError):
            return None
        leaves = json_leaves(value, (), "assistant")
        if not leaves:
            return arguments
        document, starts = _document(leaves)
        to_redact, action = scan(self._rules, Text(document), self.hits)
        if action == v.ACTION_BLOCK:
            return ""
        if not to_redact:
            return arguments
        edits = [(leaves[i].path, _redacted(leaves[i].text, pieces, self._placeholders))
                 for i, pieces in sorted(_by_text(merge(to_redact), starts, leaves).items())]
        return jsontext.replace_values(arguments, edits)

    def _release_text(self, block: _Block, final: bool, rescan: bool = True) -> list[Event]:
        window = block.context + block.pending
        offset = len(block.context)
        cut = len(block.pending) if final else len(block.pending) - self._holdback
        findings: list[tuple[Rule, Finding]] = []
        text = Text(window)
        for rule in self._rules if rescan else ():
            for f in rule.match(text):
                if f.end <= offset:
                    continue  # released earlier, and judged then
                findings.append((rule, f))
        if not final:
            for _, f in findings:
                if f.end - offset > cut:  # may still grow: hold it whole
                    cut = min(cut, max(0, f.start - offset))
            cut = _before_open_run(block.pending, cut)
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
            if block.kind != _TEXT:
                stop_at = 0  # no half a tool call
            released, to_redact = released[:stop_at], [f for f in to_redact if f.end <= stop_at]
        out_text = redact(released, to_redact, self._placeholders) if to_redact else released
        block.context = (block.context + block.pending[:cut])[-self._holdback:]
        block.pending = block.pending[cut:]
        block.scanned = len(block.pending)
        block.released += len(released)
        index = self._out_index(block.index)
        out: list[Event] = []
        if out_text:
            out.append(ev.text_delta(index, out_text) if block.kind == _TEXT else ev.input_json_delta(index, out_text))
        if stop_at is not None:
            return out + self._stop(block.index)
        while block.markers and (final or block.markers[0][0] <= block.released):
            out.append(self._renumbered(block.markers.pop(0)[1]))
        return out

    def _stop(self, index: int, opened: bool = True) -> list[Event]:
        """Ends the answer: the open block (when its start was delivered),
        then stop_reason "refusal". The usage reports what the model produced
        up to here (it is billed)."""
        self.stopped = True
        usage = dict(self._usage)
        usage["output_tokens"] = max(int(usage.get("output_tokens") or 0), tokens_for_chars(self._received_chars))
        out = [ev.content_block_stop(self._out_index(index))] if opened else []
        return out + [ev.message_delta(REFUSAL, usage), ev.message_stop()]

    def close(self) -> list[Event]:
        """The stream ended: releases what is still held (a stream cut short).
        A thinking block cut short is not delivered: without its signature it
        could not be sent back."""
        out: list[Event] = []
        for block in list(self._blocks.values()):
            if self.stopped:
                break
            if block.kind != _WHOLE:
                out += self._release(block, final=True)
        self._blocks.clear()
        return out
