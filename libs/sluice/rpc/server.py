"""The gRPC server every Sluice process runs: registered services plus
grpc.health.v1 and reflection, and a graceful drain on shutdown."""

from __future__ import annotations

import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from sluice.rpc.registry import ServiceRegistry

log = logging.getLogger(__name__)

SERVER_OPTIONS = (
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.so_reuseport", 0),
)


class GrpcServer:
    def __init__(self, registry: ServiceRegistry, listen: str, max_message_bytes: int) -> None:
        options = list(SERVER_OPTIONS)
        options[0] = ("grpc.max_receive_message_length", max_message_bytes)
        self._server = grpc.aio.server(options=options)
        self._server.add_generic_rpc_handlers(registry.generic_handlers)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        self._services = registry.service_names
        reflection.enable_server_reflection(
            [*self._services, health.SERVICE_NAME, reflection.SERVICE_NAME], self._server
        )
        self.port = self._server.add_insecure_port(listen)
        if self.port == 0:
            raise OSError(f"cannot listen for gRPC on {listen}")
        host = listen.rsplit(":", 1)[0]
        self.address = f"{host}:{self.port}"

    async def start(self) -> None:
        await self._server.start()
        await self._set_all(health_pb2.HealthCheckResponse.SERVING)
        log.info("gRPC listening on %s: %s", self.address, ", ".join(self._services))

    async def drain(self, grace_s: float) -> None:
        """Stops taking calls, lets in-flight ones finish for up to grace_s, then cancels them."""
        await self._set_all(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._server.stop(grace_s)

    async def _set_all(self, status: int) -> None:
        await self.health.set("", status)
        for name in self._services:
            await self.health.set(name, status)
