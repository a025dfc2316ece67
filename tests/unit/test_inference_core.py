"""Retry and fallback rules, with scripted fake upstreams."""

from __future__ import annotations

import pytest

from sluice.inference.core import Generator
from sluice.llm.v1 import wire_pb2
from sluice.routing.v1.candidate_pb2 import Candidate
from sluice.rpc import context as call_context
from sluice.rpc.errors import Reason, SluiceError
from sluice.wire.events import text_delta


class ScriptedUpstream:
    """Each call pops a script: an exception to raise, or a number of events
    to yield (then optionally an exception)."""

    def __init__(self, *scripts):
        self.scripts = list(scripts)
        self.calls: list[str] = []

    async def stream(self, candidate, request, timeout):
        self.calls.append(candidate.model_id)
        script = self.scripts.pop(0)
        if isinstance(script, Exception):
            raise script
        count, then = script if isinstance(script, tuple) else (script, None)
        for i in range(count):
            yield text_delta(0, str(i))
        if then:
            raise then

    async def count_tokens(self, candidate, request, timeout):
        self.calls.append(candidate.model_id)
        script = self.scripts.pop(0)
        if isinstance(script, Exception):
            raise script
        return script, b'{"input_tokens": %d}' % script


def overloaded():
    return SluiceError(Reason.UPSTREAM_OVERLOADED, "busy")


A, B = Candidate(model_id="a", provider="p"), Candidate(model_id="b", provider="p")


async def collect(generator, candidates):
    return [e async for e in generator.generate(wire_pb2.WireRequest(), candidates)]


async def test_retries_then_succeeds():
    upstream = ScriptedUpstream(overloaded(), 3)
    events = await collect(Generator({"p": upstream}, 1, 0), [A])
    assert len(events) == 3 and upstream.calls == ["a", "a"]


async def test_falls_back_to_the_next_candidate():
    upstream = ScriptedUpstream(overloaded(), overloaded(), 2)
    events = await collect(Generator({"p": upstream}, 1, 0), [A, B])
    assert len(events) == 2 and upstream.calls == ["a", "a", "b"]


async def test_last_error_surfaces_when_all_fail():
    upstream = ScriptedUpstream(overloaded(), overloaded())
    with pytest.raises(SluiceError) as err:
        await collect(Generator({"p": upstream}, 0, 0), [A, B])
    assert err.value.reason is Reason.UPSTREAM_OVERLOADED and upstream.calls == ["a", "b"]


async def test_no_retry_after_the_first_event():
    upstream = ScriptedUpstream((2, overloaded()), 5)
    received = []
    with pytest.raises(SluiceError):
        async for event in Generator({"p": upstream}, 3, 0).generate(wire_pb2.WireRequest(), [A, B]):
            received.append(event)
    assert len(received) == 2 and upstream.calls == ["a"]


async def test_rejected_requests_are_not_retried():
    upstream = ScriptedUpstream(SluiceError(Reason.UPSTREAM_REJECTED, "bad"), 1)
    with pytest.raises(SluiceError) as err:
        await collect(Generator({"p": upstream}, 3, 0), [A, B])
    assert err.value.reason is Reason.UPSTREAM_REJECTED and upstream.calls == ["a"]


async def test_unknown_provider_falls_through_to_a_known_one():
    upstream = ScriptedUpstream(1)
    events = await collect(Generator({"p": upstream}, 0, 0), [Candidate(model_id="z", provider="nope"), A])
    assert len(events) == 1


async def test_backoff_that_would_pass_the_deadline_fails_at_once():
    upstream = ScriptedUpstream(SluiceError(Reason.UPSTREAM_RATE_LIMITED, "slow", retry_after_s=30), 1)
    call_context.begin("req_t", 0.5)
    try:
        with pytest.raises(SluiceError) as err:
            await collect(Generator({"p": upstream}, 2, 0.01), [A])
    finally:
        call_context._current.set(None)  # noqa: SLF001
    assert err.value.reason is Reason.UPSTREAM_RATE_LIMITED and upstream.calls == ["a"]


async def test_count_tokens_walks_the_candidates_like_generate():
    upstream = ScriptedUpstream(overloaded(), overloaded(), 42)
    tokens, body, model = await Generator({"p": upstream}, 1, 0).count_tokens(wire_pb2.WireRequest(), [A, B])
    assert (tokens, body, model) == (42, b'{"input_tokens": 42}', "b") and upstream.calls == ["a", "a", "b"]
    refused = ScriptedUpstream(SluiceError(Reason.UPSTREAM_NOT_FOUND, "model: x"), 1)
    with pytest.raises(SluiceError) as err:
        await Generator({"p": refused}, 3, 0).count_tokens(wire_pb2.WireRequest(), [A, B])
    assert err.value.reason is Reason.UPSTREAM_NOT_FOUND and refused.calls == ["a"]
