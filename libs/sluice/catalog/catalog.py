"""Loads and queries the versioned model catalog (YAML).

The catalog is data, not code: adding a model or changing a price is an edit
to the YAML file. Loading is strict: an unknown key, a duplicate id or alias,
or a bad price is an error naming the file, the model and the field.

Each model records what the Messages API says of it: its context window and
largest output, its lifecycle (deprecation and retirement dates, which make
it `active`, `deprecated` or `retired` on a given day), and what it accepts
(sampling parameters on API version 2023-06-01, thinking types,
`inference_geo` values). Routing enforces the limits, the Models API
(`GET /v1/models`) shows them, and the simulator plays the API by them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sluice.config.base import ConfigError

M = TypeVar("M", bound=BaseModel)


class CatalogError(ConfigError):
    """The catalog or deployments file is invalid; the message names the
    file and each problem. A ConfigError: it stops a start like a bad
    setting does."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Prices(_Strict):
    """USD per million tokens, and USD per server tool request."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_write_5m: float = Field(ge=0)
    cache_write_1h: float = Field(ge=0)
    cache_read: float = Field(ge=0)
    # USD per request, by the name usage.server_tool_use counts it under.
    server_tool_use: dict[str, float] = {}


ThinkingType = Literal["enabled", "adaptive", "disabled", "between_tools"]
# On anthropic-version 2023-06-01 (2026-10-21 refuses them on every model):
# "all": temperature, top_p and top_k as the API documents them;
# "default_temperature": only temperature 1.0 (the default), no top_p/top_k.
SamplingSupport = Literal["all", "default_temperature"]
Lifecycle = Literal["active", "deprecated", "retired"]


class Accepts(_Strict):
    """What a request to the model may ask for; the API refuses the rest."""

    sampling: SamplingSupport = "all"
    thinking: list[ThinkingType] = ["enabled", "disabled"]
    # inference_geo values the model takes; empty: the field is refused.
    inference_geo: list[str] = []
    # output_config.effort levels; empty: effort is refused.
    effort: list[str] = []
    # A final assistant turn (prefill) is taken; newer models refuse it.
    prefill: bool = True
    image_input: bool = True
    pdf_input: bool = True
    citations: bool = True
    server_tools: list[str] = ["web_search", "web_fetch", "code_execution"]


class ModelEntry(_Strict):
    id: str = Field(min_length=1)
    display_name: str = Field(min_length=1)
    # Release date (the Models API's created_at).
    created_at: date
    line: Literal["haiku", "sonnet", "opus", "fable", "mythos"] | None = None
    aliases: list[str] = []
    provider: str = "anthropic"
    # Name sent upstream; defaults to the id.
    upstream_model: str = ""
    context_window: int = Field(gt=0)
    max_output_tokens: int = Field(gt=0)
    # Shortest prompt prefix the provider will cache, in tokens.
    min_cacheable_tokens: int = Field(gt=0)
    # Deprecation and (planned) retirement, per Anthropic's model deprecations page.
    deprecated_at: date | None = None
    retires_at: date | None = None
    accepts: Accepts = Accepts()
    # Tenant tiers that may use the model.
    tiers: list[str] = Field(min_length=1)
    # Regions whose tenants this model may serve.
    regions: list[str] = Field(min_length=1)
    prices: Prices

    @model_validator(mode="after")
    def _dates_in_order(self) -> ModelEntry:
        if self.retires_at and self.deprecated_at and self.retires_at < self.deprecated_at:
            raise ValueError("retires_at is before deprecated_at")
        if self.retires_at and not self.deprecated_at:
            raise ValueError("a model with retires_at needs deprecated_at")
        return self

    @property
    def upstream_name(self) -> str:
        return self.upstream_model or self.id

    def lifecycle(self, now: datetime | None = None) -> Lifecycle:
        """Where the model stands at `now` (UTC; default: the present): retired
        from the start of its retirement day, deprecated from the start of its
        deprecation day."""
        today = (now or datetime.now(UTC)).astimezone(UTC).date()
        if self.retires_at is not None and today >= self.retires_at:
            return "retired"
        if self.deprecated_at is not None and today >= self.deprecated_at:
            return "deprecated"
        return "active"


class _CatalogFile(_Strict):
    version: str = Field(min_length=1)
    models: list[ModelEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> _CatalogFile:
        seen: dict[str, str] = {}
        for m in self.models:
            for name in (m.id, *m.aliases):
                if name in seen:
                    raise ValueError(f"name {name!r} of model {m.id!r} is already used by {seen[name]!r}")
                seen[name] = m.id
        return self


class Catalog:
    def __init__(self, version: str, models: list[ModelEntry]) -> None:
        self.version = version
        self.models = tuple(models)
        self._by_name = {name: m for m in models for name in (m.id, *m.aliases)}

    def lookup(self, name: str) -> ModelEntry | None:
        """The model with this id or alias, or None."""
        return self._by_name.get(name)

    def newest_first(self) -> list[ModelEntry]:
        """Every model, most recently released first (the Models API's
        order), ties by id."""
        return sorted(self.models, key=lambda m: (m.created_at, m.id), reverse=True)


def read_data_file(path: str | Path | None, shipped: str, what: str) -> tuple[str, object]:
    """(a name for messages, the parsed YAML) of the file at `path`, or of
    the file `shipped` with Sluice. Raises CatalogError naming the file when
    it cannot be read or is not YAML."""
    if path:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise CatalogError(f"cannot read {what} {source}: {exc.strerror}") from None
    else:
        source = f"built-in {shipped}"
        text = resources.files("sluice.catalog").joinpath(shipped).read_text()
    try:
        return source, yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise CatalogError(f"{source}: not valid YAML: {exc}") from None


def parse_data_file(path: str | Path | None, shipped: str, what: str, model: type[M]) -> tuple[str, M]:
    """(a name for messages, the file validated as `model`): `read_data_file`
    then pydantic, top-level `x-` keys (YAML anchors kept for reuse) left
    out. Raises CatalogError listing every field at fault."""
    source, raw = read_data_file(path, shipped, what)
    if isinstance(raw, dict):
        raw = {k: v for k, v in raw.items() if not str(k).startswith("x-")}
    try:
        return source, model.model_validate(raw)
    except ValidationError as exc:
        problems = [f"  {'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors()]
        raise CatalogError(f"{source}: invalid {what}:\n" + "\n".join(problems)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader refusing a key written twice in one mapping (PyYAML keeps
    the last silently: a second `deployments.vertex-eu` would replace the
    first without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        # Keys written in this mapping; a merge (<<) supplies defaults that
        # they may override, so it is not a second writing.
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is written twice",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Loads the catalog at `path`, or the one shipped with Sluice."""
    source, raw = read_data_file(path, "catalog.yaml", "catalog")
    try:
        if isinstance(raw, dict):
            # Top-level `x-` keys hold YAML anchors for reuse; they are not catalog data.
            raw = {k: v for k, v in raw.items() if not str(k).startswith("x-")}
        parsed = _CatalogFile.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            loc = list(e["loc"])
            if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
                models = (raw.get("models") if isinstance(raw, dict) else None) or []
                ident = models[loc[1]].get("id", f"#{loc[1]}") if isinstance(models[loc[1]], dict) else f"#{loc[1]}"
                where = f"model {ident!r} field {'.'.join(map(str, loc[2:])) or '(entry)'}"
            else:
                where = ".".join(map(str, loc)) or "(root)"
            problems.append(f"  {where}: {e['msg']}")
        raise CatalogError(f"{source}: invalid catalog:\n" + "\n".join(problems)) from None
    return Catalog(parsed.version, parsed.models)
