"""The prompt cache service end to end, in both run modes (issue 16).

Response cache: a read-write request misses, an identical one hits with the
same answer and no upstream call, billed at 0 with the saving recorded;
tenants do not see each other's answers; 50 identical requests at once make
one upstream call (JSON and SSE); a replayed SSE answer is event-for-event
the original; a safety policy edited after an answer was stored re-filters
it; invalidation through `sluice cache invalidate`. Prompt-prefix cache: a
prefix warmed on the second of three EU deployments draws the next turn
there, and over a scripted conversation the forecast cache reads equal the
simulator's reported ones.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sluice.events.v1 import events_pb2 as ev
from sluice.safety.policy import SHIPPED_POLICY_DIR
from tests.e2e.helpers import calls, record_of, sdk, user, wait_until
from tests.infra.node_sdk import run_ts
from tests.infra.sluice_cluster import UNREACHABLE_LIMITS, SimulatorProcess, SluiceCluster

pytestmark = pytest.mark.e2e

REGION = "eu-west-1"
FIRST, SECOND = "vertex-europe-west1", "vertex-eu"  # the EU candidates' order for MODEL
MODEL = "claude-sonnet-4-6"
ADMIN_TOKEN = "cache-admin-" + uuid.uuid4().hex
ALL_TIERS = {t: {"tenant": UNREACHABLE_LIMITS, "key": UNREACHABLE_LIMITS} for t in ("free", "standard", "enterprise")}
# The shipped default profile blocks at injection model >= 0.7, and a short prompt carrying a
# `[[sim:...]]` directive and a random hex nonce scores that now and then (about 0.5% of nonces:
# the model reads the brackets as a template marker); these tests are about the cache, so their
# tenants use the creative profile (blocks at 0.999) and a nonce can never turn a miss into a 403.
TENANTS = {
    "c-rw": {"tier": "enterprise", "region": REGION, "cache": {"mode": "read-write"}, "safety_profile": "creative"},
    "c-other": {"tier": "enterprise", "region": REGION, "cache": {"mode": "read-write"},
                "safety_profile": "creative"},
    "c-off": {"tier": "enterprise", "region": REGION, "cache": {"enabled": False}},
    "c-pol": {"tier": "enterprise", "region": REGION, "safety_profile": "probe", "cache": {"mode": "read-write"}},
    "c-chat": {"tier": "enterprise", "region": REGION},
}
PROBE = """\
pack: probe
version: "{version}"
rules:
  - id: probe.codename-out
    description: The codename blue falcon in an answer.
    applies: output
    match: {{keywords: [blue falcon]}}
    action: {action}
    severity: high
profiles:
  probe:
    description: One output rule, edited while the gateway runs.
    rules: [probe.codename-out]
"""
# About 6,000 tokens (the simulator's four characters a token): above every
# model's minimum cacheable prefix.
SYSTEM = "You are the support assistant of a company that sells garden tools. " * 350


@pytest.fixture(scope="module", params=["all", "mesh"])
def cached(request: pytest.FixtureRequest, simulator: SimulatorProcess, redis_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[SluiceCluster]:
    workdir = tmp_path_factory.mktemp(f"cache-{request.param}")
    policies = workdir / "policies"
    policies.mkdir()
    shutil.copy(SHIPPED_POLICY_DIR / "standard.yaml", policies / "standard.yaml")
    (policies / "probe.yaml").write_text(PROBE.format(version="1", action="flag"))
    cluster = SluiceCluster(request.param, redis_url, workdir, simulator=simulator, region=REGION, tenants=TENANTS,
                            name=f"cache-{request.param}", overrides={
                                # A burst of 50 on two cores can hold a quota reply past the
                                # 500 ms default; quotas are not what these tests are about.
                                "auth": {"tiers": ALL_TIERS, "admin_tokens": [ADMIN_TOKEN],
                                         "quota_timeout_ms": 5000},
                                "safety": {"policy_dir": str(policies), "reload_interval_seconds": 0.2},
                                "cache": {"prefix_scope": f"it{uuid.uuid4().hex[:8]}"},
                                "inference": {"resilience": {
                                    "attempts_per_candidate": 1, "breaker_consecutive_failures": 1000,
                                    "hedging": False}},
                            })
    cluster.policies = policies
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def post(cluster: SluiceCluster, text: str, tenant: str = "c-rw", stream: bool = False,
         headers: dict[str, str] | None = None, version: str = "2023-06-01", **extra: object) -> httpx.Response:
    body = {"model": MODEL, "max_tokens": 32, "messages": user(text), **({"stream": True} if stream else {}),
            **extra}
    return httpx.post(f"{cluster.http_base}/v1/messages", json=body, timeout=60, headers={
        "x-api-key": cluster.keys[tenant], "anthropic-version": version, **(headers or {})})


def upstream_calls(cluster: SluiceCluster) -> int:
    return sum(calls(cluster).values())


def sse_events(text: str) -> list[tuple[str, dict]]:
    """(event, data) of an SSE body, pings left out (they depend on timing)."""
    out = []
    for chunk in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines() if ": " in line)
        if lines.get("event") and lines["event"] != "ping":
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_a_read_write_request_misses_then_hits_and_the_hit_is_billed_as_a_saving(cached):
    text = f"What is the boiling point of water? {uuid.uuid4().hex}"
    before = upstream_calls(cached)
    first = post(cached, text)
    assert first.status_code == 200, first.text
    assert first.headers["x-sluice-cache"] == "miss"
    second = post(cached, text)
    assert second.headers["x-sluice-cache"] == "hit"
    assert second.headers["x-sluice-cache-origin"] == first.headers["request-id"]
    assert second.json() == first.json()
    assert upstream_calls(cached) == before + 1
    billed = record_of(cached, second.headers["request-id"], "billing").request
    assert billed.cost_usd == 0 and billed.input_tokens == 0 and billed.cache.status == "hit"
    assert billed.cache.origin_request_id == first.headers["request-id"] and billed.cache.saved_usd > 0
    original = record_of(cached, first.headers["request-id"], "billing").request
    assert original.cache.status == "miss" and original.cache.stored
    assert abs(billed.cache.saved_usd - original.cost_usd) < 1e-12
    audit = record_of(cached, second.headers["request-id"]).request
    assert audit.cache.origin_request_id == first.headers["request-id"]


def test_tenants_modes_and_prompt_versions_keep_answers_apart(cached):
    text = f"Name a prime number. {uuid.uuid4().hex}"
    assert post(cached, text).headers["x-sluice-cache"] == "miss"
    assert post(cached, text, tenant="c-other").headers["x-sluice-cache"] == "miss"  # never another tenant's
    assert post(cached, text, headers={"x-sluice-cache": "off"}).headers["x-sluice-cache"] == "bypass"
    assert post(cached, text, tenant="c-off", headers={"x-sluice-cache": "read-write"}
                ).headers["x-sluice-cache"] == "bypass"
    assert post(cached, text, tenant="c-chat").headers["x-sluice-cache"] == "bypass"  # not opted in
    assert post(cached, text, headers={"x-sluice-prompt-version": "v2"}).headers["x-sluice-cache"] == "miss"
    assert post(cached, text, headers={"x-sluice-prompt-version": "v2"}).headers["x-sluice-cache"] == "hit"
    # read-only reads what read-write stored, and stores nothing itself.
    assert post(cached, text, tenant="c-chat", headers={"x-sluice-cache": "read-only"}
                ).headers["x-sluice-cache"] == "miss"  # c-chat's own namespace is empty
    assert post(cached, text, headers={"x-sluice-cache": "read-only"}).headers["x-sluice-cache"] == "hit"
    fresh = f"never stored {uuid.uuid4().hex}"
    assert post(cached, fresh, headers={"x-sluice-cache": "read-only"}).headers["x-sluice-cache"] == "miss"
    assert post(cached, fresh).headers["x-sluice-cache"] == "miss"
    # Fields that do not change the answer are not part of the key.
    hit = post(cached, text, metadata={"user_id": "someone-else"}, stream=True)
    assert hit.headers["x-sluice-cache"] == "hit" and "event: message_stop" in hit.text
    # A bad header value is the client's error, named.
    bad = post(cached, text, headers={"x-sluice-cache": "sometimes"})
    assert bad.status_code == 400 and "x-sluice-cache" in bad.json()["error"]["message"]


def test_every_client_and_api_version_gets_a_hit_it_can_read(cached):
    text = f"Say hello. {uuid.uuid4().hex}"
    client = sdk(cached.http_base, cached.keys["c-rw"])
    first = client.messages.with_raw_response.create(model=MODEL, max_tokens=32, messages=user(text))
    again = client.messages.with_raw_response.create(model=MODEL, max_tokens=32, messages=user(text))
    assert (first.headers.get("x-sluice-cache"), again.headers.get("x-sluice-cache")) == ("miss", "hit"), (first.text, again.text)
    assert again.parse().content[0].text == first.parse().content[0].text
    ts = run_ts(cached.http_base, cached.keys["c-rw"], {"op": "create", "params": {
        "model": MODEL, "max_tokens": 32, "messages": user(text)}})
    assert ts["ok"], ts
    assert ts["message"]["content"][0]["text"] == first.parse().content[0].text
    assert ts["attempts"][-1]["response_headers"]["x-sluice-cache"] == "hit"
    # The SDKs send 2026-10-21; the other API version is another key (its
    # wire may differ), hit in turn.
    assert first.http_request.headers["anthropic-version"] == "2026-10-21"
    assert post(cached, text, version="2023-06-01").headers["x-sluice-cache"] == "miss"
    assert post(cached, text, version="2023-06-01").headers["x-sluice-cache"] == "hit"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_fifty_concurrent_identical_requests_make_one_upstream_call(cached, stream):
    text = f"[[sim:ttft_ms=1500]] Tell me about tomatoes. {uuid.uuid4().hex}"
    before = upstream_calls(cached)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def one() -> None:
        response = post(cached, text, stream=stream)
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=one) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 50 and all(a.status_code == 200 for a in answers), [a.text for a in answers[:3]]
    assert upstream_calls(cached) == before + 1
    statuses = sorted(a.headers["x-sluice-cache"] for a in answers)
    assert statuses.count("miss") == 1 and statuses.count("hit") == 49
    leader = next(a for a in answers if a.headers["x-sluice-cache"] == "miss").headers["request-id"]
    assert {a.headers.get("x-sluice-cache-origin") for a in answers if a.headers["x-sluice-cache"] == "hit"} \
        == {leader}
    if stream:
        assert len({json.dumps(sse_events(a.text)) for a in answers}) == 1
    else:
        assert len({a.text for a in answers}) == 1


def _shared(cluster: SluiceCluster) -> float:
    """Requests answered by joining an identical one's call (the gateway's metrics)."""
    text = httpx.get(f"http://{cluster.config['services']['gateway']['metrics']}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("sluice_cache_lookups_total{") and 'reason="single_flight"' in line)


def test_a_leader_that_leaves_is_billed_for_the_answer_its_followers_got(cached):
    text = f"[[sim:ttft_ms=1500]] [[sim:itl_ms=40]] [[sim:tokens=30]] Tell me about plums. {uuid.uuid4().hex}"
    body = {"model": MODEL, "max_tokens": 32, "stream": True, "messages": user(text)}
    heads = {"x-api-key": cached.keys["c-rw"], "anthropic-version": "2023-06-01"}
    before, shared = upstream_calls(cached), _shared(cached)
    joined, seen, follower = threading.Event(), {}, []

    def lead() -> None:
        with httpx.Client(timeout=60) as client, client.stream("POST", f"{cached.http_base}/v1/messages",
                                                               json=body, headers=heads) as leader:
            seen.update(leader.headers)
            joined.wait(30)
            next(leader.iter_bytes())  # the first event, then the client goes away

    leading = threading.Thread(target=lead)
    leading.start()
    wait_until(lambda: upstream_calls(cached) == before + 1, 10, "the leader's upstream call")
    following = threading.Thread(target=lambda: follower.append(post(cached, text, stream=True)))
    following.start()
    wait_until(lambda: _shared(cached) > shared, 10, "the follower to join the flight")
    joined.set()
    leading.join(60)
    following.join(60)
    answer, leader_id = follower[0], seen["request-id"]
    assert seen["x-sluice-cache"] == "miss"
    assert answer.headers["x-sluice-cache"] == "hit" and answer.headers["x-sluice-cache-origin"] == leader_id
    assert "event: message_stop" in answer.text and upstream_calls(cached) == before + 1
    billed = record_of(cached, leader_id, "billing").request
    assert billed.outcome == ev.OUTCOME_CANCELLED and billed.cost_usd > 0
    assert billed.output_tokens == sse_events(answer.text)[-2][1]["usage"]["output_tokens"]
    assert record_of(cached, answer.headers["request-id"], "billing").request.cost_usd == 0


def test_a_mark_the_api_refuses_is_refused_whatever_the_cache_holds(cached):
    text = f"Marked question {uuid.uuid4().hex}"
    system = [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]
    assert post(cached, text, system=system).headers["x-sluice-cache"] == "miss"
    for bad, field in (({"type": "ephemeral", "ttl": "2h"}, "system.0.cache_control.ttl"),
                       ({"type": "persistent"}, "system.0.cache_control.type")):
        refused = post(cached, text, system=[{**system[0], "cache_control": bad}])
        assert refused.status_code == 400 and field in refused.json()["error"]["message"], refused.text
    five = [{"type": "text", "text": f"part {i}", "cache_control": {"type": "ephemeral"}} for i in range(5)]
    refused = post(cached, text, system=five)
    assert refused.status_code == 400 and "A maximum of 4 blocks" in refused.json()["error"]["message"]


def test_read_only_requests_share_a_call_too_and_store_nothing(cached):
    text = f"[[sim:ttft_ms=1000]] Tell me about pears. {uuid.uuid4().hex}"
    before = upstream_calls(cached)
    answers: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda: answers.append(post(
        cached, text, tenant="c-chat", headers={"x-sluice-cache": "read-only"}))) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(a.headers["x-sluice-cache"] for a in answers) == ["hit"] * 9 + ["miss"]
    assert upstream_calls(cached) == before + 1
    assert post(cached, text, tenant="c-chat", headers={"x-sluice-cache": "read-only"}
                ).headers["x-sluice-cache"] == "miss"  # nothing was stored


def test_a_marked_body_nested_too_deep_to_key_is_never_a_5xx(cached):
    schema: dict = {"type": "string"}
    for _ in range(150):
        schema = {"type": "object", "properties": {"a": schema}}
    response = post(cached, f"deep {uuid.uuid4().hex}", tools=[
        {"name": "t", "input_schema": schema, "cache_control": {"type": "ephemeral"}}])
    assert response.status_code < 500, response.text


def test_a_replayed_sse_answer_is_event_for_event_the_original(cached):
    text = f"[[sim:tokens=12]] Describe a river. {uuid.uuid4().hex}"
    first = post(cached, text, stream=True)
    again = post(cached, text, stream=True)
    assert (first.headers.get("x-sluice-cache"), again.headers.get("x-sluice-cache")) == ("miss", "hit"), (first.text, again.text)
    original = sse_events(first.text)
    assert [e for e, _ in original][:2] == ["message_start", "content_block_start"] and original[-1][0] == "message_stop"
    assert sse_events(again.text) == original
    # And the JSON form of the same request is the same message, assembled.
    message = post(cached, text).json()
    assert message["id"] == original[0][1]["message"]["id"]
    assert message["content"][0]["text"] == "".join(
        d["delta"]["text"] for e, d in original if e == "content_block_delta")


def test_a_safety_policy_change_refilters_a_cached_answer(cached):
    text = f"[[sim:echo]] the blue falcon flies at dawn {uuid.uuid4().hex[:6]}"
    first = post(cached, text, tenant="c-pol")
    assert first.headers["x-sluice-cache"] == "miss" and "blue falcon" in first.json()["content"][0]["text"]
    before = upstream_calls(cached)
    Path(cached.policies / "probe.yaml").write_text(PROBE.format(version="2", action="redact"))
    seen: list[httpx.Response] = []

    def refiltered() -> bool:
        seen.append(post(cached, text, tenant="c-pol"))
        return "blue falcon" not in seen[-1].json()["content"][0]["text"]

    wait_until(refiltered, 15, "the new policy to re-filter the cached answer")
    assert all(r.headers["x-sluice-cache"] == "hit" for r in seen)
    assert upstream_calls(cached) == before
    audit = record_of(cached, seen[-1].headers["request-id"])
    assert audit.output_verdict.policy_version.startswith("probe@2#")


def test_invalidation_by_tenant_prompt_version_alias_and_all(cached):
    text = f"Which colour is the sky? {uuid.uuid4().hex}"

    def status(tenant: str = "c-rw", **headers: str) -> str:
        return post(cached, text, tenant=tenant, headers=headers).headers["x-sluice-cache"]

    # The admin API lives with the auth service (the gateway's process in `all`).
    admin = cached.config["services"]["gateway" if cached.mode == "all" else "auth"]["grpc"]

    def invalidate(*flags: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "sluice.runtime.cli", "cache", "invalidate", *flags,
                               "--target", admin, "--admin-token", ADMIN_TOKEN],
                              capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    for tenant in ("c-rw", "c-other"):
        assert status(tenant) == "miss" and status(tenant) == "hit"
    assert status(**{"x-sluice-prompt-version": "p1"}) == "miss"
    assert invalidate("--tenant", "c-rw", "--prompt-version", "p1")["scope"] == "prompt_version"
    assert status(**{"x-sluice-prompt-version": "p1"}) == "miss" and status() == "hit"
    assert invalidate("--tenant", "c-rw")["namespace"] == "tenant:c-rw"
    assert status() == "miss" and status("c-other") == "hit"
    assert invalidate("--alias", MODEL)["scope"] == "alias"  # every tenant's
    assert status() == "miss" and status("c-other") == "miss"
    assert invalidate("--all")["scope"] == "all"
    assert status() == "miss" and status("c-other") == "miss" and status() == "hit"
    for flags, said in ((["--prompt-version", "p1"], "tenant"), (["--all", "--tenant", "c-rw"], "invalidates everything"),
                        (["--tenant", "c-rw", "--prompt-version", "bad tag!"], "prompt_version"),
                        (["--tenant", "c-rw", "--prompt-version", ""], "must not be empty")):
        refused = subprocess.run([sys.executable, "-m", "sluice.runtime.cli", "cache", "invalidate", *flags,
                                  "--target", admin, "--admin-token", ADMIN_TOKEN],
                                 capture_output=True, text=True, timeout=30, check=False)
        assert refused.returncode in (1, 2) and said in refused.stderr, (flags, refused.stderr)
    assert status() == "hit"  # nothing was invalidated by the refused calls


def _profile(cluster: SluiceCluster, deployment: str, region: str, **fields: object) -> None:
    response = httpx.put(f"{cluster.simulator_base}/_sim/deployments/{deployment}",
                         json={"region": region, **fields}, timeout=5)
    assert response.status_code == 200, response.text


def test_a_warm_prefix_draws_the_next_turn_and_forecast_reads_equal_the_simulators(cached):
    system = [{"type": "text", "text": SYSTEM + uuid.uuid4().hex, "cache_control": {"type": "ephemeral"}}]
    client = sdk(cached.http_base, cached.keys["c-chat"])
    turns: list[dict] = []
    served, predicted, reported = [], [], []
    for n in range(5):
        content = [{"type": "text", "text": f"Question {n}: which rake suits clay soil, part {n}?",
                    "cache_control": {"type": "ephemeral"}}]
        turns.append({"role": "user", "content": content})
        if n == 0:  # the first turn is written on the second deployment: the first one fails
            _profile(cached, FIRST, "europe-west1", failure_rate=1.0)
        try:
            raw = client.messages.with_raw_response.create(model=MODEL, max_tokens=16, system=system,
                                                           messages=turns)
        finally:
            if n == 0:
                _profile(cached, FIRST, "europe-west1")
        answer = raw.parse()
        served.append(raw.headers["x-sluice-deployment"])
        billed = record_of(cached, raw.headers["request-id"], "billing").request
        predicted.append(billed.cache.predicted_read_tokens)
        reported.append(answer.usage.cache_read_input_tokens)
        assert billed.cache_read_input_tokens == answer.usage.cache_read_input_tokens
        # Earlier turns lose their marks (the API allows four); the answer joins the conversation.
        for block in content:
            block.pop("cache_control")
        turns.append({"role": "assistant", "content": [{"type": "text", "text": answer.content[0].text}]})
        if n == 0:
            assert answer.usage.cache_creation_input_tokens > 4000 and answer.usage.cache_read_input_tokens == 0
        probe = turns + [{"role": "user", "content": [{"type": "text", "text": "next",
                                                         "cache_control": {"type": "ephemeral"}}]}]
        # The ledger is written before the answer ends: the next turn, sent at once, is forecast right.
        assert _forecast(cached, system, probe) > 0
    assert served[0] == SECOND
    assert served[1:] == [SECOND] * 4, served  # drawn to the warm deployment, not the first in line
    assert all(r > 4000 for r in reported[1:]), reported
    assert predicted == reported, (predicted, reported)
    prompt_cache = post(cached, "hi", tenant="c-chat", system=system).headers  # no mark in messages: system's
    assert prompt_cache["x-sluice-prompt-cache"].startswith("read=")


def test_a_prefix_too_short_to_cache_is_warned_about(cached):
    response = post(cached, f"short {uuid.uuid4().hex}", tenant="c-chat",
                    system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}])
    assert response.status_code == 200
    assert "warning=short_prefix" in response.headers["x-sluice-prompt-cache"]
    billed = record_of(cached, response.headers["request-id"], "billing").request
    assert list(billed.cache.warnings) == ["short_prefix"] and billed.cache_creation_input_tokens == 0


def _forecast(cluster: SluiceCluster, system: list, messages: list) -> int:
    """Routing's forecast cache reads for a request of c-chat on its first candidate."""
    import grpc

    from sluice.auth.v1 import principal_pb2
    from sluice.llm.v1 import wire_pb2
    from sluice.routing.v1 import routing_service_pb2 as routing_pb
    from sluice.routing.v1 import routing_service_pb2_grpc as routing_grpc

    service = "gateway" if cluster.mode == "all" else "routing"
    body = json.dumps({"model": MODEL, "max_tokens": 16, "system": system, "messages": messages}).encode()
    with grpc.insecure_channel(cluster.config["services"][service]["grpc"]) as channel:
        answer = routing_grpc.RoutingServiceStub(channel).Route(routing_pb.RouteRequest(
            principal=principal_pb2.Principal(tenant_id="c-chat", tier="enterprise", region=REGION),
            requested_model=MODEL, max_tokens=16, request=wire_pb2.WireRequest(body=body)), timeout=5)
    return answer.prefix.forecasts[0].read_tokens if answer.prefix.forecasts else 0
