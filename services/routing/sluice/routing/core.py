"""Chooses the deployments that may serve a request, and lists models.

The model is the requested one (or the tenant's, or the deployment's,
default), checked against the catalog, the model's lifecycle and limits,
the tenant's allowed models and tier. The candidates are that model's
deployments allowed in the tenant's home region (residency, from the
deployments file), then those of each model in its fallback chain that the
tenant may use and that can take the request, in the file's order, at most
`max_candidates`. Ranking by task, latency and cost comes with issue 15.

The Models API (GET /v1/models) answers from the same catalog, listing what
the tenant may use in its region, newest first, in the API's pages.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

from sluice.auth.v1 import principal_pb2
from sluice.catalog import Catalog, ModelEntry, models_api
from sluice.catalog.deployments import Deployments, Serving
from sluice.routing.v1 import candidate_pb2, model_pb2
from sluice.rpc.errors import Reason, SluiceError
from sluice.wire import jsontext



class Router:
    def __init__(self, catalog: Catalog, deployments: Deployments, region: str, default_model: str,
                 max_candidates: int = 6, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        if catalog.lookup(default_model) is None:
            raise ValueError(f"routing.default_model {default_model!r} is not in catalog {catalog.version}")
        if not deployments.allowed_geos(region):
            raise ValueError(f"region {region!r} has no residency entry in deployments {deployments.version}")
        self.catalog = catalog
        self.deployments = deployments
        self.allowed_geos = deployments.allowed_geos(region)
        self._max_candidates = max_candidates
        # Candidates per (model, reason): built once, they are on every request's path.
        self._candidates: dict[tuple[str, str], list[candidate_pb2.Candidate]] = {}
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
        candidates = list(self._of(model, "requested"))
        if not candidates:
            raise SluiceError(Reason.MODEL_NOT_ALLOWED, f"model {model.id} has no deployment where inference for "
                              f"region {self._region} may run ({', '.join(self.allowed_geos)})",
                              metadata={"model": model.id, "region": self._region})
        now = self._clock()
        for fallback_id in self.deployments.fallbacks(model.id):
            if len(candidates) >= self._max_candidates:
                break
            fallback = self.catalog.lookup(fallback_id)
            if (fallback is None or not self._usable(principal, fallback) or fallback.lifecycle(now) == "retired"
                    or (not count_tokens and max_tokens > fallback.max_output_tokens)):
                continue
            candidates += self._of(fallback, "fallback")
        return candidates[:self._max_candidates], model

    def _of(self, model: ModelEntry, reason: str) -> list[candidate_pb2.Candidate]:
        """The model's candidates in this region, for this reason (cached)."""
        key = (model.id, reason)
        found = self._candidates.get(key)
        if found is None:
            found = self._candidates[key] = [_candidate(model, serving, reason)
                                             for serving in self.deployments.serving(model, self._region)]
        return found

    def info(self, model: ModelEntry) -> model_pb2.ModelInfo:
        """What a route answer says of its model, built once per model and
        day (it is on every request's path; the lifecycle changes only with
        the date): model_info without the Models API object and aliases,
        which the gateway does not read there."""
        now = self._clock()
        key = (model.id, now.date())
        found = self._infos.get(key)
        if found is None:
            if len(self._infos) > 4 * len(self.catalog.models):
                self._infos.clear()
            found = self._infos[key] = model_info(model, now)
            found.ClearField("json")
            found.ClearField("aliases")
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

    def list_models(self, principal: principal_pb2.Principal, limit: int | None = None, before_id: str = "",
                    after_id: str = "", lifecycle: tuple[str, ...] = ()) -> tuple[list[model_pb2.ModelInfo], bool]:
        """One page of the models the tenant may use in its region, newest
        first (GET /v1/models): by default the active and deprecated ones,
        or those of the lifecycles asked for. Raises SluiceError(INVALID_REQUEST)
        naming the parameter for a bad limit, both cursors at once, a cursor
        that names no listed model, or an unknown lifecycle."""
        self._check_region(principal)
        now = self._clock()
        try:
            shown = models_api.lifecycles(lifecycle)
            listed = [m for m in self.catalog.newest_first()
                      if self._usable(principal, m) and m.lifecycle(now) in shown]
            chosen, more = models_api.page(listed, limit or None, after_id, before_id)  # 0: unset
        except models_api.PageError as err:
            raise SluiceError.bad_request(err.field, err.message) from None
        return [model_info(m, now) for m in chosen], more

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


def model_info(model: ModelEntry, now: datetime) -> model_pb2.ModelInfo:
    """The typed ModelInfo, with `json` the Models API object."""
    obj = models_api.model_object(model, now)
    info = model_pb2.ModelInfo(
        id=model.id, display_name=model.display_name, lifecycle=obj["lifecycle"],
        max_input_tokens=model.context_window, max_tokens=model.max_output_tokens, line=model.line or "",
        aliases=model.aliases, json=jsontext.dumps(obj).encode("utf-8"),
    )
    info.created_at.FromDatetime(models_api.midnight(model.created_at))
    if obj["deprecated_at"] and model.deprecated_at:
        info.deprecated_at.FromDatetime(models_api.midnight(model.deprecated_at))
    if obj["retires_at"] and model.retires_at:
        info.retires_at.FromDatetime(models_api.midnight(model.retires_at))
    return info


def _candidate(model: ModelEntry, serving: Serving, reason: str) -> candidate_pb2.Candidate:
    p, dep = model.prices, serving.deployment
    k = dep.price_multiplier
    return candidate_pb2.Candidate(
        model_id=model.id,
        provider=dep.provider,
        upstream_model=serving.provider_model,
        region=dep.region,
        prices=candidate_pb2.Prices(
            input=p.input * k, output=p.output * k, cache_write_5m=p.cache_write_5m * k,
            cache_write_1h=p.cache_write_1h * k, cache_read=p.cache_read * k,
            server_tool_use={name: price * k for name, price in p.server_tool_use.items()},
        ),
        context_window=model.context_window,
        max_output_tokens=model.max_output_tokens,
        deployment=serving.deployment_id,
        geo=dep.geo,
        inference_geo=dep.inference_geo,
        reason=reason,
        accepts_prefill=model.accepts.prefill,
    )

