"""Loads and queries the versioned model catalog (YAML).

The catalog is data, not code: adding a model or changing a price is an edit
to the YAML file. Loading is strict: an unknown key, a duplicate id or alias,
or a bad price is an error naming the file, the model and the field.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class CatalogError(Exception):
    pass


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Prices(_Strict):
    """USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_write_5m: float = Field(ge=0)
    cache_write_1h: float = Field(ge=0)
    cache_read: float = Field(ge=0)


class ModelEntry(_Strict):
    id: str = Field(min_length=1)
    aliases: list[str] = []
    provider: str = "anthropic"
    # Name sent upstream; defaults to the id.
    upstream_model: str = ""
    context_window: int = Field(gt=0)
    max_output_tokens: int = Field(gt=0)
    # Shortest prompt prefix the provider will cache, in tokens.
    min_cacheable_tokens: int = Field(gt=0)
    # Tenant tiers that may use the model.
    tiers: list[str] = Field(min_length=1)
    # Regions whose tenants this model may serve.
    regions: list[str] = Field(min_length=1)
    prices: Prices

    @property
    def upstream_name(self) -> str:
        return self.upstream_model or self.id


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


def load_catalog(path: str | Path | None = None) -> Catalog:
    """Loads the catalog at `path`, or the one shipped with Sluice."""
    if path:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise CatalogError(f"cannot read catalog {source}: {exc.strerror}") from None
    else:
        source = "built-in catalog.yaml"
        text = resources.files("sluice.catalog").joinpath("catalog.yaml").read_text()
    try:
        raw = yaml.safe_load(text)
        if isinstance(raw, dict):
            # Top-level `x-` keys hold YAML anchors for reuse; they are not catalog data.
            raw = {k: v for k, v in raw.items() if not str(k).startswith("x-")}
        parsed = _CatalogFile.model_validate(raw)
    except yaml.YAMLError as exc:
        raise CatalogError(f"{source}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            loc = list(e["loc"])
            if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
                models = (raw or {}).get("models") or []
                ident = models[loc[1]].get("id", f"#{loc[1]}") if isinstance(models[loc[1]], dict) else f"#{loc[1]}"
                where = f"model {ident!r} field {'.'.join(map(str, loc[2:])) or '(entry)'}"
            else:
                where = ".".join(map(str, loc)) or "(root)"
            problems.append(f"  {where}: {e['msg']}")
        raise CatalogError(f"{source}: invalid catalog:\n" + "\n".join(problems)) from None
    return Catalog(parsed.version, parsed.models)
