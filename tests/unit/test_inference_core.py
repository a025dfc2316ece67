"""The inference core's resilience rules, with scripted fake deployments:
retries before the first token, fallback, residency, breakers, budgets,
hedging, admission by class, count_tokens and mid-stream continuation."""

from __future__ import annotations

import asyncio
import json

import pytest

from sluice import call_context
from sluice.config.inference import ResilienceSettings
from sluice.inference.core import AttemptReport, Generator, UpstreamTiming, waited_ms
from sluice.llm.v1 import wire_pb2
from sluice.routing.v1.candidate_pb2 import Candidate
from sluice.rpc.errors import Reason, SluiceError
from sluice.wire import events as ev

BLOCK = "block"  # a script step: wait until cancelled (a first token that never comes)


def start(input_tokens: int = 7) -> ev.Event:
    return ev.Event.of({"type": "message_start", "message": {"id": "m", "type": "message", "role": "assistant",
                                                            "model": "x", "content": [],
                                                            "usage": {"input_tokens": input_tokens,
                                                                      "output_tokens": 1}}})


def block_start() -> ev.Event:
    return ev.Event.of({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})


def answer(*texts: str) -> list:
    return [start(), block_start(), *[ev.text_delta(0, t) for t in texts], ev.content_block_stop(0),
            ev.message_delta("end_turn", {"output_tokens": len(texts)}), ev.message_stop()]


class FakeDeployment:
    """One deployment: each call plays the next script (a list of events,
    exceptions to raise, or BLOCK). `calls` keeps each call's candidate and
    body; `closed` counts streams closed."""

    can_count_tokens = True

    def __init__(self, *scripts: list) -> None:
        self.scripts = list(scripts)
        self.calls: list[tuple[str, bytes]] = []
        self.closed = 0

    async def stream(self, candidate, request, timeout):
        self.calls.append((candidate.model_id, request.body))
        script = self.scripts.pop(0)
        try:
            for step in script:
                if isinstance(step, Exception):
                    raise step
                if step == BLOCK:
                    await asyncio.Event().wait()
                if isinstance(step, asyncio.Event):
                    await step.wait()  # until the test lets it go on
                    continue
                yield step
        finally:
            self.closed += 1

    async def count_tokens(self, candidate, request, timeout):
        self.calls.append((candidate.model_id, request.body))
        step = self.scripts.pop(0)
        if isinstance(step, Exception):
            raise step
        return step, b'{"input_tokens": %d}' % step


def overloaded(retry_after: float | None = None, **metadata: str) -> SluiceError:
    return SluiceError(Reason.UPSTREAM_OVERLOADED, "busy", retry_after_s=retry_after, metadata=metadata)


def candidate(model: str, deployment: str, geo: str = "eu", prefill: bool = False) -> Candidate:
    return Candidate(model_id=model, deployment=deployment, provider="anthropic", geo=geo,
                     accepts_prefill=prefill)


def policy(**kw) -> ResilienceSettings:
    base = dict(backoff_base_seconds=0, hedging=False, attempts_per_candidate=2)
    base.update(kw)
    return ResilienceSettings(**base)


async def run(gen: Generator, candidates: list[Candidate], body: bytes = b'{"messages":[]}', **kw):
    """(events, attempt reports, error) of one request."""
    events, reports = [], []
    try:
        async for item in gen.generate(wire_pb2.WireRequest(body=body), candidates, **kw):
            if not isinstance(item, UpstreamTiming):  # its own tests below
                (reports if isinstance(item, AttemptReport) else events).append(item)
    except SluiceError as err:
        return events, reports, err
    return events, reports, None


async def test_a_retry_on_the_same_deployment_then_success():
    d = FakeDeployment([overloaded()], answer("hi"))
    events, reports, err = await run(Generator({"eu1": d}, policy()), [candidate("a", "eu1")])
    assert err is None and events[0].type == "message_start" and len(d.calls) == 2
    assert [(r.deployment, r.outcome, r.reason) for r in reports] == [
        ("eu1", "failed", "UPSTREAM_OVERLOADED"), ("eu1", "served", "")]


async def test_falls_back_down_the_list_after_the_attempts_run_out():
    d1, d2 = FakeDeployment([overloaded()], [overloaded()]), FakeDeployment(answer("ok"))
    _events, reports, err = await run(Generator({"eu1": d1, "eu2": d2}, policy()),
                                     [candidate("a", "eu1"), candidate("b", "eu2")])
    assert err is None and len(d1.calls) == 2 and [m for m, _ in d2.calls] == ["b"]
    assert [r.outcome for r in reports] == ["failed", "failed", "served"] and reports[-1].candidate == 1


async def test_the_last_error_surfaces_with_every_attempt_reported():
    d1, d2 = FakeDeployment([overloaded()]), FakeDeployment([overloaded()])
    _, reports, err = await run(Generator({"eu1": d1, "eu2": d2}, policy(attempts_per_candidate=1)),
                                [candidate("a", "eu1"), candidate("b", "eu2")])
    assert err is not None and err.reason is Reason.UPSTREAM_OVERLOADED
    assert [(r.deployment, r.outcome) for r in reports] == [("eu1", "failed"), ("eu2", "failed")]


async def test_events_before_the_first_token_are_held_so_a_failure_there_is_still_retried():
    d = FakeDeployment([start(), block_start(), overloaded()], answer("x"))
    events, _, err = await run(Generator({"eu1": d}, policy()), [candidate("a", "eu1")])
    assert err is None and [e.type for e in events].count("message_start") == 1 and len(d.calls) == 2


async def test_no_retry_after_the_first_token():
    d1, d2 = FakeDeployment([start(), block_start(), ev.text_delta(0, "a"), overloaded()]), FakeDeployment(answer())
    events, _, err = await run(Generator({"eu1": d1, "eu2": d2}, policy()),
                               [candidate("a", "eu1"), candidate("b", "eu2")])
    assert err is not None and err.reason is Reason.UPSTREAM_OVERLOADED
    assert [e.type for e in events] == ["message_start", "content_block_start", "content_block_delta"]
    assert d2.calls == [] and d1.closed == 1


async def test_a_refusal_of_the_request_is_neither_retried_nor_fallen_back_from():
    d1, d2 = FakeDeployment([SluiceError(Reason.UPSTREAM_REJECTED, "bad")]), FakeDeployment(answer())
    _, reports, err = await run(Generator({"eu1": d1, "eu2": d2}, policy()),
                                [candidate("a", "eu1"), candidate("b", "eu2")])
    assert err.reason is Reason.UPSTREAM_REJECTED and len(d1.calls) == 1 and d2.calls == []
    assert reports[0].outcome == "failed"


async def test_a_candidate_outside_the_residency_is_never_called():
    us, eu = FakeDeployment(answer()), FakeDeployment(answer("eu"))
    gen = Generator({"us1": us, "eu1": eu}, policy())
    _, reports, err = await run(gen, [candidate("a", "us1", geo="us"), candidate("a", "eu1")], allowed_geos=["eu"])
    assert err is None and us.calls == [] and reports[-1].deployment == "eu1"
    _, _, err = await run(gen, [candidate("a", "us1", geo="us")], allowed_geos=["eu"])
    assert err.reason is Reason.NO_UPSTREAM and us.calls == []


async def test_every_eu_deployment_failing_is_an_error_and_nothing_else_is_called():
    eu1, eu2, us = FakeDeployment([overloaded()]), FakeDeployment([overloaded()]), FakeDeployment(answer())
    gen = Generator({"eu1": eu1, "eu2": eu2, "us1": us}, policy(attempts_per_candidate=1))
    _, _, err = await run(gen, [candidate("a", "eu1"), candidate("a", "eu2"), candidate("a", "us1", geo="us")],
                          allowed_geos=["eu"])
    assert err.reason is Reason.UPSTREAM_OVERLOADED and us.calls == []


async def test_an_open_breaker_skips_its_deployment_unless_every_breaker_is_open():
    flaky = FakeDeployment(*[[overloaded()] for _ in range(4)])
    healthy = FakeDeployment(*[answer("ok") for _ in range(3)])
    gen = Generator({"flaky": flaky, "ok": healthy},
                    policy(attempts_per_candidate=1, breaker_consecutive_failures=2, breaker_open_seconds=30))
    for _ in range(2):
        await run(gen, [candidate("a", "flaky"), candidate("a", "ok")])
    assert gen.health["flaky"].breaker.state == "open" and len(flaky.calls) == 2
    _, reports, err = await run(gen, [candidate("a", "flaky"), candidate("a", "ok")])
    assert err is None and len(flaky.calls) == 2
    assert [(r.deployment, r.outcome, r.reason) for r in reports] == [
        ("flaky", "skipped", "BREAKER_OPEN"), ("ok", "served", "")]
    # With every candidate's breaker open, one attempt is made anyway (panic), not a refusal.
    _, reports, err = await run(gen, [candidate("a", "flaky")])
    assert err.reason is Reason.UPSTREAM_OVERLOADED and len(flaky.calls) == 3
    assert [(r.deployment, r.outcome) for r in reports] == [("flaky", "skipped"), ("flaky", "failed")]
    assert gen.health["flaky"].breaker.state == "open"


async def test_a_spent_retry_budget_stops_extra_attempts():
    d1, d2 = FakeDeployment([overloaded()]), FakeDeployment(answer())
    gen = Generator({"eu1": d1, "eu2": d2}, policy(retry_budget_ratio=0, retry_budget_min_per_second=0))
    _, _, err = await run(gen, [candidate("a", "eu1"), candidate("b", "eu2")])
    assert err.reason is Reason.UPSTREAM_OVERLOADED and len(d1.calls) == 1 and d2.calls == []


async def test_x_should_retry_false_means_no_retry_on_that_deployment_but_fallback_still_runs():
    d1, d2 = FakeDeployment([overloaded(upstream_no_retry="true")]), FakeDeployment(answer())
    _, _, err = await run(Generator({"eu1": d1, "eu2": d2}, policy()),
                          [candidate("a", "eu1"), candidate("b", "eu2")])
    assert err is None and len(d1.calls) == 1 and len(d2.calls) == 1


async def test_a_retry_after_past_the_deadline_fails_at_once():
    d = FakeDeployment([overloaded(retry_after=30)], answer())
    call_context.begin("r", 1.0)
    _, _, err = await run(Generator({"eu1": d}, policy()), [candidate("a", "eu1")])
    assert err.reason is Reason.UPSTREAM_OVERLOADED and len(d.calls) == 1


async def test_a_hedge_beats_a_slow_first_token_and_the_loser_is_cancelled_and_reported():
    slow = FakeDeployment([start(input_tokens=40), BLOCK])
    fast = FakeDeployment(answer("quick"))
    gen = Generator({"slow": slow, "fast": fast}, policy(hedging=True, hedge_delay_seconds=0.02))
    events, reports, err = await run(gen, [candidate("a", "slow"), candidate("a", "fast")])
    assert err is None and [e.type for e in events].count("message_start") == 1
    assert b"quick" in b"".join(e.data for e in events)
    cancelled = [r for r in reports if r.outcome == "cancelled"]
    assert [(r.deployment, r.hedge) for r in cancelled] == [("slow", False)]
    assert json.loads(cancelled[0].usage)["input_tokens"] == 40
    assert [(r.deployment, r.hedge) for r in reports if r.outcome == "served"] == [("fast", True)]
    assert slow.closed == 1


async def test_no_hedge_without_hedge_budget():
    slow = FakeDeployment([start(), ev.text_delta(0, "late"), ev.message_stop()])
    other = FakeDeployment(answer())
    gen = Generator({"slow": slow, "other": other},
                    policy(hedging=True, hedge_delay_seconds=0.001, hedge_budget_ratio=0, hedge_budget_min_per_second=0))
    _, reports, err = await run(gen, [candidate("a", "slow"), candidate("a", "other")])
    assert err is None and other.calls == [] and [r.outcome for r in reports] == ["served"]


async def test_a_deployment_at_its_limit_refuses_background_work_before_enterprise():
    held = FakeDeployment([start(), block_start(), ev.text_delta(0, "a"), BLOCK], answer())
    gen = Generator({"eu1": held}, policy(initial_concurrency=2), max_concurrency={"eu1": 2})
    first = gen.generate(wire_pb2.WireRequest(body=b"{}"), [candidate("a", "eu1")], priority=0)
    async for item in first:
        if not isinstance(item, AttemptReport) and item.type == "content_block_delta":
            break  # one enterprise stream in flight
    _, _, err = await run(gen, [candidate("a", "eu1")], priority=3)
    assert err.reason is Reason.UPSTREAM_OVERLOADED and len(held.calls) == 1
    _, _, err = await run(gen, [candidate("a", "eu1")], priority=0)
    assert err is None and len(held.calls) == 2
    await first.aclose()


async def test_count_tokens_skips_providers_that_cannot_count():
    bedrock, vertex = FakeDeployment(), FakeDeployment(12)
    bedrock.can_count_tokens = False
    tokens, _body, model = await Generator({"b": bedrock, "v": vertex}, policy()).count_tokens(
        wire_pb2.WireRequest(), [candidate("a", "b"), candidate("c", "v")])
    assert (tokens, model) == (12, "c") and bedrock.calls == []


async def test_a_text_stream_failing_mid_answer_continues_on_the_next_candidate_when_opted_in():
    first = FakeDeployment([start(), block_start(), ev.text_delta(0, "Hello, "), overloaded()])
    second = FakeDeployment(answer("world"))
    other_model = FakeDeployment(answer("no"))
    gen = Generator({"eu1": first, "eu2": second, "eu3": other_model}, policy())
    events, reports, err = await run(gen, [candidate("a", "eu1"), candidate("b", "eu3", prefill=True),
                                           candidate("a", "eu2", prefill=True)],
                                     body=b'{"max_tokens":50,"messages":[{"role":"user","content":"hi"}]}',
                                     continue_midstream=True)
    assert err is None
    assert [e.type for e in events] == ["message_start", "content_block_start", "content_block_delta",
                                        "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    # Only the same model continues (another deployment of it), never a fallback model.
    assert other_model.calls == []
    sent = json.loads(second.calls[0][1])
    # The prefill without its trailing whitespace (the API refuses a final turn ending in it).
    assert sent["messages"][-1] == {"role": "assistant", "content": "Hello,"}
    assert sent["max_tokens"] == 50 - 2  # what was delivered ("Hello, ": 2 tokens) counts against max_tokens
    # The client's usage counts the whole answer: the continuation's output plus what came before.
    final = next(e for e in events if e.type == "message_delta")
    assert final.view["usage"]["output_tokens"] == 1 + 2
    assert [r.outcome for r in reports] == ["served", "continued", "served"]


async def test_no_continuation_with_a_tool_call_in_the_answer():
    tool = ev.Event.of({"type": "content_block_start", "index": 0,
                        "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}}})
    first = FakeDeployment([start(), tool, ev.input_json_delta(0, '{"a"'), overloaded()])
    second = FakeDeployment(answer("x"))
    _, _, err = await run(Generator({"eu1": first, "eu2": second}, policy()),
                          [candidate("a", "eu1"), candidate("b", "eu2", prefill=True)], continue_midstream=True)
    assert err.reason is Reason.UPSTREAM_OVERLOADED and second.calls == []


async def test_a_long_silence_before_the_first_token_commits_the_answer_after_the_hold():
    go_on = asyncio.Event()
    slow = FakeDeployment([start(), block_start(), go_on, overloaded()])
    other = FakeDeployment(answer())
    gen = Generator({"slow": slow, "other": other}, policy(first_token_hold_seconds=0.02))
    seen, error = [], None
    try:
        async for item in gen.generate(wire_pb2.WireRequest(body=b"{}"), [candidate("a", "slow"),
                                                                           candidate("a", "other")]):
            seen.append(item.outcome if isinstance(item, AttemptReport) else item.type)
            if item == block_start():
                go_on.set()  # the client has the stream's start: now the attempt fails
    except SluiceError as err:
        error = err
    # Committed: the start reached the client, so the failure ends the stream (no fallback).
    assert seen == ["served", "message_start", "content_block_start"]
    assert error.reason is Reason.UPSTREAM_OVERLOADED and other.calls == []


@pytest.mark.parametrize("stop_after", ["served", "message_start", "content_block_delta"])
async def test_a_client_gone_at_any_point_leaves_no_permit_breaker_slot_or_connection(stop_after):
    d = FakeDeployment(answer("a", "b"))
    gen = Generator({"eu1": d}, policy())
    stream = gen.generate(wire_pb2.WireRequest(body=b"{}"), [candidate("a", "eu1")])
    async for item in stream:
        if (item.outcome if isinstance(item, AttemptReport) else getattr(item, "type", "")) == stop_after:
            break
    await stream.aclose()
    assert gen.health["eu1"].limiter.in_flight == 0 and d.closed == 1


async def test_a_client_gone_while_waiting_for_the_first_token_cancels_the_call():
    d = FakeDeployment([start(), BLOCK])
    gen = Generator({"eu1": d}, policy())
    task = asyncio.ensure_future(run(gen, [candidate("a", "eu1")]))
    while not d.calls:  # event-loop turns until the call started (no timing guess)
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gen.health["eu1"].limiter.in_flight == 0 and d.closed == 1


async def test_a_deployment_that_does_not_serve_the_model_is_fallen_back_from_and_counted():
    missing = FakeDeployment([SluiceError(Reason.UPSTREAM_NOT_FOUND, "model: x")])
    healthy = FakeDeployment(answer("ok"))
    gen = Generator({"eu1": missing, "eu2": healthy}, policy(breaker_consecutive_failures=1))
    _, reports, err = await run(gen, [candidate("a", "eu1"), candidate("a", "eu2")])
    assert err is None and len(missing.calls) == 1 and [r.outcome for r in reports] == ["failed", "served"]
    assert gen.health["eu1"].breaker.state == "open"  # a deployment fault, not the request's


async def test_a_fallback_model_refusing_the_request_is_skipped_and_the_client_gets_the_last_retryable_error():
    primary = FakeDeployment([overloaded()], [overloaded()])
    fallback = FakeDeployment([SluiceError(Reason.UPSTREAM_REJECTED, "thinking.type.adaptive is not supported")])
    another = FakeDeployment(answer("fine"))
    gen = Generator({"p": primary, "f": fallback, "g": another}, policy())
    _, reports, err = await run(gen, [candidate("big", "p"), candidate("small", "f"), candidate("other", "g")])
    assert err is None and [r.deployment for r in reports if r.outcome == "served"] == ["g"]
    _, _, err = await run(Generator({"p": FakeDeployment([overloaded()], [overloaded()]),
                                     "f": FakeDeployment([SluiceError(Reason.UPSTREAM_REJECTED, "no")])}, policy()),
                          [candidate("big", "p"), candidate("small", "f")])
    assert err.reason is Reason.UPSTREAM_OVERLOADED


async def test_a_retry_after_longer_than_a_backoff_moves_on_to_the_next_candidate_at_once():
    slow_to_recover = FakeDeployment([overloaded(retry_after=1000)], answer("late"))
    healthy = FakeDeployment(answer("now"))
    gen = Generator({"eu1": slow_to_recover, "eu2": healthy}, policy())
    events, _, err = await run(gen, [candidate("a", "eu1"), candidate("a", "eu2")])
    assert err is None and len(slow_to_recover.calls) == 1 and b"now" in b"".join(e.data for e in events)


async def test_a_buffered_answer_failing_mid_stream_is_retried_whole_elsewhere():
    breaks = FakeDeployment([start(), block_start(), ev.text_delta(0, "par"), overloaded()])
    healthy = FakeDeployment(answer("whole"))
    gen = Generator({"eu1": breaks, "eu2": healthy}, policy(attempts_per_candidate=1))
    events, reports, err = await run(gen, [candidate("a", "eu1"), candidate("a", "eu2")], buffered=True)
    assert err is None and b"par" not in b"".join(e.data for e in events)
    assert [e.type for e in events].count("message_start") == 1 and events[-1].type == "message_stop"
    assert [(r.deployment, r.outcome) for r in reports] == [("eu1", "failed"), ("eu2", "served")]


async def test_a_hedge_races_the_same_model_on_another_deployment_never_a_fallback_model():
    slow = FakeDeployment([start(), BLOCK])
    fallback = FakeDeployment(answer("cheaper"))
    twin = FakeDeployment(answer("same model"))
    gen = Generator({"slow": slow, "fb": fallback, "twin": twin},
                    policy(hedging=True, hedge_delay_seconds=0.02))
    events, reports, err = await run(gen, [candidate("opus", "slow"), candidate("sonnet", "fb"),
                                           candidate("opus", "twin")])
    assert err is None and fallback.calls == [] and b"same model" in b"".join(e.data for e in events)
    assert [(r.deployment, r.outcome, r.hedge) for r in reports] == [("slow", "cancelled", False),
                                                                     ("twin", "served", True)]
    # No other deployment of the model: no hedge at all (the slow one answers, late).
    alone = Generator({"slow": FakeDeployment([start(), block_start(), ev.text_delta(0, "late"), ev.message_stop()]),
                       "fb": FakeDeployment(answer())}, policy(hedging=True, hedge_delay_seconds=0.001))
    _, reports, err = await run(alone, [candidate("opus", "slow"), candidate("sonnet", "fb")])
    assert err is None and [r.deployment for r in reports] == ["slow"]


async def test_retry_budgets_are_per_class_so_background_work_cannot_spend_enterprises():
    gen = Generator({"eu1": FakeDeployment(*[[overloaded()] for _ in range(10)], answer("ok")),
                     "eu2": FakeDeployment(*[answer("x") for _ in range(10)])},
                    policy(attempts_per_candidate=1, retry_budget_ratio=0, retry_budget_min_per_second=0.1,
                           budget_window_seconds=10))
    # Background requests spend their class's one extra attempt ...
    _, _, err = await run(gen, [candidate("a", "eu1"), candidate("a", "eu2")], priority=3)
    assert err is None
    _, _, err = await run(gen, [candidate("a", "eu1"), candidate("a", "eu2")], priority=3)
    assert err.reason is Reason.UPSTREAM_OVERLOADED
    # ... enterprise still has its own.
    _, reports, err = await run(gen, [candidate("a", "eu1"), candidate("a", "eu2")], priority=0)
    assert err is None and reports[-1].deployment == "eu2"


def test_waited_time_counts_overlapping_upstream_calls_once():
    # A hedge (1.5..3.0) racing its primary (1.0..2.0), then a retry (4.0..4.5).
    assert waited_ms([(1.0, 2.0), (4.0, 4.5), (1.5, 3.0)]) == pytest.approx(2500.0)
    assert waited_ms([(1.0, 3.0), (1.5, 2.0)]) == pytest.approx(2000.0)
    assert waited_ms([]) == 0.0


async def test_a_served_stream_ends_with_the_time_waited_on_the_upstream():
    ticks = []

    def clock() -> float:  # each reading 0.1 s after the last
        ticks.append(len(ticks) * 0.1)
        return ticks[-1]

    gen = Generator({"eu1": FakeDeployment(answer("a", "b"))}, policy(), clock=clock)
    items = [item async for item in gen.generate(wire_pb2.WireRequest(body=b"{}"), [candidate("a", "eu1")])]
    assert isinstance(items[-1], UpstreamTiming) and not any(isinstance(i, UpstreamTiming) for i in items[:-1])
    # From sending (a reading) to the end of the stream (a later one), within the request's readings.
    assert 0 < items[-1].upstream_ms <= ticks[-1] * 1000 and round(items[-1].upstream_ms) % 100 == 0
