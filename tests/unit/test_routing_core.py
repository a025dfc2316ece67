from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from sluice.auth.v1.principal_pb2 import Principal
from sluice.catalog import load_catalog
from sluice.catalog.deployments import load_deployments
from sluice.routing.core import Router
from sluice.rpc.errors import Reason, SluiceError


def _router(region: str = "local", **kw) -> Router:
    catalog = load_catalog()
    return Router(catalog, load_deployments(catalog), region, "claude-sonnet-4-6", **kw)


@pytest.fixture(scope="module")
def router():
    return _router()


def p(**kw):
    base = dict(tenant_id="t", tier="standard", region="local")
    base.update(kw)
    return Principal(**base)


def test_requested_model_by_alias_gives_catalog_id_and_prices(router):
    candidates, model, _ = router.route(p(), "claude-haiku-4-5-20251001")
    c = candidates[0]
    assert (c.model_id, c.upstream_model, c.provider, c.region, c.deployment, c.reason) == (
        "claude-haiku-4-5", "claude-haiku-4-5", "anthropic", "", "anthropic-global", "requested")
    assert (c.prices.input, c.prices.output, c.prices.cache_read) == (1.0, 5.0, 0.1)
    assert dict(c.prices.server_tool_use) == {"web_search_requests": 0.01, "web_fetch_requests": 0.0}
    assert (c.context_window, c.max_output_tokens, model.id) == (200_000, 64_000, "claude-haiku-4-5")


def test_default_model_order(router):
    assert router.route(p(), "")[0][0].model_id == "claude-sonnet-4-6"
    assert router.route(p(default_model="claude-opus-4-7"), "")[0][0].model_id == "claude-opus-4-7"


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
    router = _router("eu-west-1")
    with pytest.raises(SluiceError) as err:
        router.route(p(region="eu-west-1", tier="enterprise"), "claude-fable-5")
    assert err.value.reason is Reason.MODEL_NOT_ALLOWED and "eu-west-1" in err.value.message


def _at(day: str) -> Router:
    return _router(clock=lambda: datetime.fromisoformat(day).replace(tzinfo=UTC))


def test_max_tokens_above_the_models_output_is_the_apis_400(router):
    router.route(p(), "claude-haiku-4-5", max_tokens=64_000)
    with pytest.raises(SluiceError) as err:
        router.route(p(), "claude-haiku-4-5-20251001", max_tokens=64_001)
    assert err.value.mapping.http_status == 400 and err.value.field_violations[0].field == "max_tokens"
    assert err.value.message == ("max_tokens: 64001 > 64000, which is the maximum allowed number of output tokens "
                                 "for claude-haiku-4-5")
    router.route(p(), "claude-haiku-4-5", max_tokens=10**9, count_tokens=True)  # count_tokens: no max_tokens


def test_lifecycle_follows_the_dates_retired_is_a_404_naming_the_day():
    before, during, after = _at("2026-06-01"), _at("2026-11-29"), _at("2026-11-30")
    assert before.info(before.route(p(), "claude-sonnet-4-5")[1]).lifecycle == "active"
    assert during.info(during.route(p(), "claude-sonnet-4-5")[1]).lifecycle == "deprecated"
    with pytest.raises(SluiceError) as err:
        after.route(p(), "claude-sonnet-4-5-20250929")
    assert err.value.reason is Reason.MODEL_RETIRED and err.value.mapping.http_status == 404
    assert err.value.message.startswith("model: claude-sonnet-4-5-20250929") and "2026-11-30" in err.value.message
    with pytest.raises(SluiceError):
        during.route(p(tier="enterprise"), "claude-mythos-preview")


def test_models_are_listed_newest_first_in_pages_with_cursors():
    router = _at("2026-11-29")  # lifecycles change with the date: a fixed one
    enterprise = p(tier="enterprise")
    everything, more = router.list_models(enterprise, limit=1000)
    ids = [m.id for m in everything]
    assert not more and "claude-mythos-preview" not in ids  # retired
    created = [m.created_at.seconds for m in everything]
    assert created == sorted(created, reverse=True)
    first, more = router.list_models(enterprise, limit=3)
    assert [m.id for m in first] == ids[:3] and more
    second, _ = router.list_models(enterprise, limit=3, after_id=first[-1].id)
    assert [m.id for m in second] == ids[3:6]
    back, more_back = router.list_models(enterprise, limit=3, before_id=second[0].id)
    assert [m.id for m in back] == ids[:3] and not more_back
    retired_too = [m.id for m in router.list_models(enterprise, limit=1000, lifecycle=("retired",))[0]]
    assert retired_too == ["claude-mythos-preview"]
    free_ids = [m.id for m in router.list_models(p(tier="free"), limit=1000)[0]]
    assert "claude-opus-4-7" not in free_ids and "claude-haiku-4-5" in free_ids


@pytest.mark.parametrize("kwargs,field", [({"limit": 1001}, "limit"), ({"limit": -1}, "limit"),
                                          ({"lifecycle": ("gone",)}, "lifecycle"),
                                          ({"after_id": "nope"}, "after_id"),
                                          ({"after_id": "a", "before_id": "b"}, "before_id")])
def test_bad_pages_are_400s_naming_the_field(router, kwargs, field):
    with pytest.raises(SluiceError) as err:
        router.list_models(p(), **kwargs)
    assert err.value.field_violations[0].field == field


def test_a_model_by_alias_in_the_apis_shape_and_404_for_what_the_tenant_cannot_use(router):
    info = router.get_model(p(), "claude-haiku-4-5-20251001")
    obj = json.loads(info.json)
    assert obj["id"] == "claude-haiku-4-5" and obj["type"] == "model" and obj["display_name"] == "Claude Haiku 4.5"
    assert obj["created_at"] == "2025-10-15T00:00:00Z" and obj["max_input_tokens"] == 200_000
    assert obj["capabilities"]["thinking"]["types"]["enabled"] == {"supported": True}
    with pytest.raises(SluiceError) as err:
        router.get_model(p(tier="free"), "claude-opus-4-7")
    assert err.value.reason is Reason.MODEL_NOT_FOUND and err.value.message == "model: claude-opus-4-7"
    retired = json.loads(router.get_model(p(tier="enterprise"), "claude-mythos-preview").json)
    assert retired["lifecycle"] == "retired" and retired["retires_at"] == "2026-06-30T00:00:00Z"


def test_an_eu_tenant_gets_only_eu_deployments_then_its_fallbacks_there():
    router = _router("eu-west-1", max_candidates=10)
    candidates, _, _ = router.route(p(region="eu-west-1"), "claude-opus-4-6")
    assert [(c.model_id, c.deployment, c.reason) for c in candidates] == [
        ("claude-opus-4-6", "vertex-europe-west1", "requested"),
        ("claude-opus-4-6", "bedrock-eu-west-1", "requested"),
        ("claude-sonnet-4-6", "vertex-europe-west1", "fallback"),
        ("claude-sonnet-4-6", "vertex-eu", "fallback"),
        ("claude-sonnet-4-6", "bedrock-eu-west-1", "fallback"),
        ("claude-haiku-4-5", "vertex-europe-west1", "fallback"),
        ("claude-haiku-4-5", "vertex-eu", "fallback"),
        ("claude-haiku-4-5", "bedrock-eu-west-1", "fallback"),
    ]
    assert {c.geo for c in candidates} == {"eu"} and router.allowed_geos == ("eu",)
    bedrock = candidates[1]
    assert (bedrock.provider, bedrock.region, bedrock.upstream_model) == (
        "bedrock", "eu-west-1", "eu.anthropic.claude-opus-4-6-v1:0")
    # Regional endpoints bill 1.1x the list price.
    assert bedrock.prices.input == pytest.approx(5.0 * 1.1)


def test_a_us_tenant_on_the_anthropic_api_runs_with_inference_geo_us():
    candidates, _, _ = _router("us-east-1").route(p(region="us-east-1"), "claude-opus-4-6")
    assert candidates[0].deployment == "anthropic-us" and candidates[0].inference_geo == "us"
    # A model that cannot take inference_geo is not served by the US API deployment.
    haiku, _, _ = _router("us-east-1").route(p(region="us-east-1"), "claude-haiku-4-5")
    assert "anthropic-us" not in {c.deployment for c in haiku} and {c.geo for c in haiku} == {"us"}


def test_a_model_with_no_deployment_in_the_region_is_refused_not_served_elsewhere():
    with pytest.raises(SluiceError) as err:
        _router("eu-west-1").route(p(region="eu-west-1", tier="enterprise"), "claude-mythos-5-2")
    assert err.value.reason is Reason.MODEL_NOT_ALLOWED


def test_fallbacks_skip_models_the_tenant_may_not_use_and_the_list_is_capped():
    candidates, _, _ = _router(max_candidates=3).route(p(allowed_models=["claude-opus-4-6", "claude-haiku-4-5"]),
                                                    "claude-opus-4-6")
    assert len(candidates) == 3 and "claude-sonnet-4-6" not in {c.model_id for c in candidates}
    everything, _, _ = _router(max_candidates=64).route(p(allowed_models=["claude-opus-4-6", "claude-haiku-4-5"]),
                                                     "claude-opus-4-6")
    assert [c.model_id for c in everything][-1] == "claude-haiku-4-5"
