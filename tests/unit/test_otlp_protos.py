"""The OTLP exporters' protobuf code is opentelemetry-proto's own, not the older copy xds-protos
ships under the same paths (the Makefile installs opentelemetry-proto last for this)."""

from __future__ import annotations


def test_the_otlp_exporters_import_with_their_own_protos():
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http
    from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope

    assert Grpc and Http and InstrumentationScope.DESCRIPTOR.full_name == \
        "opentelemetry.proto.common.v1.InstrumentationScope"


def test_envoys_protos_still_load_beside_them():
    from envoy.service.auth.v3 import external_auth_pb2
    from envoy.service.ratelimit.v3 import rls_pb2

    assert external_auth_pb2.CheckRequest and rls_pb2.RateLimitRequest
