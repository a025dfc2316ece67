"""A real Envoy with deploy/envoy/envoy.yaml in front of Sluice: ext_authz and
the rate limit service answered by Sluice, for HTTP and gRPC alike."""

from __future__ import annotations

import secrets

import anthropic
import grpc
import httpx
import pytest

from sluice.gateway.v1 import gateway_service_pb2 as gw
from tests.e2e.helpers import gateway_stub, grpc_params, sdk, user
from tests.infra.envoy_proxy import EnvoyProcess
from tests.infra.sluice_cluster import SluiceCluster

pytestmark = pytest.mark.e2e

LIMIT = 4  # requests per minute for the limited tenant's keys


@pytest.fixture(scope="module", params=["all", "mesh"])
def edge(request, redis_url, tmp_path_factory):
    """Sluice (both modes) with a tenant limited to LIMIT requests a minute, behind Envoy, whose
    ext_authz and rate limit calls go to the auth service (its own process in a mesh)."""
    workdir = tmp_path_factory.mktemp(f"envoy-{request.param}")
    cluster = SluiceCluster(request.param, redis_url, workdir)
    tenant = "edge" + secrets.token_hex(3)
    limited_key = f"sk-sluice-lim{secrets.token_hex(3)}-{secrets.token_hex(24)}"
    auth = cluster.config["auth"]
    auth["tenants"][tenant] = {"tier": "standard", "region": "local",
                               "limits": {"key": {"requests_per_minute": LIMIT}}}
    auth["seed_keys"].append({"key": limited_key, "tenant": tenant})
    cluster.start()
    auth_grpc = cluster.config["services"]["auth"]["grpc"] if request.param == "mesh" else cluster.grpc_address
    proxy = EnvoyProcess(workdir, auth_grpc=auth_grpc, gateway_grpc=cluster.grpc_address,
                         gateway_http=f"127.0.0.1:{cluster.http_port}").start()
    yield cluster, proxy, limited_key
    proxy.stop()
    cluster.stop()


def test_an_allowed_request_passes_through_envoy(edge):
    cluster, proxy, _ = edge
    message = sdk(proxy.base, cluster.api_key).messages.create(
        model="claude-sonnet-4-6", max_tokens=16, messages=user("hello through envoy"))
    assert message.content[0].text and message.usage.output_tokens > 0
    chunks = []
    with sdk(proxy.base, cluster.api_key).messages.stream(
            model="claude-sonnet-4-6", max_tokens=16, messages=user("stream through envoy")) as stream:
        chunks += list(stream.text_stream)
    assert "".join(chunks)


def test_a_bad_key_is_refused_by_envoy_through_ext_authz(edge):
    cluster, proxy, _ = edge
    forged = f"sk-sluice-{cluster.api_key.split('-')[2]}-{'0' * 48}"
    response = httpx.post(f"{proxy.base}/v1/messages", headers={"x-api-key": forged, "anthropic-version": "2023-06-01"}, timeout=10,
                          json={"model": "claude-sonnet-4-6", "max_tokens": 8,
                                "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 401
    assert response.json()["error"] == {"type": "authentication_error", "message": "invalid x-api-key"}
    # Refused at the edge: Envoy answered (its server header), the gateway never saw it.
    assert response.headers["server"] == "envoy"
    assert "x-envoy-upstream-service-time" not in response.headers
    with pytest.raises(anthropic.AuthenticationError):
        sdk(proxy.base, "not-a-key").messages.create(model="claude-sonnet-4-6", max_tokens=8, messages=user("x"))


def test_grpc_routes_pass_through_envoy_and_bad_keys_are_refused_there(edge):
    cluster, proxy, _ = edge
    with grpc.insecure_channel(proxy.address) as channel:
        stub = gateway_stub(channel)
        reply = stub.CreateMessage(gw.CreateMessageRequest(params=grpc_params("hi via envoy")),
                                   metadata=[("x-api-key", cluster.api_key)], timeout=10)
        assert reply.message.content[0].text.text
        events = list(stub.StreamMessage(gw.StreamMessageRequest(params=grpc_params("stream via envoy")),
                                         metadata=[("x-api-key", cluster.api_key)], timeout=10))
        assert events and events[-1].event.WhichOneof("event") == "message_stop"
        with pytest.raises(grpc.RpcError) as err:
            stub.CreateMessage(gw.CreateMessageRequest(params=grpc_params("hi")),
                               metadata=[("x-api-key", "sk-sluice-nokey1-" + "a" * 48)], timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # Internal and admin services are not routed at the edge.
        with pytest.raises(grpc.RpcError) as err:
            channel.unary_unary("/sluice.auth.v1.AdminService/ListTenants")(b"", timeout=10,
                                                                           metadata=[("x-api-key", cluster.api_key)])
        assert err.value.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.NOT_FOUND)


def test_an_over_limit_burst_is_answered_429_by_envoy_through_the_ratelimit_service(edge):
    _, proxy, limited_key = edge
    body = {"model": "claude-haiku-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=proxy.base, headers={"x-api-key": limited_key, "anthropic-version": "2023-06-01"}, timeout=10) as client:
        responses = [client.post("/v1/messages", json=body) for _ in range(LIMIT + 3)]
    codes = [r.status_code for r in responses]
    assert codes[:LIMIT] == [200] * LIMIT, codes
    over = responses[LIMIT:]
    assert all(r.status_code == 429 for r in over), codes
    for refused in over:
        # Answered by Envoy's ratelimit filter with Sluice's verdict and body.
        assert refused.headers.get("x-envoy-ratelimited") == "true"
        assert refused.json()["error"]["type"] == "rate_limit_error"
        assert "requests per minute: limit 4 reached" in refused.json()["error"]["message"]
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["anthropic-ratelimit-requests-limit"] == str(LIMIT)
        assert refused.headers["anthropic-ratelimit-requests-remaining"] == "0"

