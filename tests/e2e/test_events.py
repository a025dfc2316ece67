"""Billing and audit events through real Kafka brokers, one per region.

Two regions, each with its own Kafka cluster, gateway and sink process:
every request leaves one billing and one audit record in its tenant's home
region, nowhere else, through a Kafka outage and a sink killed mid-batch.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from collections import Counter
from dataclasses import dataclass

import httpx
import pytest
from kafka import KafkaConsumer, KafkaProducer

from sluice.events.records import (
    REASON_HEADER,
    dead_letter_topic,
    kafka_headers,
    region_topics,
    topic,
)
from sluice.events.v1 import events_pb2 as ev
from sluice.sinks.storage import RegionalStore
from tests.e2e.helpers import sdk, user, wait_until
from tests.infra.kafka_broker import create_topics, kafka_brokers
from tests.infra.sluice_cluster import SimulatorProcess, SinkProcess, SluiceCluster

pytestmark = pytest.mark.e2e

REGIONS = {"us-east-1": ("us-a", "us-b"), "eu-west-1": ("eu-a", "eu-b")}
# The "-a" tenants keep full text in audit records, the "-b" tenants a hash only.
AUDIT_MODES = {"a": "full", "b": "hash"}


@dataclass
class Region:
    name: str
    broker: object
    gateway: SluiceCluster
    sink: SinkProcess

    @property
    def store(self) -> RegionalStore:
        return RegionalStore(self.sink.data_dir, self.name)

    def records(self, kind: str) -> list[dict]:
        return list(self.store.events(kind)) if self.store.root.exists() else []


@pytest.fixture(scope="module")
def regions(tmp_path_factory):
    work = tmp_path_factory.mktemp("events")
    with kafka_brokers(len(REGIONS)) as brokers:
        simulator = SimulatorProcess(work).start()
        running: dict[str, Region] = {}
        try:
            for (name, tenants), broker in zip(REGIONS.items(), brokers, strict=True):
                create_topics(broker.bootstrap, region_topics(name))
                gateway = SluiceCluster(
                    "all", "memory://", work, simulator=simulator, region=name, kafka_bootstrap=broker.bootstrap,
                    name=f"gw-{name}",
                    tenants={t: {"tier": "standard", "region": name, "audit_content": AUDIT_MODES[t[-1]]}
                             for t in tenants})
                running[name] = Region(name, broker, gateway.start(), SinkProcess(work, name, broker.bootstrap).start())
            yield running
        finally:
            for region in running.values():
                region.sink.stop()
                region.gateway.stop()
            simulator.stop()


@dataclass
class Sent:
    request_id: str
    tenant: str
    status: int
    usage: dict | None  # as returned to the client
    text: str


def _send(region: Region, tenant: str, i: int) -> Sent:
    """Request i: JSON, SDK stream, or one refused as an unknown model (404)."""
    key = region.gateway.keys[tenant]
    base = region.gateway.http_base
    if i % 3 == 1:
        with sdk(base, key).messages.stream(model="claude-haiku-4-5", max_tokens=32,
                                            messages=user(f"stream {i}")) as stream:
            message = stream.get_final_message()
            request_id = stream.response.headers["request-id"]
        return Sent(request_id, tenant, 200, message.usage.model_dump(), message.content[0].text)
    model = "claude-haiku-4-5" if i % 3 == 0 else "claude-nonexistent-9"
    response = httpx.post(f"{base}/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"}, timeout=30,
                          json={"model": model, "max_tokens": 32, "messages": user(f"json {i}")})
    body = response.json()
    usage = body.get("usage") if response.status_code == 200 else None
    text = body["content"][0]["text"] if response.status_code == 200 else ""
    return Sent(response.headers["request-id"], tenant, response.status_code, usage, text)


def _by_request(records: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for record in records:
        out.setdefault(record["request"]["request_id"], []).append(record)
    return out


def test_each_regions_sink_holds_exactly_its_tenants_records_and_bills_what_clients_got(regions):
    sent: dict[str, list[Sent]] = {name: [] for name in regions}
    for i in range(24):
        name = list(REGIONS)[i % 2]
        tenant = REGIONS[name][(i // 2) % 2]
        sent[name].append(_send(regions[name], tenant, i))
    assert Counter(s.status for ss in sent.values() for s in ss) == {200: 16, 404: 8}

    for name, region in regions.items():
        expected = {s.request_id for s in sent[name]}
        wait_until(lambda r=region, e=expected: {x["request"]["request_id"] for x in r.records("billing")} >= e
                   and {x["request"]["request_id"] for x in r.records("audit")} >= e, 30, f"{name} records")
    for name, region in regions.items():
        billing, audit = _by_request(region.records("billing")), _by_request(region.records("audit"))
        mine = {s.request_id: s for s in sent[name]}
        others = {s.request_id for other, ss in sent.items() if other != name for s in ss}
        # Exactly this region's requests, each once; nothing of the other region.
        assert set(billing) == set(mine) and set(audit) == set(mine)
        assert all(len(v) == 1 for v in (*billing.values(), *audit.values()))
        assert not set(billing) & others
        for request_id, s in mine.items():
            bill, aud = billing[request_id][0]["request"], audit[request_id][0]
            assert bill["tenant_id"] == s.tenant and bill["region"] == name
            if s.status != 200:
                assert bill["outcome"] == "OUTCOME_ERROR" and bill["error_reason"] == "MODEL_NOT_FOUND"
                assert int(bill.get("output_tokens", 0)) == 0 and bill.get("cost_usd", 0) == 0
                continue
            # Reconciliation: billed tokens are the usage the client was given, request by request.
            assert bill["outcome"] == "OUTCOME_OK"
            for field in ("input_tokens", "output_tokens"):
                assert int(bill.get(field, 0)) == s.usage[field], (request_id, field)
            assert bill["model_served"] == "claude-haiku-4-5" and bill["cost_usd"] > 0
            assert bill["time_to_first_token_ms"] > 0 and bill["total_ms"] >= bill["time_to_first_token_ms"]
            completion = aud["completion"]
            assert completion["sha256"] == hashlib.sha256(s.text.encode()).hexdigest()
            if s.tenant.endswith("a"):
                assert completion["text"] == s.text and "user: " in aud["prompt"]["text"]
            else:
                assert "text" not in completion and "text" not in aud["prompt"]
            assert aud["auth"]["admitted"] is True

    # The report sums what the sink stored for one tenant.
    us = regions["us-east-1"]
    result = subprocess.run(
        [sys.executable, "-m", "sluice.runtime.cli", "billing", "report", "--tenant", "us-a", "--region", "us-east-1",
         "--data-dir", str(us.sink.data_dir)], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    billed_output = sum(int(r["request"].get("output_tokens", 0)) for r in us.records("billing")
                        if r["request"]["tenant_id"] == "us-a")
    total_line = next(line for line in result.stdout.splitlines() if line.startswith("total"))
    assert str(billed_output) in total_line.split()


def test_tampered_audit_record_fails_verification_naming_it(regions):
    us = regions["us-east-1"]
    wait_until(lambda: us.records("audit"), 30, "audit records")
    cli = [sys.executable, "-m", "sluice.runtime.cli", "audit", "verify", "--region", "us-east-1",
           "--data-dir", str(us.sink.data_dir)]
    ok = subprocess.run(cli, capture_output=True, text=True, timeout=30, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    _, _, path = next(us.store.files("audit", "us-b"))
    lines = path.read_text().splitlines(keepends=True)
    doc = json.loads(lines[1])
    doc["event"]["request"]["output_tokens"] = "999999"
    original, lines[1] = lines[1], json.dumps(doc) + "\n"
    path.write_text("".join(lines))
    try:
        bad = subprocess.run(cli, capture_output=True, text=True, timeout=30, check=False)
        assert bad.returncode == 1
        assert f"{path}:2" in bad.stdout and doc["event"]["event_id"] in bad.stdout and "edited" in bad.stdout
    finally:
        lines[1] = original
        path.write_text("".join(lines))


def test_events_made_while_kafka_is_down_arrive_once_after_it_returns_and_a_gateway_restart(regions):
    eu = regions["eu-west-1"]
    if not hasattr(eu.broker, "halt"):
        pytest.skip("the Kafka broker is not ours to stop (SLUICE_KAFKA_BOOTSTRAP or a container)")
    eu.broker.halt()
    try:
        sent = [_send(eu, "eu-a", i) for i in range(0, 30, 3)]  # served while Kafka is down
        assert all(s.status == 200 for s in sent)

        def metrics() -> str:
            return httpx.get(f"http://127.0.0.1:{eu.gateway.metrics_port}/metrics", timeout=5).text

        # The sender notices within its send timeout; the events wait in the spool.
        wait_until(lambda: "sluice_events_kafka_up 0.0" in metrics(), 30, "the outage to be noticed")
        spooled = [line for line in metrics().splitlines() if line.startswith("sluice_event_spool_bytes ")]
        assert float(spooled[0].split()[1]) > 0
        assert "Kafka for region eu-west-1 is unreachable" in eu.gateway.log_text("all")
        # A restart while Kafka is still down: the new process replays the spool.
        eu.gateway.stop()
        eu.gateway.start()
        sent += [_send(eu, "eu-b", i) for i in range(30, 45, 3)]
        assert all(s.status == 200 for s in sent)
    finally:
        eu.broker.start()
    ids = {s.request_id for s in sent}
    wait_until(lambda: ids <= {r["request"]["request_id"] for r in eu.records("billing")}
               and ids <= {r["request"]["request_id"] for r in eu.records("audit")}, 60, "replayed events")
    for kind in ("billing", "audit"):
        counts = Counter(r["request"]["request_id"] for r in eu.records(kind))
        assert all(counts[i] == 1 for i in ids), kind


def _bulk_event(i: int, tenant: str, region: str) -> ev.BillingEvent:
    event = ev.BillingEvent(event_id=f"bulk-{i}", request=ev.RequestSummary(
        request_id=f"req_bulk_{i}", tenant_id=tenant, region=region, input_tokens=i, outcome=ev.OUTCOME_OK))
    event.request.occurred_at.GetCurrentTime()
    return event


def test_a_sink_killed_mid_batch_loses_and_duplicates_nothing(regions, tmp_path):
    eu = regions["eu-west-1"]
    tenant, total = "bulk" + uuid.uuid4().hex[:6], 6000
    eu.sink.stop()
    producer = KafkaProducer(bootstrap_servers=eu.broker.bootstrap, acks="all", linger_ms=5)
    for i in range(total):
        producer.send(topic("billing", eu.name), key=tenant.encode(), value=_bulk_event(i, tenant, eu.name)
                      .SerializeToString(), headers=kafka_headers("billing"))
    producer.flush(60)
    producer.close()

    def stored() -> list[dict]:
        return list(eu.store.events("billing", tenant)) if (eu.store.root / "billing" / tenant).exists() else []

    # Small batches (each fsync'd before its offsets commit) keep the sink busy
    # long enough to be killed mid-way; at 50 it once stored all 6000 first.
    eu.sink.config["sinks"]["batch_max_records"] = 20
    eu.sink.start()
    wait_until(lambda: len(stored()) > 0, 60, "the sink to start storing")
    eu.sink.kill()
    at_kill = len(stored())
    assert 0 < at_kill < total, "the sink finished before it could be killed mid-way"
    eu.sink.start()
    wait_until(lambda: len(stored()) >= total, 90, "the backlog to be stored")
    ids = Counter(r["event_id"] for r in stored())
    assert len(ids) == total and max(ids.values()) == 1


def test_unreadable_records_go_to_the_dead_letter_topic_and_the_sink_keeps_going(regions):
    eu = regions["eu-west-1"]
    tenant = "dlq" + uuid.uuid4().hex[:6]
    producer = KafkaProducer(bootstrap_servers=eu.broker.bootstrap, acks="all")
    producer.send(topic("billing", eu.name), key=b"x", value=b"\x08\x96\x01garbage", headers=kafka_headers("billing"))
    producer.send(topic("billing", eu.name), key=b"x", value=_bulk_event(1, tenant, eu.name).SerializeToString(),
                  headers=[("sluice-event-type", b"billing"), ("sluice-schema-version", b"2")])
    producer.send(topic("billing", eu.name), key=tenant.encode(),
                  value=_bulk_event(2, tenant, eu.name).SerializeToString(), headers=kafka_headers("billing"))
    producer.flush(30)
    producer.close()

    wait_until(lambda: (eu.store.root / "billing" / tenant).exists()
               and [r["event_id"] for r in eu.store.events("billing", tenant)] == ["bulk-2"], 60, "the good record")
    consumer = KafkaConsumer(dead_letter_topic(eu.name), bootstrap_servers=eu.broker.bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=15000, group_id=None)
    reasons = []
    for record in consumer:
        reasons.append(dict(record.headers)[REASON_HEADER].decode())
        if len(reasons) == 2:
            break
    consumer.close()
    assert any("does not decode" in r or "lacks event_id" in r for r in reasons), reasons
    assert any("unsupported schema version '2'" in r for r in reasons), reasons

