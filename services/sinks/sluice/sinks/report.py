"""Billing report: usage and cost per model per day, and what caching saved
per tenant, from a region's storage."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from sluice.sinks.storage import RegionalStore

_TOKENS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


@dataclass
class Line:
    day: str
    model: str
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: float = 0.0


@dataclass
class CacheLine:
    """One tenant's caching: response-cache hits and the upstream cost they
    avoided, prompt-cache read tokens and what reading rather than paying base
    input saved, and cache writes' premium over base input; money in USD."""

    tenant: str
    requests: int = 0
    response_hits: int = 0
    response_saved_usd: float = 0.0
    prefix_read_tokens: int = 0
    prefix_saved_usd: float = 0.0
    write_premium_usd: float = 0.0

    @property
    def hit_ratio(self) -> float:
        """Response hits per request, percent (0 with no requests)."""
        return 100.0 * self.response_hits / self.requests if self.requests else 0.0

    @property
    def net_saved_usd(self) -> float:
        return self.response_saved_usd + self.prefix_saved_usd - self.write_premium_usd


def summarize(events: Iterable[dict[str, Any]], day_from: str, day_to: str) -> list[Line]:
    """One line per (day, model served) with the days in [day_from, day_to]."""
    lines: dict[tuple[str, str], Line] = {}
    for event in events:
        request = event["request"]
        day = request.get("occurred_at", "")[:10]
        if not day_from <= day <= day_to:
            continue
        model = request.get("model_served") or "(none served)"
        line = lines.setdefault((day, model), Line(day, model))
        line.requests += 1
        line.errors += request.get("outcome") == "OUTCOME_ERROR"
        for name in _TOKENS:
            setattr(line, name, getattr(line, name) + int(request.get(name, 0)))
        line.cost_usd += float(request.get("cost_usd", 0.0))
    return [lines[k] for k in sorted(lines)]


def caching(events: Iterable[dict[str, Any]], day_from: str, day_to: str) -> list[CacheLine]:
    """One line per tenant, by tenant id, with the days in [day_from, day_to];
    records without `request.cache` (older ones) add no hits, savings or premium."""
    lines: dict[str, CacheLine] = {}
    for event in events:
        request = event["request"]
        if not day_from <= request.get("occurred_at", "")[:10] <= day_to:
            continue
        cache, tenant = request.get("cache", {}), request.get("tenant_id", "")
        line = lines.setdefault(tenant, CacheLine(tenant))
        line.requests += 1
        line.response_hits += cache.get("status") == "hit"
        line.response_saved_usd += float(cache.get("saved_usd", 0.0))
        line.prefix_read_tokens += int(request.get("cache_read_input_tokens", 0))
        line.prefix_saved_usd += float(cache.get("prefix_saved_usd", 0.0))
        line.write_premium_usd += float(cache.get("prefix_write_premium_usd", 0.0))
    return [lines[k] for k in sorted(lines)]


def report(store: RegionalStore, tenant: str | None, day_from: str, day_to: str) -> list[Line]:
    return summarize(store.events("billing", tenant), day_from, day_to)


def cache_report(store: RegionalStore, tenant: str | None, day_from: str, day_to: str) -> list[CacheLine]:
    return caching(store.events("billing", tenant), day_from, day_to)


def render(lines: list[Line], cache_lines: list[CacheLine] | None = None) -> str:
    """The per-day-per-model table; then, given `cache_lines`, a blank line
    and the caching-by-tenant table."""
    names = [f.name for f in fields(Line)]
    header = ("day", "model", "requests", "errors", "input", "output", "cache write", "cache read", "cost USD")
    rows = [[str(getattr(line, n)) if n != "cost_usd" else f"{line.cost_usd:.6f}" for n in names] for line in lines]
    total = Line("total", "", *(sum(getattr(line, n) for line in lines) for n in names[2:]))
    rows.append([str(getattr(total, n)) if n != "cost_usd" else f"{total.cost_usd:.6f}" for n in names])
    out = _table(header, rows, 2)
    return out if cache_lines is None else out + "\n" + _render_caching(cache_lines)


def _render_caching(lines: list[CacheLine]) -> str:
    names = [f.name for f in fields(CacheLine)]
    header = ("tenant", "requests", "response hits", "hit ratio", "response saved USD", "prefix read tokens",
              "prefix saved USD", "write premium USD", "net saved USD")
    total = CacheLine("total", *(sum(getattr(line, n) for line in lines) for n in names[1:]))
    rows = [[line.tenant, str(line.requests), str(line.response_hits), f"{line.hit_ratio:.1f}%",
             f"{line.response_saved_usd:.6f}", str(line.prefix_read_tokens), f"{line.prefix_saved_usd:.6f}",
             f"{line.write_premium_usd:.6f}", f"{line.net_saved_usd:.6f}"] for line in [*lines, total]]
    return _table(header, rows, 1)


def _table(header: tuple[str, ...], rows: list[list[str]], left: int) -> str:
    """Aligned columns, the first `left` of them left-justified."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    out = ["  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
           for r in [list(header), *rows]]
    return "\n".join(out) + "\n"
