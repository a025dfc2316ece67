"""The Models API from the catalog: ``GET /v1/models`` and
``GET /v1/models/{model_id}``, in the shape of the SDK's ModelInfo
(anthropic 2.12.0 ``types/model_info.py``, ``types/model_capabilities.py``;
Models API reference https://platform.claude.com/docs/en/api/models-list).

Newest first; ``limit`` (1-1000, default 20), ``after_id`` / ``before_id``
cursors, ``lifecycle`` (``lifecycle[]=...`` or ``lifecycle=...``, up to 3;
default active and deprecated). A model is found by id or alias; retired
models stay in the catalogue (``lifecycle: "retired"``); an unknown id is a
404 ``model: <id>``.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sluice.catalog.catalog import Catalog, ModelEntry
from sluice.simulator.rules import ApiError, invalid

_LIFECYCLES = ("active", "deprecated", "retired")


def _time(day: date | None) -> str | None:
    return f"{day.isoformat()}T00:00:00Z" if day is not None else None


def _support(value: bool) -> dict[str, bool]:
    return {"supported": bool(value)}


def capabilities(entry: ModelEntry) -> dict[str, Any]:
    a = entry.accepts
    levels = ("low", "medium", "high", "max", "xhigh")
    return {
        "batch": _support(True),
        "citations": _support(a.citations),
        "code_execution": _support("code_execution" in a.server_tools),
        "context_management": _support(False),
        "effort": {"supported": bool(a.effort), **{level: _support(level in a.effort) for level in levels}},
        "image_input": _support(a.image_input),
        "pdf_input": _support(a.pdf_input),
        "server_tools": {"supported": bool(a.server_tools),
                         "code_execution": _support("code_execution" in a.server_tools),
                         "web_search": _support("web_search" in a.server_tools)},
        "structured_outputs": _support(True),
        "thinking": {"supported": any(t != "disabled" for t in a.thinking),
                     "types": {t: _support(t in a.thinking)
                               for t in ("adaptive", "between_tools", "disabled", "enabled")}},
    }


def model_info(entry: ModelEntry, now: datetime) -> dict[str, Any]:
    lifecycle = entry.lifecycle(now)
    return {
        "type": "model", "id": entry.id, "display_name": entry.display_name,
        "created_at": _time(entry.created_at), "lifecycle": lifecycle,
        "deprecated_at": _time(entry.deprecated_at) if lifecycle != "active" else None,
        "retires_at": _time(entry.retires_at) if lifecycle != "active" else None,
        "max_input_tokens": entry.context_window, "max_tokens": entry.max_output_tokens,
        "line": entry.line, "capabilities": capabilities(entry),
    }


def retrieve(catalog: Catalog, model_id: str, now: datetime) -> dict[str, Any]:
    entry = catalog.lookup(model_id)
    if entry is None:
        raise ApiError(404, f"model: {model_id}")
    return model_info(entry, now)


def list_page(catalog: Catalog, query: Any, now: datetime) -> dict[str, Any]:
    """One page of the list; `query` is the request's query multidict."""
    raw_limit = query.get("limit", "20")
    try:
        limit = int(raw_limit)
    except ValueError:
        raise invalid("limit: Input should be a valid integer") from None
    if not 1 <= limit <= 1000:
        raise invalid("limit: Input should be between 1 and 1000")
    wanted = [*query.getall("lifecycle[]", []), *query.getall("lifecycle", [])]
    for value in wanted:
        if value not in _LIFECYCLES:
            raise invalid(f"lifecycle: Input should be 'active', 'deprecated' or 'retired', not {value!r}")
    if len(wanted) > 3:
        raise invalid("lifecycle: List should have at most 3 items")
    lifecycles = set(wanted) or {"active", "deprecated"}
    models = [m for m in catalog.newest_first() if m.lifecycle(now) in lifecycles]
    ids = [m.id for m in models]
    after, before = query.get("after_id"), query.get("before_id")
    if after is not None and before is not None:
        raise invalid("after_id: give after_id or before_id, not both")
    if after is not None:
        if after not in ids:
            raise invalid(f"after_id: no model {after!r} in this list")
        start = ids.index(after) + 1
        page, has_more = models[start:start + limit], start + limit < len(models)
    elif before is not None:
        if before not in ids:
            raise invalid(f"before_id: no model {before!r} in this list")
        end = ids.index(before)
        page, has_more = models[max(0, end - limit):end], end - limit > 0
    else:
        page, has_more = models[:limit], limit < len(models)
    data = [model_info(m, now) for m in page]
    return {"data": data, "has_more": has_more, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}
