"""The Models API's view of the catalog: the model object and its pages.

One rendering for every place that answers GET /v1/models: the routing
service (for the gateway) and the simulator (as the upstream). Shapes follow
the anthropic SDK's `ModelInfo` and `ModelCapabilities` (2.12.0
`types/model_info.py`, `types/model_capabilities.py`) and the Models API
reference (platform.claude.com/docs/en/api/models-list): newest first,
`limit` 1 to 1000 (20 by default), `after_id` / `before_id` cursors.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from typing import Any

from sluice.catalog.catalog import Lifecycle, ModelEntry

DEFAULT_LIMIT = 20
MAX_LIMIT = 1000
LIFECYCLES: tuple[Lifecycle, ...] = ("active", "deprecated", "retired")
# What a list holds when the caller names no lifecycle (the API's default).
LISTED_BY_DEFAULT = frozenset({"active", "deprecated"})
_EFFORT_LEVELS = ("low", "medium", "high", "max", "xhigh")
_THINKING_TYPES = ("adaptive", "between_tools", "disabled", "enabled")


class PageError(ValueError):
    """A page that cannot be given; `field` names the query parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def midnight(day: date) -> datetime:
    """The start of `day`, UTC (catalog dates are days)."""
    return datetime.combine(day, time(0), tzinfo=UTC)


def rfc3339(day: date | None) -> str | None:
    return f"{day.isoformat()}T00:00:00Z" if day is not None else None


def _support(flag: bool) -> dict[str, bool]:
    return {"supported": bool(flag)}


def capabilities(entry: ModelEntry) -> dict[str, Any]:
    """The model's `capabilities` object, every known key present."""
    a = entry.accepts
    return {
        "batch": _support(True),
        "citations": _support(a.citations),
        "code_execution": _support("code_execution" in a.server_tools),
        "context_management": _support(False),
        "effort": {"supported": bool(a.effort), **{level: _support(level in a.effort) for level in _EFFORT_LEVELS}},
        "image_input": _support(a.image_input),
        "pdf_input": _support(a.pdf_input),
        "server_tools": {"supported": bool(a.server_tools),
                         "code_execution": _support("code_execution" in a.server_tools),
                         "web_search": _support("web_search" in a.server_tools)},
        "structured_outputs": _support(True),
        "thinking": {"supported": any(t != "disabled" for t in a.thinking),
                     "types": {t: _support(t in a.thinking) for t in _THINKING_TYPES}},
    }


def model_object(entry: ModelEntry, now: datetime) -> dict[str, Any]:
    """The model as GET /v1/models/{id} answers it, at `now` (its lifecycle,
    deprecated_at and retires_at are null while it is active)."""
    lifecycle = entry.lifecycle(now)
    return {
        "type": "model", "id": entry.id, "display_name": entry.display_name,
        "created_at": rfc3339(entry.created_at), "lifecycle": lifecycle,
        "deprecated_at": rfc3339(entry.deprecated_at) if lifecycle != "active" else None,
        "retires_at": rfc3339(entry.retires_at) if lifecycle != "active" else None,
        "max_input_tokens": entry.context_window, "max_tokens": entry.max_output_tokens,
        "line": entry.line, "capabilities": capabilities(entry),
    }


def lifecycles(wanted: Sequence[str]) -> frozenset[str]:
    """The lifecycles a list shows: those asked for (up to three), else
    active and deprecated. Raises PageError for anything else."""
    for value in wanted:
        if value not in LIFECYCLES:
            raise PageError("lifecycle", f"Input should be 'active', 'deprecated' or 'retired', not {value!r}")
    if len(wanted) > len(LIFECYCLES):
        raise PageError("lifecycle", f"List should have at most {len(LIFECYCLES)} items")
    return frozenset(wanted) or LISTED_BY_DEFAULT


def page(models: Sequence[ModelEntry], limit: int | None = None, after_id: str = "", before_id: str = ""
         ) -> tuple[list[ModelEntry], bool]:
    """One page of `models` (already in list order): `limit` of them (None:
    the default) after `after_id` or before `before_id`, and whether more
    follow in that direction. Raises PageError naming the parameter."""
    limit = DEFAULT_LIMIT if limit is None else limit
    if not 1 <= limit <= MAX_LIMIT:
        raise PageError("limit", f"Input should be between 1 and {MAX_LIMIT}")
    if after_id and before_id:
        raise PageError("before_id", "give before_id or after_id, not both")
    ids = [m.id for m in models]
    if after_id:
        if after_id not in ids:
            raise PageError("after_id", f"{after_id!r} is not a model in this list")
        start = ids.index(after_id) + 1
        return list(models[start:start + limit]), start + limit < len(models)
    if before_id:
        if before_id not in ids:
            raise PageError("before_id", f"{before_id!r} is not a model in this list")
        end = ids.index(before_id)
        return list(models[max(0, end - limit):end]), end - limit > 0
    return list(models[:limit]), len(models) > limit
