"""The Helm chart (deploy/helm/sluice) and its region values (deploy/helm/regions/).

Every region renders in both run modes and passes the checks of `make check-deploy`
(tests/infra/check_deploy.py: kubeconform -strict, residency, secrets, Sluice's own settings
loader, Envoy's validator, the rules and dashboards); no EU region can name a US Kafka or Redis,
in its values, in its manifests, or past the chart's own checks.

The first run on a machine builds helm and kubeconform (tests/infra/go_tools.py, minutes) and
the Kubernetes schemas (tests/infra/k8s_schemas.py, seconds); later runs reuse them.
"""

from __future__ import annotations

import copy
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra import check_deploy as deploy
from tests.infra.check_deploy import DeployCheckError, Render

# A first run builds helm (about two minutes on two cores) under this test's timeout.
pytestmark = pytest.mark.timeout(1800)

REGION_FILES = deploy.region_files()
EU_FILES = [f for f in REGION_FILES if deploy.region_of(f).startswith("eu-")]
US_KAFKA = "kafka-0.kafka.us-east-1.svc.cluster.local:9092"
US_REDIS = "redis-quota.us-east-1.svc.cluster.local:6379"


@pytest.fixture(scope="session")
def tools() -> None:
    """helm, kubeconform and the schemas, built once per machine."""
    from tests.infra import go_tools, k8s_schemas

    go_tools.ensure("helm")
    go_tools.ensure("kubeconform")
    k8s_schemas.ensure()


@pytest.fixture(scope="session")
def renders(tools: None) -> dict[tuple[str, str], Render]:
    return {(f.stem, mode): deploy.render(f, mode) for f in REGION_FILES for mode in deploy.MODES}


def _values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def test_there_is_a_values_file_per_region() -> None:
    regions = {deploy.region_of(f): f for f in REGION_FILES}
    assert {"us-east-1", "eu-west-1"} <= set(regions)
    for region, path in regions.items():
        assert path.stem == region, f"{path.name} sets region {region}: name the file after it"


@pytest.mark.parametrize("values_file", REGION_FILES, ids=lambda f: f.stem)
def test_helm_lint_is_clean(tools: None, values_file: Path) -> None:
    assert deploy.lint(values_file) == []


@pytest.mark.parametrize("mode", deploy.MODES)
@pytest.mark.parametrize("values_file", REGION_FILES, ids=lambda f: f.stem)
def test_every_region_renders_and_passes_check_deploy(renders: dict, values_file: Path, mode: str) -> None:
    rendered = renders[(values_file.stem, mode)]
    kinds = {d["kind"] for d in rendered.docs}
    assert {"Deployment", "StatefulSet", "Service", "ConfigMap", "HorizontalPodAutoscaler",
            "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor", "PrometheusRule"} <= kinds
    assert "Secret" not in kinds
    assert deploy.check_render(rendered) == []


def test_check_deploy_runs_every_region_and_mode(tools: None) -> None:
    out = io.StringIO()
    assert deploy.check(out=out) == []
    assert len(out.getvalue().splitlines()) == len(REGION_FILES) * len(deploy.MODES)


# ------------------------------------------------------------------------------ residency


def test_there_is_an_eu_region() -> None:
    assert EU_FILES, "no values file for an eu-* region"


@pytest.mark.parametrize("values_file", EU_FILES, ids=lambda f: f.stem)
def test_eu_values_name_only_eu_kafka_and_redis(values_file: Path) -> None:
    values = _values(values_file)
    hosts = deploy.values_store_hosts(values)
    assert {what for what, _ in hosts} >= {"kafka.bootstrapServers", "redis.quota.address", "redis.cache.address"}
    for what, host in hosts:
        named = deploy.regions_named(host)
        assert named, f"{values_file.name} {what}: {host} names no region"
        assert all(r.startswith("eu-") for r in named), f"{values_file.name} {what}: {host} is outside the EU"
    for what, peer in deploy.values_store_peers(values):
        assert all(r.startswith("eu-") for r in deploy.regions_named(str(peer))), \
            f"{values_file.name} {what}: {peer} selects a non-EU region"
    assert deploy.residency_problems(values["region"], hosts, deploy.values_store_peers(values)) == []


@pytest.mark.parametrize("mode", deploy.MODES)
@pytest.mark.parametrize("values_file", EU_FILES, ids=lambda f: f.stem)
def test_eu_manifests_reach_only_eu_kafka_and_redis(renders: dict, values_file: Path, mode: str) -> None:
    rendered = renders[(values_file.stem, mode)]
    hosts = deploy.manifest_store_hosts(rendered)
    kafka = [host for what, host in hosts if "kafka_bootstrap" in what]
    redis = [host for what, host in hosts if "redis_url" in what]
    assert kafka and redis, "the manifests name no Kafka or Redis"
    for what, host in hosts:
        named = deploy.regions_named(host)
        assert named and all(r.startswith("eu-") for r in named), f"{what}: {host} is outside the EU"
    for what, peer in deploy.manifest_egress_peers(rendered):
        assert all(r.startswith("eu-") for r in deploy.regions_named(str(peer))), f"{what}: {peer}"
    # The sink's egress: DNS, and this region's Kafka brokers on their ports, nothing else.
    sink_policy = next(p for p in rendered.objects("NetworkPolicy") if p["metadata"]["name"].endswith("-sinks"))
    beyond_dns = [rule for rule in sink_policy["spec"]["egress"] if {p["port"] for p in rule["ports"]} != {53}]
    kafka_values = _values(values_file)["kafka"]
    assert [rule["to"] for rule in beyond_dns] == [kafka_values["networkPolicyPeers"]]
    assert [p["port"] for p in beyond_dns[0]["ports"]] == kafka_values["ports"]


def _us_endpoints() -> Iterator[tuple[str, dict[str, Any]]]:
    yield "kafka bootstrap server", {"kafka": {"bootstrapServers": [US_KAFKA]}}
    yield "one of several kafka servers", {"kafka": {"bootstrapServers": [
        "kafka-0.kafka.eu-west-1.svc.cluster.local:9092", US_KAFKA]}}
    yield "quota redis", {"redis": {"quota": {"address": US_REDIS}}}
    yield "cache redis", {"redis": {"cache": {"address": "redis-cache.us-east-1.svc.cluster.local:6379"}}}
    yield "kafka network peers", {"kafka": {"networkPolicyPeers": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "us-east-1"}}}]}}
    yield "redis network peers", {"redis": {"quota": {"networkPolicyPeers": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "us-east-1"}}}]}}}
    yield "host naming no region", {"kafka": {"bootstrapServers": ["kafka.internal:9092"]}}
    yield "settings around the values", {"config": {"events": {"kafka_bootstrap": US_KAFKA}}}
    yield "redis settings around the values", {"config": {"auth": {"redis_url": f"redis://{US_REDIS}/0"}}}


@pytest.mark.parametrize("overrides", [o for _, o in _us_endpoints()], ids=[n for n, _ in _us_endpoints()])
@pytest.mark.parametrize("values_file", EU_FILES, ids=lambda f: f.stem)
def test_the_chart_refuses_a_us_endpoint_in_an_eu_region(tools: None, values_file: Path,
                                                        overrides: dict[str, Any]) -> None:
    with pytest.raises(DeployCheckError) as refused:
        deploy.render(values_file, None, overrides)
    message = str(refused.value)
    assert "residency" in message or "cannot be set here" in message, message


def test_the_chart_refuses_a_tenant_of_another_region(tools: None) -> None:
    eu = next(iter(EU_FILES))
    with pytest.raises(DeployCheckError, match="tenants.hooli: region is \"us-east-1\""):
        deploy.render(eu, None, {"tenants": {"hooli": {"tier": "standard", "region": "us-east-1"}}})


def test_an_eu_region_renders_with_eu_endpoints_of_its_own(tools: None) -> None:
    """The refusals above are about the US endpoints, not about overriding at all."""
    eu = next(iter(EU_FILES))
    region = deploy.region_of(eu)
    rendered = deploy.render(eu, "mesh", {"kafka": {"bootstrapServers": [f"broker-1.events.{region}.example.internal:9093"]}})
    assert f"broker-1.events.{region}.example.internal" in {h for _, h in deploy.manifest_store_hosts(rendered)}


# -------------------------------------------------------------------------- other refusals


@pytest.mark.parametrize("overrides, message", [
    ({"region": ""}, "region is required"),
    ({"mode": "both"}, "/mode': value must be one of 'all', 'mesh'"),
    ({"components": {"gatewya": {"replicas": 2}}}, "additional properties 'gatewya' not allowed"),
    ({"secrets": {"keyPepper": {"name": ""}}}, "secrets.keyPepper.name is required"),
    ({"config": {"auth": {"key_pepper": "inline"}}}, "config.auth.key_pepper cannot be set here"),
    ({"redis": {"quota": {"address": ""}}}, "redis.quota.address is required"),
], ids=["no region", "bad mode", "typo", "no pepper", "inline pepper", "no redis"])
def test_the_chart_refuses_incomplete_values(tools: None, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(DeployCheckError, match=re.escape(message)):
        deploy.render(REGION_FILES[0], None, overrides)


# ---------------------------------------------------------------------------------- secrets


# Keys whose value would be a credential (key_pepper, admin_tokens, password, apiKey, ...).
_SECRET_KEY = re.compile(r"(password|passwd|pepper|secret|credentials?|api_?key|access_?key|admin_?tokens?|"
                         r"bearer|private_?key|seed_?keys)$", re.IGNORECASE)


def _inline_secrets(node: Any, path: str = "") -> Iterator[str]:
    """Paths of literal values under credential keys (a {name, key} Secret reference is a mapping)."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}" if path else str(key)
            literal = isinstance(value, (str, int, float, list)) and value not in ("", [])
            if _SECRET_KEY.search(str(key)) and literal:
                yield here
            yield from _inline_secrets(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _inline_secrets(value, f"{path}[{i}]")


@pytest.mark.parametrize("values_file", [*REGION_FILES, deploy.CHART / "values.yaml"],
                         ids=lambda f: f"{f.parent.name}/{f.name}")
def test_values_reference_secrets_and_never_inline_them(values_file: Path) -> None:
    assert list(_inline_secrets(_values(values_file))) == []


def test_the_inline_secret_scan_sees_one() -> None:
    values = {"config": {"auth": {"key_pepper": "p", "admin_tokens": ["t"]}}, "upstreams": {"anthropic": {
        "apiKeySecret": {"name": "s", "key": "k"}, "apiKey": "sk-ant"}}, "tenants": {"a": {"limits": {
            "tenant": {"tokens_per_minute": 10}}}}}
    assert sorted(_inline_secrets(values)) == ["config.auth.admin_tokens", "config.auth.key_pepper",
                                                "upstreams.anthropic.apiKey"]


def test_the_secret_check_sees_an_inline_credential(renders: dict) -> None:
    rendered = copy.deepcopy(next(iter(renders.values())))
    workload = next(d for d in rendered.docs if d["kind"] in ("Deployment", "StatefulSet")
                    and d["metadata"]["labels"]["app.kubernetes.io/component"] != "envoy")
    workload["spec"]["template"]["spec"]["containers"][0].setdefault("env", []).extend([
        {"name": "ANTHROPIC_API_KEY", "value": "sk-ant-inline"},
        {"name": "SLUICE_AUTH__REDIS_URL", "value": "redis://:hunter2@redis-quota.eu-west-1.svc:6379/0"},
    ])
    problems = deploy.secret_problems(rendered)
    assert any("ANTHROPIC_API_KEY" in p for p in problems) and any("password inline" in p for p in problems)


# --------------------------------------------------------------- the checks themselves bite


def test_kubeconform_schemas_are_strict(tools: None) -> None:
    """A typo'd field, a wrong type or an unknown kind fails: the schemas are not permissive."""
    bad = yaml.safe_dump_all([
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
         "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
             "metadata": {"labels": {"a": "b"}},
             "spec": {"containers": [{"name": "c", "image": "i", "readinessprobe": {}}]}}}},
        {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "x"},
         "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "maxReplicas": "three"}},
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "x"},
         "spec": {"selector": {}, "endpoints": [{"port": "metrics", "relabelling": []}]}},
        {"apiVersion": "example.com/v1", "kind": "Unknown", "metadata": {"name": "x"}},
    ])
    rendered = Render(Path("bad.yaml"), "test", bad, [d for d in yaml.safe_load_all(bad) if d])
    report = "\n".join(deploy.kubeconform(rendered))
    assert "readinessprobe" in report
    assert "maxReplicas" in report
    assert "relabelling" in report
    assert "could not find schema for Unknown" in report


def test_the_settings_check_refuses_a_setting_sluice_does_not_have(renders: dict) -> None:
    rendered = copy.deepcopy(renders[(REGION_FILES[0].stem, "mesh")])
    workload = next(d for d in rendered.docs if d["kind"] == "Deployment"
                    and d["metadata"]["labels"]["app.kubernetes.io/component"] == "inference")
    workload["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "SLUICE_INFERENCE__UPSTREAMS__ANTHROPIC__API_KEY",
         "valueFrom": {"secretKeyRef": {"name": "sluice-upstreams", "key": "anthropic-api-key"}}})
    problems = deploy.settings_problems(rendered)
    assert len(problems) == 1 and "inference.upstreams" in problems[0]


def test_envoy_in_the_chart_is_deploy_envoy_yaml(renders: dict) -> None:
    """The chart changes only ports and addresses: routes, filters and clusters are the file's."""
    source = yaml.safe_load((deploy.ROOT / "deploy" / "envoy" / "envoy.yaml").read_text())
    assert source["static_resources"]["listeners"][0]["address"]["socket_address"]["address"] == "0.0.0.0"
    for rendered in renders.values():
        config_map = next(c for c in rendered.objects("ConfigMap") if "envoy.yaml" in c.get("data", {}))
        config = yaml.safe_load(config_map["data"]["envoy.yaml"])
        edge, *extra = config["static_resources"]["listeners"]
        assert [listener["name"] for listener in extra] == ["envoy_stats"]
        assert edge["filter_chains"] == source["static_resources"]["listeners"][0]["filter_chains"]
        clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
        for cluster in source["static_resources"]["clusters"]:
            ours = dict(clusters[cluster["name"]])
            assert {k: v for k, v in ours.items() if k != "load_assignment"} == \
                {k: v for k, v in cluster.items() if k != "load_assignment"}
        assert config["admin"] == source["admin"]


# ------------------------------------------------------------ docker-compose: two regions

COMPOSE = deploy.ROOT / "docker-compose.yml"


def _compose_services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def _host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """Where a path inside a compose container comes from in the repository (a bind mount)."""
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        target = target.rstrip("/")
        if not source.startswith("./"):
            continue
        if container_path == target:
            return deploy.ROOT / source
        if container_path.startswith(target + "/"):
            return deploy.ROOT / source / container_path[len(target) + 1:]
    return None


def _compose_settings(service: dict[str, Any]) -> Any:
    """The settings `sluice` would load in the container: its --config file and environment
    (container paths in either read from the repository)."""
    from sluice.config import load

    command = service["command"]
    assert command[0] == "--config" and command[2] == "serve", command
    config = _host_path(service, command[1])
    assert config is not None, f"{command[1]} is not mounted from the repository"
    env = {}
    for key, value in (service.get("environment") or {}).items():
        mapped = _host_path(service, str(value)) if str(value).startswith("/") else None
        env[key] = str(mapped) if mapped is not None and mapped.exists() else str(value)
    with deploy.sluice_environment({k: v for k, v in env.items() if k.startswith("SLUICE_")}):
        return load(config)


def test_every_compose_service_loads_its_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from sluice.config import ConfigError
    from sluice.runtime.modules import resolve_targets

    monkeypatch.chdir(tmp_path)  # the image's WORKDIR, not the repository: relative paths do not resolve
    for name, service in _compose_services().items():
        if not service.get("build") and "sluice" not in str(service.get("image", "")):
            continue
        resolve_targets(service["command"][3])
        try:
            _compose_settings(service)
        except ConfigError as exc:
            pytest.fail(f"compose service {name}: {exc}")


def test_compose_runs_two_regions_each_on_its_own_stores(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    services = _compose_services()
    regional = {name: svc for name, svc in services.items()
                if "regions" in svc.get("profiles", []) and "SLUICE_REGION" in (svc.get("environment") or {})}
    by_region: dict[str, list[str]] = {}
    for name, service in regional.items():
        region = service["environment"]["SLUICE_REGION"]
        by_region.setdefault(region, []).append(service["command"][3])
        settings = _compose_settings(service)
        assert settings.region == region
        for store in (settings.auth.redis_url, settings.cache.redis_url, settings.events.kafka_bootstrap):
            host = deploy.host_of(store.split(",")[0])
            assert host in services, f"{name}: {store} is no service of the compose file"
            assert deploy.regions_named(host) == {region}, f"{name}: {store} is not {region}'s"
            assert "regions" in services[host]["profiles"], f"{name}: {host} is not in the regions profile"
        assert all(t.region == region for t in settings.auth.tenants.values()), f"{name}: a tenant of another region"
    assert {region: sorted(targets) for region, targets in by_region.items()} == {
        "us-east-1": ["all", "sinks"], "eu-west-1": ["all", "sinks"]}
    host_ports = [p.split(":")[0] for s in regional.values() for p in s.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)), "two regions publish the same host port"
