"""The capacity model: traffic figures in, a sizing out (`sluice capacity`, docs/capacity.md).

`model` holds the pure arithmetic; `measured.yaml` the per-request costs this
repository measured (CPU, Redis operations, event bytes, the router's tier mix),
with the date and the command that measured each.
"""
