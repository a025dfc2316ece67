"""`catalog`: the model catalog and the deployments file, read by every service that prices,
routes or calls a model (auth prices with it, routing and inference choose and reach deployments),
so no service reads another's section for them."""

from __future__ import annotations

from sluice.config.base import Section


class CatalogSettings(Section):
    # Model catalog YAML; empty = the catalog shipped with Sluice.
    path: str = ""
    # The deployments file (beside the catalog); empty = the one shipped.
    deployments_path: str = ""
