"""The gateway gathers text deltas before sending them to the output filter."""

from __future__ import annotations

import pytest

from sluice.gateway.pipeline import _gather_text
from sluice.llm.v1 import messages_pb2 as m


def _text(index: int, text: str) -> m.StreamEvent:
    return m.StreamEvent(content_block_delta=m.ContentBlockDelta(index=index, text_delta=text))


def _stop(index: int) -> m.StreamEvent:
    return m.StreamEvent(content_block_stop=m.ContentBlockStop(index=index))


async def _source(events, fail: Exception | None = None):
    for event in events:
        yield event
    if fail is not None:
        raise fail


def _show(event: m.StreamEvent) -> str:
    if event.WhichOneof("event") == "content_block_delta":
        return f"{event.content_block_delta.index}:{event.content_block_delta.text_delta}"
    return event.WhichOneof("event")


async def test_deltas_of_one_block_are_joined_up_to_the_batch_and_flushed_by_any_other_event():
    events = [_text(0, "ab"), _text(0, "cd"), _text(0, "ef"), _text(0, "g"), _stop(0),
              _text(1, "hi"), _text(2, "jk"), m.StreamEvent(message_stop=m.MessageStop())]
    out = [_show(e) async for e in _gather_text(_source(events), 4)]
    assert out == ["0:abcd", "0:efg", "content_block_stop", "1:hi", "2:jk", "message_stop"]


async def test_text_gathered_when_the_model_fails_is_passed_on_before_the_failure():
    out = []
    with pytest.raises(RuntimeError, match="upstream broke"):
        async for event in _gather_text(_source([_text(0, "said ")], RuntimeError("upstream broke")), 64):
            out.append(_show(event))
    assert out == ["0:said "]


async def test_the_source_events_are_not_changed():
    first = _text(0, "ab")
    [e async for e in _gather_text(_source([first, _text(0, "cd")]), 64)]
    assert first.content_block_delta.text_delta == "ab"
