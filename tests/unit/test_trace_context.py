"""Callers' W3C trace headers: well-formed ones are honoured, anything else is ignored and counted,
never logged per request (the SDK would log each with the caller's text)."""

from __future__ import annotations

import logging

import pytest
from opentelemetry import trace

from sluice.telemetry import logging as sluice_logging
from sluice.telemetry import metrics, tracing

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture(autouse=True)
def enabled(monkeypatch):
    monkeypatch.setattr(tracing, "ENABLED", True)


def rejected(header: str) -> float:
    return metrics.TRACE_CONTEXT_REJECTED.labels(header)._value.get()


def parent_of(carrier) -> trace.SpanContext | None:
    found = tracing.extract(carrier)
    context = trace.get_current_span(found).get_span_context() if found is not None else None
    return context if context is not None and context.is_valid else None


def test_a_well_formed_parent_and_state_are_honoured_from_headers_and_metadata():
    for carrier in ({"traceparent": PARENT, "tracestate": "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE"},
                    [("traceparent", PARENT), ("tracestate", "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE")]):
        context = parent_of(carrier)
        assert format(context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
        assert context.trace_flags.sampled and dict(context.trace_state) == {"rojo": "00f067aa0ba902b7",
                                                                             "congo": "t61rcWkgMzE"}


def test_the_first_of_repeated_metadata_wins_as_on_http():
    other = "00-11111111111111111111111111111111-2222222222222222-01"
    assert format(parent_of([("traceparent", PARENT), ("traceparent", other)]).trace_id, "032x") == \
        "0af7651916cd43dd8448eb211c80319c"


@pytest.mark.parametrize("value", ["garbage", PARENT.upper(), "ff" + PARENT[2:], PARENT + "\u00e9",
                                   "00-" + "0" * 32 + "-b7ad6b7169203331-01", "00-0af7651916cd43dd8448eb211c80319c-"
                                   + "0" * 16 + "-01", "x" * 10_000, PARENT.replace("-", ",")])
def test_a_malformed_parent_is_ignored_counted_and_not_logged(value, caplog):
    before = rejected("traceparent")
    with caplog.at_level(logging.DEBUG):
        assert parent_of({"traceparent": value}) is None
    assert rejected("traceparent") == before + 1 and not caplog.records


@pytest.mark.parametrize("state", ["bad member N FAKE LOG LINE", "x" * 8_000, "k=" + "v" * 300, "K=upper",
                                   ",".join(f"k{i}=v" for i in range(33)), "k=v\nforged log line"])
def test_a_malformed_state_is_dropped_counted_and_not_logged_and_the_parent_kept(state, caplog):
    before = rejected("tracestate")
    with caplog.at_level(logging.DEBUG):
        context = parent_of({"traceparent": PARENT, "tracestate": state})
    assert context is not None and not dict(context.trace_state)
    assert rejected("tracestate") == before + 1 and not caplog.records


def test_the_sdks_own_complaints_are_logged_once_a_minute():
    keep = sluice_logging._LibraryNoiseFilter()
    record = logging.LogRecord("opentelemetry.exporter.otlp.proto.grpc.exporter", logging.WARNING, __file__, 1,
                               "Transient error %s encountered while exporting traces", ("UNAVAILABLE",), None)
    assert [keep.filter(record) for _ in range(50)] == [True] + [False] * 49
    ours = logging.LogRecord("sluice.gateway", logging.WARNING, __file__, 1, "something", (), None)
    assert all(keep.filter(ours) for _ in range(5))
