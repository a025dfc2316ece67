"""Ready batches: the items a stream has already produced, taken together.

A streamed answer crosses each mesh hop as gRPC messages, and grpc.aio costs about as much
per message as the work on the event it carries. `ready_batches` reads its source in a task
of its own and hands over, each time the consumer asks, everything that has arrived since:
one item when the consumer keeps up (no added latency: nothing waits to fill a batch), more
as soon as it falls behind (under load, where the per-message cost matters). A bounded queue
keeps backpressure: the source is not read further ahead than `max_items`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TypeVar

from sluice.llm.v1 import wire_pb2

T = TypeVar("T")
M = TypeVar("M")

_END = object()


async def ready_batches(source: AsyncIterator[T], max_items: int = 64) -> AsyncGenerator[list[T], None]:
    """Lists of the items of `source` in order, each holding whatever was ready when the
    consumer asked (at least one, at most `max_items`). An exception raised by `source`
    comes out after the items before it; closing this generator (or leaving its loop early)
    cancels the reading task and closes `source`."""
    queue: asyncio.Queue[object] = asyncio.Queue(maxsize=max_items)
    failure: list[BaseException] = []
    consumer_gone = False

    async def pump() -> None:
        try:
            async for item in source:
                await queue.put(item)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            # A cancellation too: the source may cancel the task reading it (a local call's
            # deadline does), and the consumer must hear of it rather than wait forever.
            failure.append(exc)
        finally:
            closing = getattr(source, "aclose", None)
            if closing is not None:
                with contextlib.suppress(Exception):
                    await closing()
        if not consumer_gone:
            await queue.put(_END)

    reader = asyncio.get_running_loop().create_task(pump(), name="ready-batches")
    try:
        while True:
            first = await queue.get()
            if first is _END:
                break
            batch: list[T] = [first]  # type: ignore[list-item]  # only _END is not a T
            done = False
            while len(batch) < max_items and not queue.empty():
                item = queue.get_nowait()
                if item is _END:
                    done = True
                    break
                batch.append(item)  # type: ignore[arg-type]  # only _END is not a T
            yield batch
            if done:
                break
        if failure:
            raise failure[0]
    finally:
        consumer_gone = True
        if not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


def carrying(message: Callable[..., M], wired: list[wire_pb2.WireEvent]) -> M:
    """A message carrying an answer's events through the `event` / `events` oneof that
    GenerateResponse and FilterOutputRequest share: `event` for one, a `WireEvents` batch for
    more."""
    if len(wired) == 1:
        return message(event=wired[0])
    return message(events=wire_pb2.WireEvents(events=wired))
