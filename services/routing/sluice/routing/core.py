"""Chooses the model endpoints that may serve a request, and lists models.

For now the choice is the requested model (or the tenant's, or the
deployment's, default), checked against the catalog, the model's lifecycle
and limits, the tenant's allowed models and tier, and residency. Ranking
across several candidates comes later.

The Models API (GET /v1/models) answers from the same catalog, listing what
the tenant may use in its region, newest first, in the API's pages.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time

from sluice.auth.v1 import principal_pb2
from sluice.catalog import Catalog, ModelEntry
from sluice.routing.v1 import candidate_pb2, model_pb2
from sluice.rpc.errors import Reason, SluiceError
from sluice.wire import jsontext

DEFAULT_PAGE = 20
MAX_PAGE = 1000


class Router:
    def __init__(self, catalog: Catalog, region: str, default_model: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        if catalog.lookup(default_model) is None:
            raise ValueError(f"routing.default_model {default_model!r} is not in catalog {catalog.version}")
        self.catalog = catalog
        self._region = region
        self._default_model = default_model
        self._clock = clock
        self._infos: dict[tuple[str, date], model_pb2.ModelInfo] = {}

    def route(self, principal: principal_pb2.Principal, requested: str, max_tokens: int = 0,
              count_tokens: bool = False) -> tuple[list[candidate_pb2.Candidate], ModelEntry]:
        """Candidates for a request and the model it resolved to.

        Raises SluiceError: WRONG_REGION for a tenant of another region;
        MODEL_NOT_FOUND (404, "model: <name>", the API's wording) for a name
        the catalog does not know; MODEL_NOT_ALLOWED (403) for one the tenant
        may not use in its region; MODEL_RETIRED (404) for a retired model,
        naming the date;
        INVALID_REQUEST (400, the API's wording) when max_tokens exceeds the
        model's largest output.
        """
        self._check_region(principal)
        name = requested or principal.default_model or self._default_model
        model = self.catalog.lookup(name)
        if model is None:
            raise SluiceError(Reason.MODEL_NOT_FOUND, f"model: {name}", metadata={"model": name})
        self._check_allowed(principal, model)
        if model.lifecycle(self._clock()) == "retired":
            raise SluiceError(Reason.MODEL_RETIRED, f"model: {name} (retired on {model.retires_at}; "
                              "GET /v1/models lists the models you can use)",
                              metadata={"model": model.id, "retired_on": str(model.retires_at)})
        if not count_tokens and max_tokens > model.max_output_tokens:
            raise SluiceError.bad_request("max_tokens", f"{max_tokens} > {model.max_output_tokens}, which is the "
                                          f"maximum allowed number of output tokens for {model.id}")
        return [_candidate(model, principal.region)], model

    def info(self, model: ModelEntry) -> model_pb2.ModelInfo:
        """model_info for today, built once per model and day (it is on
        every request's path; the lifecycle changes only with the date)."""
        now = self._clock()
        key = (model.id, now.date())
        found = self._infos.get(key)
        if found is None:
            if len(self._infos) > 4 * len(self.catalog.models):
                self._infos.clear()
            found = self._infos[key] = model_info(model, now)
        return found

    def _check_region(self, principal: principal_pb2.Principal) -> None:
        if principal.region != self._region:
            raise SluiceError(
                Reason.WRONG_REGION,
                f"tenant {principal.tenant_id} belongs to region {principal.region}; "
                f"this deployment serves {self._region}",
            )

    @staticmethod
    def _check_allowed(principal: principal_pb2.Principal, model: ModelEntry) -> None:
        allowed = principal.allowed_models
        if allowed and model.id not in allowed and not set(model.aliases) & set(allowed):
            raise SluiceError(Reason.MODEL_NOT_ALLOWED, f"model {model.id} is not enabled for this tenant",
                              metadata={"model": model.id})
        if principal.tier not in model.tiers:
            raise SluiceError(Reason.MODEL_NOT_ALLOWED, f"model {model.id} is not available on the {principal.tier} tier",
                              metadata={"model": model.id})
        if principal.region not in model.regions:
            raise SluiceError(Reason.MODEL_NOT_ALLOWED, f"model {model.id} is not available in region {principal.region}",
                              metadata={"model": model.id})

    # -- the Models API ---------------------------------------------------------------

    def _usable(self, principal: principal_pb2.Principal, model: ModelEntry) -> bool:
        try:
            self._check_allowed(principal, model)
        except SluiceError:
            return False
        return True

    def list_models(self, principal: principal_pb2.Principal, limit: int = 0, before_id: str = "",
                    after_id: str = "") -> tuple[list[model_pb2.ModelInfo], bool]:
        """One page of the models the tenant may use in its region, not
        retired, newest first (GET /v1/models): `limit` (1..1000, 0 = 20)
        models after `after_id` or before `before_id`, and whether more
        follow in that direction. Raises SluiceError(INVALID_REQUEST) for a
        bad limit, both cursors at once, or a cursor that names no listed model."""
        self._check_region(principal)
        if limit == 0:
            limit = DEFAULT_PAGE
        if not 1 <= limit <= MAX_PAGE:
            raise SluiceError.bad_request("limit", f"must be between 1 and {MAX_PAGE}")
        if before_id and after_id:
            raise SluiceError.bad_request("before_id", "give before_id or after_id, not both")
        now = self._clock()
        listed = [m for m in self.catalog.newest_first()
                  if self._usable(principal, m) and m.lifecycle(now) != "retired"]
        ids = [m.id for m in listed]
        if after_id:
            start = _cursor(ids, after_id, "after_id") + 1
            page = listed[start:start + limit]
            more = start + limit < len(listed)
        elif before_id:
            end = _cursor(ids, before_id, "before_id")
            page = listed[max(0, end - limit):end]
            more = end - limit > 0
        else:
            page, more = listed[:limit], len(listed) > limit
        return [model_info(m, now) for m in page], more

    def get_model(self, principal: principal_pb2.Principal, name: str) -> model_pb2.ModelInfo:
        """The model with this id or alias, retired ones included (they stay
        in the catalogue as the record of their retirement). Raises
        SluiceError(NOT_FOUND, "model: <name>") for a model the tenant may
        not use in its region, as for one that does not exist."""
        self._check_region(principal)
        model = self.catalog.lookup(name)
        if model is None or not self._usable(principal, model):
            raise SluiceError(Reason.MODEL_NOT_FOUND, f"model: {name}", metadata={"model": name})
        return model_info(model, self._clock())


def _cursor(ids: list[str], cursor: str, field: str) -> int:
    try:
        return ids.index(cursor)
    except ValueError:
        raise SluiceError.bad_request(field, f"{cursor!r} is not a model in this list") from None


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _rfc3339(day: date) -> str:
    return _midnight(day).strftime("%Y-%m-%dT%H:%M:%SZ")


def _supported(flag: bool) -> dict[str, bool]:
    return {"supported": flag}


def model_object(model: ModelEntry, now: datetime) -> dict:
    """The model as the Models API's object (anthropic SDK `ModelInfo`):
    id, type, display_name, created_at, lifecycle with deprecated_at and
    retires_at, max_input_tokens, max_tokens, line, capabilities."""
    lifecycle = model.lifecycle(now)
    accepts = model.accepts
    thinking = set(accepts.thinking)
    effort_levels = set(accepts.effort)
    return {
        "id": model.id,
        "type": "model",
        "display_name": model.display_name,
        "created_at": _rfc3339(model.created_at),
        "lifecycle": lifecycle,
        "deprecated_at": _rfc3339(model.deprecated_at) if model.deprecated_at and lifecycle != "active" else None,
        "retires_at": _rfc3339(model.retires_at) if model.retires_at and lifecycle != "active" else None,
        "max_input_tokens": model.context_window,
        "max_tokens": model.max_output_tokens,
        "line": model.line,
        "capabilities": {
            "batch": _supported(True),
            "citations": _supported(accepts.citations),
            "code_execution": _supported("code_execution" in accepts.server_tools),
            "context_management": _supported(False),
            "effort": {"supported": bool(effort_levels),
                       **{level: _supported(level in effort_levels)
                          for level in ("low", "medium", "high", "max", "xhigh")}},
            "image_input": _supported(accepts.image_input),
            "pdf_input": _supported(accepts.pdf_input),
            "server_tools": {"supported": bool(accepts.server_tools),
                             "code_execution": _supported("code_execution" in accepts.server_tools),
                             "web_search": _supported("web_search" in accepts.server_tools)},
            "structured_outputs": _supported(True),
            "thinking": {"supported": bool(thinking - {"disabled"}),
                         "types": {t: _supported(t in thinking)
                                   for t in ("adaptive", "between_tools", "disabled", "enabled")}},
        },
    }


def model_info(model: ModelEntry, now: datetime) -> model_pb2.ModelInfo:
    """The typed ModelInfo, with `json` the Models API object."""
    obj = model_object(model, now)
    info = model_pb2.ModelInfo(
        id=model.id, display_name=model.display_name, lifecycle=obj["lifecycle"],
        max_input_tokens=model.context_window, max_tokens=model.max_output_tokens, line=model.line or "",
        aliases=model.aliases, json=jsontext.dumps(obj).encode("utf-8"),
    )
    info.created_at.FromDatetime(_midnight(model.created_at))
    if obj["deprecated_at"]:
        info.deprecated_at.FromDatetime(_midnight(model.deprecated_at))  # type: ignore[arg-type]
    if obj["retires_at"]:
        info.retires_at.FromDatetime(_midnight(model.retires_at))  # type: ignore[arg-type]
    return info


def _candidate(model: ModelEntry, region: str) -> candidate_pb2.Candidate:
    p = model.prices
    return candidate_pb2.Candidate(
        model_id=model.id,
        provider=model.provider,
        upstream_model=model.upstream_name,
        region=region,
        prices=candidate_pb2.Prices(
            input=p.input, output=p.output, cache_write_5m=p.cache_write_5m,
            cache_write_1h=p.cache_write_1h, cache_read=p.cache_read, server_tool_use=p.server_tool_use,
        ),
        context_window=model.context_window,
        max_output_tokens=model.max_output_tokens,
    )

