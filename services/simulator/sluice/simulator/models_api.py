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

from datetime import datetime
from typing import Any

from sluice.catalog import models_api
from sluice.catalog.catalog import Catalog
from sluice.simulator.rules import ApiError, invalid


def retrieve(catalog: Catalog, model_id: str, now: datetime) -> dict[str, Any]:
    entry = catalog.lookup(model_id)
    if entry is None:
        raise ApiError(404, f"model: {model_id}")
    return models_api.model_object(entry, now)


def list_page(catalog: Catalog, query: Any, now: datetime) -> dict[str, Any]:
    """One page of the list; `query` is the request's query multidict."""
    try:
        try:
            limit = int(query["limit"]) if "limit" in query else None
        except ValueError:
            raise models_api.PageError("limit", "Input should be a valid integer") from None
        shown = models_api.lifecycles([*query.getall("lifecycle[]", []), *query.getall("lifecycle", [])])
        models = [m for m in catalog.newest_first() if m.lifecycle(now) in shown]
        chosen, has_more = models_api.page(models, limit, query.get("after_id", ""), query.get("before_id", ""))
    except models_api.PageError as err:
        raise invalid(str(err)) from None
    data = [models_api.model_object(m, now) for m in chosen]
    return {"data": data, "has_more": has_more, "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None}
