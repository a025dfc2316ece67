"""One request end to end: SDK or gRPC client -> gateway -> auth -> (safety,
cache, routing) -> inference -> simulator, in `all` mode and as a mesh."""

from __future__ import annotations

import anthropic
import grpc
import httpx
import pytest

from sluice.gateway.v1 import gateway_service_pb2 as gw
from tests.e2e.helpers import (
    error_details,
    gateway_stub,
    grpc_params,
    sdk,
    sim_stats,
    user,
    wait_until,
)

pytestmark = pytest.mark.e2e


def test_sdk_create_returns_the_simulators_answer(cluster):
    messages = user("What does a sluice do?")
    through = sdk(cluster.http_base, cluster.api_key).messages.create(
        model="claude-sonnet-4-6", max_tokens=64, messages=messages)
    direct = sdk(cluster.simulator_base, "sk-sim").messages.create(
        model="claude-sonnet-4-6", max_tokens=64, messages=messages)

    assert through.content[0].text == direct.content[0].text
    assert through.model == "claude-sonnet-4-6"
    assert through.stop_reason == direct.stop_reason == "end_turn"
    assert through.usage.input_tokens == direct.usage.input_tokens
    assert through.usage.output_tokens == direct.usage.output_tokens == 24
    assert through.usage.cache_read_input_tokens == 0
    assert through.id.startswith("msg_")


def test_sdk_stream_assembles_the_simulators_text(cluster):
    messages = user("Stream me a story")
    client = sdk(cluster.http_base, cluster.api_key)
    kinds = []
    with client.messages.stream(model="claude-haiku-4-5", max_tokens=10, messages=messages) as stream:
        for event in stream:
            kinds.append(event.type)
        final = stream.get_final_message()
    direct = sdk(cluster.simulator_base, "sk-sim").messages.create(
        model="claude-haiku-4-5", max_tokens=10, messages=messages)

    assert final.content[0].text == direct.content[0].text
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 10
    assert final.usage.cache_creation_input_tokens == 0
    raw = [k for k in kinds if k != "text"]
    assert raw[0] == "message_start" and raw[1] == "content_block_start"
    assert raw[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    # The output filter holds back the tail of the text (64 characters in the
    # standard pack) and releases it in pieces: same text, fewer deltas.
    assert 1 <= raw.count("content_block_delta") <= 10


def test_cache_tokens_are_reported_through_the_stream(cluster):
    # A cache_control breakpoint after a long system prompt: the first call
    # writes the prefix, the second reads it; usage says so at each hop.
    system = [{"type": "text", "text": "policy " * 1200, "cache_control": {"type": "ephemeral"}}]
    client = sdk(cluster.http_base, cluster.api_key)
    usages = []
    for _ in range(2):
        with client.messages.stream(model="claude-sonnet-4-6", max_tokens=5, system=system,
                                    messages=user(f"cache test {cluster.mode}")) as stream:
            usages.append(stream.get_final_message().usage)
    assert usages[0].cache_creation_input_tokens > 1024 and usages[0].cache_read_input_tokens == 0
    assert usages[1].cache_read_input_tokens == usages[0].cache_creation_input_tokens
    assert usages[1].cache_creation_input_tokens == 0


def test_grpc_streaming_client(cluster):
    with grpc.insecure_channel(cluster.grpc_address) as channel:
        stream = gateway_stub(channel).StreamMessage(
            gw.StreamMessageRequest(params=grpc_params("hello over grpc", max_tokens=64)),
            metadata=[("x-api-key", cluster.api_key)], timeout=10,
        )
        events = [r.event for r in stream]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    text = "".join(e.content_block_delta.text_delta for e in events if e.HasField("content_block_delta"))
    direct = sdk(cluster.simulator_base, "sk-sim").messages.create(
        model="claude-sonnet-4-6", max_tokens=64, messages=user("hello over grpc"))
    assert text == direct.content[0].text
    delta = next(e.message_delta for e in events if e.HasField("message_delta"))
    assert delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == 24 and delta.usage.input_tokens == direct.usage.input_tokens


def test_grpc_unary_create(cluster):
    with grpc.insecure_channel(cluster.grpc_address) as channel:
        response = gateway_stub(channel).CreateMessage(
            gw.CreateMessageRequest(params=grpc_params("unary please")),
            metadata=[("authorization", f"Bearer {cluster.api_key}")], timeout=10,
        )
    assert response.message.model == "claude-sonnet-4-6"
    assert response.message.usage.output_tokens == 24
    assert response.message.content[0].text.text


@pytest.mark.parametrize("key,reason", [
    ("sk-sluice-nosuchkey-" + "a" * 48, "INVALID_API_KEY"),
    ("not-a-key", "MALFORMED_API_KEY"),
    ("", "MISSING_API_KEY"),
])
def test_bad_api_key_is_rejected(cluster, key, reason):
    with pytest.raises(anthropic.AuthenticationError) as http_err:
        sdk(cluster.http_base, key or "x").with_options(
            default_headers={"x-api-key": key}).messages.create(
            model="claude-sonnet-4-6", max_tokens=5, messages=user("hi"))
    assert http_err.value.status_code == 401
    assert http_err.value.body["error"]["type"] == "authentication_error"

    with grpc.insecure_channel(cluster.grpc_address) as channel, pytest.raises(grpc.RpcError) as rpc_err:
        gateway_stub(channel).CreateMessage(gw.CreateMessageRequest(params=grpc_params("hi")),
                                            metadata=[("x-api-key", key)], timeout=10)
    assert rpc_err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_details(rpc_err.value)["reason"] == reason


def test_right_key_id_with_wrong_secret_is_rejected(cluster):
    key_id = cluster.api_key.split("-")[2]
    forged = f"sk-sluice-{key_id}-{'0' * 48}"
    with pytest.raises(anthropic.AuthenticationError):
        sdk(cluster.http_base, forged).messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=user("hi"))


@pytest.mark.parametrize("body,field", [
    (b'{"max_tokens": 5, "messages": [', "(body)"),
    (b'{"model": "claude-sonnet-4-6", "messages": []}', "max_tokens"),
    (b'{"max_tokens": 5, "messages": [{"role": {"robot": 1}, "content": "x"}]}', "messages.0.role"),
    (b'{"max_tokens": "5", "messages": [{"role": "user", "content": "x"}]}', "max_tokens"),
    (b'{"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text"}]}]}', "messages.0.content.0.text"),
    (b'{"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "stream"),
    (b'{"max_tokens": 99999999999999999999999, "messages": [{"role": "user", "content": "x"}]}', "max_tokens"),
    (b'{"max_tokens": 5, "messages": [{"role": "user", "content": "\\ud800"}]}', "messages.0.content"),
    (b'[1, 2, 3]', "(body)"),
])
def test_malformed_body_gets_400_naming_the_field(cluster, body, field):
    response = httpx.post(f"{cluster.http_base}/v1/messages", content=body, timeout=10,
                          headers={"x-api-key": cluster.api_key, "content-type": "application/json", "anthropic-version": "2023-06-01"})
    assert response.status_code == 400
    payload = response.json()
    assert payload["type"] == "error" and payload["error"]["type"] == "invalid_request_error"
    assert payload["error"]["message"].startswith(field), payload
    assert response.headers["request-id"] == payload["request_id"]


def test_invalid_grpc_request_names_the_field(cluster):
    params = grpc_params("x")
    params.max_tokens = -1
    with grpc.insecure_channel(cluster.grpc_address) as channel, pytest.raises(grpc.RpcError) as err:
        gateway_stub(channel).CreateMessage(gw.CreateMessageRequest(params=params),
                                            metadata=[("x-api-key", cluster.api_key)], timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = error_details(err.value)
    assert details["reason"] == "INVALID_REQUEST" and details["fields"] == ["max_tokens"]
    assert details["domain"] == "sluice.dev"


def test_oversized_body_gets_413(cluster):
    response = httpx.post(f"{cluster.http_base}/v1/messages", content=b"x" * (33 * 1024 * 1024), timeout=30,
                          headers={"x-api-key": cluster.api_key, "content-type": "application/json", "anthropic-version": "2023-06-01"})
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "request_too_large"


def test_unknown_model_is_404_naming_it(cluster):
    with pytest.raises(anthropic.NotFoundError) as err:
        sdk(cluster.http_base, cluster.api_key).messages.create(
            model="claude-imaginary-9", max_tokens=5, messages=user("hi"))
    assert err.value.body["error"] == {"type": "not_found_error", "message": "model: claude-imaginary-9"}


def test_upstream_529_surfaces_as_529_overloaded(cluster):
    before = sim_stats(cluster.simulator_base)["injected_failures"]
    with pytest.raises(anthropic.APIStatusError) as err:
        sdk(cluster.http_base, cluster.api_key).messages.create(
            model="claude-sonnet-4-6", max_tokens=5, messages=user("busy? [[sim:status=529]]"))
    assert err.value.status_code == 529
    assert err.value.body["error"]["type"] == "overloaded_error"
    assert err.value.response.headers["retry-after"] == "1"
    # Every candidate (routing.max_candidates=6: the model's deployments, then its
    # fallback's) was tried twice (attempts_per_candidate=2), within the retry budget.
    assert sim_stats(cluster.simulator_base)["injected_failures"] - before == 12

    with grpc.insecure_channel(cluster.grpc_address) as channel, pytest.raises(grpc.RpcError) as rpc_err:
        list(gateway_stub(channel).StreamMessage(
            gw.StreamMessageRequest(params=grpc_params("busy [[sim:status=529]]")),
            metadata=[("x-api-key", cluster.api_key)], timeout=10))
    assert rpc_err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_details(rpc_err.value)["reason"] == "UPSTREAM_OVERLOADED"


def test_error_after_stream_start_is_an_sse_error_event(cluster):
    client = sdk(cluster.http_base, cluster.api_key)
    received = []
    with pytest.raises(anthropic.APIStatusError) as err:
        with client.messages.stream(model="claude-sonnet-4-6", max_tokens=50,
                                    messages=user("fail late [[sim:error_after=3]]")) as stream:
            # Appended one by one: the texts before the error must be kept (hence noqa).
            for text in stream.text_stream:
                received.append(text)  # noqa: PERF402
    # The three words the model said before failing reach the client (the
    # output filter releases what it held when the model fails), then the error.
    assert len("".join(received).split()) == 3
    assert "overloaded" in str(err.value.body)


def test_client_cancel_mid_stream_reaches_the_simulator(cluster):
    before = sim_stats(cluster.simulator_base)["client_disconnects"]
    client = sdk(cluster.http_base, cluster.api_key)
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=500,
                                messages=user("long one [[sim:tokens=400]] [[sim:itl_ms=50]]")) as stream:
        first = next(iter(stream.text_stream))
        assert first
    # Leaving the block closed the HTTP response mid-stream.
    wait_until(lambda: sim_stats(cluster.simulator_base)["client_disconnects"] > before,
               what="the simulator to see the HTTP client's disconnect")

    before = sim_stats(cluster.simulator_base)["client_disconnects"]
    with grpc.insecure_channel(cluster.grpc_address) as channel:
        call = gateway_stub(channel).StreamMessage(
            gw.StreamMessageRequest(params=grpc_params("long grpc [[sim:tokens=400]] [[sim:itl_ms=50]]", max_tokens=500)),
            metadata=[("x-api-key", cluster.api_key)], timeout=30)
        assert next(call).event.HasField("message_start")
        call.cancel()
    wait_until(lambda: sim_stats(cluster.simulator_base)["client_disconnects"] > before,
               what="the simulator to see the gRPC client's cancellation")


def test_client_deadline_reaches_the_upstream(cluster):
    before = sim_stats(cluster.simulator_base)["client_disconnects"]
    with grpc.insecure_channel(cluster.grpc_address) as channel, pytest.raises(grpc.RpcError) as err:
        list(gateway_stub(channel).StreamMessage(
            gw.StreamMessageRequest(params=grpc_params("slow start [[sim:ttft_ms=5000]]")),
            metadata=[("x-api-key", cluster.api_key)], timeout=0.5))
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_until(lambda: sim_stats(cluster.simulator_base)["client_disconnects"] > before,
               what="the upstream call to be abandoned at the deadline")


def test_errors_are_counted_in_metrics(cluster):
    httpx.post(f"{cluster.http_base}/v1/messages", content=b"{", timeout=10,
               headers={"x-api-key": cluster.api_key, "anthropic-version": "2023-06-01"})
    text = httpx.get(f"http://127.0.0.1:{cluster.metrics_port}/metrics", timeout=5).text
    line = next(row for row in text.splitlines()
                if row.startswith("sluice_http_requests_total") and 'status="400"' in row)
    assert float(line.rsplit(" ", 1)[1]) >= 1
    assert 'sluice_errors_total{reason="INVALID_REQUEST",service="gateway_http"}' in text
