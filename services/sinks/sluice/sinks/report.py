"""Billing report: usage and cost per model per day, from a region's storage."""

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


def report(store: RegionalStore, tenant: str, day_from: str, day_to: str) -> list[Line]:
    return summarize(store.events("billing", tenant), day_from, day_to)


def render(lines: list[Line]) -> str:
    names = [f.name for f in fields(Line)]
    header = ("day", "model", "requests", "errors", "input", "output", "cache write", "cache read", "cost USD")
    rows = [[str(getattr(line, n)) if n != "cost_usd" else f"{line.cost_usd:.6f}" for n in names] for line in lines]
    total = Line("total", "", *(sum(getattr(line, n) for line in lines) for n in names[2:]))
    rows.append([str(getattr(total, n)) if n != "cost_usd" else f"{total.cost_usd:.6f}" for n in names])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True)))]
    out += ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
            for r in rows]
    return "\n".join(out) + "\n"
