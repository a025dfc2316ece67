"""Chaos: every deployment fails, slows down and breaks mid-answer at random
while clients keep asking, in both run modes. Bounded in time (a few dozen
requests; `make chaos` runs more: CHAOS_REQUESTS=...).

What must hold: every request ends (an answer, or an error the API could
have sent); each leaves exactly one billing record (none lost, none billed
twice); every answered request's record names the deployment that served
it, inside the tenant's residency.
"""

from __future__ import annotations

import os
import random
import threading
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from sluice.events.spool import pending_records
from sluice.events.v1 import events_pb2 as ev
from tests.e2e.helpers import user, wait_until
from tests.infra.sluice_cluster import SimulatorProcess, SluiceCluster

REQUESTS = int(os.environ.get("CHAOS_REQUESTS", "40"))
CLIENTS = 5
DEPLOYMENTS = ("anthropic-global", "anthropic-us", "vertex-us-east5", "vertex-europe-west1", "vertex-eu",
               "bedrock-us-east-1", "bedrock-eu-west-1")


@pytest.fixture(scope="module", params=["all", "mesh"])
def chaos(request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[SluiceCluster]:
    workdir = tmp_path_factory.mktemp(f"chaos-{request.param}")
    simulator = SimulatorProcess(workdir)
    simulator.start()
    cluster = SluiceCluster(request.param, redis_url, workdir, simulator=simulator, name=f"chaos-{request.param}",
                            overrides={"inference": {"resilience": {
                                "hedge_delay_seconds": 0.25, "breaker_open_seconds": 0.5,
                                "breaker_consecutive_failures": 4}}})
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        simulator.stop()


def test_random_failures_lose_no_request_and_bill_none_twice(chaos):
    rng = random.Random(14)
    for i, deployment in enumerate(DEPLOYMENTS):
        profile = {"failure_rate": rng.choice([0.1, 0.3, 0.5]), "failure_status": rng.choice([529, 500, 429, 503]),
                   "slow_probability": 0.15, "slow_ttft_ms": 800, "midstream_failure_rate": 0.05, "seed": i}
        assert httpx.put(f"{chaos.simulator_base}/_sim/deployments/{deployment}", json=profile,
                         timeout=5).status_code == 200
    outcomes: list[tuple[str, int, bool]] = []  # (request id, status, whole answer)
    lock = threading.Lock()

    def client(n: int) -> None:
        with httpx.Client(base_url=chaos.http_base, timeout=60) as http:
            for k in range(REQUESTS // CLIENTS):
                stream = (n + k) % 2 == 0
                response = http.post("/v1/messages", headers={
                    "x-api-key": chaos.api_key, "anthropic-version": "2023-06-01"}, json={
                    "model": "claude-sonnet-4-6", "max_tokens": 24, "stream": stream,
                    "messages": user(f"chaos {n}-{k}")})
                whole = response.status_code == 200 and (
                    "event: message_stop" in response.text if stream else response.json()["type"] == "message")
                with lock:
                    outcomes.append((response.headers["request-id"], response.status_code, whole))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a request never ended"
    assert len(outcomes) == REQUESTS // CLIENTS * CLIENTS
    assert all(status in (200, 429, 500, 502, 529) for _, status, _ in outcomes), Counter(s for _, s, _ in outcomes)
    answered = {rid for rid, status, whole in outcomes if whole}
    assert len(answered) >= len(outcomes) // 2, "resilience should answer most requests"

    billed: Counter[str] = Counter()
    summaries: dict[str, ev.RequestSummary] = {}

    def all_billed() -> bool:
        billed.clear()
        for record in pending_records(chaos.spool_dir / "local"):
            if record.kind == "billing":
                event = ev.BillingEvent()
                event.ParseFromString(record.value)
                billed[event.request.request_id] += 1
                summaries[event.request.request_id] = event.request
        return all(rid in billed for rid, _, _ in outcomes)

    wait_until(all_billed, 15, "a billing record for every request")
    ids = [rid for rid, _, _ in outcomes]
    assert all(billed[rid] == 1 for rid in ids), [rid for rid in ids if billed[rid] != 1]
    for rid in answered:
        summary = summaries[rid]
        assert summary.outcome == ev.OUTCOME_OK and summary.deployment in DEPLOYMENTS and summary.cost_usd > 0
        assert [a.outcome for a in summary.attempts].count("served") == 1
