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
US_COLLECTOR = "otel-collector.us-east-1.svc.cluster.local:4317"


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
    # The sink's egress: DNS, this region's Kafka brokers on their ports, and this region's trace
    # collector on its port when tracing is on; nothing else.
    sink_policy = next(p for p in rendered.objects("NetworkPolicy") if p["metadata"]["name"].endswith("-sinks"))
    beyond_dns = [rule for rule in sink_policy["spec"]["egress"] if {p["port"] for p in rule["ports"]} != {53}]
    values = _values(values_file)
    kafka_values = values["kafka"]
    expected = [(kafka_values["networkPolicyPeers"], kafka_values["ports"])]
    if _tracing_values(values).get("enabled"):
        expected.append((_tracing_values(values)["networkPolicyPeers"], [_collector_port(values)]))
    assert [(rule["to"], [p["port"] for p in rule["ports"]]) for rule in beyond_dns] == expected


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
    yield "trace collector", {"telemetry": {"tracing": {"endpoint": US_COLLECTOR}}}
    yield "trace collector URL", {"telemetry": {"tracing": {
        "exporter": "otlp_http", "endpoint": "https://otel.us-east-1.example.com/v1/traces"}}}
    yield "trace collector while tracing is off", {"telemetry": {"tracing": {"enabled": False, "endpoint": US_COLLECTOR}}}
    yield "collector naming no region", {"telemetry": {"tracing": {"endpoint": "api.honeycomb.io:443"}}}
    yield "collector network peers", {"telemetry": {"tracing": {"networkPolicyPeers": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "us-east-1"}}}]}}}
    yield "tracing settings around the values", {"config": {"telemetry": {"tracing": {"endpoint": US_COLLECTOR}}}}


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
    with pytest.raises(DeployCheckError, match=r'tenants\.hooli: region is "us-east-1"'):
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
    ({"config": {"telemetry": {"tenant_label": True}}}, "config.telemetry cannot be set here"),
    ({"telemetry": {"tracing": {"headersSecret": {"name": "otel-auth", "key": ""}}}},
     "telemetry.tracing.headersSecret.key is required with its name"),
    ({"telemetry": {"tracing": {"headersSecret": {"name": "otel-auth", "key": "k", "header": "Authorization"}}}},
     "/telemetry/tracing/headersSecret/header"),
    ({"telemetry": {"tracing": {"samplingRatio": 2}}}, "/telemetry/tracing/samplingRatio"),
], ids=["no region", "bad mode", "typo", "no pepper", "inline pepper", "no redis", "telemetry in config",
        "header secret without key", "header not lowercase", "ratio above 1"])
def test_the_chart_refuses_incomplete_values(tools: None, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(DeployCheckError, match=re.escape(message)):
        deploy.render(REGION_FILES[0], None, overrides)


# ------------------------------------------------------------------------------ telemetry


def _tracing_values(values: dict[str, Any]) -> dict[str, Any]:
    return (values.get("telemetry") or {}).get("tracing") or {}


def _collector_port(values: dict[str, Any]) -> int:
    """The port the NetworkPolicy opens: `port`, else the endpoint's (host:port)."""
    tracing = _tracing_values(values)
    if tracing.get("port"):
        return int(tracing["port"])
    return int(tracing["endpoint"].split("://")[-1].split("/")[0].rsplit(":", 1)[1])


def _sluice_containers(rendered: Render) -> Iterator[tuple[str, dict[str, Any]]]:
    """(component, container) of every Sluice workload (not Envoy)."""
    for kind in ("Deployment", "StatefulSet"):
        for workload in rendered.objects(kind):
            component = workload["metadata"]["labels"]["app.kubernetes.io/component"]
            if component != "envoy":
                for container in workload["spec"]["template"]["spec"]["containers"]:
                    yield component, container


def _loaded_settings(rendered: Render, tmp_path: Path) -> dict[str, Any]:
    """component -> the Settings its container's `sluice --config ...` loads: the ConfigMap's
    sluice.yaml and tenants, and the container's SLUICE_* environment (secrets as placeholders),
    as `make check-deploy` loads them."""
    from sluice.config import load

    data = next(c["data"] for c in rendered.objects("ConfigMap") if "sluice.yaml" in (c.get("data") or {}))
    settings = yaml.safe_load(data["sluice.yaml"])
    (tmp_path / "tenants.yaml").write_text(data["tenants.yaml"])
    settings["auth"]["tenants_file"] = str(tmp_path / "tenants.yaml")
    (tmp_path / "sluice.yaml").write_text(yaml.safe_dump(settings))
    loaded = {}
    for component, container in _sluice_containers(rendered):
        assert container["args"][:2] == ["--config", "/etc/sluice/sluice.yaml"], container["args"]
        env = {k: v for k, v in deploy._container_env(container).items() if k.startswith("SLUICE_")}
        with deploy.sluice_environment(env):
            loaded[component] = load(tmp_path / "sluice.yaml")
    return loaded


_WORKLOADS = {"mesh": {"gateway", "auth", "safety", "cache", "routing", "inference", "sinks"},
              "all": {"all", "sinks"}}


@pytest.mark.parametrize("mode", deploy.MODES)
@pytest.mark.parametrize("values_file", REGION_FILES, ids=lambda f: f.stem)
def test_every_sluice_process_traces_to_its_regions_collector(renders: dict, values_file: Path, mode: str,
                                                               tmp_path: Path) -> None:
    values = _values(values_file)
    region, tracing, telemetry = values["region"], _tracing_values(values), values["telemetry"]
    assert tracing["enabled"] and tracing["exporter"] == "otlp_grpc"
    assert deploy.regions_named(deploy.host_of(tracing["endpoint"])) == {region}
    assert 0 < tracing["samplingRatio"] <= 0.05
    loaded = _loaded_settings(renders[(values_file.stem, mode)], tmp_path)
    assert set(loaded) == _WORKLOADS[mode]
    for component, settings in loaded.items():
        got = settings.telemetry
        assert got.tracing.enabled, component
        assert got.tracing.exporter == "otlp_grpc", component
        assert got.tracing.endpoint == tracing["endpoint"], component
        assert got.tracing.sampling_ratio == tracing["samplingRatio"], component
        assert got.tracing.propagate_upstream is False, component
        assert got.tracing.headers == {}, component
        assert got.daily_budget_usd == telemetry["dailyBudgetUsd"] > 0, component
        assert got.cost_per_request_target_usd == telemetry["costPerRequestTargetUsd"] == 0.012, component


def test_regions_have_their_own_budgets() -> None:
    budgets = {deploy.region_of(f): _values(f)["telemetry"]["dailyBudgetUsd"] for f in REGION_FILES}
    assert budgets["us-east-1"] == 2500 and budgets["eu-west-1"] == 1000


def _collector_rules(policy: dict[str, Any], peers: list[Any], port: int) -> list[dict[str, Any]]:
    return [rule for rule in policy["spec"].get("egress", [])
            if rule.get("to") == peers and rule["ports"] == [{"protocol": "TCP", "port": port}]]


@pytest.mark.parametrize("mode", deploy.MODES)
@pytest.mark.parametrize("values_file", REGION_FILES, ids=lambda f: f.stem)
def test_every_sluice_workload_may_reach_the_collector(renders: dict, values_file: Path, mode: str) -> None:
    rendered = renders[(values_file.stem, mode)]
    values = _values(values_file)
    peers, port = _tracing_values(values)["networkPolicyPeers"], _collector_port(values)
    assert peers and port == 4317
    policies = {p["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/component"): p
                for p in rendered.objects("NetworkPolicy")}
    for component, _ in _sluice_containers(rendered):
        policy = policies[component]
        assert "Egress" in policy["spec"]["policyTypes"]
        assert len(_collector_rules(policy, peers, port)) == 1, f"{component} cannot reach the collector"
        workload = next(w for w in rendered.docs if w["kind"] in ("Deployment", "StatefulSet")
                        and w["metadata"]["labels"]["app.kubernetes.io/component"] == component)
        pod_labels = workload["spec"]["template"]["metadata"]["labels"]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    # Envoy does not export Sluice's traces: it keeps only its own peers.
    assert _collector_rules(policies["envoy"], peers, port) == []


@pytest.mark.parametrize("values_file", EU_FILES, ids=lambda f: f.stem)
def test_eu_traces_stay_in_the_eu(renders: dict, values_file: Path) -> None:
    for mode in deploy.MODES:
        rendered = renders[(values_file.stem, mode)]
        data = next(c["data"] for c in rendered.objects("ConfigMap") if "sluice.yaml" in (c.get("data") or {}))
        endpoint = yaml.safe_load(data["sluice.yaml"])["telemetry"]["tracing"]["endpoint"]
        named = deploy.regions_named(deploy.host_of(endpoint))
        assert named and all(r.startswith("eu-") for r in named), endpoint
    for peer in _tracing_values(_values(values_file))["networkPolicyPeers"]:
        assert all(r.startswith("eu-") for r in deploy.regions_named(str(peer))), peer


@pytest.mark.parametrize("values_file", REGION_FILES, ids=lambda f: f.stem)
def test_the_chart_refuses_tracing_without_an_endpoint(tools: None, values_file: Path) -> None:
    with pytest.raises(DeployCheckError, match=re.escape(
            "telemetry.tracing.endpoint is required with telemetry.tracing.enabled")):
        deploy.render(values_file, None, {"telemetry": {"tracing": {"enabled": True, "endpoint": ""}}})


def test_the_chart_refuses_tracing_without_collector_peers(tools: None) -> None:
    """An egress rule without peers would allow every destination on the port."""
    with pytest.raises(DeployCheckError, match=re.escape("telemetry.tracing.networkPolicyPeers is required")):
        deploy.render(REGION_FILES[0], None, {"telemetry": {"tracing": {"networkPolicyPeers": []}}})


def test_tracing_off_writes_it_off_and_opens_no_egress(tools: None, tmp_path: Path) -> None:
    values_file = REGION_FILES[0]
    rendered = deploy.render(values_file, "mesh", {"telemetry": {"tracing": {"enabled": False}}})
    assert deploy.check_render(rendered) == []
    assert not any(s.telemetry.tracing.enabled for s in _loaded_settings(rendered, tmp_path).values())
    peers = _tracing_values(_values(values_file))["networkPolicyPeers"]
    assert not any(rule.get("to") == peers for p in rendered.objects("NetworkPolicy")
                   for rule in p["spec"].get("egress", []))


@pytest.mark.parametrize("values_file", EU_FILES, ids=lambda f: f.stem)
def test_an_eu_region_may_use_an_otlp_http_collector_of_its_own(tools: None, values_file: Path,
                                                                 tmp_path: Path) -> None:
    region = deploy.region_of(values_file)
    url = f"https://otel.{region}.example.internal/v1/traces"
    rendered = deploy.render(values_file, "all",
                             {"telemetry": {"tracing": {"exporter": "otlp_http", "endpoint": url}}})
    assert deploy.check_render(rendered) == []
    assert {s.telemetry.tracing.endpoint for s in _loaded_settings(rendered, tmp_path).values()} == {url}
    peers = _tracing_values(_values(values_file))["networkPolicyPeers"]
    sinks = next(p for p in rendered.objects("NetworkPolicy") if p["metadata"]["name"].endswith("-sinks"))
    assert len(_collector_rules(sinks, peers, 443)) == 1, "https without a port: the policy allows 443"
    # An explicit port is the pods' port (a Service may map 4317 to another targetPort).
    rendered = deploy.render(values_file, "all", {"telemetry": {"tracing": {"port": 14317}}})
    sinks = next(p for p in rendered.objects("NetworkPolicy") if p["metadata"]["name"].endswith("-sinks"))
    assert len(_collector_rules(sinks, peers, 14317)) == 1


@pytest.mark.parametrize("header", ["authorization", "x-honeycomb-team"])
def test_the_collector_header_comes_from_a_secret(tools: None, tmp_path: Path, header: str) -> None:
    values_file = REGION_FILES[0]
    ref = {"name": "otel-collector-auth", "key": "token", "header": header}
    for mode in deploy.MODES:
        rendered = deploy.render(values_file, mode, {"telemetry": {"tracing": {"headersSecret": ref}}})
        assert deploy.check_render(rendered) == []
        variable = f"SLUICE_TELEMETRY__TRACING__HEADERS__{header.upper()}"
        for component, container in _sluice_containers(rendered):
            env = [e for e in container.get("env", []) if e["name"] == variable]
            secret_ref = {"secretKeyRef": {"name": ref["name"], "key": ref["key"]}}
            assert env == [{"name": variable, "valueFrom": secret_ref}], component
        assert "otel-collector-auth" not in yaml.safe_dump(
            [c["data"] for c in rendered.objects("ConfigMap")]), "the Secret leaked into a ConfigMap"
        for component, settings in _loaded_settings(rendered, tmp_path).items():
            # deploy._container_env stands a placeholder in for each secretKeyRef.
            assert settings.telemetry.tracing.headers == {header: "check-deploy-secret"}, component


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
