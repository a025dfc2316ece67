"""What a request's usage costs: one rule for billing events and spend limits.

Prices are USD per million tokens (the catalog's, or a routing candidate's
copy of them), so tokens x price is micro-USD. Cache writes are priced by the
lifetime they bought: 1.25x base input for 5 minutes, 2x for 1 hour
(Anthropic's pricing page); the split comes from the upstream's
`usage.cache_creation` breakdown, else from the request's cache_control
ttls (`split_cache_writes`). Server tool requests (web search, ...) are
priced per request from the catalog (usage.server_tool_use).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Protocol

from sluice.llm.v1 import messages_pb2


class Prices(Protocol):
    """USD per million tokens, and USD per server tool request by kind."""

    # Read-only members: the catalog's frozen Prices model and plain classes both fit.
    @property
    def input(self) -> float: ...
    @property
    def output(self) -> float: ...
    @property
    def cache_write_5m(self) -> float: ...
    @property
    def cache_write_1h(self) -> float: ...
    @property
    def cache_read(self) -> float: ...
    @property
    def server_tool_use(self) -> Mapping[str, float]: ...


def cost_micro_usd(usage: messages_pb2.Usage, prices: Prices) -> int:
    """What `usage` costs at `prices`, in whole micro-USD, rounded up: the one
    pricing rule, for spend limits (auth), billing records (the gateway) and
    cost estimates (routing). Records carry USD as `usd(micro)`."""
    created = usage.cache_creation_input_tokens
    five = hour = 0
    if usage.HasField("cache_creation"):
        five = usage.cache_creation.ephemeral_5m_input_tokens
        hour = usage.cache_creation.ephemeral_1h_input_tokens
    # Writes the breakdown does not account for are priced at the API's default 5 minutes.
    five += max(created - five - hour, 0)
    micro = (usage.input_tokens * prices.input + usage.output_tokens * prices.output
             + five * prices.cache_write_5m + hour * prices.cache_write_1h
             + usage.cache_read_input_tokens * prices.cache_read)
    for kind, count in usage.server_tool_use.items():
        micro += count * prices.server_tool_use.get(kind, 0.0) * 1_000_000
    # Rounded up past float noise (3 x 0.1 is 0.30000000000000004, not a micro-USD more).
    return math.ceil(round(micro, 6))


def usd(micro: int) -> float:
    """Micro-USD as USD (the unit billing records and metrics carry)."""
    return micro / 1_000_000


def split_cache_writes(written: int, breakpoints: list[tuple[int, str]]) -> tuple[int, int]:
    """(5-minute, 1-hour) shares of `written` cache-write tokens when the
    upstream did not break them down, from the request's breakpoints
    ((estimated prefix tokens, ttl) in prefix order). 1-hour entries must
    come before 5-minute ones in a prompt (the API's rule), so with both
    present the 1-hour share is the prefix up to the last 1-hour breakpoint,
    in proportion."""
    ttls = {ttl for _, ttl in breakpoints}
    if not written or "1h" not in ttls:
        return written, 0
    if ttls == {"1h"}:
        return 0, written
    hour_end = max(at for at, ttl in breakpoints if ttl == "1h")
    end = max(at for at, _ in breakpoints) or 1
    hour = min(written, round(written * hour_end / end))
    return written - hour, hour
