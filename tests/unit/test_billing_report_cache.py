"""The billing report's caching-by-tenant table: response-cache hits and what
they saved, prompt-cache reads and writes, from records as storage keeps them."""

from __future__ import annotations

import argparse
import io
from types import SimpleNamespace

import pytest
from google.protobuf import json_format

from sluice.events.v1 import events_pb2 as ev
from sluice.sinks import cli, report
from sluice.sinks.storage import RegionalStore

DAY_S = 1_795_000_000  # 2026-11-18 UTC


def _billing(i: int, tenant: str = "acme", day_s: int = DAY_S, cache: ev.CacheRecord | None = None,
             **usage) -> ev.BillingEvent:
    s = ev.RequestSummary(request_id=f"req_{i}", tenant_id=tenant, region="eu", model_served="claude-haiku-4-5",
                          outcome=ev.OUTCOME_OK, **usage)
    s.occurred_at.seconds = day_s + i
    if cache is not None:
        s.cache.CopyFrom(cache)
    return ev.BillingEvent(event_id=f"b{i}", request=s)


def _stored(event: ev.BillingEvent) -> dict:
    """As RegionalStore keeps it: proto JSON, field names as in the .proto, int64s as strings."""
    return json_format.MessageToDict(event, preserving_proto_field_name=True)


HIT = _billing(1, cache=ev.CacheRecord(status="hit", origin_request_id="req_0", saved_usd=0.004, stored=False),
               input_tokens=500, output_tokens=100, cost_usd=0.0)
MISS = _billing(2, cache=ev.CacheRecord(status="miss", reason="no entry", predicted_read_tokens=1000,
                                        predicted_write_tokens=200, prefix_saved_usd=0.0027,
                                        prefix_write_premium_usd=0.00025, warnings=["short prefix"], stored=True),
                input_tokens=50, cache_read_input_tokens=1000, cache_creation_input_tokens=200, output_tokens=80,
                cost_usd=0.0012)
OLD = _billing(3, input_tokens=10, cache_read_input_tokens=3, output_tokens=20, cost_usd=0.001)
OTHER = _billing(4, tenant="globex", cache=ev.CacheRecord(status="hit", saved_usd=0.01))
LATER = _billing(5, day_s=DAY_S + 86_400, cache=ev.CacheRecord(status="hit", saved_usd=1.0))


def test_stored_shape_is_what_the_report_reads():
    doc = _stored(MISS)["request"]
    assert doc["cache_read_input_tokens"] == "1000" and doc["cache"]["prefix_write_premium_usd"] == 0.00025
    assert "cache" not in _stored(OLD)["request"] and "saved_usd" not in _stored(MISS)["request"]["cache"]


def test_caching_sums_per_tenant_hits_prefix_reads_and_writes():
    events = [_stored(e) for e in (HIT, MISS, OLD, OTHER, LATER)]
    acme, globex = report.caching(events, "2026-11-18", "2026-11-18")
    assert (acme.tenant, acme.requests, acme.response_hits) == ("acme", 3, 1)
    assert acme.response_saved_usd == pytest.approx(0.004)
    assert acme.prefix_read_tokens == 1003  # the old record's reads count too
    assert acme.prefix_saved_usd == pytest.approx(0.0027)
    assert acme.write_premium_usd == pytest.approx(0.00025)
    assert acme.hit_ratio == pytest.approx(100 / 3)
    assert acme.net_saved_usd == pytest.approx(0.004 + 0.0027 - 0.00025)
    assert (globex.tenant, globex.requests, globex.response_hits, globex.hit_ratio) == ("globex", 1, 1, 100.0)
    assert report.caching(events, "2026-11-19", "2026-11-30")[0].response_saved_usd == pytest.approx(1.0)
    assert report.caching(events, "2026-11-20", "2026-11-30") == []


def test_old_records_alone_save_nothing():
    (line,) = report.caching([_stored(OLD)], "2026-11-01", "2026-11-30")
    assert (line.requests, line.response_hits, line.hit_ratio, line.prefix_read_tokens) == (1, 0, 0.0, 3)
    assert line.response_saved_usd == line.prefix_saved_usd == line.write_premium_usd == line.net_saved_usd == 0.0


def test_render_prints_the_caching_table_after_the_daily_one():
    events = [_stored(e) for e in (HIT, MISS, OLD, OTHER)]
    lines = report.summarize(events, "2026-11-01", "2026-11-30")
    text = report.render(lines, report.caching(events, "2026-11-01", "2026-11-30"))
    daily, caching = text.split("\n\n")
    assert daily + "\n" == report.render(lines)  # the first table is as before
    header, acme, globex, total = [row.split() for row in caching.splitlines()]
    assert " ".join(header) == ("tenant requests response hits hit ratio response saved USD prefix read tokens "
                                "prefix saved USD write premium USD net saved USD")
    assert acme == ["acme", "3", "1", "33.3%", "0.004000", "1003", "0.002700", "0.000250", "0.006450"]
    assert globex == ["globex", "1", "1", "100.0%", "0.010000", "0", "0.000000", "0.000000", "0.010000"]
    assert total == ["total", "4", "2", "50.0%", "0.014000", "1003", "0.002700", "0.000250", "0.016450"]


def test_render_of_an_empty_period_has_a_zero_total():
    text = report.render([], [])
    assert text.splitlines()[-1].split() == ["total", "0", "0", "0.0%", "0.000000", "0", "0.000000", "0.000000",
                                             "0.000000"]


def test_billing_report_command_prints_both_tables_for_the_tenant(tmp_path):
    store = RegionalStore(tmp_path, "eu")
    assert store.write([("billing", e) for e in (HIT, MISS, OLD, OTHER)]) == (4, 0)
    args = argparse.Namespace(command="billing", action="report", tenant="acme", day_from="2026-11-01",
                              day_to="2026-11-30", data_dir=str(tmp_path), region=None)
    settings = SimpleNamespace(region="eu", sinks=SimpleNamespace(data_dir=str(tmp_path)))
    out, err = io.StringIO(), io.StringIO()
    assert cli.run(args, settings, out, err) == 0, err.getvalue()
    daily, caching = out.getvalue().split("\n\n")
    assert daily.splitlines()[-1].split()[:3] == ["total", "3", "0"]  # requests, errors
    rows = [row.split() for row in caching.splitlines()[1:]]
    assert [r[0] for r in rows] == ["acme", "total"]  # only the tenant asked for
    assert rows[0][-1] == "0.006450" and rows[0][3] == "33.3%"
