from __future__ import annotations

import pytest

from sluice.auth.v1.principal_pb2 import Principal
from sluice.catalog import load_catalog
from sluice.routing.core import Router
from sluice.rpc.errors import Reason, SluiceError


@pytest.fixture(scope="module")
def router():
    return Router(load_catalog(), "local", "claude-sonnet-4-6")


def p(**kw):
    base = dict(tenant_id="t", tier="standard", region="local")
    base.update(kw)
    return Principal(**base)


def test_requested_model_by_alias_gives_catalog_id_and_prices(router):
    [c] = router.route(p(), "claude-haiku-4-5-20251001")
    assert (c.model_id, c.upstream_model, c.provider, c.region) == (
        "claude-haiku-4-5", "claude-haiku-4-5", "anthropic", "local")
    assert (c.prices.input, c.prices.output, c.prices.cache_read) == (1.0, 5.0, 0.1)


def test_default_model_order(router):
    assert router.route(p(), "")[0].model_id == "claude-sonnet-4-6"
    assert router.route(p(default_model="claude-opus-4-7"), "")[0].model_id == "claude-opus-4-7"


@pytest.mark.parametrize("principal,model,reason", [
    (p(), "claude-x", Reason.MODEL_NOT_FOUND),
    (p(allowed_models=["claude-haiku-4-5"]), "claude-sonnet-4-6", Reason.MODEL_NOT_ALLOWED),
    (p(tier="free"), "claude-opus-4-7", Reason.MODEL_NOT_ALLOWED),
    (p(region="us-east-1"), "claude-sonnet-4-6", Reason.WRONG_REGION),
])
def test_refusals(router, principal, model, reason):
    with pytest.raises(SluiceError) as err:
        router.route(principal, model)
    assert err.value.reason is reason


def test_model_outside_the_tenants_region_is_refused():
    router = Router(load_catalog(), "eu-west-1", "claude-sonnet-4-6")
    with pytest.raises(SluiceError) as err:
        router.route(p(region="eu-west-1", tier="enterprise"), "claude-fable-5")
    assert err.value.reason is Reason.MODEL_NOT_ALLOWED and "eu-west-1" in err.value.message
