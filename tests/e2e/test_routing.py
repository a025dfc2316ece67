"""Routing by policy end to end, in both run modes (issue 15).

`auto` chooses the model per request: a one-line factual question goes to
the fast tier, a long multi-step reasoning request to the top tier; the
answer's `model` names the model that answered; `x-sluice-route` and the
audit record carry the same decision; a deployment whose breaker opened is
left off the candidates (inference's breaker state reaches the router
through the fleet store: the embedded one in `all` mode, Redis in `mesh`);
an experiment splits traffic by its weights, sticky per user.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from importlib import resources

import httpx
import pytest

from tests.e2e.helpers import calls, record_of, route, sdk, user, wait_until
from tests.infra.node_sdk import run_ts
from tests.infra.processes import free_port
from tests.infra.sluice_cluster import UNREACHABLE_LIMITS, SimulatorProcess, SluiceCluster

TENANTS = {"rt-ent": {"tier": "enterprise", "region": "local"},
           "rt-ab": {"tier": "enterprise", "region": "local"},
           "rt-map": {"tier": "enterprise", "region": "local",
                      "routing": {"aliases": {"support-bot": "frugal"}, "model_map": {"claude-opus-4-6": "auto"}}}}
ALL_TIERS = {t: {"tenant": UNREACHABLE_LIMITS, "key": UNREACHABLE_LIMITS} for t in ("free", "standard", "enterprise")}
FACTUAL = "What is the capital of France?"
REASONING = (
    "Work through this step by step and justify every step. Three investors split a portfolio: the first takes a "
    "third of the shares plus 4, the second half of the remainder minus 2, the third the rest, which is 17 more "
    "than the first. Determine the number of shares, then prove that the split is unique, compute the probability "
    "that a random redistribution keeps every investor within 10% of their share, and derive how the answer "
    "changes if a fourth investor joins with a quarter of what is left. ") * 3
# A/B: alias auto-ab split 70/30 between the auto and frugal policies.
EXPERIMENT = """experiments:
  ab-frugal:
    alias: auto-ab
    tenants: [rt-ab]
    arms:
      - {name: control, policy: auto, weight: 70}
      - {name: frugal, policy: frugal, weight: 30}
"""


def header(response: httpx.Response | dict) -> dict[str, str]:
    value = response.headers["x-sluice-route"] if isinstance(response, httpx.Response) else response["x-sluice-route"]
    return dict(pair.split("=", 1) for pair in value.split("; "))


@pytest.fixture(scope="module", params=["all", "mesh"])
def routed(request: pytest.FixtureRequest, simulator: SimulatorProcess, redis_url: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[SluiceCluster]:
    workdir = tmp_path_factory.mktemp(f"routing-{request.param}")
    policies = resources.files("sluice.catalog").joinpath("policies.yaml").read_text()
    policies = policies.replace("experiments: {}\n", EXPERIMENT).replace("  auto-frugal: frugal\n",
                                                                         "  auto-frugal: frugal\n  auto-ab: auto\n")
    (workdir / "policies.yaml").write_text(policies)
    cluster = SluiceCluster(request.param, redis_url, workdir, simulator=simulator, tenants=TENANTS,
                            name=f"routing-{request.param}", overrides={
                                # The routing process's own metrics in the mesh (in `all`, the gateway's).
                                "services": {"routing": {"metrics": f"127.0.0.1:{free_port()}"}},
                                "auth": {"tiers": ALL_TIERS},
                                "routing": {"policies_path": str(workdir / "policies.yaml"),
                                            "fleet_interval_seconds": 0.2},
                                "inference": {"resilience": {
                                    "attempts_per_candidate": 1, "breaker_consecutive_failures": 2,
                                    "breaker_open_seconds": 60.0, "breaker_max_open_seconds": 60.0,
                                    "hedging": False}},
                            }).start()
    try:
        yield cluster
    finally:
        cluster.stop()


def post(cluster: SluiceCluster, text: str, tenant: str = "rt-ent", model: str = "auto",
         version: str = "2023-06-01", **extra: object) -> httpx.Response:
    body = {"model": model, "max_tokens": 64, "messages": user(text), **extra}
    return httpx.post(f"{cluster.http_base}/v1/messages", json=body, timeout=30, headers={
        "x-api-key": cluster.keys[tenant], "anthropic-version": version})


def test_auto_sends_a_factual_question_to_the_fast_tier_and_hard_reasoning_to_the_top(routed):
    client = sdk(routed.http_base, routed.keys["rt-ent"])
    raw = client.messages.with_raw_response.create(model="auto", max_tokens=64, messages=user(FACTUAL))
    fast = raw.parse()
    said = header(raw.headers)
    assert fast.model == "claude-haiku-4-5", said
    assert (said["policy"], said["tier"], said["model"]) == ("auto", "fast", "claude-haiku-4-5")
    raw = client.messages.with_raw_response.create(model="auto", max_tokens=64, messages=user(REASONING))
    top = raw.parse()
    said = header(raw.headers)
    assert top.model == "claude-opus-4-6", said
    assert said["tier"] == "top" and said["task"] == "complex_reasoning"


def test_route_header_and_audit_record_agree(routed):
    response = post(routed, FACTUAL, stream=True)
    assert response.status_code == 200 and "event: message_stop" in response.text
    said = header(response)
    record = record_of(routed, response.headers["request-id"]).request
    assert record.model_requested == "auto" and record.model_served == said["model"]
    decision = record.route
    assert (decision.policy, str(decision.policy_version), decision.task, decision.complexity, decision.tier,
            decision.reason) == (said["policy"], said["version"], said["task"], said["complexity"],
                                 said["tier"], said["reason"])
    assert decision.estimated_cost_usd > 0 and decision.classifier_version
    billed = record_of(routed, response.headers["request-id"], "billing").request
    assert billed.route == decision


def test_both_api_versions_the_typescript_sdk_and_tenant_aliases_route(routed):
    for version in ("2023-06-01", "2026-10-21"):
        response = post(routed, FACTUAL, version=version)
        assert response.status_code == 200, response.text
        assert response.json()["model"] == "claude-haiku-4-5" and header(response)["tier"] == "fast"
    ts = run_ts(routed.http_base, routed.keys["rt-ent"], {"op": "create", "params": {
        "model": "auto", "max_tokens": 16, "messages": user(FACTUAL)}})
    assert ts["ok"], ts
    assert ts["message"]["model"] == "claude-haiku-4-5"
    # A tenant's own alias, and a named model its policy maps to auto.
    assert header(post(routed, FACTUAL, tenant="rt-map", model="support-bot"))["policy"] == "frugal"
    mapped = post(routed, FACTUAL, tenant="rt-map", model="claude-opus-4-6")
    assert mapped.json()["model"] == "claude-haiku-4-5" and header(mapped)["policy"] == "auto"
    # Another tenant's alias is just an unknown model.
    unknown = post(routed, FACTUAL, model="support-bot")
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found_error"


def test_an_experiment_splits_traffic_by_its_weights(routed):
    arms: Counter[str] = Counter()
    first: dict[str, str] = {}
    for i in range(120):
        response = post(routed, FACTUAL, tenant="rt-ab", model="auto-ab", metadata={"user_id": f"user-{i}"})
        assert response.status_code == 200, response.text
        said = header(response)
        assert said["experiment"] == "ab-frugal"
        arms[said["arm"]] += 1
        first[f"user-{i}"] = said["arm"]
    assert abs(arms["control"] / 120 - 0.7) <= 0.12, arms
    again = post(routed, FACTUAL, tenant="rt-ab", model="auto-ab", metadata={"user_id": "user-7"})
    assert header(again)["arm"] == first["user-7"]  # sticky per user


def test_a_deployment_whose_breaker_opened_is_skipped(routed):
    assert route(routed, "rt-ent", "enterprise", FACTUAL).candidates[0].deployment == "anthropic-global"
    httpx.put(f"{routed.simulator_base}/_sim/deployments/anthropic-global",
              json={"failure_rate": 1.0, "failure_status": 500}, timeout=5).raise_for_status()
    try:
        for _ in range(2):  # the breaker opens after two failures; each request fails over and is answered
            assert post(routed, FACTUAL).status_code == 200
        wait_until(lambda: "anthropic-global" not in [c.deployment for c in route(routed, "rt-ent", "enterprise",
                                                                                    FACTUAL).candidates],
                   10, "the router to leave anthropic-global off")
        assert "anthropic-global" in route(routed, "rt-ent", "enterprise", FACTUAL).decision.unhealthy
        before = calls(routed)["anthropic-global"]
        for _ in range(3):
            response = post(routed, FACTUAL)
            assert response.status_code == 200 and response.headers["x-sluice-deployment"] != "anthropic-global"
        assert calls(routed)["anthropic-global"] == before  # not even tried
    finally:
        httpx.put(f"{routed.simulator_base}/_sim/deployments/anthropic-global", json={}, timeout=5)


def test_decisions_what_the_classifier_sees_and_the_controller_are_metrics(routed):
    assert post(routed, FACTUAL).status_code == 200
    address = routed.config["services"]["gateway" if routed.mode == "all" else "routing"]["metrics"]
    text = httpx.get(f"http://{address}/metrics", timeout=5).text
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("sluice_route_")}
    assert samples['sluice_route_predicted_total{complexity="low",task="simple_qa"}'] >= 1
    assert samples['sluice_route_decisions_total{policy="auto",reason="task",tier="fast"}'] >= 1
    assert samples["sluice_route_prompt_tokens_count"] >= 1
    assert samples['sluice_route_cost_target_usd{scope="deployment"}'] == 0.012
    assert 0 <= samples['sluice_route_cost_shift{scope="deployment"}'] <= 1
    assert samples['sluice_route_cost_per_request_usd{scope="deployment"}'] > 0

