"""Conformance: Sluice carries the Anthropic Messages API faithfully, for
both API versions, every block, field, event and endpoint real clients use.

Three real clients drive Sluice, in `all` mode and as a mesh, against the
scripted simulator: the official Python SDK (2.x, API version 2026-10-21),
the official TypeScript SDK (1.x, run by node) and raw HTTP on both API
versions. Where a case is "as the API does it", the same request goes to
the simulator directly as well and the two are compared: what reached the
upstream (the simulator records every request) and what came back.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anthropic
import grpc
import httpx
import pytest

from sluice.catalog import load_catalog
from sluice.gateway.v1 import gateway_service_pb2 as gw
from tests.e2e.conformance import (
    PING_INTERVAL_S,
    V2023,
    V2026,
    billing_event,
    direct,
    last_received,
    metric,
    post,
    received,
    same_message_ids,
    script,
    sse,
    user,
)
from tests.e2e.helpers import error_details, gateway_stub, wait_until
from tests.infra.node_sdk import run_ts
from tests.infra.sluice_cluster import SluiceCluster

pytestmark = pytest.mark.e2e

MODEL = "claude-sonnet-4-6"  # adaptive thinking, inference_geo; no prefill


def sdk(base: str, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base, api_key=key, max_retries=0)


def through_and_direct(conf: SluiceCluster, tenant: str = "raw") -> tuple[anthropic.Anthropic, anthropic.Anthropic]:
    return sdk(conf.http_base, conf.keys[tenant]), sdk(conf.simulator_base, "sk-sim")


def _body(record: dict[str, Any]) -> dict[str, Any]:
    return json.loads(record["body"])


def signed_thinking(conf: SluiceCluster, thought: str) -> dict[str, Any]:
    """A thinking block as the upstream signed it (asked of the simulator directly)."""
    _, marker = script(conf, {"content": [{"type": "thinking", "thinking": thought}, {"type": "text", "text": "ok"}]})
    answer = direct(conf, {"model": MODEL, "max_tokens": 50, "messages": user(marker)}).json()
    return answer["content"][0]


RICH_CONTENT = [
    {"type": "thinking", "thinking": "First I look the numbers up, then I answer."},
    {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP"},
    {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input_json": '{"query": "sluice gates"}'},
    {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [
        {"type": "web_search_result", "url": "https://example.org/sluice", "title": "Sluice gates",
         "encrypted_content": "EqgfCioIARgBIiQ3YTAwMjY1Mi1mZjM5", "page_age": "April 30, 2025"}]},
    {"type": "text", "text": "A sluice is a water channel controlled at its head by a gate.",
     "citations": [{"type": "web_search_result_location", "url": "https://example.org/sluice",
                    "title": "Sluice gates", "encrypted_index": "Eo8BCioIAhgBIiQyYjQ0OWJmZi1lNm",
                    "cited_text": "A sluice is a water channel"}]},
    {"type": "tool_use", "id": "toolu_1", "name": "calc",
     "input_json": '{"n": 17, "big": 9007199254740993, "f": 1.50, "nested": {"list": [1, {"x": -0.0}]}}'},
]
RICH_USAGE = {"input_tokens": 321, "output_tokens": 123, "cache_creation_input_tokens": 3000,
              "cache_read_input_tokens": 50,
              "cache_creation": {"ephemeral_5m_input_tokens": 1000, "ephemeral_1h_input_tokens": 2000},
              "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 1},
              "service_tier": "standard", "inference_geo": "us"}


# What the API knows when the answer starts (message_start's usage); the
# final message_delta repeats the counters cumulatively.
RICH_START_USAGE = {k: v for k, v in RICH_USAGE.items() if k not in ("output_tokens", "server_tool_use")}


def rich_script(conf: SluiceCluster, **extra: Any) -> tuple[str, str]:
    return script(conf, {"content": RICH_CONTENT, "stop_reason": "tool_use", "usage": RICH_USAGE,
                         "start_usage": RICH_START_USAGE, "pings": {"every": 2}, "chunk_chars": 7, **extra})


# -- requests reach the upstream as the client sent them -----------------------------------------


def test_python_sdk_request_with_every_new_field_reaches_the_upstream_as_sent(conf):
    thinking = signed_thinking(conf, "Earlier reasoning, signed by the upstream.")
    sid, marker = script(conf, {"content": [{"type": "text", "text": "done"}]})
    messages = [
        {"role": "user", "content": [
            {"type": "text", "text": "Here is a contract.", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Clause 1."},
             "citations": {"enabled": True}, "title": "contract"}]},
        {"role": "assistant", "content": [
            thinking, {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
            {"type": "tool_use", "id": "toolu_9", "name": "calc", "input": {"n": 17, "big": 9007199254740993}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_9", "content": [{"type": "text", "text": "34"}]},
            {"type": "text", "text": f"And now? {marker}"}]},
    ]
    kwargs: dict[str, Any] = dict(
        model=MODEL, max_tokens=512, messages=messages, system="Be exact.",
        thinking={"type": "adaptive"}, output_config={"effort": "high"}, inference_geo="us",
        service_tier="auto", cache_control={"type": "ephemeral"}, metadata={"user_id": "u-42"},
        tools=[{"name": "calc", "description": "Adds.", "input_schema": {
            "type": "object", "properties": {"n": {"type": "integer", "minimum": 17, "default": 9007199254740993}}}},
            {"type": "web_search_20260209", "name": "web_search", "max_uses": 3}],
        extra_body={"context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
                    "mcp_servers": [{"type": "url", "url": "https://mcp.example.org", "name": "ex"}],
                    "x_future_field": {"n": 9007199254740993, "f": 1.50}},
        extra_headers={"anthropic-beta": "context-management-2025-06-27,mcp-client-2025-11-20"},
    )
    through, straight = through_and_direct(conf)
    answer = through.messages.create(**kwargs)
    expected = straight.messages.create(**kwargs)
    assert answer.content[0].text == expected.content[0].text == "done"
    via_sluice, via_direct = received(conf, sid)
    assert _body(via_sluice) == {**_body(via_direct), "stream": True}
    assert "9007199254740993" in via_sluice["body"] and '"f":1.5' in via_sluice["body"].replace(" ", "")
    for name in ("anthropic-version", "anthropic-beta"):
        assert via_sluice["headers"][name] == via_direct["headers"][name]
    assert via_sluice["headers"]["anthropic-version"] == V2026


def test_typescript_sdk_request_reaches_the_upstream_as_sent(conf, ts_sdk):
    sid, marker = script(conf, {"content": [{"type": "text", "text": "ts ok"}]})
    params = {"model": MODEL, "max_tokens": 64, "messages": user(f"hi from node {marker}"),
              "thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}, "x_future": {"n": 17}}
    ours = run_ts(conf.http_base, conf.keys["raw"], {"op": "create", "params": params})
    theirs = run_ts(conf.simulator_base, "sk-sim", {"op": "create", "params": params})
    assert ours["ok"], ours
    assert ours["message"]["content"] == theirs["message"]["content"] == [{"type": "text", "text": "ts ok"}]
    via_sluice, via_direct = received(conf, sid)
    assert _body(via_sluice) == {**_body(via_direct), "stream": True}
    assert via_sluice["headers"]["anthropic-version"] == V2026


def test_raw_http_2023_sampling_parameters_reach_models_that_take_them(conf):
    sid, marker = script(conf, {"content": [{"type": "text", "text": "sampled"}]})
    body = {"model": MODEL, "max_tokens": 16, "temperature": 0.5, "top_p": 0.9, "top_k": 40,
            "messages": user(marker)}
    response = post(conf.http_base, conf.keys["raw"], body, V2023)
    assert response.status_code == 200, response.text
    assert response.json()["content"][0]["text"] == "sampled"
    (sent,) = received(conf, sid)
    assert {k: _body(sent)[k] for k in ("temperature", "top_p", "top_k")} == {"temperature": 0.5, "top_p": 0.9,
                                                                             "top_k": 40}
    assert sent["headers"]["anthropic-version"] == V2023


@pytest.mark.parametrize("version,model,extra,status,message", [
    (V2026, MODEL, {"temperature": 1.0}, 400, "temperature: Extra inputs are not permitted"),
    (V2026, MODEL, {"top_k": 5}, 400, "top_k: Extra inputs are not permitted"),
    (V2023, "claude-opus-4-7", {"temperature": 0.2}, 400, "`temperature` is deprecated for this model."),
    ("2024-01-01", MODEL, {}, 400, 'anthropic-version: "2024-01-01" is not a valid version'),
    (V2023, "claude-haiku-4-5", {"inference_geo": "us"}, 400, "inference_geo"),
])
def test_what_the_api_refuses_is_refused_with_its_status_type_and_words(conf, version, model, extra, status, message):
    body = {"model": model, "max_tokens": 16, "messages": user("refuse me"), **extra}
    ours, theirs = post(conf.http_base, conf.keys["raw"], body, version), direct(conf, body, version)
    assert ours.status_code == theirs.status_code == status
    assert ours.json()["error"] == theirs.json()["error"]
    assert message in ours.json()["error"]["message"]
    assert ours.headers["x-should-retry"] == "false"


def test_a_missing_api_version_is_the_apis_400(conf):
    body = {"model": MODEL, "max_tokens": 16, "messages": user("no version")}
    ours, theirs = post(conf.http_base, conf.keys["raw"], body, None), direct(conf, body, None)
    assert ours.status_code == theirs.status_code == 400
    assert ours.json()["error"] == theirs.json()["error"] == {
        "type": "invalid_request_error", "message": "anthropic-version: header is required"}


def test_2026_refuses_documents_in_assistant_turns_and_citations_on_user_text_2023_takes_them(conf):
    doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Quoted."}}
    cited = {"type": "text", "text": "As quoted.", "citations": [{"type": "char_location", "cited_text": "Quoted.",
                                                                  "document_index": 0, "start_char_index": 0,
                                                                  "end_char_index": 7}]}
    for history in ([{"role": "user", "content": "q"}, {"role": "assistant", "content": [doc]}],
                    [{"role": "user", "content": [cited]}, {"role": "assistant", "content": "a"}]):
        body = {"model": "claude-haiku-4-5", "max_tokens": 16, "messages": [*history, *user("go on")]}
        assert post(conf.http_base, conf.keys["raw"], body, V2023).status_code == 200
        refused = post(conf.http_base, conf.keys["raw"], body, V2026)
        assert refused.status_code == 400 and refused.json() != {}
        assert refused.json()["error"] == direct(conf, body, V2026).json()["error"]


def test_an_empty_final_assistant_turn_is_allowed_where_the_model_takes_prefill(conf):
    body = {"model": "claude-haiku-4-5", "max_tokens": 16,
            "messages": [*user("Finish my sentence"), {"role": "assistant", "content": ""}]}
    assert post(conf.http_base, conf.keys["raw"], body, V2026).status_code == 200
    no_prefill = post(conf.http_base, conf.keys["raw"], dict(body, model=MODEL), V2026)
    assert no_prefill.status_code == 400 and "prefill" in no_prefill.json()["error"]["message"]


@pytest.mark.parametrize("raw,field", [
    (b'{"model": "claude-haiku-4-5", "max_tokens": 99999999999999999999999, "messages": [{"role": "user", '
     b'"content": "x"}]}', "max_tokens"),
    (b'{"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": {"is": "user"}, "content": "x"}]}',
     "messages.0.role"),
    (b'{"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "\\ud800"}]}',
     "messages.0.content"),
    (b'{"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": '
     b'"tool_use", "id": "t", "name": "n", "input": [1]}]}]}', "messages.0.content.0.input"),
])
def test_hostile_json_from_the_issue_is_a_400_naming_the_field_never_a_500(conf, raw, field):
    response = post(conf.http_base, conf.keys["raw"], raw, V2023)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"].startswith(field + ":")


# -- streams ---------------------------------------------------------------------------------------


def test_every_event_streams_byte_for_byte_as_the_upstream_sent_it(conf):
    _, marker = rich_script(conf)
    body = {"model": MODEL, "max_tokens": 1024, "stream": True, "messages": user(marker)}
    ours = post(conf.http_base, conf.keys["raw"], body, V2023)
    theirs = direct(conf, body, V2023)
    assert ours.status_code == 200 and ours.headers["content-type"].startswith("text/event-stream")
    ours_events = [(k, same_message_ids(d)) for k, d in sse(ours.text)]
    theirs_events = [(k, same_message_ids(d)) for k, d in sse(theirs.text)]
    assert ours_events == theirs_events
    kinds = {k for k, _ in ours_events}
    deltas = {json.loads(d)["delta"]["type"] for k, d in ours_events if k == "content_block_delta"}
    assert {"ping", "message_start", "content_block_start", "content_block_stop", "message_delta",
            "message_stop"} <= kinds
    assert {"thinking_delta", "signature_delta", "citations_delta", "text_delta", "input_json_delta"} <= deltas


def test_python_sdk_streams_and_assembles_every_block_kind(conf):
    _, marker = rich_script(conf)
    through, straight = through_and_direct(conf)
    finals = []
    for client in (through, straight):
        with client.messages.stream(model=MODEL, max_tokens=1024, messages=user(marker)) as stream:
            finals.append(stream.get_final_message())
    ours, theirs = finals
    assert [b.type for b in ours.content] == ["thinking", "redacted_thinking", "server_tool_use",
                                              "web_search_tool_result", "text", "tool_use"]
    assert ours.model_dump(exclude={"id"}) == theirs.model_dump(exclude={"id"})
    assert ours.content[5].input == {"n": 17, "big": 9007199254740993, "f": 1.5, "nested": {"list": [1, {"x": -0.0}]}}
    assert ours.usage.cache_creation.ephemeral_1h_input_tokens == 2000
    assert ours.usage.server_tool_use.web_search_requests == 2 and ours.usage.inference_geo == "us"


def test_typescript_sdk_streams_every_block_kind(conf, ts_sdk):
    _, marker = rich_script(conf)
    params = {"model": MODEL, "max_tokens": 1024, "messages": user(marker)}
    ours = run_ts(conf.http_base, conf.keys["raw"], {"op": "stream", "params": params})
    theirs = run_ts(conf.simulator_base, "sk-sim", {"op": "stream", "params": params})
    assert ours["ok"], ours
    strip = lambda m: {k: v for k, v in m.items() if k != "id"}  # noqa: E731
    assert strip(ours["final"]) == strip(theirs["final"])
    assert [b["type"] for b in ours["final"]["content"]][:2] == ["thinking", "redacted_thinking"]
    assert ours["final"]["usage"]["cache_creation"] == RICH_USAGE["cache_creation"]


def test_thinking_comes_back_byte_exact_so_the_next_turn_is_accepted(conf):
    _, marker = script(conf, {"content": [{"type": "thinking", "thinking": "Weigh both options."},
                                          {"type": "text", "text": "Option B."}]})
    client = sdk(conf.http_base, conf.keys["acme"])  # through the output filter
    with client.messages.stream(model=MODEL, max_tokens=256, messages=user(marker)) as stream:
        first = stream.get_final_message()
    history = [*user(marker), {"role": "assistant", "content": [b.model_dump() for b in first.content]},
               *user("Why?")]
    again = client.messages.create(model=MODEL, max_tokens=64, messages=history)
    assert again.stop_reason
    tampered = json.loads(json.dumps(history))
    tampered[1]["content"][0]["thinking"] += " Edited."
    with pytest.raises(anthropic.BadRequestError) as err:
        client.messages.create(model=MODEL, max_tokens=64, messages=tampered)
    assert "Invalid `signature` in `thinking` block" in err.value.message


def test_a_thinking_block_a_policy_would_edit_is_dropped_not_forwarded_edited(conf):
    _, marker = script(conf, {"content": [{"type": "thinking", "thinking": "The user is jane.doe@example.com."},
                                          {"type": "text", "text": "Hello!"}]})
    client = sdk(conf.http_base, conf.keys["acme"])
    with client.messages.stream(model=MODEL, max_tokens=256, messages=user(marker)) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["text"] and final.content[0].text == "Hello!"


def test_upstream_pings_are_relayed_and_silence_gets_sluices_own_pings(conf):
    _, marker = script(conf, {"content": [{"type": "text", "text": "after a long think"}],
                              "pause": {"after_events": 2, "ms": int(PING_INTERVAL_S * 1000 * 4)}})
    body = {"model": MODEL, "max_tokens": 64, "stream": True, "messages": user(marker)}
    ours = [k for k, _ in sse(post(conf.http_base, conf.keys["raw"], body).text)]
    theirs = [k for k, _ in sse(direct(conf, body).text)]
    assert ours.count("ping") >= theirs.count("ping") + 2
    assert [k for k in ours if k != "ping"] == [k for k in theirs if k != "ping"]
    assert ours[-1] == "message_stop"
    assert metric(conf, "sluice_stream_pings_total") >= 2
    with grpc.insecure_channel(conf.grpc_address) as channel:  # gRPC streams get them too
        streamed = list(gateway_stub(channel).StreamMessage(
            gw.StreamMessageRequest(body=json.dumps(body).encode(), anthropic_version=V2023),
            metadata=[("x-api-key", conf.keys["raw"])], timeout=30))
    kinds = [r.wire.type for r in streamed]
    assert kinds.count("ping") >= theirs.count("ping") + 2 and kinds[-1] == "message_stop"


def test_a_mid_stream_error_reaches_the_client_with_its_type_and_words(conf):
    _, marker = script(conf, {"content": [{"type": "text", "text": "partial answer here"}],
                              "error_after_events": {"after": 3, "error": {"type": "overloaded_error",
                                                                           "message": "Overloaded"}}})
    body = {"model": MODEL, "max_tokens": 64, "stream": True, "messages": user(marker)}
    events = sse(post(conf.http_base, conf.keys["raw"], body).text)
    assert events[-1][0] == "error"
    assert json.loads(events[-1][1])["error"] == {"type": "overloaded_error", "message": "Overloaded"}


# -- whole (non-streamed) answers --------------------------------------------------------------------


def test_a_json_answer_is_the_message_its_events_add_up_to(conf):
    _, marker = rich_script(conf)
    body = {"model": MODEL, "max_tokens": 1024, "messages": user(marker)}
    ours, theirs = post(conf.http_base, conf.keys["raw"], body), direct(conf, body)
    assert ours.status_code == 200
    assert json.loads(same_message_ids(ours.text)) == json.loads(same_message_ids(theirs.text))
    assert '"big": 9007199254740993, "f": 1.50' in ours.text  # the tool input's own text


def test_a_tool_call_cut_off_by_max_tokens_is_a_200_with_what_parses(conf):
    start = {"type": "message_start", "message": {"id": "msg_cut", "type": "message", "role": "assistant",
                                                  "model": MODEL, "content": [], "stop_reason": None,
                                                  "stop_sequence": None, "usage": {"input_tokens": 9,
                                                                                   "output_tokens": 1}}}
    _, marker = script(conf, {"events": [
        {"event": "message_start", "data": start},
        {"event": "content_block_start", "data": {"type": "content_block_start", "index": 0, "content_block": {
            "type": "tool_use", "id": "toolu_cut", "name": "weather", "input": {}}}},
        {"event": "content_block_delta", "data": {"type": "content_block_delta", "index": 0, "delta": {
            "type": "input_json_delta", "partial_json": '{"city": "Par'}}},
        {"event": "content_block_stop", "data": {"type": "content_block_stop", "index": 0}},
        {"event": "message_delta", "data": {"type": "message_delta", "delta": {"stop_reason": "max_tokens",
                                                                              "stop_sequence": None},
                                            "usage": {"output_tokens": 16}}},
        {"event": "message_stop", "data": {"type": "message_stop"}}]})
    message = sdk(conf.http_base, conf.keys["raw"]).messages.create(model=MODEL, max_tokens=16,
                                                                    messages=user(marker))
    assert message.stop_reason == "max_tokens"
    assert message.content[0].type == "tool_use" and message.content[0].input == {"city": "Par"}


@pytest.mark.parametrize("stop_reason", ["end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn",
                                         "refusal", "model_context_window_exceeded"])
def test_every_stop_reason_reaches_the_client(conf, stop_reason):
    _, marker = script(conf, {"content": [{"type": "text", "text": "stop here"}], "stop_reason": stop_reason,
                              "stop_sequence": "END" if stop_reason == "stop_sequence" else None})
    client = sdk(conf.http_base, conf.keys["raw"])
    assert client.messages.create(model=MODEL, max_tokens=64, messages=user(marker)).stop_reason == stop_reason
    with client.messages.stream(model=MODEL, max_tokens=64, messages=user(marker)) as stream:
        assert stream.get_final_message().stop_reason == stop_reason


# -- usage and billing ---------------------------------------------------------------------------------


def test_usage_reaches_the_client_whole_and_billing_prices_it(conf):
    _, marker = script(conf, {"content": [{"type": "text", "text": "priced"}], "usage": RICH_USAGE,
                              "start_usage": RICH_START_USAGE})
    raw = sdk(conf.http_base, conf.keys["raw"]).messages.with_raw_response.create(
        model=MODEL, max_tokens=64, messages=user(marker))
    usage = raw.parse().usage
    assert (usage.cache_creation.ephemeral_5m_input_tokens, usage.cache_creation.ephemeral_1h_input_tokens) == \
        (1000, 2000)
    assert (usage.server_tool_use.web_search_requests, usage.service_tier, usage.inference_geo) == (2, "standard", "us")
    prices = load_catalog().lookup(MODEL).prices
    expected = (321 * prices.input + 123 * prices.output + 1000 * prices.cache_write_5m
                + 2000 * prices.cache_write_1h + 50 * prices.cache_read) / 1e6 + 2 * 0.01
    summary = _billing(conf, raw.headers["request-id"]).request
    assert summary.cost_usd == pytest.approx(expected)
    assert (summary.cache_creation_5m_input_tokens, summary.cache_creation_1h_input_tokens) == (1000, 2000)
    assert dict(summary.server_tool_use) == {"web_search_requests": 2, "web_fetch_requests": 1}


def test_a_failed_stream_is_billed_the_output_the_upstream_reported(conf):
    _, marker = script(conf, {
        "events": [
            {"event": "message_start", "data": {"type": "message_start", "message": {
                "id": "msg_f", "type": "message", "role": "assistant", "model": MODEL, "content": [],
                "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 20, "output_tokens": 1}}}},
            {"event": "content_block_start", "data": {"type": "content_block_start", "index": 0,
                                                      "content_block": {"type": "text", "text": ""}}},
            {"event": "content_block_delta", "data": {"type": "content_block_delta", "index": 0,
                                                      "delta": {"type": "text_delta", "text": "a few words"}}},
            {"event": "message_delta", "data": {"type": "message_delta", "delta": {"stop_reason": None},
                                                "usage": {"output_tokens": 40}}},
            {"event": "error", "data": {"type": "error", "error": {"type": "api_error", "message": "boom"}}}]})
    response = post(conf.http_base, conf.keys["raw"], {"model": MODEL, "max_tokens": 64, "stream": True,
                                                       "messages": user(marker)})
    assert sse(response.text)[-1][0] == "error"
    summary = _billing(conf, response.headers["request-id"]).request
    assert summary.output_tokens == 40 and summary.outcome == 2  # OUTCOME_ERROR
    prices = load_catalog().lookup(MODEL).prices
    assert summary.cost_usd == pytest.approx((20 * prices.input + 40 * prices.output) / 1e6)


def _billing(conf: SluiceCluster, request_id: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 10
    while True:  # the writer thread spools on its group-commit tick
        try:
            return billing_event(conf, request_id)
        except LookupError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# -- endpoints -------------------------------------------------------------------------------------------


def test_count_tokens_is_the_upstreams_count_for_every_client(conf, ts_sdk):
    sid, marker = script(conf, {"input_tokens": 4242})
    messages = user(f"count me {marker}")
    through, straight = through_and_direct(conf, "counter")
    assert through.messages.count_tokens(model=MODEL, messages=messages).input_tokens == 4242
    assert straight.messages.count_tokens(model=MODEL, messages=messages).input_tokens == 4242
    via_sluice, via_direct = received(conf, sid)
    assert via_sluice["path"] == "/d/anthropic-global/v1/messages/count_tokens" and _body(via_sluice) == _body(via_direct)
    ts = run_ts(conf.http_base, conf.keys["counter"], {"op": "count_tokens", "params": {"model": MODEL,
                                                                                        "messages": messages}})
    assert ts["ok"] and ts["result"] == {"input_tokens": 4242}
    for version in (V2023, V2026):
        response = post(conf.http_base, conf.keys["counter"], {"model": MODEL, "messages": messages}, version,
                        path="/v1/messages/count_tokens")
        assert response.json() == {"input_tokens": 4242}
        # Counted against the request rate only: no token limit is reported or charged.
        assert "anthropic-ratelimit-requests-remaining" in response.headers
        assert "anthropic-ratelimit-tokens-remaining" not in response.headers


def test_count_tokens_needs_a_known_model_and_a_key(conf):
    response = post(conf.http_base, conf.keys["raw"], {"model": "claude-nope", "messages": user("x")},
                    path="/v1/messages/count_tokens")
    assert response.status_code == 404 and response.json()["error"]["message"] == "model: claude-nope"
    assert post(conf.http_base, "sk-sluice-bad", {"model": MODEL, "messages": user("x")},
                path="/v1/messages/count_tokens").status_code == 401


def _usable(tier: str) -> list[str]:
    catalog = load_catalog()
    return [m.id for m in catalog.newest_first() if tier in m.tiers and "local" in m.regions
            and m.lifecycle() != "retired"]


def test_models_list_in_pages_for_every_client(conf, ts_sdk):
    through = sdk(conf.http_base, conf.keys["raw"])
    assert [m.id for m in through.models.list(limit=3)] == _usable("standard")
    page = through.models.list(limit=2)
    assert page.has_more and page.first_id == page.data[0].id and page.last_id == page.data[1].id
    assert page.data[0].display_name and page.data[0].created_at and page.data[0].type == "model"
    ts = run_ts(conf.http_base, conf.keys["big"], {"op": "models_list", "query": {"limit": 4}})
    assert ts["ok"] and ts["ids"] == _usable("enterprise")
    raw = httpx.get(f"{conf.http_base}/v1/models", params={"limit": 2, "after_id": page.last_id}, timeout=10,
                    headers={"x-api-key": conf.keys["raw"], "anthropic-version": V2023})
    listed = raw.json()
    assert set(listed) == {"data", "has_more", "first_id", "last_id"}
    assert [m["id"] for m in listed["data"]] == _usable("standard")[2:4] and listed["first_id"] == listed["data"][0]["id"]
    bad = httpx.get(f"{conf.http_base}/v1/models", params={"limit": 0.5}, timeout=10,
                    headers={"x-api-key": conf.keys["raw"], "anthropic-version": V2026})
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("limit:")


def test_a_model_by_id_or_alias_and_404_for_unknown(conf):
    client = sdk(conf.http_base, conf.keys["raw"])
    model = client.models.retrieve("claude-haiku-4-5-20251001")
    assert (model.id, model.display_name, model.max_input_tokens, model.max_tokens) == (
        "claude-haiku-4-5", "Claude Haiku 4.5", 200_000, 64_000)
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("claude-nope")
    retired = sdk(conf.http_base, conf.keys["big"]).models.retrieve("claude-mythos-preview")
    assert retired.lifecycle == "retired"


# -- the catalog's lifecycle and limits ----------------------------------------------------------------------


def test_a_retired_model_is_a_404_naming_its_retirement(conf):
    with pytest.raises(anthropic.NotFoundError) as err, pytest.warns(DeprecationWarning, match="end-of-life"):
        sdk(conf.http_base, conf.keys["big"]).messages.create(model="claude-mythos-preview", max_tokens=8,
                                                               messages=user("hi"))
    assert "model: claude-mythos-preview" in err.value.message and "retired on 2026-06-30" in err.value.message


def test_a_deprecated_model_answers_with_deprecation_headers(conf):
    response = post(conf.http_base, conf.keys["raw"], {"model": "claude-opus-4-5", "max_tokens": 8,
                                                       "messages": user("still there?")})
    assert response.status_code == 200
    assert response.headers["deprecation"].startswith("@")
    assert response.headers["sunset"] == "Fri, 22 Jan 2027 00:00:00 GMT"
    assert "claude-opus-4-5 is deprecated" in response.headers["warning"]


def test_max_tokens_above_the_models_output_is_the_apis_400(conf):
    body = {"model": "claude-haiku-4-5-20251001", "max_tokens": 64_001, "stream": True, "messages": user("hi")}
    response = post(conf.http_base, conf.keys["raw"], body)
    assert response.status_code == 400 and response.json()["error"] == {
        "type": "invalid_request_error",
        "message": "max_tokens: 64001 > 64000, which is the maximum allowed number of output tokens for "
                   "claude-haiku-4-5"}
    with pytest.raises(anthropic.BadRequestError) as err:  # the SDK streams a request this large
        with sdk(conf.http_base, conf.keys["raw"]).messages.stream(
                model="claude-haiku-4-5", max_tokens=64_001, messages=user("hi")) as stream:
            stream.get_final_message()
    assert err.value.body["error"]["message"].startswith("max_tokens: 64001 > 64000")


def test_a_prompt_beyond_the_context_window_is_a_400_not_a_retryable_429(conf):
    before = len(last_received(conf, 2000))
    text = "lorem ipsum dolor sit amet " * 40_000  # ~1.1 MB: far beyond 200K tokens
    response = post(conf.http_base, conf.keys["tight"], {"model": "claude-haiku-4-5", "max_tokens": 8,
                                                         "messages": user(text)})
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert message.startswith("prompt is too long: ") and message.endswith(" tokens > 200000 maximum")
    assert response.headers["x-should-retry"] == "false"
    arrived = last_received(conf, 2000)[before:]
    assert [r["path"] for r in arrived if "lorem" in r["body"]] == ["/d/anthropic-global/v1/messages/count_tokens"]


def test_a_request_no_limit_can_ever_admit_is_not_retried_by_the_sdks(conf, ts_sdk):
    body = {"model": "claude-haiku-4-5", "max_tokens": 5000, "messages": user("too big for my budget")}
    ts = run_ts(conf.http_base, conf.keys["tight"], {"op": "create", "params": body, "max_retries": 2})
    assert not ts["ok"] and ts["error"]["status"] == 429 and len(ts["attempts"]) == 1
    refused = metric(conf, "sluice_http_requests_total", route="/v1/messages", status="429")
    with pytest.raises(anthropic.RateLimitError) as err:
        anthropic.Anthropic(base_url=conf.http_base, api_key=conf.keys["tight"]).messages.create(**body)
    assert metric(conf, "sluice_http_requests_total", route="/v1/messages", status="429") == refused + 1
    assert err.value.response.headers["x-should-retry"] == "false"
    assert "retry-after" not in err.value.response.headers


# -- the gRPC API carries the same requests and answers --------------------------------------------------------


def test_grpc_carries_the_same_request_and_answer_as_http(conf):
    sid, marker = rich_script(conf)
    body = json.dumps({"model": MODEL, "max_tokens": 1024, "messages": user(marker),
                       "x_future": {"n": 9007199254740993}}).encode()
    http = post(conf.http_base, conf.keys["raw"], body, V2026)
    metadata = [("x-api-key", conf.keys["raw"])]
    with grpc.insecure_channel(conf.grpc_address) as channel:
        stub = gateway_stub(channel)
        created = stub.CreateMessage(gw.CreateMessageRequest(body=body, anthropic_version=V2026), metadata=metadata,
                                     timeout=30)
        streamed = list(stub.StreamMessage(gw.StreamMessageRequest(body=body, anthropic_version=V2026),
                                           metadata=metadata, timeout=30))
    assert json.loads(same_message_ids(created.body.decode())) == json.loads(same_message_ids(http.text))
    assert [b.WhichOneof("block") for b in created.message.content] == ["text", "tool_use"]  # the typed view
    sse_http = post(conf.http_base, conf.keys["raw"], json.dumps({**json.loads(body), "stream": True}).encode(), V2026)
    assert [(r.wire.type, same_message_ids(r.wire.data.decode())) for r in streamed] == \
        [(k, same_message_ids(d)) for k, d in sse(sse_http.text)]
    records = received(conf, sid)
    assert len({r["body"] for r in records}) == 1  # non-streamed and streamed, HTTP and gRPC: one upstream body
    assert {r["headers"]["anthropic-version"] for r in records} == {V2026}


def test_grpc_count_tokens_and_models(conf):
    metadata = [("x-api-key", conf.keys["raw"])]
    _, marker = script(conf, {"input_tokens": 77})
    body = json.dumps({"model": MODEL, "messages": user(marker)}).encode()
    with grpc.insecure_channel(conf.grpc_address) as channel:
        stub = gateway_stub(channel)
        counted = stub.CountTokens(gw.CountTokensRequest(body=body), metadata=metadata, timeout=10)
        page = stub.ListModels(gw.ListModelsRequest(limit=2), metadata=metadata, timeout=10)
        model = stub.GetModel(gw.GetModelRequest(model_id="claude-haiku-4-5-20251001"), metadata=metadata,
                              timeout=10)
        with pytest.raises(grpc.RpcError) as err:
            stub.GetModel(gw.GetModelRequest(model_id="claude-nope"), metadata=metadata, timeout=10)
    assert counted.input_tokens == 77 and json.loads(counted.body) == {"input_tokens": 77}
    assert [m.id for m in page.data] == _usable("standard")[:2] and page.has_more
    assert json.loads(page.body)["last_id"] == page.last_id == page.data[1].id
    assert model.model.id == "claude-haiku-4-5" and json.loads(model.model.json)["type"] == "model"
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


# -- hostile input found by a newcomer's review: each a clear 4xx, counted ------------------------------------


@pytest.mark.parametrize("raw,field", [
    (b'{"model": "claude-haiku-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": '
     b'"mail me at bob@example.com", "content": "Hi"}]}', "messages.0.content"),
    (b'{"model": "claude-haiku-4-5", "model": "claude-opus-4-7", "max_tokens": 16, "messages": []}', "model"),
])
def test_a_key_written_twice_is_refused_so_no_unchecked_text_leaves(conf, raw, field):
    before = len(last_received(conf, 2000))
    response = post(conf.http_base, conf.keys["acme"], raw)
    assert response.status_code == 400 and response.json()["error"]["message"].startswith(field + ": duplicate key")
    assert len(last_received(conf, 2000)) == before  # nothing went upstream


@pytest.mark.parametrize("headers,path,message", [
    ({"anthropic-version": ""}, "/v1/messages", 'anthropic-version: "" is not a valid version'),
    ({"anthropic-version": V2023, "anthropic-beta": "a" * 100}, "/v1/messages", "anthropic-beta: "),
    ({}, "/v1/models", "anthropic-version: header is required"),
    ({"anthropic-version": "bogus"}, "/v1/models", 'anthropic-version: "bogus" is not a valid version'),
    ({"anthropic-version": V2023, "content-encoding": "gzip"}, "/v1/messages", "(body): the body could not be read"),
])
def test_headers_and_encodings_the_api_refuses_are_400s(conf, headers, path, message):
    body = json.dumps({"model": MODEL, "max_tokens": 8, "messages": user("hi")}).encode()
    all_headers = {"x-api-key": conf.keys["raw"], "content-type": "application/json", **headers}
    if path == "/v1/models":
        response = httpx.get(f"{conf.http_base}{path}", headers=all_headers, timeout=10)
    else:
        response = httpx.post(f"{conf.http_base}{path}", content=body, headers=all_headers, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"].startswith(message)


def test_a_huge_page_limit_is_a_400(conf):
    response = httpx.get(f"{conf.http_base}/v1/models", params={"limit": 2**31}, timeout=10,
                         headers={"x-api-key": conf.keys["raw"], "anthropic-version": V2023})
    assert response.status_code == 400 and response.json()["error"]["message"].startswith("limit:")


def test_grpc_refuses_junk_headers_bad_numbers_and_bad_bytes_with_details(conf):
    metadata = [("x-api-key", conf.keys["raw"])]
    body = json.dumps({"model": MODEL, "max_tokens": 8, "messages": user("hi")}).encode()
    params = gw.CreateMessageRequest(params=grpc_params_nan())
    with grpc.insecure_channel(conf.grpc_address) as channel:
        stub = gateway_stub(channel)
        for request, field in ((gw.CreateMessageRequest(body=body, anthropic_beta=["a\nb"]), "anthropic-beta"),
                               (gw.CreateMessageRequest(body=body, anthropic_version="2023-06-01\r\nx: y"),
                                "anthropic-version"),
                               (params, "temperature")):
            with pytest.raises(grpc.RpcError) as err:
                stub.CreateMessage(request, metadata=metadata, timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error_details(err.value)["fields"] == [field]
        with pytest.raises(grpc.RpcError) as err:
            stub.GetModel(gw.GetModelRequest(model_id="m" * 100_000), metadata=metadata, timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and len(err.value.details()) < 4096
        with pytest.raises(grpc.RpcError) as err:
            channel.unary_unary("/sluice.gateway.v1.GatewayService/CreateMessage")(
                b"\xff\xff\xff\xff", metadata=metadata, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def grpc_params_nan():  # type: ignore[no-untyped-def]
    from tests.e2e.helpers import grpc_params

    params = grpc_params("hi")
    params.temperature = float("nan")
    return params


def test_junk_on_the_http_port_is_refused_and_counted(conf):
    import socket

    before = metric(conf, "sluice_http_malformed_requests_total", error="BadHttpMethod")
    with socket.create_connection(("127.0.0.1", conf.http_port), timeout=10) as sock:
        sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n")
        assert sock.recv(100).startswith((b"HTTP/1.0 400", b"HTTP/1.1 400"))
    wait_until(lambda: metric(conf, "sluice_http_malformed_requests_total", error="BadHttpMethod") > before,
               timeout=5, what="the refusal to be counted")
