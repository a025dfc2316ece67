"""Loads the versioned deployments file: how each model is reached, and where
each home region's inference may run.

A deployment is one way to reach a model: a provider (the Anthropic API,
Google Vertex AI or Amazon Bedrock), the endpoint region, the geography
inference runs in, the provider's model ids, a price multiplier and a
concurrency ceiling. Residency is two tables: each home region lists the
geographies it allows, each deployment names its geography; a deployment
serves a region only when its geography is allowed there. Everything that
picks an upstream (routing's candidates; inference's retries, fallbacks and
hedges, which only walk those candidates) goes through `serving`, so there
is one rule and no other path.

Loading is strict (unknown keys, unknown models, a region without
residency, an `inference_geo` on a provider other than the Anthropic API
are errors naming the file and the field) and checked against the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from sluice.catalog.catalog import Catalog, CatalogError, ModelEntry, load_catalog, parse_data_file
from sluice.config.settings import Settings

Provider = Literal["anthropic", "vertex", "bedrock"]
PROVIDERS: tuple[Provider, ...] = ("anthropic", "vertex", "bedrock")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Credentials(_Strict):
    """Which of the provider's own credential sources to use; never a secret.

    Unset fields mean the provider SDK's defaults: ANTHROPIC_API_KEY; Google
    application default credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud,
    workload identity) with ANTHROPIC_VERTEX_PROJECT_ID; the AWS default
    chain (environment, ~/.aws files, IRSA / instance roles)."""

    # Anthropic API: the environment variable holding the API key.
    api_key_env: str = ""
    # Vertex: the Google Cloud project, or the variable that holds it.
    project_id: str = ""
    project_id_env: str = ""
    # Bedrock: a named AWS profile from ~/.aws/config.
    aws_profile: str = ""


class Deployment(_Strict):
    provider: Provider
    # Endpoint region: the Vertex location (e.g. europe-west1, or the
    # multi-regions us / eu) or the AWS region. Empty for the Anthropic API.
    region: str = ""
    # Geography inference runs in (residency): e.g. global, us, eu.
    geo: str = Field(min_length=1)
    # Anthropic API only: the request's inference_geo, set on every request
    # this deployment serves; it then serves only models that take the value.
    inference_geo: str = ""
    # Catalog ids served here; "all": every catalog model.
    models: Literal["all"] | Annotated[list[str], Field(min_length=1)] = "all"
    # Provider model id per catalog id; otherwise model_id_format with
    # {model} = the catalog's upstream name.
    model_ids: dict[str, str] = {}
    model_id_format: str = "{model}"
    # Multiplies the catalog's list prices for what this deployment bills.
    price_multiplier: float = Field(1.0, gt=0, le=100)
    # Most requests in flight here; the adaptive limit moves below it.
    max_concurrency: int = Field(256, ge=1, le=1_000_000)
    credentials: Credentials = Credentials()

    @model_validator(mode="after")
    def _provider_fields(self) -> Deployment:
        if self.provider != "anthropic" and not self.region:
            raise ValueError(f"a {self.provider} deployment needs region")
        if self.inference_geo and self.provider != "anthropic":
            raise ValueError("inference_geo is a field of the Anthropic API only")
        if self.provider == "anthropic" and self.geo != (self.inference_geo or "global"):
            # The API runs inference where inference_geo says, else anywhere.
            raise ValueError(f"an Anthropic API deployment runs in {self.inference_geo or 'global'!r} "
                             f"(its inference_geo), not {self.geo!r}")
        try:
            if self.model_id_format.format(model="m").count("m") < 1 or "{model}" not in self.model_id_format:
                raise ValueError
        except (KeyError, IndexError, ValueError):
            raise ValueError(f"model_id_format {self.model_id_format!r} must be a template whose only field "
                             "is {model}") from None
        foreign = {"anthropic": ("project_id", "project_id_env", "aws_profile"),
                   "vertex": ("api_key_env", "aws_profile"),
                   "bedrock": ("api_key_env", "project_id", "project_id_env")}[self.provider]
        wrong = [name for name in foreign if getattr(self.credentials, name)]
        if wrong:
            raise ValueError(f"credentials {', '.join(wrong)} do not apply to {self.provider}")
        return self

    def provider_model(self, model: ModelEntry) -> str:
        return self.model_ids.get(model.id) or self.model_id_format.format(model=model.upstream_name)

    def serves(self, model: ModelEntry) -> bool:
        if self.models != "all" and model.id not in self.models:
            return False
        return not self.inference_geo or self.inference_geo in model.accepts.inference_geo


# Deployment ids name URL path segments, metric labels and records.
DeploymentId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]


class _DeploymentsFile(_Strict):
    version: str = Field(min_length=1)
    residency: dict[str, Annotated[list[str], Field(min_length=1)]] = Field(min_length=1)
    fallbacks: dict[str, list[str]] = {}
    deployments: dict[DeploymentId, Deployment] = Field(min_length=1)

    @model_validator(mode="after")
    def _chains(self) -> _DeploymentsFile:
        for model, chain in self.fallbacks.items():
            if model in chain:
                raise ValueError(f"fallbacks.{model} names the model itself")
            if len(set(chain)) != len(chain):
                raise ValueError(f"fallbacks.{model} names a model twice")
        return self


@dataclass(frozen=True, slots=True)
class Serving:
    """One deployment of one model: what a candidate is made of."""

    deployment_id: str
    deployment: Deployment
    provider_model: str


class Deployments:
    """The loaded file, checked against a catalog."""

    def __init__(self, version: str, residency: dict[str, list[str]], fallbacks: dict[str, list[str]],
                 deployments: dict[str, Deployment], catalog: Catalog) -> None:
        self.version = version
        self.residency = {region: tuple(geos) for region, geos in residency.items()}
        self.fallback_chains = {model: tuple(chain) for model, chain in fallbacks.items()}
        self.deployments = deployments
        self._serving: dict[tuple[str, str], tuple[Serving, ...]] = {}
        for model in catalog.models:
            for region, geos in self.residency.items():
                self._serving[(model.id, region)] = tuple(
                    Serving(dep_id, dep, dep.provider_model(model))
                    for dep_id, dep in deployments.items() if dep.geo in geos and dep.serves(model))

    def allowed_geos(self, region: str) -> tuple[str, ...]:
        """Geographies where inference for tenants homed in `region` may run;
        empty for a region the file does not name (nothing may serve it)."""
        return self.residency.get(region, ())

    def serving(self, model: ModelEntry, region: str) -> tuple[Serving, ...]:
        """The deployments of `model` that may serve tenants homed in
        `region`, in the file's order (its preference); empty when none."""
        return self._serving.get((model.id, region), ())

    def fallbacks(self, model_id: str) -> tuple[str, ...]:
        return self.fallback_chains.get(model_id, ())


def load_deployments(catalog: Catalog, path: str | Path | None = None) -> Deployments:
    """Loads the deployments file at `path`, or the one shipped with Sluice.
    Raises CatalogError listing every problem (naming the deployment and
    field), including models the catalog does not know."""
    source, parsed = parse_data_file(path, "deployments.yaml", "deployments", _DeploymentsFile)
    problems = []
    for dep_id, dep in parsed.deployments.items():
        if dep.models != "all":
            problems += [f"  deployments.{dep_id}.models: {m!r} is not in catalog {catalog.version}"
                         for m in dep.models if catalog.lookup(m) is None]
        problems += [f"  deployments.{dep_id}.model_ids: {m!r} is not in catalog {catalog.version}"
                     for m in dep.model_ids if catalog.lookup(m) is None]
    for model_id, chain in parsed.fallbacks.items():
        problems += [f"  fallbacks.{model_id}: {m!r} is not in catalog {catalog.version}"
                     for m in (model_id, *chain) if catalog.lookup(m) is None]
    geos = {dep.geo for dep in parsed.deployments.values()}
    for region, allowed in parsed.residency.items():
        if not set(allowed) & geos:
            problems.append(f"  residency.{region}: no deployment runs in {allowed}")
    if problems:
        raise CatalogError(f"{source}: invalid deployments:\n" + "\n".join(problems))
    return Deployments(parsed.version, parsed.residency, parsed.fallbacks, parsed.deployments, catalog)


def load_for(settings: Settings) -> tuple[Catalog, Deployments]:
    """The catalog and deployments `settings` name, checked against each
    other and against the settings: the default model exists, the region
    served has a residency entry, and every endpoint override names a
    deployment. Raises CatalogError listing every problem."""
    catalog = load_catalog(settings.catalog.path or None)
    deployments = load_deployments(catalog, settings.catalog.deployments_path or None)
    problems = []
    if catalog.lookup(settings.routing.default_model) is None:
        problems.append(f"  routing.default_model: {settings.routing.default_model!r} is not in catalog "
                        f"{catalog.version}")
    if not deployments.allowed_geos(settings.region):
        problems.append(f"  region: {settings.region!r} has no residency entry in deployments {deployments.version}")
    problems += [f"  inference.endpoints.{name}: no such deployment in deployments {deployments.version}"
                 for name in settings.inference.endpoints if name not in deployments.deployments]
    if problems:
        raise CatalogError("the catalog, deployments and settings disagree:\n" + "\n".join(problems))
    return catalog, deployments
