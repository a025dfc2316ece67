"""The admin API and `sluice keys` / `sluice tenants` against two gateway
processes sharing one Redis: key lifecycle with exact errors, tenant changes
reaching the other gateway within seconds, and limits enforced across both."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from sluice.auth.v1 import admin_service_pb2 as pb
from sluice.auth.v1 import admin_service_pb2_grpc
from sluice.gateway.v1 import gateway_service_pb2 as gw
from tests.e2e.helpers import error_details, gateway_stub, grpc_params, wait_until
from tests.infra.sluice_cluster import SluiceCluster

pytestmark = pytest.mark.e2e

ADMIN_TOKEN = "test-admin-" + secrets.token_hex(8)
CACHE_TTL_S = 1.0
BODY = {"model": "claude-haiku-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def gateways(redis_url, tmp_path_factory):
    """Two gateways on the session Redis, with a tenant of their own: A an `all` process, B a
    mesh (admin changes made through one reach the other, whatever its mode)."""
    tenant = "adm" + secrets.token_hex(3)
    clusters: list[SluiceCluster] = []
    for name, mode in (("a", "all"), ("b", "mesh")):
        workdir = tmp_path_factory.mktemp(f"admin-{name}")
        cluster = SluiceCluster(mode, redis_url, workdir, simulator=clusters[0].simulator if clusters else None)
        auth = cluster.config["auth"]
        auth["admin_tokens"] = [ADMIN_TOKEN]
        auth["decision_cache_ttl_seconds"] = CACHE_TTL_S
        auth["tenant_refresh_seconds"] = 0.2
        auth["tenants"][tenant] = {"tier": "standard", "region": "local"}
        clusters.append(cluster.start())
    yield clusters, tenant
    for cluster in reversed(clusters):
        cluster.stop()


def admin_address(cluster: SluiceCluster) -> str:
    """Where the admin API answers: the `all` process, or the auth process of a mesh."""
    return cluster.config["services"]["auth"]["grpc"] if cluster.mode == "mesh" else cluster.grpc_address


def cli(cluster: SluiceCluster, *args: str, token: str = ADMIN_TOKEN) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sluice.runtime.cli", *args, "--target", admin_address(cluster), "--admin-token", token],
        capture_output=True, text=True, timeout=30, check=False)


def cli_json(cluster: SluiceCluster, *args: str) -> list[dict]:
    done = cli(cluster, *args)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def post(cluster: SluiceCluster, key: str | bytes, body: dict = BODY) -> httpx.Response:
    return httpx.post(f"{cluster.http_base}/v1/messages", json=body, headers={"x-api-key": key, "anthropic-version": "2023-06-01"}, timeout=10)


def auth_error(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["type"] == "authentication_error"
    return response.json()["error"]["message"]


def test_key_lifecycle_create_use_rotate_revoke_with_exact_errors(gateways):
    (a, b), tenant = gateways
    [created] = cli_json(a, "keys", "create", "--tenant", tenant, "--description", "ci")
    key, key_id = created["api_key"], created["key"]["key_id"]
    assert key.startswith(f"sk-sluice-{key_id}-")
    # Made on A, usable on B: both read the same Redis.
    assert post(b, key).status_code == 200

    listed = cli_json(a, "keys", "list", "--tenant", tenant)
    assert [k["key_id"] for k in listed] == [key_id]
    assert key.split("-")[-1] not in json.dumps(listed), "listing must never show a secret"

    secret = key.split("-")[-1]
    assert auth_error(post(a, f"sk-sluice-{key_id}-{'0' * len(secret)}")) == "invalid x-api-key"  # wrong secret
    assert auth_error(post(a, "sk-sluice-nosuch1-" + "a" * 48)) == "invalid x-api-key"  # unknown key
    assert auth_error(post(a, "sk-live-123")) == "invalid x-api-key"  # malformed

    [rotated] = cli_json(a, "keys", "rotate", key_id, "--overlap-seconds", "2")
    new_key = rotated["replacement"]["api_key"]
    assert rotated["previous"]["replaced_by"] == rotated["replacement"]["key"]["key_id"]
    assert "expire_time" in rotated["previous"]
    # Inside the overlap both keys work, on either gateway.
    assert post(a, key).status_code == 200 and post(b, new_key).status_code == 200
    # After the overlap (plus at most one decision-cache TTL) the old one is refused.
    wait_until(lambda: post(b, key).status_code == 401, timeout=2 + CACHE_TTL_S + 3,
               what="the rotated key to expire after its overlap")
    assert post(b, new_key).status_code == 200

    revoked_at = time.monotonic()
    [revoked] = cli_json(a, "keys", "revoke", rotated["replacement"]["key"]["key_id"])
    assert "revoke_time" in revoked
    for gateway in (a, b):
        wait_until(lambda g=gateway: post(g, new_key).status_code == 401, timeout=CACHE_TTL_S + 3,
                   what="revocation to reach the gateway")
    # Refused within the cache TTL (plus request time on a loaded small machine).
    assert time.monotonic() - revoked_at <= CACHE_TTL_S + 3


def test_admin_calls_need_the_admin_credential(gateways):
    (a, _), tenant = gateways
    done = cli(a, "keys", "list", "--tenant", tenant, token="wrong")
    assert done.returncode == 1 and "UNAUTHENTICATED" in done.stderr
    with grpc.insecure_channel(a.grpc_address) as channel, pytest.raises(grpc.RpcError) as err:
        admin_service_pb2_grpc.AdminServiceStub(channel).ListTenants(pb.ListTenantsRequest(), timeout=10)
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_details(err.value)["reason"] == "INVALID_ADMIN_CREDENTIAL"


def test_invalid_tenant_and_stale_revision_are_refused_precisely(gateways):
    (a, _), tenant = gateways
    metadata = (("authorization", f"Bearer {ADMIN_TOKEN}"),)
    with grpc.insecure_channel(a.grpc_address) as channel:
        admin = admin_service_pb2_grpc.AdminServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            admin.PutTenant(pb.PutTenantRequest(tenant=pb.Tenant(tenant_id="Bad Id!", tier="platinum")),
                            metadata=metadata, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert set(error_details(err.value)["fields"]) == {"tenant.tenant_id", "tenant.tier"}

        current = admin.GetTenant(pb.GetTenantRequest(tenant_id=tenant), metadata=metadata, timeout=10).tenant
        stale = current.revision - 1
        with pytest.raises(grpc.RpcError) as err:
            admin.PutTenant(pb.PutTenantRequest(tenant=current, expected_revision=stale), metadata=metadata,
                            timeout=10)
        assert err.value.code() == grpc.StatusCode.ABORTED
        assert error_details(err.value)["reason"] == "REVISION_CONFLICT"
        with pytest.raises(grpc.RpcError) as err:
            admin.CreateKey(pb.CreateKeyRequest(tenant_id="nobody"), metadata=metadata, timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_tenant_changes_reach_the_other_gateway_and_limits_hold_across_both(gateways, tmp_path: Path):
    (a, b), tenant = gateways
    [created] = cli_json(a, "keys", "create", "--tenant", tenant)
    key = created["api_key"]
    before = post(b, key, {**BODY, "model": "claude-sonnet-4-6"})
    assert before.status_code == 200, before.text

    def apply(tenant_fields: dict) -> dict:
        changed = tmp_path / "tenants.yaml"
        changed.write_text(json.dumps({"version": 1, "revision": 1, "tenants": {tenant: {
            "tier": "standard", "region": "local", **tenant_fields}}}))
        [applied] = cli_json(a, "tenants", "apply", str(changed))
        return applied

    # Through A: only haiku from now on.
    applied = apply({"allowed_models": ["claude-haiku-4-5"]})
    assert applied["allowed_models"] == ["claude-haiku-4-5"] and int(applied["revision"]) >= 2
    # B sees it within seconds: its refresh interval plus the decision-cache
    # TTL, with slack for a loaded machine.
    wait_until(lambda: post(b, key, {**BODY, "model": "claude-sonnet-4-6"}).status_code == 403,
               timeout=0.2 + CACHE_TTL_S + 5, what="the tenant change to reach gateway B")

    # Through A again: 3 requests a minute per key. (Separate from the model
    # change: refused-model probes are admitted first and would spend it.)
    apply({"allowed_models": ["claude-haiku-4-5"], "limits": {"key": {"requests_per_minute": 3}}})
    [probe] = cli_json(a, "keys", "create", "--tenant", tenant)
    wait_until(lambda: post(b, probe["api_key"]).headers.get("anthropic-ratelimit-requests-limit") == "3",
               timeout=0.2 + CACHE_TTL_S + 5, what="the new limit to reach gateway B")

    # The key's RPM of 3 holds across both gateways together.
    [fresh] = cli_json(a, "keys", "create", "--tenant", tenant)
    outcomes = [post((a, b)[i % 2], fresh["api_key"]) for i in range(5)]
    assert [r.status_code for r in outcomes] == [200, 200, 200, 429, 429], [r.text for r in outcomes]
    refused = outcomes[3]
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["anthropic-ratelimit-requests-limit"] == "3"
    assert refused.headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert outcomes[2].headers["anthropic-ratelimit-requests-remaining"] == "0"

    # The same refusal over gRPC: RESOURCE_EXHAUSTED with QuotaFailure and RetryInfo.
    with grpc.insecure_channel(b.grpc_address) as channel, pytest.raises(grpc.RpcError) as err:
        gateway_stub(channel).CreateMessage(gw.CreateMessageRequest(params=grpc_params("hi", "claude-haiku-4-5")),
                                            metadata=[("x-api-key", fresh["api_key"])], timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_details(err.value)["reason"] == "RATE_LIMITED"
    details = rpc_status.from_call(err.value).details
    quota, retry = error_details_pb2.QuotaFailure(), error_details_pb2.RetryInfo()
    assert any(d.Unpack(quota) for d in details if d.Is(quota.DESCRIPTOR))
    assert any(d.Unpack(retry) for d in details if d.Is(retry.DESCRIPTOR))
    assert quota.violations[0].subject == f"key:{fresh['key']['key_id']}"
    assert retry.retry_delay.seconds >= 1


@pytest.mark.parametrize("raw", [
    b"sk-sluice-" + b"a" * 8_000,                    # very long, inside the 8 KiB header line limit
    b"sk-sluice-abcd-" + "é".encode() * 30,  # non-ASCII (UTF-8)
    b"sk-sluice-abcd-\xff\xfe" + b"a" * 40,          # not even UTF-8
])
def test_hostile_keys_get_a_clear_401_and_the_gateway_keeps_serving(gateways, raw):
    (a, _), _ = gateways
    response = _raw_post(a, raw)
    assert response.startswith(b"HTTP/1.1 401"), response[:200]
    body = json.loads(response.split(b"\r\n\r\n", 1)[1])
    assert body["error"] == {"type": "authentication_error", "message": "invalid x-api-key"}
    assert post(a, a.api_key).status_code == 200
    assert a.procs["all"].poll() is None


@pytest.mark.parametrize("raw", [
    # A CR inside the value, carrying a second x-api-key: must not split the request.
    b"sk-sluice-abcd-" + b"a" * 40 + b"\rx-api-key: injected",
    b"sk-sluice-abcd-aaaa\x00" + b"a" * 40,  # NUL
    b"sk-sluice-" + b"a" * 200_000,          # past the header line limit
])
def test_malformed_http_is_refused_by_the_parser_before_any_key_check(gateways, raw):
    (a, _), _ = gateways
    before = _malformed_count(a)
    response = _raw_post(a, raw)
    # A 400; or, when the server closed while 200 KB were still arriving, a
    # reset that can discard the 400 before it is read: refused either way.
    assert response == b"" or response.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")), response[:200]
    if len(raw) < 8000:
        assert response
    # Counted, and logged as one line rather than a traceback per request.
    wait_until(lambda: _malformed_count(a) > before, timeout=5, what="the refusal to be counted")
    assert "refused malformed HTTP" in a.log_text("all")
    assert "http_exceptions.BadHttpMessage" not in a.log_text("all")
    assert post(a, a.api_key).status_code == 200
    assert a.procs["all"].poll() is None


def _malformed_count(cluster: SluiceCluster) -> float:
    text = httpx.get(f"http://127.0.0.1:{cluster.metrics_port}/metrics", timeout=5).text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("sluice_http_malformed_requests_total{"))


def _raw_post(cluster: SluiceCluster, key: bytes) -> bytes:
    """A request written byte for byte, for what no well-behaved client sends."""
    import socket

    body = json.dumps(BODY).encode()
    request = (b"POST /v1/messages HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
               b"x-api-key: " + key + b"\r\nanthropic-version: 2023-06-01\r\ncontent-length: " + str(len(body)).encode() + b"\r\n"
               b"connection: close\r\n\r\n" + body)
    chunks = []
    with socket.create_connection(("127.0.0.1", cluster.http_port), timeout=10) as sock:
        try:
            sock.sendall(request)
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, BrokenPipeError):
            pass  # the server hung up on a request it refused to read
    return b"".join(chunks)
