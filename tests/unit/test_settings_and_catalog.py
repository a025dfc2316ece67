from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sluice.catalog import CatalogError, load_catalog
from sluice.config import ConfigError, load


def test_defaults_are_valid():
    settings = load(None)
    assert settings.services["gateway"].grpc == "127.0.0.1:50051"


def test_every_bad_key_is_named_at_once(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("gateway:\n  http_listen: nowhere\n  colour: blue\nauth:\n  redis_url: mysql://x\n"
                    "services:\n  billing: {grpc: '127.0.0.1:1'}\n")
    with pytest.raises(ConfigError) as err:
        load(path)
    text = str(err.value)
    for key in ("gateway.http_listen", "gateway.colour", "auth.redis_url", "services"):
        assert key in text, text


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    path = tmp_path / "c.yaml"
    path.write_text("auth:\n  redis_url: memory://\n")
    monkeypatch.setenv("SLUICE_AUTH__REDIS_URL", "redis://10.1.2.3:6379/1")
    assert load(path).auth.redis_url == "redis://10.1.2.3:6379/1"


def test_unreadable_and_non_mapping_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load(path)


def test_the_catalog_lists_every_model_the_pinned_sdk_knows_with_its_lifecycle():
    """Bumping the anthropic SDK fails here until the catalog knows its new
    models (and their deprecation dates)."""
    import typing

    from anthropic._data.deprecated_models import DEPRECATED_MODELS
    from anthropic.types import model_param

    catalog = load_catalog()
    known = set(typing.get_args(typing.get_args(model_param.ModelParam)[0]))
    named = {name for m in catalog.models for name in (m.id, *m.aliases)}
    assert known == named, f"SDK models missing from the catalog: {sorted(known - named)}; " \
                           f"catalog names the SDK does not know: {sorted(named - known)}"
    for name in DEPRECATED_MODELS:  # the SDK warns about these: the catalog dates them
        model = catalog.lookup(name)
        assert model is not None and model.deprecated_at and model.retires_at, name
    for model in catalog.models:
        p = model.prices
        assert p.cache_write_5m == pytest.approx(p.input * 1.25), model.id
        assert p.cache_write_1h == pytest.approx(p.input * 2), model.id
        assert p.cache_read <= p.input * 0.1 + 1e-9, model.id
        assert model.max_output_tokens <= model.context_window
    assert catalog.lookup("claude-haiku-4-5-20251001").id == "claude-haiku-4-5"
    at = datetime(2026, 11, 29, tzinfo=UTC)
    assert catalog.lookup("claude-mythos-preview").lifecycle(at) == "retired"
    assert catalog.lookup("claude-sonnet-4-5").lifecycle(at) == "deprecated"
    assert catalog.lookup("claude-sonnet-4-5").lifecycle(datetime(2026, 11, 30, tzinfo=UTC)) == "retired"
    assert catalog.lookup("claude-opus-4-8").lifecycle(at) == "active"


def test_catalog_errors_name_model_and_field(tmp_path):
    path = tmp_path / "cat.yaml"
    path.write_text("version: '1'\nmodels:\n  - id: m1\n    display_name: M\n    created_at: 2026-01-01\n"
                    "    context_window: -5\n    max_output_tokens: 1\n"
                    "    min_cacheable_tokens: 1\n    tiers: [a]\n    regions: [r]\n"
                    "    prices: {input: 1, output: 1, cache_write_5m: 1, cache_write_1h: 1, cache_read: 1}\n")
    with pytest.raises(CatalogError) as err:
        load_catalog(path)
    assert "model 'm1' field context_window" in str(err.value)


def test_catalog_rejects_duplicate_names(tmp_path):
    entry = ("  - id: {id}\n    display_name: M\n    created_at: 2026-01-01\n    aliases: [{alias}]\n"
             "    context_window: 5\n    max_output_tokens: 1\n"
             "    min_cacheable_tokens: 1\n    tiers: [a]\n    regions: [r]\n"
             "    prices: {{input: 1, output: 1, cache_write_5m: 1, cache_write_1h: 1, cache_read: 1}}\n")
    path = tmp_path / "cat.yaml"
    path.write_text("version: '1'\nmodels:\n" + entry.format(id="a", alias="x") + entry.format(id="b", alias="x"))
    with pytest.raises(CatalogError, match="'x'"):
        load_catalog(path)


def test_env_override_of_one_nested_key_keeps_its_siblings(monkeypatch):
    # Mesh deployments bind 0.0.0.0 through the environment while the shared
    # file keeps every other service's DNS address and metrics port.
    monkeypatch.setenv("SLUICE_SERVICES__AUTH__GRPC", "0.0.0.0:50052")
    settings = load("deploy/config/mesh.yaml")
    assert settings.services["auth"].grpc == "0.0.0.0:50052"
    assert settings.services["auth"].metrics == "0.0.0.0:9464"
    assert settings.services["safety"].grpc == "safety:50053"


def test_tenants_file_replaces_inline_tenants_and_its_errors_name_the_file_and_field(tmp_path):
    good = tmp_path / "tenants.yaml"
    good.write_text("version: 1\nrevision: 3\ntenants:\n  acme: {tier: free, region: eu-west-1}\n")
    auth = load(overrides={"auth": {"tenants_file": str(good)}}).auth
    assert set(auth.tenants) == {"acme"} and auth.tenants_revision == 3

    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\nrevision: 1\ntenants:\n  Acme!: {tier: free}\n")
    with pytest.raises(ConfigError) as err:
        load(overrides={"auth": {"tenants_file": str(bad)}})
    text = str(err.value)
    assert f"tenants file {bad}" in text and "version" in text and "Acme!" in text
    with pytest.raises(ConfigError, match="cannot read tenants file"):
        load(overrides={"auth": {"tenants_file": str(tmp_path / "missing.yaml")}})


@pytest.mark.parametrize(("url", "problem"), [
    ("redis+cluster://", "names no host:port"),
    ("redis+cluster://,,", "names no host:port"),
    ("redis+cluster://h:notaport", "is not host:port"),
    ("redis+cluster://h:99999", "is not host:port"),
    ("redis+cluster://n1:6379/5", "takes no database"),
    ("redis+sentinel://127.0.0.1:1", "must name the primary"),
    ("redis+sentinel://127.0.0.1:1/mymaster/abc", "must be a number"),
    ("redis://h:notaport", "is not host:port"),
    ("redis://a:1,b:2/0", "is one server"),
    ("http://x", "must start with"),
])
def test_a_redis_url_sluice_cannot_use_is_refused_at_load_naming_the_problem(url, problem):
    with pytest.raises(ConfigError) as err:
        load(overrides={"auth": {"redis_url": url}})
    assert "auth.redis_url" in str(err.value) and problem in str(err.value)
    with pytest.raises(ConfigError):
        load(overrides={"cache": {"redis_url": url}})


def test_redis_urls_of_every_deployment_are_read():
    from sluice.config.base import parse_redis_url

    sentinel = parse_redis_url("rediss+sentinel://u:p%40ss@s1:26379,[::1]:26380/mymaster/2")
    assert (sentinel.nodes, sentinel.primary, sentinel.db, sentinel.password) == (
        (("s1", 26379), ("::1", 26380)), "mymaster", 2, "p@ss")
    assert parse_redis_url("redis+cluster://a:7000,b:7001").nodes == (("a", 7000), ("b", 7001))
    assert parse_redis_url("redis://h:6379/3?socket_timeout=1").db == 3
    with pytest.raises(ValueError) as err:
        parse_redis_url("redis://:secret@h:x/0")
    assert "secret" not in str(err.value)
