"""`services` (where each service listens and is dialled) and `server` (every gRPC server process)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from sluice.config.base import Section, check_address
from sluice.services import SERVICES

SERVICE_NAMES = SERVICES  # an endpoint each, default ports in this order


class Endpoint(Section):
    """Where one service is reached (from others) and where it listens (its own process)."""

    # gRPC address others dial, host:port (a Kubernetes Service name in a
    # cluster). Port 0 picks a free port (tests).
    grpc: str
    # Where the service's own process binds its gRPC server, host:port;
    # empty: `grpc` (one address for both, as on one machine). In a pod:
    # 0.0.0.0:50051 while others dial the Service's name.
    listen: str = ""
    # Prometheus /metrics and /healthz for the process, host:port; empty = off.
    metrics: str = ""

    _v_grpc = field_validator("grpc")(check_address)

    @field_validator("listen")
    @classmethod
    def _v_listen(cls, value: str) -> str:
        return check_address(value) if value else value

    @property
    def bind(self) -> str:
        """The address the service's own process listens on."""
        return self.listen or self.grpc

    @field_validator("metrics")
    @classmethod
    def _v_metrics(cls, value: str) -> str:
        return check_address(value) if value else value


def default_endpoints() -> dict[str, Endpoint]:
    return {
        name: Endpoint(grpc=f"127.0.0.1:{50051 + i}", metrics="")
        for i, name in enumerate(SERVICE_NAMES)
    }


class ServerSettings(Section):
    # Seconds in-flight calls get to finish after SIGTERM before they are cancelled.
    drain_grace_seconds: float = Field(10.0, ge=0, le=600)
    # Largest gRPC message accepted, bytes.
    max_message_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
