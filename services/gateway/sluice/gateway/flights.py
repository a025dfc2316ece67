"""Single-flight for the response cache: identical requests that miss at
the same time make one upstream call and share its answer.

The first request with a key (the leader) starts a Flight: a task that
reads the upstream's events into a list. Every request with the same key,
the leader included, subscribes and reads that list from its start, then
each event as it arrives, so a streaming follower gets the stream as it is
produced. The task belongs to no client: a leader that goes away does not
stop its followers' answer; when the last subscriber goes, the upstream
call is cancelled. A failure reaches every subscriber and ends the
flight. A complete answer stays findable until the leader released it
(once its answer is in the store, or it will not be stored), so an
identical request arriving meanwhile replays it from memory instead of
calling again; GUARD_S bounds that should a release never come.

Scope: one gateway process (identical requests reaching different
replicas each make a call; the store keeps whichever answer it got last).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from sluice.wire.events import Event

# Longest a finished flight's answer stays findable without a release.
GUARD_S = 30.0


class Flight:
    """One upstream answer being shared (module doc). `leader` is the
    request id that started it; `input_digest` the leader's input
    redactions (a request redacted otherwise may not share its answer)."""

    def __init__(self, key: bytes, leader: str, input_digest: bytes) -> None:
        self.key = key
        self.leader = leader
        self.input_digest = input_digest
        self.events: list[Event] = []
        self.done = False
        self.error: BaseException | None = None
        self.task: asyncio.Task[None] | None = None
        self._subscribers = 0
        self._arrived = asyncio.Event()
        # Set when the answer is whole, failed or cancelled.
        self.ended = asyncio.Event()

    def _wake(self) -> None:
        self._arrived.set()
        self._arrived = asyncio.Event()

    async def _pump(self, source: AsyncIterator[Event], on_close: Callable[[], None]) -> None:
        try:
            async for event in source:
                self.events.append(event)
                self._wake()
        except BaseException as exc:  # handed to every subscriber
            self.error = exc if not isinstance(exc, asyncio.CancelledError) else None
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self.done = True
            if self.error is None and not asyncio.current_task().cancelling():  # type: ignore[union-attr]  # runs inside a task
                asyncio.get_running_loop().call_later(GUARD_S, on_close)
            else:
                on_close()
            self.ended.set()
            self._wake()
            close = getattr(source, "aclose", None)
            if close is not None:
                await close()

    async def subscribe(self) -> AsyncGenerator[Event, None]:
        """Every event of the answer from its first; raises the upstream's
        failure. Leaving early (closing this iterator) unsubscribes."""
        self._subscribers += 1
        seen = 0
        try:
            while True:
                if seen < len(self.events):
                    seen += 1
                    yield self.events[seen - 1]
                elif self.done:
                    if self.error is not None:
                        raise self.error
                    if self.task is not None and self.task.cancelled():
                        raise asyncio.CancelledError()
                    return
                else:
                    await self._arrived.wait()
        finally:
            self._subscribers -= 1
            if self._subscribers == 0 and not self.done and self.task is not None:
                self.task.cancel()


class Flights:
    """The flights in progress in this process, by cache key."""

    def __init__(self) -> None:
        self._open: dict[bytes, Flight] = {}

    def find(self, key: bytes) -> Flight | None:
        """The flight in progress for `key`, if any."""
        return self._open.get(key)

    def start(self, key: bytes, leader: str, input_digest: bytes, source: AsyncIterator[Event]) -> Flight:
        """A new flight for `key` reading `source` (the upstream's events)."""
        flight = Flight(key, leader, input_digest)
        self._open[key] = flight

        flight.task = asyncio.get_running_loop().create_task(flight._pump(source, lambda: self.release(flight)))
        return flight

    def release(self, flight: Flight) -> None:
        """`flight` is no longer to be joined: its answer is in the store,
        or will not be."""
        if self._open.get(flight.key) is flight:
            del self._open[flight.key]

    def __len__(self) -> int:
        return len(self._open)
