"""The services Sluice is made of: one list, read by the settings (an endpoint each), the runtime
(which module to load, what `serve all` runs) and the tests."""

from __future__ import annotations

# Every service, in the order their default gRPC ports are numbered (127.0.0.1:50051 + index).
SERVICES = ("gateway", "auth", "safety", "cache", "routing", "inference", "simulator", "sinks")
# The request path, in start order: what `sluice serve all` runs (not the simulator, which stands
# in for a provider, nor the sinks, which run once per region beside that region's Kafka).
REQUEST_PATH = ("auth", "safety", "cache", "routing", "inference", "gateway")


def module_path(name: str) -> str:
    """Where a service's `MODULE` (name, dependencies, init) lives."""
    return f"sluice.{name}.module"
