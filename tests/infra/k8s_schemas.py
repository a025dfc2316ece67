"""Kubernetes JSON schemas for kubeconform, built offline from the Go module proxy.

kubeconform fetches its schemas from GitHub by default, which CI and this machine cannot
reach. The same facts ship in Go modules the module proxy serves:

- k8s.io/kubernetes: api/openapi-spec/swagger.json, the API server's own OpenAPI document
  (every built-in kind: Deployment, HorizontalPodAutoscaler autoscaling/v2, ...);
- github.com/prometheus-operator/prometheus-operator: the CustomResourceDefinitions of
  monitoring.coreos.com/v1 (ServiceMonitor, PrometheusRule, ...).

Both zips are checked against their go.sum hashes (pinned below, as the checksum database
sum.golang.org has them) before anything is read from them. The definitions are converted
into kubeconform's "standalone-strict" layout, one file per kind and version named like its
default schema location does (`{kind}{-group}-{version}.json`, lower case:
`deployment-apps-v1.json`, `service-v1.json`, `servicemonitor-monitoring-v1.json`):

- standalone: every `$ref` points into the file's own `definitions` (only the definitions the
  kind reaches are copied), so no schema is fetched while validating;
- strict: every object that lists its `properties` gets `additionalProperties: false` (as
  `kubectl --validate` does), except where the CRD says `x-kubernetes-preserve-unknown-fields`;
- int-or-string fields accept an integer or a string, quantities a number or a string in the
  API's quantity syntax; `apiVersion` and `kind` must be the file's own;
- a CRD's free-form `metadata` is replaced with the API's ObjectMeta, so custom resources are
  held to the same metadata rules as built-in ones.

Built once per machine into ~/.cache/sluice/k8s-schemas/<versions>/ (outside the checkout, so
CI's fresh clones and later sessions reuse it; `SLUICE_K8S_SCHEMAS_CACHE` moves it), in a
temporary sibling folder renamed into place when complete, under an flock, like go_tools.

    python -m tests.infra.k8s_schemas        # builds if needed, prints kubeconform's -schema-location
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import shutil
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.infra.build_once import built

# The Kubernetes version validated against: the oldest minor the chart supports in production
# (its Chart.yaml kubeVersion allows older ones back to native gRPC probes, 1.27).
K8S_VERSION = "v1.34.2"
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"
# go.sum hashes (dirhash "h1") of the module zips, from sum.golang.org.
_H1 = {
    ("k8s.io/kubernetes", K8S_VERSION): "h1:WQdDvYJazkmkwSncgNwGvVtaCt4TYXIU3wSMRgvp3MI=",
    ("github.com/prometheus-operator/prometheus-operator", PROMETHEUS_OPERATOR_VERSION):
        "h1:M5xLCLEoaW2IJfnuCwFzzpL+jSVQu3KGT84Pye+fW8s=",
}
# Bump when the conversion below changes, so caches built by older code are not reused.
_FORMAT = 1
_CRD_FOLDER = "example/prometheus-operator-crd/"
# kubeconform's name for a schema file: the template it fills per resource.
_TEMPLATE = "{{ .ResourceKind }}{{ .KindSuffix }}.json"

_INT_OR_STRING = {"anyOf": [{"type": "integer"}, {"type": "string"}]}
# resource.Quantity's wire forms (its CRD schema generator uses the same pattern).
_QUANTITY = {"anyOf": [
    {"type": "number"},
    {"type": "string",
     "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"},
]}
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# Annotations and vendor extensions: no effect on validation, only size.
_DROPPED_KEYS = {"description", "example", "externalDocs", "default", "x-kubernetes-patch-strategy",
                 "x-kubernetes-patch-merge-key", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
                 "x-kubernetes-map-type", "x-kubernetes-unions", "x-kubernetes-validations",
                 "x-kubernetes-group-version-kind", "x-kubernetes-embedded-resource"}


class SchemaError(RuntimeError):
    """The module proxy could not be reached, or a download did not match its go.sum hash."""


def cache_root() -> Path:
    return Path(os.environ.get("SLUICE_K8S_SCHEMAS_CACHE") or Path.home() / ".cache" / "sluice" / "k8s-schemas")


def schema_dir() -> Path:
    return cache_root() / f"{K8S_VERSION}-prometheus-operator-{PROMETHEUS_OPERATOR_VERSION}-f{_FORMAT}"


def schema_location() -> str:
    """kubeconform's `-schema-location` for the schemas, building them first if needed."""
    return f"{ensure()}/{_TEMPLATE}"


def ensure() -> Path:
    """The folder of schemas, building it first if this machine lacks it."""
    def build(tmp: Path) -> None:
        _build(tmp)
        (tmp / "DONE").write_text(f"k8s.io/kubernetes {K8S_VERSION}\n"
                                  f"prometheus-operator {PROMETHEUS_OPERATOR_VERSION}\n")

    return built(schema_dir(), lambda final: (final / "DONE").exists(), build)


def _proxy() -> str:
    """The first HTTP(S) proxy of $GOPROXY (as `go` would use), else proxy.golang.org."""
    for entry in os.environ.get("GOPROXY", "").replace("|", ",").split(","):
        if entry.startswith(("https://", "http://")):
            return entry.rstrip("/")
    return "https://proxy.golang.org"


def _module_zip(module: str, version: str, into: Path) -> zipfile.ZipFile:
    # The proxy protocol's case encoding: an upper-case letter is "!" and the letter in lower case.
    escaped = "".join(f"!{c.lower()}" if c.isupper() else c for c in module)
    url = f"{_proxy()}/{escaped}/@v/{version}.zip"
    target = into / (module.replace("/", "_") + f"@{version}.zip")
    try:
        with urllib.request.urlopen(url, timeout=120) as response, open(target, "wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as exc:
        raise SchemaError(f"downloading {url}: {exc}") from None
    archive = zipfile.ZipFile(target)
    got, want = _dirhash(archive), _H1[(module, version)]
    if got != want:
        archive.close()
        raise SchemaError(f"{url}: go.sum hash {got} is not the pinned {want}")
    return archive


def _dirhash(archive: zipfile.ZipFile) -> str:
    """Go's dirhash.Hash1 of a module zip (what go.sum records)."""
    summary = hashlib.sha256()
    for name in sorted(archive.namelist()):
        summary.update(f"{hashlib.sha256(archive.read(name)).hexdigest()}  {name}\n".encode())
    return "h1:" + base64.b64encode(summary.digest()).decode()


def _build(out: Path) -> None:
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        with _module_zip("k8s.io/kubernetes", K8S_VERSION, Path(scratch)) as kube:
            swagger = json.loads(kube.read(f"k8s.io/kubernetes@{K8S_VERSION}/api/openapi-spec/swagger.json"))
        converted = convert_definitions(swagger["definitions"])
        written = 0
        for filename, schema in built_in_schemas(swagger["definitions"], converted):
            _write(out / filename, schema)
            written += 1
        prefix = f"github.com/prometheus-operator/prometheus-operator@{PROMETHEUS_OPERATOR_VERSION}/{_CRD_FOLDER}"
        with _module_zip("github.com/prometheus-operator/prometheus-operator", PROMETHEUS_OPERATOR_VERSION,
                         Path(scratch)) as operator:
            # _CrdLoader is a SafeLoader (plus one scalar tag), so this load is safe.
            crds = [yaml.load(operator.read(name), Loader=_CrdLoader)  # noqa: S506
                    for name in sorted(operator.namelist())
                    if name.startswith(prefix) and name.endswith(".yaml")]
        if not crds:
            raise SchemaError(f"no CRDs under {_CRD_FOLDER} in prometheus-operator {PROMETHEUS_OPERATOR_VERSION}")
        for crd in crds:
            for filename, schema in crd_schemas(crd, converted):
                _write(out / filename, schema)
                written += 1
    if written < 100:
        raise SchemaError(f"only {written} schemas were generated; the sources changed shape")


class _CrdLoader(yaml.SafeLoader):
    """YAML 1.1's `=` "value" tag is a plain string in these files (an enum of label matchers)."""


_CrdLoader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def _write(path: Path, schema: dict[str, Any]) -> None:
    path.write_text(json.dumps(schema, separators=(",", ":"), sort_keys=True))


def file_name(kind: str, group: str, version: str) -> str:
    """kubeconform's file name for a kind: `{kind}-{first label of group}-{version}.json`,
    `{kind}-{version}.json` for the core group."""
    suffix = f"-{group.split('.', maxsplit=1)[0]}-{version}" if group else f"-{version}"
    return f"{kind}{suffix}.json".lower()


def _api_version(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


# ---------------------------------------------------------------- built-in kinds (swagger 2.0)

def _ref_name(ref: str) -> str:
    return ref.removeprefix("#/definitions/")


def _convert_swagger(node: Any, special: dict[str, Any]) -> Any:
    """A swagger 2.0 schema node as a strict draft-4 schema node; refs stay references."""
    if isinstance(node, list):
        return [_convert_swagger(item, special) for item in node]
    if not isinstance(node, dict):
        return node
    if isinstance(node.get("$ref"), str):
        # Draft 4 ignores a $ref's siblings (descriptions, list types): keep the reference only.
        name = _ref_name(node["$ref"])
        return copy.deepcopy(special[name]) if name in special else {"$ref": f"#/definitions/{name}"}
    if node.get("format") == "int-or-string":
        return copy.deepcopy(_INT_OR_STRING)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "properties":
            out[key] = {name: _convert_swagger(prop, special) for name, prop in value.items()}
        else:
            out[key] = _convert_swagger(value, special)
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        # A string: a reference; a mapping: a property named "$ref" (JSONSchemaProps has one).
        if isinstance(node.get("$ref"), str):
            yield _ref_name(node["$ref"])
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _closure(root: Any, definitions: dict[str, Any]) -> dict[str, Any]:
    """The converted definitions `root` reaches, transitively."""
    reached: dict[str, Any] = {}
    pending = list(_refs(root))
    while pending:
        name = pending.pop()
        if name in reached:
            continue
        reached[name] = definitions[name]
        pending.extend(_refs(reached[name]))
    return reached


def _special(definitions: dict[str, Any]) -> dict[str, Any]:
    """Definitions inlined wherever they are referenced: wire forms the swagger types leave out."""
    special = {"io.k8s.apimachinery.pkg.util.intstr.IntOrString": _INT_OR_STRING,
               "io.k8s.apimachinery.pkg.api.resource.Quantity": _QUANTITY}
    missing = set(special) - set(definitions)
    if missing:
        raise SchemaError(f"swagger.json lacks {sorted(missing)}")
    return special


def _standalone(root: dict[str, Any], converted: dict[str, Any], group: str, version: str, kind: str
                ) -> dict[str, Any]:
    schema = copy.deepcopy(root)
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"type": "string", "enum": [_api_version(group, version)]}
    props["kind"] = {"type": "string", "enum": [kind]}
    schema["additionalProperties"] = False
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind"})
    reached = _closure(schema, converted)
    if reached:
        schema["definitions"] = reached
    return schema


def convert_definitions(definitions: dict[str, Any]) -> dict[str, Any]:
    """Every swagger definition as a strict draft-4 schema, references still by name."""
    special = _special(definitions)
    return {name: _convert_swagger(body, special) for name, body in definitions.items()}


def built_in_schemas(definitions: dict[str, Any], converted: dict[str, Any]
                     ) -> Iterator[tuple[str, dict[str, Any]]]:
    """(file name, schema) for every kind of the API server's swagger definitions."""
    seen: set[str] = set()
    for name, body in sorted(definitions.items()):
        for gvk in body.get("x-kubernetes-group-version-kind", []):
            # Only a definition of its own kind (DeleteOptions and WatchEvent list every group).
            if name.rsplit(".", 1)[-1] != gvk["kind"]:
                continue
            filename = file_name(gvk["kind"], gvk["group"], gvk["version"])
            if filename in seen:
                continue
            seen.add(filename)
            yield filename, _standalone(converted[name], converted, gvk["group"], gvk["version"], gvk["kind"])


# ---------------------------------------------------------------- custom resources (OpenAPI v3)

def _convert_crd(node: Any) -> Any:
    """A CRD's structural schema node as a strict draft-4 schema node."""
    if isinstance(node, list):
        return [_convert_crd(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS or key in ("nullable", "x-kubernetes-preserve-unknown-fields",
                                           "x-kubernetes-int-or-string"):
            continue
        if key == "properties":
            out[key] = {name: _convert_crd(prop) for name, prop in value.items()}
        else:
            out[key] = _convert_crd(value)
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out.update(copy.deepcopy(_INT_OR_STRING))
        out.pop("type", None)
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if "properties" in out and "additionalProperties" not in out \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def crd_schemas(crd: dict[str, Any], converted: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(file name, schema) for every served version of a CustomResourceDefinition; `converted`
    (convert_definitions) supplies ObjectMeta for its metadata."""
    if crd.get("kind") != "CustomResourceDefinition":
        return
    spec = crd["spec"]
    group, kind = spec["group"], spec["names"]["kind"]
    for version in spec["versions"]:
        body = version.get("schema", {}).get("openAPIV3Schema")
        if not version.get("served", True) or body is None:
            continue
        root = _convert_crd(body)
        root.setdefault("properties", {})["metadata"] = {"$ref": f"#/definitions/{_OBJECT_META}"}
        yield file_name(kind, group, version["name"]), _standalone(root, converted, group, version["name"], kind)


if __name__ == "__main__":
    try:
        print(schema_location())
    except SchemaError as exc:
        sys.exit(str(exc))
