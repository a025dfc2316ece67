"""The gateway gathers text deltas before sending them to the output filter."""

from __future__ import annotations

import pytest

from sluice.gateway.pipeline import _gather_text
from sluice.wire.events import Event, content_block_stop, message_stop, text_delta


async def _source(events, fail: Exception | None = None):
    for event in events:
        yield event
    if fail is not None:
        raise fail


def _show(event: Event) -> str:
    if event.type == "content_block_delta":
        return f"{event.view['index']}:{event.view['delta'].get('text', event.view['delta'].get('type'))}"
    return event.type


async def test_deltas_of_one_block_are_joined_up_to_the_batch_and_flushed_by_any_other_event():
    citation = Event.of({"type": "content_block_delta", "index": 2, "delta": {"type": "citations_delta",
                                                                               "citation": {"cited_text": "x"}}})
    events = [text_delta(0, "ab"), text_delta(0, "cd"), text_delta(0, "ef"), text_delta(0, "g"),
              content_block_stop(0), text_delta(1, "hi"), text_delta(2, "jk"), citation, text_delta(2, "l"),
              message_stop()]
    out = [_show(e) async for e in _gather_text(_source(events), 4)]
    assert out == ["0:abcd", "0:efg", "content_block_stop", "1:hi", "2:jk", "2:citations_delta", "2:l",
                   "message_stop"]


async def test_text_gathered_when_the_model_fails_is_passed_on_before_the_failure():
    out = []
    with pytest.raises(RuntimeError, match="upstream broke"):
        async for event in _gather_text(_source([text_delta(0, "said ")], RuntimeError("upstream broke")), 64):
            out.append(_show(event))
    assert out == ["0:said "]


async def test_deltas_with_fields_of_their_own_pass_unchanged_and_unjoined():
    extra = Event("content_block_delta", b'{"type":"content_block_delta","index":0,'
                                         b'"delta":{"type":"text_delta","text":"ab","x":1.50}}')
    lone = text_delta(0, "cd")
    out = [e async for e in _gather_text(_source([text_delta(0, "z"), extra, lone, message_stop()]), 64)]
    assert [e.data for e in out[1:3]] == [extra.data, lone.data]
    assert _show(out[0]) == "0:z" and out[3].type == "message_stop"


async def test_pings_fill_silence_after_the_first_event_and_failures_pass_through():
    import asyncio

    from sluice.gateway.pipeline import with_pings

    async def slow(fail: bool = False):
        await asyncio.sleep(0.15)  # before the first event: no pings
        yield text_delta(0, "a")
        await asyncio.sleep(0.35)  # silence: pings
        yield text_delta(0, "b")
        if fail:
            raise RuntimeError("upstream broke")

    kinds = [e.type async for e in with_pings(slow(), 0.1)]
    assert kinds[0] == "content_block_delta" and kinds[-1] == "content_block_delta"
    assert 2 <= kinds.count("ping") <= 4 and len(kinds) == kinds.count("ping") + 2
    seen = []
    with pytest.raises(RuntimeError, match="upstream broke"):
        async for event in with_pings(slow(fail=True), 0.1):
            seen.append(event.type)
    assert seen[-1] == "content_block_delta"


async def test_closing_the_pinged_stream_cancels_its_source():
    import asyncio

    from sluice.gateway.pipeline import with_pings

    closed = asyncio.Event()

    async def endless():
        try:
            while True:
                yield text_delta(0, "x")
                await asyncio.sleep(0.01)
        finally:
            closed.set()

    stream = with_pings(endless(), 0.05)
    assert (await anext(stream)).type == "content_block_delta"
    await stream.aclose()
    await asyncio.wait_for(closed.wait(), 1)
