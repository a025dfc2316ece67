"""The deployments file: strict loading against the catalog, and residency."""

from __future__ import annotations

import pytest

from sluice.catalog import CatalogError, load_catalog
from sluice.catalog.deployments import load_deployments


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def _load(catalog, tmp_path, text: str):
    path = tmp_path / "deployments.yaml"
    path.write_text(text)
    return load_deployments(catalog, path)


def test_the_shipped_file_keeps_every_region_inside_its_geographies(catalog):
    deployments = load_deployments(catalog)
    for region, geos in deployments.residency.items():
        for model in catalog.models:
            assert all(s.deployment.geo in geos for s in deployments.serving(model, region)), (region, model.id)
    # The US API deployment serves only the models that take inference_geo "us".
    us = {m.id for m in catalog.models if any(s.deployment_id == "anthropic-us"
                                              for s in deployments.serving(m, "us-east-1"))}
    assert us == {m.id for m in catalog.models if "us" in m.accepts.inference_geo}


def test_a_region_the_file_does_not_name_has_no_deployment(catalog):
    deployments = load_deployments(catalog)
    assert deployments.allowed_geos("sa-east-1") == ()
    assert deployments.serving(catalog.lookup("claude-sonnet-4-6"), "sa-east-1") == ()


@pytest.mark.parametrize("text,problem", [
    ("version: x\nresidency: {local: [eu]}\ndeployments:\n  v: {provider: vertex, geo: eu}\n",
     "deployments.v: Value error, a vertex deployment needs region"),
    ("version: x\nresidency: {local: [eu]}\ndeployments:\n  b: {provider: bedrock, region: r, geo: eu, "
     "inference_geo: us}\n", "inference_geo is a field of the Anthropic API only"),
    ("version: x\nresidency: {local: [global]}\ndeployments:\n  a: {provider: anthropic, geo: global, "
     "models: [claude-x]}\n", "deployments.a.models: 'claude-x' is not in catalog"),
    ("version: x\nresidency: {local: [us]}\ndeployments:\n  a: {provider: anthropic, geo: global}\n",
     "residency.local: no deployment runs in ['us']"),
    ("version: x\nresidency: {local: [global]}\nfallbacks: {claude-sonnet-4-6: [claude-y]}\n"
     "deployments:\n  a: {provider: anthropic, geo: global}\n", "fallbacks.claude-sonnet-4-6: 'claude-y'"),
    ("version: x\nresidency: {local: [eu]}\ndeployments:\n  a: {provider: openai, geo: eu}\n",
     "deployments.a.provider"),
    ("version: x\nresidency: {local: [global]}\ndeployments:\n  a: {provider: anthropic, geo: global, "
     "api_key: sk-1}\n", "deployments.a.api_key: Extra inputs are not permitted"),
    # The global API labelled as EU would let EU tenants' prompts leave the EU.
    ("version: x\nresidency: {local: [eu]}\ndeployments:\n  a: {provider: anthropic, geo: eu}\n",
     "an Anthropic API deployment runs in 'global' (its inference_geo), not 'eu'"),
    ("version: x\nresidency: {local: [eu]}\ndeployments:\n  b: {provider: bedrock, region: r, geo: eu, "
     "model_id_format: '{model}@{version}'}\n", "must be a template whose only field is {model}"),
    ("version: x\nresidency: {local: [eu]}\ndeployments:\n  b: {provider: bedrock, region: r, geo: eu, "
     "models: []}\n", "deployments.b.models"),
    ("version: x\nresidency: {local: [eu]}\ndeployments:\n  b: {provider: bedrock, region: r, geo: eu, "
     "credentials: {project_id: p}}\n", "credentials project_id do not apply to bedrock"),
    ("version: x\nresidency: {local: [eu]}\ndeployments:\n  'a/b c': {provider: bedrock, region: r, geo: eu}\n",
     "deployments.a/b c.[key]"),
    ("version: x\nresidency: {local: [eu]}\nfallbacks: {claude-sonnet-4-6: [claude-sonnet-4-6]}\n"
     "deployments:\n  b: {provider: bedrock, region: r, geo: eu}\n", "names the model itself"),
])
def test_problems_are_named_by_deployment_and_field(catalog, tmp_path, text, problem):
    with pytest.raises(CatalogError) as err:
        _load(catalog, tmp_path, text)
    assert problem in str(err.value)


def _check_config(monkeypatch, **env: str) -> tuple[int, str]:
    import io

    from sluice.runtime.cli import main

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out, err = io.StringIO(), io.StringIO()
    return main(["check-config"], out, err), out.getvalue() + err.getvalue()


def test_check_config_loads_the_catalog_and_deployments_and_checks_them_against_the_settings(monkeypatch):
    code, text = _check_config(monkeypatch)
    assert code == 0 and "deployments 2026-" in text
    code, text = _check_config(monkeypatch, SLUICE_REGION="sa-east-1",
                               SLUICE_INFERENCE__ENDPOINTS='{"vertex-mars": {"base_url": "http://x"}}')
    assert code == 2
    assert "region: 'sa-east-1' has no residency entry" in text
    assert "inference.endpoints.vertex-mars: no such deployment" in text


@pytest.mark.parametrize("overrides,problem", [
    ({"gateway": {"shed_thresholds": {0: 1.0, 1: 0.9}}}, "gateway.shed_thresholds: Value error, per-class values need exactly the classes 0, 1, 2, 3"),
    ({"inference": {"resilience": {"concurrency_shares": {0: 0.5, 1: 0.9, 2: 0.5, 3: 0.1}}}},
     "class 1: 0.9 is more than class 0's 0.5"),
    ({"inference": {"resilience": {"concurrency_shares": {0: 1.0, 1: -0.1, 2: 0.5, 3: 0.1}}}},
     "class 1: must be in (0, 1]"),
    ({"inference": {"resilience": {"breaker_open_seconds": 10, "breaker_max_open_seconds": 5}}},
     "breaker_max_open_seconds is less than breaker_open_seconds"),
    ({"inference": {"resilience": {"hedge_percentile": 1.5}}}, "inference.resilience.hedge_percentile"),
])
def test_resilience_and_shedding_settings_are_checked_before_start(overrides, problem):
    from sluice.config.base import ConfigError
    from sluice.config.settings import load

    with pytest.raises(ConfigError) as err:
        load(overrides=overrides)
    assert problem in str(err.value)


def test_a_key_written_twice_is_refused_not_silently_replaced(catalog, tmp_path):
    text = ("version: x\nresidency: {local: [eu]}\ndeployments:\n"
            "  b: {provider: bedrock, region: eu-west-1, geo: eu}\n  b: {provider: bedrock, region: us-east-1, geo: eu}\n")
    with pytest.raises(CatalogError) as err:
        _load(catalog, tmp_path, text)
    assert "key 'b' is written twice" in str(err.value)
