"""Single-flight (sluice.gateway.flights): one source, any number of
subscribers, each from the first event; the source outlives a leader that
leaves, not the last subscriber; a failure reaches everyone."""

from __future__ import annotations

import asyncio

import pytest

from sluice.gateway.flights import Flights
from sluice.wire.events import Event


class Source:
    """An upstream that sends what the test releases, and says whether it was closed early."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event | BaseException | None] = asyncio.Queue()
        self.closed = asyncio.Event()

    async def events(self):  # type: ignore[no-untyped-def]
        try:
            while (item := await self.queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.closed.set()


def ev(n: int) -> Event:
    return Event("content_block_delta", b'{"n":%d}' % n)


async def collect(stream, into: list) -> None:  # type: ignore[no-untyped-def]
    async for event in stream:
        into.append(event.data)


async def test_followers_get_every_event_from_the_first_and_late_ones_too():
    flights, source = Flights(), Source()
    flight = flights.start(b"k", "req-1", b"", source.events())
    got: list[list[bytes]] = [[], []]
    leader = asyncio.create_task(collect(flight.subscribe(), got[0]))
    await source.queue.put(ev(1))
    await asyncio.sleep(0)
    assert flights.find(b"k") is flight
    follower = asyncio.create_task(collect(flights.find(b"k").subscribe(), got[1]))
    for n in (2, 3):
        await source.queue.put(ev(n))
    await source.queue.put(None)
    await asyncio.wait_for(asyncio.gather(leader, follower), 5)
    assert got[0] == got[1] == [b'{"n":1}', b'{"n":2}', b'{"n":3}']
    assert flight.ended.is_set()
    late: list[bytes] = []
    await collect(flights.find(b"k").subscribe(), late)  # finished, findable until released
    assert late == got[0]
    flights.release(flight)
    assert flights.find(b"k") is None


async def test_a_leader_leaving_does_not_stop_its_followers_but_the_last_one_does():
    flights, source = Flights(), Source()
    flight = flights.start(b"k", "req-1", b"", source.events())
    leader, follower = flight.subscribe(), flight.subscribe()
    await source.queue.put(ev(1))
    assert (await leader.__anext__()).data == (await follower.__anext__()).data == b'{"n":1}'
    await leader.aclose()
    await source.queue.put(ev(2))
    assert (await follower.__anext__()).data == b'{"n":2}' and not source.closed.is_set()
    await follower.aclose()
    await asyncio.wait_for(source.closed.wait(), 5)  # the upstream call is closed with the last subscriber
    assert flights.find(b"k") is None


async def test_a_failure_reaches_every_subscriber_and_ends_the_flight():
    flights, source = Flights(), Source()
    flight = flights.start(b"k", "req-1", b"", source.events())
    streams = [flight.subscribe() for _ in range(3)]
    await source.queue.put(ev(1))
    await source.queue.put(RuntimeError("upstream broke"))
    for stream in streams:
        assert (await stream.__anext__()).data == b'{"n":1}'
        with pytest.raises(RuntimeError, match="upstream broke"):
            await stream.__anext__()
    assert flights.find(b"k") is None
