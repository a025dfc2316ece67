"""The model catalog: which models exist, where, for whom, at what price."""

from sluice.catalog.catalog import Catalog, CatalogError, ModelEntry, Prices, load_catalog

__all__ = ["Catalog", "CatalogError", "ModelEntry", "Prices", "load_catalog"]
