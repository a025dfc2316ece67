"""ready_batches: what a stream has produced, taken together, in order, nothing lost."""

from __future__ import annotations

import asyncio

import pytest

from sluice.rpc.batching import ready_batches


async def test_items_ready_together_come_as_one_batch_and_a_slow_source_one_by_one():
    gate = asyncio.Event()

    async def source():
        for i in range(5):  # produced without waiting: ready together
            yield i
        await gate.wait()
        yield 5

    batches = ready_batches(source())
    await asyncio.sleep(0)
    first = await anext(batches)
    assert first[0] == 0 and first == list(range(len(first)))
    rest = []
    while sum(map(len, [first, *rest])) < 5:
        rest.append(await anext(batches))
    assert [x for b in [first, *rest] for x in b] == [0, 1, 2, 3, 4]
    gate.set()
    assert await anext(batches) == [5]
    with pytest.raises(StopAsyncIteration):
        await anext(batches)


async def test_a_failure_comes_after_the_items_before_it():
    async def source():
        yield 1
        yield 2
        raise ValueError("upstream broke")

    seen = []
    with pytest.raises(ValueError, match="upstream broke"):
        async for batch in ready_batches(source()):
            seen += batch
    assert seen == [1, 2]


async def test_the_source_is_read_at_most_max_items_ahead_and_closed_when_the_consumer_leaves():
    produced = []
    closed = asyncio.Event()

    async def source():
        try:
            for i in range(1000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    batches = ready_batches(source(), max_items=8)
    assert await anext(batches)
    await asyncio.sleep(0.01)
    assert len(produced) <= 8 + 8 + 1  # one batch out, one queue full, one in hand
    await batches.aclose()
    await asyncio.wait_for(closed.wait(), 1)
