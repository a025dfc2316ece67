"""The gateway's own view of a request as metrics, in both run modes: what it answered, how long
it took, what Sluice added (the overhead), time to first token, tokens and cost."""

from __future__ import annotations

import anthropic
import pytest

from tests.e2e.conformance import metric
from tests.e2e.helpers import record_of, sdk, user

pytestmark = pytest.mark.e2e


def test_a_served_request_is_counted_timed_and_priced(cluster):
    mode = cluster.mode
    served = dict(mode=mode, route="messages", status="200", error_type="")
    before = {name: metric(cluster, name, **labels) for name, labels in (
        ("sluice_gateway_requests_total", served),
        ("sluice_gateway_overhead_seconds_count", dict(mode=mode, route="messages")),
        ("sluice_gateway_request_duration_seconds_count", dict(mode=mode, route="messages", stream="true")),
    )}
    client = sdk(cluster.http_base, cluster.api_key)
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=64,
                                messages=user("count me [[sim:tokens=20]] [[sim:itl_ms=5]]")) as stream:
        final = stream.get_final_message()
        request_id = stream.response.headers["request-id"]
    model = final.model
    summary = record_of(cluster, request_id, "billing").request
    assert summary.upstream_ms > 0 and summary.total_ms > summary.upstream_ms

    assert metric(cluster, "sluice_gateway_requests_total", **served) == before["sluice_gateway_requests_total"] + 1
    assert metric(cluster, "sluice_gateway_request_duration_seconds_count", mode=mode, route="messages",
                  stream="true") == before["sluice_gateway_request_duration_seconds_count"] + 1
    assert metric(cluster, "sluice_gateway_overhead_seconds_count", mode=mode, route="messages") == \
        before["sluice_gateway_overhead_seconds_count"] + 1
    # The overhead is the duration minus the upstream wait: well under the duration of a
    # 20-token answer streamed at 5 ms a token.
    overhead = metric(cluster, "sluice_gateway_overhead_seconds_sum", mode=mode, route="messages")
    duration = metric(cluster, "sluice_gateway_request_duration_seconds_sum", mode=mode, route="messages",
                      stream="true")
    assert 0 < overhead < duration
    assert metric(cluster, "sluice_gateway_time_to_first_token_seconds_count", mode=mode, model=model) >= 1
    assert metric(cluster, "sluice_gateway_output_tokens_per_second_count", model=model) >= 1
    assert metric(cluster, "sluice_gateway_tokens_total", model=model, token_type="output") >= \
        final.usage.output_tokens
    assert metric(cluster, "sluice_gateway_cost_usd_total", model=model, tenant="") >= summary.cost_usd > 0
    assert metric(cluster, "sluice_gateway_request_cost_usd_count", model=model) >= 1
    assert metric(cluster, "sluice_cost_per_request_target_usd") == pytest.approx(0.012)
    assert metric(cluster, "sluice_info", mode=mode, region=cluster.config["region"]) == 1


def test_refusals_are_counted_by_the_status_the_api_answers(cluster):
    mode = cluster.mode
    bad_key = dict(mode=mode, route="messages", status="401", error_type="authentication_error")
    unknown = dict(mode=mode, route="messages", status="404", error_type="not_found_error")
    before = metric(cluster, "sluice_gateway_requests_total", **bad_key), \
        metric(cluster, "sluice_gateway_requests_total", **unknown)
    with pytest.raises(anthropic.AuthenticationError):
        sdk(cluster.http_base, "sk-sluice-wrong").messages.create(model="claude-sonnet-4-6", max_tokens=8,
                                                                  messages=user("hi"))
    with pytest.raises(anthropic.NotFoundError):
        sdk(cluster.http_base, cluster.api_key).messages.create(model="no-such-model", max_tokens=8,
                                                                messages=user("hi"))
    assert metric(cluster, "sluice_gateway_requests_total", **bad_key) == before[0] + 1
    assert metric(cluster, "sluice_gateway_requests_total", **unknown) == before[1] + 1
