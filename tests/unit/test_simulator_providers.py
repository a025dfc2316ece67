"""The simulator's deployments on three provider wires — the Anthropic API
under ``/d/{dep}``, Vertex AI and Bedrock — through the official SDK
clients (``AsyncAnthropic``, ``AsyncAnthropicVertex`` with google-auth,
``AsyncAnthropicBedrock`` with SigV4 and AWS event-stream), and each
deployment's profile: region, pacing, heavy tail, failure rates, failure
script, recording."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from aiohttp.test_utils import TestClient, TestServer
from anthropic.lib.bedrock._stream_decoder import AWSEventStreamDecoder
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from pydantic import ValidationError

from sluice.config.simulator import SimulatedDeployment, SimulatorSettings
from sluice.simulator import eventstream
from sluice.simulator.app import Simulator
from sluice.simulator.deployments import Deployments, Outcome
from tests.infra.google_credentials import service_account

AKID, SECRET = "AKIASLUICESIM", "sluice-sim-secret"

CATALOG = """
version: test-providers-1
x-prices: &prices {input: 1.0, output: 5.0, cache_write_5m: 1.25, cache_write_1h: 2.0, cache_read: 0.1}
models:
  - id: sim-classic
    display_name: Sim Classic
    created_at: 2025-01-01
    aliases: [sim-classic-20250101]
    upstream_model: sim-classic-upstream-20250101
    context_window: 200000
    max_output_tokens: 1000
    min_cacheable_tokens: 100
    accepts: {sampling: all, thinking: [enabled, disabled], inference_geo: [], prefill: true}
    tiers: [standard]
    regions: [local]
    prices: *prices
  - id: sim-modern
    display_name: Sim Modern
    created_at: 2026-06-01
    context_window: 1000000
    max_output_tokens: 128000
    min_cacheable_tokens: 200
    accepts: {sampling: default_temperature, thinking: [adaptive, disabled], inference_geo: [global, us],
              prefill: false}
    tiers: [standard]
    regions: [local]
    prices: *prices
"""
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture(autouse=True)
def _no_aws_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    # boto3 would read a named profile from the environment; the tests pass keys.
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def catalog_path(tmp_path: Path) -> str:
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG)
    return str(path)


@pytest.fixture
def sim(catalog_path: str) -> Simulator:
    return Simulator(SimulatorSettings(
        catalog_path=catalog_path, time_to_first_token_ms=0, inter_token_ms=0, output_tokens=6,
        deployments={"vertex-eu": SimulatedDeployment(region="europe-west1"),
                     "bedrock-eu": SimulatedDeployment(region="eu-west-1")}))


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(sim.app())) as c:
        yield c


def base(c: TestClient) -> str:
    return str(c.make_url("")).rstrip("/")


def api_sdk(c: TestClient, dep: str = "x") -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(api_key="sk-test", base_url=f"{base(c)}/d/{dep}", max_retries=0)


def vertex_sdk(c: TestClient, dep: str = "vertex-eu", region: str = "europe-west1",
               **auth: Any) -> anthropic.AsyncAnthropicVertex:
    if not auth:
        auth = {"access_token": "sim-vertex-test"}
    return anthropic.AsyncAnthropicVertex(region=region, project_id="p", base_url=f"{base(c)}/d/{dep}/v1",
                                          max_retries=0, **auth)


def bedrock_sdk(c: TestClient, dep: str = "bedrock-eu", region: str = "eu-west-1", key: str = AKID,
                secret: str = SECRET) -> anthropic.AsyncAnthropicBedrock:
    return anthropic.AsyncAnthropicBedrock(aws_access_key=key, aws_secret_key=secret, aws_region=region,
                                           base_url=f"{base(c)}/d/{dep}", max_retries=0)


def rewriting(cls: type, add: dict[str, Any] | None = None, drop: tuple[str, ...] = ()) -> type:
    """`cls` with its body changed after the SDK's own platform rewrite
    (which moves `model` and `stream` into the path and adds
    anthropic_version) and before signing: what a hand-written client
    might send. extra_body cannot do it: the SDK merges it first."""

    class Rewriting(cls):  # type: ignore[misc, valid-type]
        async def _prepare_options(self, options: Any) -> Any:
            options = await super()._prepare_options(options)
            for key in drop:
                options.json_data.pop(key, None)
            options.json_data.update(add or {})
            return options

    return Rewriting


# One client per wire, each on its own deployment, and the model name that wire uses.
WIRES = ("anthropic", "vertex", "bedrock")


def sdk_for(c: TestClient, wire: str, dep: str) -> tuple[Any, str]:
    if wire == "anthropic":
        return api_sdk(c, dep), "sim-classic"
    if wire == "vertex":
        return vertex_sdk(c, dep), "sim-classic@20250101"
    return bedrock_sdk(c, dep), "eu.anthropic.sim-classic-v1:0"


async def put_profile(c: TestClient, dep: str, profile: dict[str, Any]) -> dict[str, Any]:
    response = await c.put(f"/_sim/deployments/{dep}", json=profile)
    assert response.status == 200, await response.text()
    return await response.json()


async def records(c: TestClient, query: str = "") -> list[dict[str, Any]]:
    return await (await c.get(f"/_sim/requests{query}")).json()


def sign(url: str, body: bytes, *, region: str = "eu-west-1", secret: str = SECRET) -> dict[str, str]:
    """SigV4 headers for a raw Bedrock request, signed by botocore."""
    request = AWSRequest(method="POST", url=url, data=body, headers={"content-type": "application/json"})
    SigV4Auth(Credentials(AKID, secret), "bedrock", region).add_auth(request)
    return dict(request.headers.items())


async def bedrock_raw(c: TestClient, doc: Any, *, dep: str = "bedrock-eu", model: str = "anthropic.sim-classic-v1:0",
                      **sign_args: Any) -> tuple[int, Any, Any]:
    path = f"/d/{dep}/model/{model}/invoke"
    body = json.dumps(doc).encode()
    response = await c.post(path, data=body, headers=sign(f"{base(c)}{path}", body, **sign_args))
    return response.status, await response.json(), response.headers


# -- AWS event-stream framing ---------------------------------------------------------------


def test_event_stream_encoder_decodes_with_botocore_and_the_sdk():
    event = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "héllo"}}
    event_json = json.dumps(event).encode()
    data = (eventstream.chunk(event_json)
            + eventstream.error_event({"type": "overloaded_error", "message": "Overloaded"})
            + eventstream.error_event({"type": "billing_error", "message": "no credit"}))
    buffer = EventStreamBuffer()
    for i in range(len(data)):  # byte by byte: the prelude and lengths are what frame it
        buffer.add_data(data[i:i + 1])
    messages = list(buffer)
    assert [m.headers for m in messages] == [
        {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"},
        {":exception-type": "serviceUnavailableException", ":content-type": "application/json",
         ":message-type": "exception"},
        {":exception-type": "modelStreamErrorException", ":content-type": "application/json",
         ":message-type": "exception"}]
    assert base64.b64decode(json.loads(messages[0].payload)["bytes"]) == event_json
    assert json.loads(messages[1].payload) == {"message": "Overloaded"}
    # The SDK's decoder: a chunk is the event itself, an exception an `error` event.
    decoder = AWSEventStreamDecoder()
    sses = list(decoder.iter_bytes(iter([data[:7], data[7:200], data[200:]])))
    assert [(s.event, s.json()) for s in sses] == [
        ("content_block_delta", event),
        ("error", {"type": "error", "error": {"type": "serviceUnavailableException", "message": "Overloaded"}}),
        ("error", {"type": "error", "error": {"type": "modelStreamErrorException", "message": "no credit"}})]
    # The message CRC covers the payload: one flipped byte is caught.
    broken = bytearray(eventstream.chunk(b'{"type":"ping"}'))
    broken[-6] ^= 1
    buffer = EventStreamBuffer()
    buffer.add_data(bytes(broken))
    with pytest.raises(ChecksumMismatch):
        list(buffer)


def test_sse_is_reframed_event_by_event():
    framer = eventstream.SseToEventStream()
    sse = (b'event: message_start\r\ndata: {"type":"message_start"}\r\n\r\n'
           b': a comment\n\nevent: error\ndata: {"type":"error","error":{"type":"rate_limit_error","message":"m"}}\n\n')
    out = framer.feed(sse[:30]) + framer.feed(sse[30:])
    buffer = EventStreamBuffer()
    buffer.add_data(out)
    messages = list(buffer)
    assert [m.headers.get(":event-type") or m.headers[":exception-type"] for m in messages] == [
        "chunk", "throttlingException"]
    assert base64.b64decode(json.loads(messages[0].payload)["bytes"]) == b'{"type":"message_start"}'


# -- the Anthropic API under a deployment prefix ---------------------------------------------------


async def test_anthropic_wire_under_a_deployment_prefix(client):
    sdk = api_sdk(client, "api-eu")
    message = await sdk.messages.create(model="sim-classic", max_tokens=50, messages=HELLO)
    async with sdk.messages.stream(model="sim-classic", max_tokens=50, messages=HELLO) as stream:
        streamed = await stream.get_final_message()
    assert streamed.content[0].text == message.content[0].text and message.usage.output_tokens == 6
    assert (await sdk.messages.count_tokens(model="sim-classic", messages=HELLO)).input_tokens == \
        message.usage.input_tokens
    assert [m.id for m in (await sdk.models.list()).data] == ["sim-modern", "sim-classic"]
    assert (await sdk.models.retrieve("sim-classic-20250101")).id == "sim-classic"
    got = await records(client, "?deployment=api-eu")
    assert [(r["path"], r["provider"], r["location"], r["outcome"]) for r in got] == [
        ("/d/api-eu/v1/messages", "anthropic", "", "ok"), ("/d/api-eu/v1/messages", "anthropic", "", "ok"),
        ("/d/api-eu/v1/messages/count_tokens", "anthropic", "", None)]
    await sdk.close()


async def test_inference_geo_on_the_api_wire_and_elsewhere(client):
    sdk = api_sdk(client, "geo")
    asked = await sdk.messages.create(model="sim-modern", max_tokens=20, messages=HELLO, inference_geo="us")
    plain = await sdk.messages.create(model="sim-modern", max_tokens=20, messages=HELLO)
    classic = await sdk.messages.create(model="sim-classic", max_tokens=20, messages=HELLO)
    assert (asked.usage.inference_geo, plain.usage.inference_geo, classic.usage.inference_geo) == ("us", "global", None)
    await put_profile(client, "geo", {"inference_geo": "eu"})
    assert (await sdk.messages.create(model="sim-modern", max_tokens=20, messages=HELLO)).usage.inference_geo == "eu"
    again = await sdk.messages.create(model="sim-modern", max_tokens=20, messages=HELLO, inference_geo="us")
    assert again.usage.inference_geo == "us"  # the request's wins, echoed
    # Vertex and Bedrock report none, unless the profile sets one (a faked residency violation).
    vertex = vertex_sdk(client, "geo-v", region="us-east5")
    assert (await vertex.messages.create(model="sim-modern", max_tokens=20, messages=HELLO)).usage.inference_geo is None
    await put_profile(client, "geo-v", {"inference_geo": "us"})
    async with vertex.messages.stream(model="sim-modern", max_tokens=20, messages=HELLO) as stream:
        assert (await stream.get_final_message()).usage.inference_geo == "us"
    bedrock = bedrock_sdk(client, "geo-b")
    assert (await bedrock.messages.create(model="anthropic.sim-modern-v1:0", max_tokens=20,
                                          messages=HELLO)).usage.inference_geo is None
    await put_profile(client, "geo-b", {"inference_geo": "eu"})
    assert (await bedrock.messages.create(model="anthropic.sim-modern-v1:0", max_tokens=20,
                                          messages=HELLO)).usage.inference_geo == "eu"
    for sdk_client in (sdk, vertex, bedrock):
        await sdk_client.close()


# -- Vertex AI -------------------------------------------------------------------------------------


async def test_vertex_through_the_sdk_with_application_default_credentials(client, tmp_path, monkeypatch):
    # google-auth 2.63 ignores an authorized_user file's token_uri ("always
    # overrides" with Google's), so ADC reaches the simulator's token endpoint
    # through a service account key file (the JWT bearer grant).
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(service_account(f"{base(client)}/oauth2/token")))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key_file))
    sdk = vertex_sdk(client, credentials=None)
    message = await sdk.messages.create(model="sim-classic@20250101", max_tokens=50, messages=HELLO)
    assert message.content[0].text and message.model == "sim-classic" and message.usage.output_tokens == 6
    async with sdk.messages.stream(model="sim-classic", max_tokens=50, messages=HELLO) as stream:
        assert (await stream.get_final_message()).content[0].text == message.content[0].text
    chunks = [event async for event in await sdk.messages.create(model="sim-classic", max_tokens=50,
                                                                 messages=HELLO, stream=True)]
    assert chunks[0].type == "message_start" and chunks[-1].type == "message_stop"
    counted = await sdk.messages.count_tokens(model="sim-classic@20250101", messages=HELLO)
    assert counted.input_tokens == message.usage.input_tokens
    stats = await (await client.get("/_sim/stats")).json()
    assert stats["oauth_tokens_issued"] == 1  # one token, reused for every call
    got = await records(client, "?deployment=vertex-eu")
    prefix = "/d/vertex-eu/v1/projects/p/locations/europe-west1/publishers/anthropic/models/"
    assert [r["path"] for r in got] == [prefix + "sim-classic@20250101:rawPredict",
                                        prefix + "sim-classic:streamRawPredict",
                                        prefix + "sim-classic:streamRawPredict", prefix + "count-tokens:rawPredict"]
    assert {(r["provider"], r["location"], r["status"]) for r in got} == {("vertex", "europe-west1", 200)}
    sent = json.loads(got[0]["body"])
    assert "model" not in sent and sent["anthropic_version"] == "2026-10-21"
    await sdk.close()


async def test_vertex_with_authorized_user_credentials_refreshes_at_the_simulator(client):
    from google.oauth2.credentials import Credentials as UserCredentials

    user = UserCredentials(None, refresh_token="z", token_uri=f"{base(client)}/oauth2/token", client_id="x",
                           client_secret="y")
    sdk = vertex_sdk(client, credentials=user)
    assert (await sdk.messages.create(model="sim-classic", max_tokens=20, messages=HELLO)).content[0].text
    assert user.token.startswith("sim-vertex-")
    await sdk.close()


async def test_oauth_token_endpoint(client):
    ok = await client.post("/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": "z"})
    answer = await ok.json()
    assert ok.status == 200 and answer["access_token"].startswith("sim-vertex-")
    assert (answer["expires_in"], answer["token_type"]) == (3600, "Bearer")
    jwt = await client.post("/oauth2/token", data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                                                   "assertion": "a.b.c"})
    assert jwt.status == 200
    for form, error in (({"grant_type": "password"}, "unsupported_grant_type"),
                        ({"grant_type": "refresh_token"}, "invalid_request")):
        response = await client.post("/oauth2/token", data=form)
        assert response.status == 400 and (await response.json())["error"] == error


async def test_vertex_refusals(client):
    sdk = vertex_sdk(client)
    for changes, message in (({"add": {"model": "sim-classic"}}, "model: Extra inputs are not permitted"),
                             ({"drop": ("anthropic_version",)}, "anthropic_version: Field required")):
        rewritten = rewriting(anthropic.AsyncAnthropicVertex, **changes)(
            region="europe-west1", project_id="p", base_url=f"{base(client)}/d/vertex-eu/v1", max_retries=0,
            access_token="sim-vertex-test")
        with pytest.raises(anthropic.BadRequestError) as refused:
            await rewritten.messages.create(model="sim-classic", max_tokens=20, messages=HELLO)
        assert refused.value.body["error"] == {"type": "invalid_request_error", "message": message}
        await rewritten.close()
    with pytest.raises(anthropic.NotFoundError) as unknown:
        await sdk.messages.create(model="sim-nothing@2025", max_tokens=20, messages=HELLO)
    assert "sim-nothing@2025" in unknown.value.body["error"]["message"]
    path = "/d/vertex-eu/v1/projects/p/locations/europe-west1/publishers/anthropic/models/sim-classic:rawPredict"
    auth = {"authorization": "Bearer sim-vertex-test"}
    response = await client.post(path, headers=auth, json={"anthropic_version": "2024-01-01", "max_tokens": 5,
                                                           "messages": HELLO})
    assert response.status == 400 and (await response.json())["error"]["message"] == \
        'anthropic_version: "2024-01-01" is not a valid version'
    # vertex-2023-10-16 has 2023-06-01's rules: sampling parameters pass; 2026-10-21 refuses them.
    vertex_2023 = {"anthropic_version": "vertex-2023-10-16", "max_tokens": 5, "messages": HELLO, "temperature": 0.5}
    assert (await client.post(path, json=vertex_2023, headers=auth)).status == 200
    response = await client.post(path, json={**vertex_2023, "anthropic_version": "2026-10-21"}, headers=auth)
    assert (await response.json())["error"]["message"] == "temperature: Extra inputs are not permitted"
    assert (await client.post(path, json={**vertex_2023, "anthropic_version": "2023-06-01"}, headers=auth)).status == 200
    # rawPredict streams when the body says so, as the API does.
    response = await client.post(path, json={**vertex_2023, "stream": True}, headers=auth)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert (await response.text()).rstrip().endswith('data: {"type":"message_stop"}')
    # Auth: a bearer token the simulator issued (or sim-vertex-*), else 401.
    for headers in ({}, {"authorization": "Bearer ya29.real-google-token"}):
        response = await client.post(path, json=vertex_2023, headers=headers)
        assert response.status == 401 and (await response.json())["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.AuthenticationError):
        await vertex_sdk(client, access_token="nope").messages.create(model="sim-classic", max_tokens=5,
                                                                     messages=HELLO)
    await sdk.close()


async def test_vertex_location_must_be_the_deployments_region(client):
    sdk = vertex_sdk(client, region="us-east5")
    with pytest.raises(anthropic.NotFoundError) as refused:
        await sdk.messages.create(model="sim-classic", max_tokens=20, messages=HELLO)
    assert refused.value.body["error"]["message"] == (
        "location 'us-east5' is not served here: deployment 'vertex-eu' is in 'europe-west1'")
    # A deployment without a region serves any location.
    assert (await vertex_sdk(client, "anywhere", region="us-east5").messages.create(
        model="sim-classic", max_tokens=20, messages=HELLO)).content
    got = await records(client, "?deployment=vertex-eu")
    assert [(r["location"], r["status"], r["outcome"]) for r in got] == [("us-east5", 404, None)]
    await sdk.close()


# -- Bedrock ---------------------------------------------------------------------------------------


async def test_bedrock_through_the_sdk(client):
    sdk = bedrock_sdk(client)
    message = await sdk.messages.create(model="eu.anthropic.sim-classic-v1:0", max_tokens=50, messages=HELLO)
    assert message.content[0].text and message.model == "sim-classic" and message.usage.output_tokens == 6
    async with sdk.messages.stream(model="anthropic.sim-classic-20250101-v1:0", max_tokens=50,
                                   messages=HELLO) as stream:
        assert (await stream.get_final_message()).content[0].text == message.content[0].text
    raw = await sdk.messages.with_raw_response.create(model="sim-classic-upstream-20250101", max_tokens=50,
                                                      messages=HELLO, stream=True)
    assert raw.headers["content-type"] == "application/vnd.amazon.eventstream"
    events = [event async for event in await raw.parse()]
    assert events[0].type == "message_start" and events[-1].type == "message_stop"
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == message.content[0].text
    with pytest.raises(anthropic.NotFoundError):
        await sdk.messages.create(model="anthropic.sim-nothing-v1:0", max_tokens=50, messages=HELLO)
    got = await records(client, "?deployment=bedrock-eu")
    assert [r["path"].rsplit("/", 2)[1:] for r in got] == [
        ["eu.anthropic.sim-classic-v1:0", "invoke"], ["anthropic.sim-classic-20250101-v1:0",
                                                      "invoke-with-response-stream"],
        ["sim-classic-upstream-20250101", "invoke-with-response-stream"], ["anthropic.sim-nothing-v1:0", "invoke"]]
    assert {(r["provider"], r["location"]) for r in got} == {("bedrock", "eu-west-1")}
    sent = json.loads(got[1]["body"])
    assert "model" not in sent and "stream" not in sent and sent["anthropic_version"] == "2026-10-21"
    await sdk.close()


async def test_bedrock_refuses_model_and_stream_in_the_body(client):
    for changes, detail in (({"add": {"model": "sim-classic"}}, "#: extraneous key [model] is not permitted"),
                            ({"add": {"stream": False}}, "#: extraneous key [stream] is not permitted"),
                            ({"drop": ("anthropic_version",)}, "#: required key [anthropic_version] not found")):
        sdk = rewriting(anthropic.AsyncAnthropicBedrock, **changes)(
            aws_access_key=AKID, aws_secret_key=SECRET, aws_region="eu-west-1",
            base_url=f"{base(client)}/d/bedrock-eu", max_retries=0)
        with pytest.raises(anthropic.BadRequestError) as refused:  # signed fine, refused for the body
            await sdk.messages.create(model="anthropic.sim-classic-v1:0", max_tokens=5, messages=HELLO)
        assert refused.value.body == {"message": f"Malformed input request: {detail}, please reformat your input "
                                                 "and try again."}
        assert refused.value.response.headers["x-amzn-ErrorType"] == \
            "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"
        await sdk.close()
    status, _, _ = await bedrock_raw(client, {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5,
                                              "messages": HELLO, "temperature": 0.2,
                                              "anthropic_beta": ["a-2025-01-01"]})
    assert status == 200  # bedrock-2023-05-31: 2023-06-01's rules, sampling allowed
    status, answer, _ = await bedrock_raw(client, {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5,
                                                   "messages": HELLO, "anthropic_beta": "a-2025-01-01"})
    assert status == 400 and "anthropic_beta" in answer["message"]
    # The API's own rules, in Bedrock's shape.
    status, answer, headers = await bedrock_raw(client, {"anthropic_version": "bedrock-2023-05-31",
                                                         "messages": HELLO})
    assert (status, answer) == (400, {"message": "max_tokens: Field required"})
    assert headers["x-amzn-ErrorType"].startswith("ValidationException:")


async def test_bedrock_signatures(client):
    doc = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "messages": HELLO}
    # Signed for another region than the deployment's: refused, so a test proves the region signed for.
    with pytest.raises(anthropic.PermissionDeniedError) as wrong_region:
        await bedrock_sdk(client, region="us-east-1").messages.create(
            model="anthropic.sim-classic-v1:0", max_tokens=5, messages=HELLO)
    assert "signed for 'us-east-1'" in wrong_region.value.body["message"]
    with pytest.raises(anthropic.PermissionDeniedError) as bad_secret:
        await bedrock_sdk(client, secret="wrong").messages.create(
            model="anthropic.sim-classic-v1:0", max_tokens=5, messages=HELLO)
    assert bad_secret.value.body["message"].startswith("The request signature we calculated does not match")
    assert bad_secret.value.response.headers["x-amzn-ErrorType"].startswith("InvalidSignatureException:")
    with pytest.raises(anthropic.PermissionDeniedError) as unknown_key:
        await bedrock_sdk(client, key="AKIAUNKNOWN").messages.create(
            model="anthropic.sim-classic-v1:0", max_tokens=5, messages=HELLO)
    assert unknown_key.value.body["message"] == "The security token included in the request is invalid."
    # A deployment without a region takes any; the signature is still checked.
    assert (await bedrock_sdk(client, "any-region", region="ap-northeast-1").messages.create(
        model="anthropic.sim-classic-v1:0", max_tokens=5, messages=HELLO)).content
    # Unsigned, or a body changed after signing.
    path = "/d/bedrock-eu/model/anthropic.sim-classic-v1:0/invoke"
    response = await client.post(path, json=doc)
    assert response.status == 403 and (await response.json()) == {"message": "Missing Authentication Token"}
    assert response.headers["x-amzn-ErrorType"].startswith("AccessDeniedException:")
    body = json.dumps(doc).encode()
    headers = sign(f"{base(client)}{path}", body)
    assert (await client.post(path, data=body, headers=headers)).status == 200
    tampered = await client.post(path, data=body.replace(b'"max_tokens": 5', b'"max_tokens": 6'), headers=headers)
    assert tampered.status == 403
    got = await records(client, "?deployment=bedrock-eu")
    assert [(r["location"], r["status"]) for r in got] == [
        ("us-east-1", 403), ("eu-west-1", 403), ("eu-west-1", 403), ("", 403), ("eu-west-1", 200),
        ("eu-west-1", 403)]


# -- profiles: failure scripts, rates, heavy tail, mid-stream failures ---------------------------------


@pytest.mark.parametrize("wire", WIRES)
async def test_outcomes_script_is_played_in_order(client, wire):
    dep = f"script-{wire}"
    await put_profile(client, dep, {"outcomes": ["529", "ok", "429"], "retry_after_s": 2})
    sdk, model = sdk_for(client, wire, dep)
    expected = anthropic.ServiceUnavailableError if wire == "bedrock" else anthropic.OverloadedError
    with pytest.raises(expected) as first:
        await sdk.messages.create(model=model, max_tokens=20, messages=HELLO)
    assert first.value.response.headers["retry-after"] == "2"
    if wire == "bedrock":
        assert first.value.status_code == 503 and first.value.response.headers["x-amzn-ErrorType"].startswith(
            "ServiceUnavailableException:")
    else:
        assert first.value.status_code == 529 and first.value.body["error"]["type"] == "overloaded_error"
    assert (await sdk.messages.create(model=model, max_tokens=20, messages=HELLO)).content[0].text
    with pytest.raises(anthropic.RateLimitError):
        await sdk.messages.create(model=model, max_tokens=20, messages=HELLO)
    # The script is used up: the rates (all 0) apply.
    assert (await sdk.messages.create(model=model, max_tokens=20, messages=HELLO)).content[0].text
    state = (await (await client.get("/_sim/deployments")).json())[dep]
    assert state["requests"] == 4 and state["by_outcome"] == {"529": 1, "ok": 2, "429": 1}
    got = await records(client, f"?deployment={dep}")
    assert [(r["outcome"], r["status"]) for r in got] == [
        ("529", 503 if wire == "bedrock" else 529), ("ok", 200), ("429", 429), ("ok", 200)]
    await sdk.close()


@pytest.mark.parametrize("wire", WIRES)
async def test_midstream_failure_after_the_first_delta(client, wire):
    dep = f"mid-{wire}"
    await put_profile(client, dep, {"outcomes": ["midstream", "midstream"]})
    sdk, model = sdk_for(client, wire, dep)
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as failed:
        async with sdk.messages.stream(model=model, max_tokens=50, messages=HELLO) as stream:
            async for event in stream:
                if event.type != "text":  # the helper's own event for each text delta
                    seen.append(event.type)
    assert seen == ["message_start", "content_block_start", "content_block_delta"]
    error = failed.value.body["error"]
    assert error["type"] == ("serviceUnavailableException" if wire == "bedrock" else "overloaded_error")
    # A scripted answer fails the same way (the player's path).
    sid = (await (await client.post("/_sim/scripts", json={"content": [{"type": "text", "text": "a" * 40}],
                                                           "chunk_chars": 4})).json())["id"]
    texts: list[str] = []
    with pytest.raises(anthropic.APIStatusError):
        stream = await sdk.messages.create(model=model, max_tokens=50, stream=True,
                                           messages=[{"role": "user", "content": f"[[sim:script={sid}]]"}])
        async for event in stream:
            if event.type == "content_block_delta":
                texts.append(event.delta.text)
    assert texts == ["aaaa"]
    assert [r["outcome"] for r in await records(client, f"?deployment={dep}")] == ["midstream", "midstream"]
    await sdk.close()


async def test_midstream_failure_not_streamed_is_an_overloaded_answer(client):
    await put_profile(client, "mid-json", {"midstream_failure_rate": 1})
    sdk = api_sdk(client, "mid-json")
    with pytest.raises(anthropic.OverloadedError):
        await sdk.messages.create(model="sim-classic", max_tokens=20, messages=HELLO)
    await sdk.close()


@pytest.mark.parametrize("wire", WIRES)
async def test_slow_probability_makes_the_first_token_late(client, wire):
    slow_ms = 300
    await put_profile(client, f"slow-{wire}", {"slow_probability": 1, "slow_ttft_ms": slow_ms})
    await put_profile(client, f"fast-{wire}", {"slow_probability": 0, "slow_ttft_ms": slow_ms})
    first_event: dict[str, float] = {}
    for kind in ("slow", "fast"):
        sdk, model = sdk_for(client, wire, f"{kind}-{wire}")
        started = time.monotonic()
        async with sdk.messages.stream(model=model, max_tokens=20, messages=HELLO) as stream:
            async for event in stream:
                first_event.setdefault(kind, time.monotonic() - started)
                assert event.type == "message_start"
                break
        await sdk.close()
    # ttft is 0 here: the slow draw alone holds the first event back by slow_ttft_ms.
    assert first_event["slow"] >= slow_ms / 1000 > first_event["fast"]
    assert [r["outcome"] for r in await records(client, f"?deployment=slow-{wire}")] == ["slow"]


async def test_profile_pacing_applies_to_json_answers_too(client):
    await put_profile(client, "paced", {"time_to_first_token_ms": 150, "inter_token_ms": 10})
    sdk = api_sdk(client, "paced")
    started = time.monotonic()
    await sdk.messages.create(model="sim-classic", max_tokens=20, messages=HELLO)
    # First token at 150 ms, then 5 more deltas 10 ms apart.
    assert time.monotonic() - started >= 0.15 + 5 * 0.01
    await sdk.close()


def test_rates_and_seed_make_runs_reproducible(catalog_path):
    profile = {"failure_rate": 0.3, "failure_status": 500, "slow_probability": 0.3,
               "midstream_failure_rate": 0.3, "seed": 7}
    settings = SimulatorSettings(catalog_path=catalog_path, deployments={"a": profile})
    first = Deployments(settings)
    run = [first.draw("a").label for _ in range(200)]
    assert [Deployments(settings).draw("a").label for _ in range(1)] == run[:1]
    second = Deployments(settings)
    assert [second.draw("a").label for _ in range(200)] == run
    counts = {label: run.count(label) for label in set(run)}
    assert set(counts) == {"500", "ok", "slow", "midstream", "slow+midstream"}
    assert 40 <= counts["500"] <= 80  # 30% of 200, loosely
    # Putting the profile again starts the draws over.
    first.put("a", SimulatedDeployment(**profile))
    assert [first.draw("a").label for _ in range(200)] == run
    assert Outcome.parse("503") == Outcome(status=503) and Outcome(slow=True).label == "slow"


async def test_deployments_control_api(client):
    response = await client.put("/_sim/deployments/bad", json={"failure_rate": 2, "colour": "red"})
    message = (await response.json())["error"]["message"]
    assert response.status == 400 and message == (
        "deployment bad: failure_rate: Input should be less than or equal to 1; colour: Extra inputs are "
        "not permitted")
    response = await client.put("/_sim/deployments/bad", json={"outcomes": ["ok", "boom"]})
    assert (await response.json())["error"]["message"] == (
        "deployment bad: outcomes: Value error, outcomes[1]: 'boom' is not ok, slow, midstream or an HTTP "
        "status 400-599")
    assert (await client.put("/_sim/deployments/bad", data=b"[1]")).status == 400
    assert (await client.put("/_sim/deployments/no%20spaces", json={})).status == 404
    state = await put_profile(client, "vertex-eu", {"outcomes": ["500"], "inter_token_ms": 1})
    assert state["profile"]["region"] == "" and state["profile"]["outcomes"] == ["500"]
    listing = await (await client.get("/_sim/deployments")).json()
    assert set(listing) == {"vertex-eu", "bedrock-eu"}  # configured or put; none sent traffic yet
    assert listing["bedrock-eu"]["profile"]["region"] == "eu-west-1"
    assert listing["vertex-eu"]["profile"]["time_to_first_token_ms"] == 0  # the top-level value
    restored = await (await client.delete("/_sim/deployments/vertex-eu")).json()
    assert restored["profile"]["region"] == "europe-west1" and restored["profile"]["outcomes"] == []
    # "default" is the unprefixed routes' deployment: its profile applies there.
    await put_profile(client, "default", {"outcomes": ["500"]})
    payload = {"model": "sim-classic", "max_tokens": 5, "messages": HELLO}
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    assert (await client.post("/v1/messages", json=payload, headers=headers)).status == 500
    assert (await client.post("/v1/messages", json=payload, headers=headers)).status == 200
    reset = await (await client.delete("/_sim/deployments/default")).json()
    assert (reset["profile"]["outcomes"], reset["requests"]) == ([], 0)
    assert "default" not in await (await client.get("/_sim/deployments")).json()  # back to unconfigured


def test_deployment_settings_are_strict():
    with pytest.raises(ValidationError, match="deployment name"):
        SimulatorSettings(deployments={"bad name": {}})
    with pytest.raises(ValidationError, match="deployment name"):
        SimulatorSettings(deployments={"trailing\n": {}})
    with pytest.raises(ValidationError, match="Extra inputs"):
        SimulatorSettings(deployments={"a": {"failure_rte": 0.1}})
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        SimulatorSettings(deployments={"a": {"slow_probability": 1.5}})
    with pytest.raises(ValidationError, match="'²'"):
        SimulatorSettings(deployments={"a": {"outcomes": ["²"]}})
    with pytest.raises(ValidationError, match="greater than or equal to 400"):
        SimulatorSettings(deployments={"a": {"failure_status": 200}})


# -- recording and per-request controls on every wire ---------------------------------------------


async def test_recording_filters_by_deployment(client):
    await api_sdk(client, "rec-a").messages.create(model="sim-classic", max_tokens=5, messages=HELLO)
    await bedrock_sdk(client, "rec-b").messages.create(model="anthropic.sim-classic-v1:0", max_tokens=5,
                                                       messages=HELLO)
    response = await client.post("/v1/messages", json={"model": "sim-classic", "max_tokens": 5, "messages": HELLO},
                                 headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
    assert response.status == 200
    a = await records(client, "?deployment=rec-a")
    b = await records(client, "?deployment=rec-b")
    default = await records(client, "?deployment=default&last=1")
    assert [(r["deployment"], r["provider"], r["location"]) for r in a + b + default] == [
        ("rec-a", "anthropic", ""), ("rec-b", "bedrock", "eu-west-1"), ("default", "anthropic", "")]
    assert default[0]["path"] == "/v1/messages" and default[0]["outcome"] == "ok"
    assert (await records(client, "?deployment=nobody")) == []


async def test_directives_and_scripts_work_on_every_wire(client):
    vertex = vertex_sdk(client, "dir-v", region="us-east5")
    bedrock = bedrock_sdk(client, "dir-b")
    with pytest.raises(anthropic.RateLimitError) as limited:
        await bedrock.messages.create(model="anthropic.sim-classic-v1:0", max_tokens=5,
                                      messages=[{"role": "user", "content": "[[sim:status=429]]"}])
    assert limited.value.response.headers["x-amzn-ErrorType"].startswith("ThrottlingException:")
    with pytest.raises(anthropic.OverloadedError):
        await vertex.messages.create(model="sim-classic", max_tokens=5,
                                     messages=[{"role": "user", "content": "[[sim:status=529]]"}])
    sid = (await (await client.post("/_sim/scripts", json={"content": [{"type": "text", "text": "scripted!"}]})
                  ).json())["id"]
    prompt = [{"role": "user", "content": f"[[sim:script={sid}]]"}]
    assert (await vertex.messages.create(model="sim-classic", max_tokens=5, messages=prompt)).content[0].text == \
        "scripted!"
    async with bedrock.messages.stream(model="anthropic.sim-classic-v1:0", max_tokens=5, messages=prompt) as stream:
        assert (await stream.get_final_message()).content[0].text == "scripted!"
    failing = (await (await client.post("/_sim/scripts", json={"status": 500})).json())["id"]
    with pytest.raises(anthropic.InternalServerError) as scripted_500:
        await bedrock.messages.create(model="anthropic.sim-classic-v1:0", max_tokens=5,
                                      messages=[{"role": "user", "content": f"[[sim:script={failing}]]"}])
    assert scripted_500.value.response.headers["x-amzn-ErrorType"].startswith("InternalServerException:")
    with pytest.raises(anthropic.APIStatusError):
        async with bedrock.messages.stream(model="anthropic.sim-classic-v1:0", max_tokens=50,
                                           messages=[{"role": "user", "content": "[[sim:error_after=2]]"}]) as s:
            await s.get_final_message()
    await vertex.close()
    await bedrock.close()
