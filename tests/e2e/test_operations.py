"""Health, reflection and graceful drain of real processes."""

from __future__ import annotations

import signal
import threading

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.e2e.helpers import sdk, user
from tests.infra.sluice_cluster import MESH_SERVICES, SluiceCluster

pytestmark = pytest.mark.e2e


def test_every_service_reports_health_and_reflection(cluster):
    names = MESH_SERVICES if cluster.mode == "mesh" else ("gateway",)
    for name in names:
        address = cluster.config["services"][name]["grpc"]
        with grpc.insecure_channel(address) as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            reply = next(reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter([request])))
            listed = {s.name for s in reply.list_services_response.service}
            assert "grpc.health.v1.Health" in listed
            assert any(s.startswith(f"sluice.{name}.v1.") for s in listed), listed


@pytest.mark.parametrize("mode", ["all", "mesh"])
def test_sigterm_lets_an_in_flight_stream_finish(mode, redis_url, tmp_path):
    running = SluiceCluster(mode, redis_url, tmp_path).start()
    gateway = running.procs["all" if mode == "all" else "gateway"]
    try:
        client = sdk(running.http_base, running.api_key)
        got_first = threading.Event()
        chunks: list[str] = []

        with client.messages.stream(model="claude-sonnet-4-6", max_tokens=100,
                                    messages=user("drain me [[sim:tokens=30]] [[sim:itl_ms=30]]")) as stream:
            for text in stream.text_stream:
                chunks.append(text)
                if not got_first.is_set():
                    got_first.set()
                    gateway.send_signal(signal.SIGTERM)
            final = stream.get_final_message()
        assert final.stop_reason == "end_turn"
        # All 30 words arrived, in more than one piece: the signal came mid-stream.
        assert len("".join(chunks).split()) == 30 and len(chunks) > 1
        assert gateway.wait(10) == 0
    finally:
        running.stop()
