"""Regional deployments on three providers, end to end, in both run modes.

An EU Sluice (region eu-west-1) in front of the simulator, whose simulated
deployments speak each provider's wire: Sluice reaches Vertex AI through
`AsyncAnthropicVertex` (with Google application default credentials from a
service-account key, exchanged at the simulator's token endpoint), Bedrock
through `AsyncAnthropicBedrock` (SigV4, checked by the simulator against the
deployment's region) and the Anthropic API through `AsyncAnthropic`. Each
test makes deployments fail or slow through the simulator's per-deployment
profiles and checks what the client got, what each deployment received, and
what the audit and billing records say.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import anthropic
import grpc
import httpx
import pytest

from sluice.events.v1 import events_pb2 as ev
from sluice.inference.v1 import inference_service_pb2 as inference_pb
from sluice.inference.v1 import inference_service_pb2_grpc as inference_grpc
from tests.e2e.helpers import calls, record_of, route, sdk, user, wait_until
from tests.infra.google_credentials import write_service_account
from tests.infra.node_sdk import run_ts
from tests.infra.sluice_cluster import UNREACHABLE_LIMITS, SimulatorProcess, SluiceCluster

REGION = "eu-west-1"
EU = {"vertex-europe-west1": "europe-west1", "vertex-eu": "eu", "bedrock-eu-west-1": "eu-west-1"}
ELSEWHERE = ("anthropic-global", "anthropic-us", "vertex-us-east5", "bedrock-us-east-1")
MODEL = "claude-sonnet-4-6"
TENANTS = {"eu-ent": {"tier": "enterprise", "region": REGION}, "eu-std": {"tier": "standard", "region": REGION},
           "eu-cont": {"tier": "standard", "region": REGION, "continue_midstream": True}}
ALL_TIERS = {t: {"tenant": UNREACHABLE_LIMITS, "key": UNREACHABLE_LIMITS} for t in ("free", "standard", "enterprise")}


@pytest.fixture(scope="module", params=["all", "mesh"])
def eu(request: pytest.FixtureRequest, simulator: SimulatorProcess, redis_url: str,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[SluiceCluster]:
    workdir = tmp_path_factory.mktemp(f"deployments-{request.param}")
    key_file = write_service_account(workdir, f"{simulator.base}/oauth2/token", project_id="sluice-eu")
    cluster = SluiceCluster(request.param, redis_url, workdir, simulator=simulator, region=REGION, tenants=TENANTS,
                            name=f"eu-{request.param}", env={"GOOGLE_APPLICATION_CREDENTIALS": str(key_file)},
                            overrides={
                                "auth": {"tiers": ALL_TIERS},
                                "routing": {"max_candidates": 6},
                                "inference": {"resilience": {
                                    "attempts_per_candidate": 1, "breaker_consecutive_failures": 3,
                                    "breaker_open_seconds": 1.0, "breaker_max_open_seconds": 2.0,
                                    "hedge_delay_seconds": 0.4}},
                            }).start()
    try:
        yield cluster
    finally:
        cluster.stop()


def profile(cluster: SluiceCluster, deployment: str, **fields: object) -> None:
    """Sets a simulated deployment's profile; the EU ones always check their region."""
    body = {"region": EU[deployment], **fields} if deployment in EU else dict(fields)
    response = httpx.put(f"{cluster.simulator_base}/_sim/deployments/{deployment}", json=body, timeout=5)
    assert response.status_code == 200, response.text


def health(cluster: SluiceCluster) -> dict[str, inference_pb.DeploymentState]:
    """Inference's view of each deployment (its DeploymentHealth RPC)."""
    service = "gateway" if cluster.mode == "all" else "inference"
    with grpc.insecure_channel(cluster.config["services"][service]["grpc"]) as channel:
        answer = inference_grpc.InferenceServiceStub(channel).DeploymentHealth(inference_pb.DeploymentHealthRequest(),
                                                                                timeout=5)
    return {d.deployment: d for d in answer.deployments}


def ask(cluster: SluiceCluster, text: str = "hello", tenant: str = "eu-std", **kw: object) -> tuple[str, str]:
    """(the answer's text, its request id) through the Python SDK."""
    raw = sdk(cluster.http_base, cluster.keys[tenant]).messages.with_raw_response.create(
        model=MODEL, max_tokens=16, messages=user(text), **kw)
    message = raw.parse()
    return "".join(b.text for b in message.content if b.type == "text"), raw.headers["request-id"]


@pytest.fixture(autouse=True)
def healthy(eu: SluiceCluster) -> Iterator[None]:
    """Every test starts with every deployment answering and every breaker
    closed: a breaker left half-open by an earlier test closes only when a
    request reaches it, so the deployments before it are made to fail for
    one request."""
    order = list(EU)  # the candidates' order for MODEL in this region

    def reset() -> None:
        for deployment in (*EU, *ELSEWHERE):
            profile(eu, deployment)

    def all_closed() -> bool:
        states = health(eu)
        pending = [d for d in order if states[d].breaker != "closed"]
        if not pending:
            return True
        if states[pending[0]].breaker == "half_open":
            for before in order[:order.index(pending[0])]:
                profile(eu, before, failure_rate=1.0)
            try:
                ask(eu, "probe")  # reaches the half-open one, which closes on success
            except anthropic.APIStatusError:
                pass
            reset()
        return False

    reset()
    wait_until(all_closed, 30, "every breaker closed")
    yield


def test_an_eu_tenant_is_served_by_vertex_in_europe_and_the_records_say_where(eu):
    before = calls(eu)
    raw = sdk(eu.http_base, eu.keys["eu-std"]).messages.with_raw_response.create(
        model=MODEL, max_tokens=16, messages=user("hello"))
    request_id = raw.headers["request-id"]
    assert raw.parse().content[0].text and raw.headers["x-sluice-deployment"] == "vertex-europe-west1"
    after = calls(eu)
    assert after.get("vertex-europe-west1", 0) == before.get("vertex-europe-west1", 0) + 1
    audit = record_of(eu, request_id)
    summary = audit.request
    assert (summary.deployment, summary.provider, summary.deployment_region) == (
        "vertex-europe-west1", "vertex", "europe-west1")
    assert [(a.deployment, a.outcome) for a in summary.attempts] == [("vertex-europe-west1", "served")]
    assert not summary.residency_violation and summary.deployments_version
    billing = record_of(eu, request_id, "billing").request
    # Vertex's regional endpoint bills 1.1x the list price.
    assert billing.cost_usd > 0 and billing.deployment == "vertex-europe-west1"
    last = httpx.get(f"{eu.simulator_base}/_sim/requests", params={"deployment": "vertex-europe-west1", "last": 1},
                     timeout=5).json()[-1]
    # What Vertex received: its path, its location, anthropic_version in the body and no model.
    assert last["provider"] == "vertex" and last["location"] == "europe-west1"
    assert ":streamRawPredict" in last["path"] and "/projects/sluice-eu/" in last["path"]
    assert '"anthropic_version"' in last["body"] and '"model"' not in last["body"]


def test_when_vertex_fails_bedrock_in_the_eu_serves_with_sigv4_for_its_region(eu):
    profile(eu, "vertex-europe-west1", failure_rate=1.0)
    profile(eu, "vertex-eu", failure_rate=1.0, failure_status=500)
    text, request_id = ask(eu, "fallback please")
    assert text
    summary = record_of(eu, request_id).request
    assert [(a.deployment, a.outcome, a.reason) for a in summary.attempts] == [
        ("vertex-europe-west1", "failed", "UPSTREAM_OVERLOADED"), ("vertex-eu", "failed", "UPSTREAM_ERROR"),
        ("bedrock-eu-west-1", "served", "")]
    assert (summary.deployment, summary.provider, summary.deployment_region) == (
        "bedrock-eu-west-1", "bedrock", "eu-west-1")
    last = httpx.get(f"{eu.simulator_base}/_sim/requests", params={"deployment": "bedrock-eu-west-1", "last": 1},
                     timeout=5).json()[-1]
    assert last["provider"] == "bedrock" and last["location"] == "eu-west-1" and last["status"] == 200
    assert last["path"].endswith("/model/eu.anthropic.claude-sonnet-4-6-v1:0/invoke-with-response-stream")


def test_with_every_eu_deployment_failing_the_answer_is_an_error_and_nothing_outside_the_eu_is_called(eu):
    before = calls(eu)
    for deployment in EU:
        profile(eu, deployment, failure_rate=1.0, retry_after_s=2)
    for _ in range(4):  # enough to open every EU breaker, too
        response = httpx.post(f"{eu.http_base}/v1/messages", timeout=30, headers={
            "x-api-key": eu.keys["eu-std"], "anthropic-version": "2023-06-01"},
            json={"model": MODEL, "max_tokens": 8, "messages": user("anyone?")})
        assert response.status_code == 529 and response.json()["error"]["type"] == "overloaded_error"
        assert response.headers["retry-after"] == "2"  # the upstream's word on when to come back
    # Every EU breaker is open by now: still one (panic) attempt in the EU, never one elsewhere.
    assert all(state.breaker == "open" for name, state in health(eu).items() if name in EU)
    after = calls(eu)
    assert {d: after.get(d, 0) - before.get(d, 0) for d in ELSEWHERE} == dict.fromkeys(ELSEWHERE, 0)
    assert all(after.get(d, 0) > before.get(d, 0) for d in EU)


def test_a_flapping_deployment_opens_its_breaker_traffic_shifts_and_a_probe_closes_it(eu):
    profile(eu, "vertex-europe-west1", outcomes=["500", "500", "500"])
    for _ in range(3):
        ask(eu, "flap")  # each fails over to vertex-eu
    assert health(eu)["vertex-europe-west1"].breaker == "open"
    before = calls(eu)
    shifted = [ask(eu, "shifted")[1] for _ in range(3)]
    after = calls(eu)
    # The record says why another deployment served: inference skipped the
    # first, its breaker open, or (once the breaker's state reached the
    # router through the fleet store) routing left it off as unhealthy.
    last = record_of(eu, shifted[-1]).request
    attempts = [(a.deployment, a.outcome, a.reason) for a in last.attempts]
    assert attempts == [("vertex-europe-west1", "skipped", "BREAKER_OPEN"), ("vertex-eu", "served", "")] or (
        attempts == [("vertex-eu", "served", "")] and "vertex-europe-west1" in last.route.unhealthy), last
    assert after["vertex-europe-west1"] == before["vertex-europe-west1"]  # skipped while open
    assert after["vertex-eu"] == before["vertex-eu"] + 3

    def recovered() -> bool:
        _, request_id = ask(eu, "probe")
        return record_of(eu, request_id).request.deployment == "vertex-europe-west1"

    wait_until(recovered, 10, "the half-open probe to close the breaker")  # the script ran out: it answers
    assert health(eu)["vertex-europe-west1"].breaker == "closed"


def test_a_slow_first_token_loses_to_its_hedge_and_the_cancelled_attempt_is_recorded(eu):
    profile(eu, "vertex-europe-west1", slow_probability=1.0, slow_ttft_ms=5000)
    text, request_id = ask(eu, "hedge me")
    assert text
    audit = record_of(eu, request_id).request
    assert [(a.deployment, a.outcome, a.hedge) for a in audit.attempts] == [
        ("vertex-europe-west1", "cancelled", False), ("vertex-eu", "served", True)]
    assert audit.deployment == "vertex-eu" and audit.time_to_first_token_ms < 5000
    billing = record_of(eu, request_id, "billing").request
    # The tenant pays for the answer it got; what the lost attempt cost is overhead.
    assert billing.overhead_cost_usd > 0 and billing.cost_usd > 0
    assert billing.attempts[0].cost_usd == pytest.approx(billing.overhead_cost_usd)


def test_an_answer_reporting_a_region_outside_the_residency_is_recorded_as_a_violation(eu):
    profile(eu, "vertex-europe-west1", failure_rate=1.0)
    profile(eu, "vertex-eu", inference_geo="us")  # a misconfigured endpoint that ran in the US
    _, request_id = ask(eu, "where did you run?")
    audit = record_of(eu, request_id).request
    assert audit.residency_violation and audit.inference_geo == "us" and audit.deployment == "vertex-eu"
    log = eu.log_text("all" if eu.mode == "all" else "gateway")
    assert f"residency violation: request {request_id}" in log


def test_every_client_gets_the_eu_answer_through_sluice(eu, ts_sdk):
    ts = run_ts(eu.http_base, eu.keys["eu-std"], {"op": "create", "params": {
        "model": MODEL, "max_tokens": 16, "messages": user("from node")}})
    assert ts["ok"], ts
    assert ts["message"]["content"][0]["text"]
    for version in ("2023-06-01", "2026-10-21"):
        response = httpx.post(f"{eu.http_base}/v1/messages", timeout=30, headers={
            "x-api-key": eu.keys["eu-std"], "anthropic-version": version},
            json={"model": MODEL, "max_tokens": 16, "stream": True, "messages": user("raw")})
        assert response.status_code == 200 and "event: message_stop" in response.text


def test_concurrent_requests_during_an_outage_each_leave_one_record_naming_its_deployment(eu):
    profile(eu, "vertex-europe-west1", failure_rate=0.5, seed=7)
    ids: list[str] = []
    errors: list[BaseException] = []

    def worker() -> None:
        for _ in range(4):
            try:
                ids.append(ask(eu, "busy day")[1])
            except anthropic.APIStatusError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(ids) == 16
    audits = {i: record_of(eu, i).request for i in ids}
    assert {a.deployment for a in audits.values()} <= set(EU)
    assert all(a.outcome == ev.OUTCOME_OK for a in audits.values())


def _stream_text(cluster: SluiceCluster, tenant: str, model: str) -> tuple[list[str], str, str]:
    """(SSE event types, the text, the request id) of one raw streaming request."""
    response = httpx.post(f"{cluster.http_base}/v1/messages", timeout=30, headers={
        "x-api-key": cluster.keys[tenant], "anthropic-version": "2023-06-01"},
        json={"model": model, "max_tokens": 24, "stream": True, "messages": user("tell me a story")})
    kinds, text = [], ""
    for line in response.text.splitlines():
        if line.startswith("event: "):
            kinds.append(line[7:])
        elif line.startswith("data: ") and '"text_delta"' in line:
            text += json.loads(line[6:])["delta"]["text"]
    return kinds, text, response.headers["request-id"]


def _usages(cluster: SluiceCluster, tenant: str, model: str) -> dict:
    """message_start's and the final message_delta's usage of one streamed answer."""
    response = httpx.post(f"{cluster.http_base}/v1/messages", timeout=30, headers={
        "x-api-key": cluster.keys[tenant], "anthropic-version": "2023-06-01"},
        json={"model": model, "max_tokens": 24, "stream": True, "messages": user("tell me another")})
    out = {"request_id": response.headers["request-id"]}
    for line in response.text.splitlines():
        if line.startswith("data: "):
            data = json.loads(line[6:])
            if data["type"] == "message_start":
                out["start"] = data["message"]["usage"]
            elif data["type"] == "message_delta":
                out["delta"] = data["usage"]
    return out


def test_a_text_stream_failing_mid_answer_continues_elsewhere_for_a_tenant_that_opted_in(eu):
    model = "claude-haiku-4-5"  # takes a prefill
    profile(eu, "vertex-europe-west1", midstream_failure_rate=1.0)
    kinds, text, request_id = _stream_text(eu, "eu-cont", model)
    assert kinds.count("message_start") == 1 and kinds[-1] == "message_stop" and "error" not in kinds
    summary = record_of(eu, request_id).request
    assert [(a.deployment, a.outcome) for a in summary.attempts] == [
        ("vertex-europe-west1", "continued"), ("vertex-eu", "served")]
    assert summary.deployment == "vertex-eu" and summary.outcome == ev.OUTCOME_OK
    sent = json.loads(httpx.get(f"{eu.simulator_base}/_sim/requests", params={"deployment": "vertex-eu", "last": 1},
                                timeout=5).json()[-1]["body"])
    partial = sent["messages"][-1]
    assert partial["role"] == "assistant" and text.startswith(partial["content"])
    assert sent["max_tokens"] < 24  # what was delivered counts against the client's max_tokens
    # The client's usage: its own input (not the continuation's prompt + prefill), the whole output.
    usage = _usages(eu, "eu-cont", model)
    assert usage["delta"]["input_tokens"] == usage["start"]["input_tokens"]
    billing = record_of(eu, usage["request_id"], "billing").request
    assert billing.input_tokens == usage["start"]["input_tokens"] and billing.overhead_cost_usd > 0
    # Without the opt-in the same failure ends the stream with the API's error event.
    kinds, _, request_id = _stream_text(eu, "eu-std", model)
    assert kinds[-1] == "error" and record_of(eu, request_id).request.outcome == ev.OUTCOME_ERROR


def test_a_client_asking_for_a_geography_outside_its_residency_is_refused_and_nothing_is_called(eu):
    before = calls(eu)
    response = httpx.post(f"{eu.http_base}/v1/messages", timeout=30, headers={
        "x-api-key": eu.keys["eu-std"], "anthropic-version": "2023-06-01"},
        json={"model": MODEL, "max_tokens": 8, "inference_geo": "us", "messages": user("in the US please")})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "inference_geo: 'us' is outside where this tenant's inference may " \
                                                  "run (eu)"
    assert calls(eu) == before
    response = httpx.post(f"{eu.http_base}/v1/messages", timeout=30, headers={
        "x-api-key": eu.keys["eu-std"], "anthropic-version": "2023-06-01"},
        json={"model": MODEL, "max_tokens": 8, "inference_geo": ["eu"], "messages": user("a list?")})
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "inference_geo: must be a string, not array"


def test_a_json_answer_that_breaks_mid_stream_is_retried_whole_elsewhere(eu):
    profile(eu, "vertex-europe-west1", midstream_failure_rate=1.0)
    text, request_id = ask(eu, "all or nothing")
    assert text
    summary = record_of(eu, request_id).request
    assert [(a.deployment, a.outcome) for a in summary.attempts] == [
        ("vertex-europe-west1", "failed"), ("vertex-eu", "served")]


def test_auto_for_an_eu_tenant_keeps_every_candidate_in_the_eu(eu):
    """Routing by policy stays inside the tenant's residency: the top tier's
    model and every fallback run on EU deployments only."""
    hard = "Prove rigorously, step by step, that every planar graph is five-colourable, then analyse " * 6
    for text in ("What is the capital of France?", hard):
        answer = route(eu, "eu-ent", "enterprise", text)
        assert answer.candidates and {c.geo for c in answer.candidates} == {"eu"}, answer
        assert {c.deployment for c in answer.candidates} <= set(EU)
    raw = sdk(eu.http_base, eu.keys["eu-ent"]).messages.with_raw_response.create(
        model="auto", max_tokens=16, messages=user("What is the capital of France?"))
    assert raw.headers["x-sluice-deployment"] in EU and "policy=auto" in raw.headers["x-sluice-route"]
    assert record_of(eu, raw.headers["request-id"]).request.deployment in EU

