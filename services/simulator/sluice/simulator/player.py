"""Plays a script's steps: pacing, pings, pauses, mid-stream errors and
disconnects, onto a stream or into a buffer (for a non-streamed answer,
which is then the message those bytes assemble to).

Pacing: the first event waits `ttft`; each content_block_delta after the
first waits `itl`. Pings the script asks for, and its pauses, come on top.
A deployment's mid-stream failure (`midstream`) is an overloaded_error
event right after the first content_block_delta.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sluice.simulator.rules import STATUS_OF_TYPE, ApiError
from sluice.simulator.scripts import Step
from sluice.wire import events as wire
from sluice.wire.assemble import MessageAssembler, StreamProtocolError

DONE, ERROR, DISCONNECTED = "done", "error", "disconnected"


async def play(steps: list[Step], script: dict[str, Any], write: Callable[[bytes], Awaitable[None]],
               disconnect: Callable[[], None], *, ttft: float, itl: float, midstream: bool = False) -> str:
    """Sends `steps` through `write`; DONE, ERROR (an error_after_events
    error, or the `midstream` one, was sent) or DISCONNECTED
    (disconnect_after_events)."""
    every = (script.get("pings") or {}).get("every")
    pause = script.get("pause")
    failure = script.get("error_after_events")
    drop = script.get("disconnect_after_events")
    ping = wire.ping().sse()

    async def after(count: int) -> str | None:
        if pause is not None and pause["after_events"] == count:
            await _pause(pause["ms"] / 1000, (pause.get("ping_every_ms") or 0) / 1000, write, ping)
        if failure is not None and failure["after"] == count:
            error = {"type": "overloaded_error", "message": "Overloaded", **(failure.get("error") or {})}
            await write(wire.Event.of({"type": "error", "error": error}).sse())
            return ERROR
        if drop is not None and drop == count:
            disconnect()
            return DISCONNECTED
        return None

    await asyncio.sleep(ttft)
    sent = deltas = 0
    outcome = await after(0)
    if outcome:
        return outcome
    for step in steps:
        if not step.counts:
            await asyncio.sleep(step.pause_ms / 1000)
            continue
        if step.is_delta and deltas and itl:
            await asyncio.sleep(itl)
        await write(step.sse())
        sent += 1
        if step.is_delta:
            deltas += 1
            if midstream:
                await write(wire.error("overloaded_error", "Overloaded").sse())
                return ERROR
            if every and deltas % every == 0:
                await write(ping)
        outcome = await after(sent)
        if outcome:
            return outcome
    return DONE


async def _pause(seconds: float, ping_every: float, write: Callable[[bytes], Awaitable[None]],
                 ping: bytes) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    if ping_every > 0:
        while loop.time() + ping_every < end:
            await asyncio.sleep(ping_every)
            await write(ping)
    delay = end - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def assemble(sse: bytes) -> bytes:
    """The whole message that SSE bytes add up to (MessageAssembler), or
    ApiError for the first `error` event in them (at the status of its
    error type). Events that make no message at all are a 500."""
    assembler = MessageAssembler()
    problem: Exception | None = None
    try:
        async for event in wire.sse_events(_once(sse)):
            if event.type == "error":
                error = event.view.get("error")
                error = error if isinstance(error, dict) else {}
                kind = str(error.get("type") or "api_error")
                raise ApiError(STATUS_OF_TYPE.get(kind, 500), str(error.get("message") or ""), kind)
            assembler.feed(event)
    except (StreamProtocolError, ValueError) as exc:
        problem = exc  # what came before it still makes the message
    try:
        return assembler.json()
    except ValueError as exc:  # StreamProtocolError, JsonTextError
        raise ApiError(500, f"simulator script: its events make no message ({problem or exc})") from None
