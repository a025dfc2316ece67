"""Chooses the model endpoints that may serve a request.

For now the choice is the requested model (or the tenant's, or the
deployment's, default), checked against the catalog, the tenant's allowed
models and tier, and residency. Ranking across several candidates comes later.
"""

from __future__ import annotations

from sluice.auth.v1 import principal_pb2
from sluice.catalog import Catalog, ModelEntry
from sluice.routing.v1 import candidate_pb2
from sluice.rpc.errors import Reason, SluiceError


class Router:
    def __init__(self, catalog: Catalog, region: str, default_model: str) -> None:
        if catalog.lookup(default_model) is None:
            raise ValueError(f"routing.default_model {default_model!r} is not in catalog {catalog.version}")
        self.catalog = catalog
        self._region = region
        self._default_model = default_model

    def route(self, principal: principal_pb2.Principal, requested: str) -> list[candidate_pb2.Candidate]:
        if principal.region != self._region:
            raise SluiceError(
                Reason.WRONG_REGION,
                f"tenant {principal.tenant_id} belongs to region {principal.region}; "
                f"this deployment serves {self._region}",
            )
        name = requested or principal.default_model or self._default_model
        model = self.catalog.lookup(name)
        if model is None:
            raise SluiceError(Reason.MODEL_NOT_FOUND, f"model: {name}", metadata={"model": name})
        self._check_allowed(principal, model)
        return [_candidate(model, principal.region)]

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


def _candidate(model: ModelEntry, region: str) -> candidate_pb2.Candidate:
    p = model.prices
    return candidate_pb2.Candidate(
        model_id=model.id,
        provider=model.provider,
        upstream_model=model.upstream_name,
        region=region,
        prices=candidate_pb2.Prices(
            input=p.input, output=p.output, cache_write_5m=p.cache_write_5m,
            cache_write_1h=p.cache_write_1h, cache_read=p.cache_read,
        ),
    )
