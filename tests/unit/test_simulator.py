"""The Anthropic API simulator: the API's rules (version, model, body),
scripted answers, recording, count_tokens and the Models API, over HTTP on
a loopback port (aiohttp's test server) and through the official SDK."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import pytest
from aiohttp.test_utils import TestClient, TestServer

from sluice.config.simulator import SimulatorSettings
from sluice.simulator.app import Simulator
from sluice.simulator.generator import PromptCache, completion_words, directives, measure
from sluice.simulator.scripts import ScriptError, parse_script
from sluice.simulator.signing import Signer

V2023, V2026 = "2023-06-01", "2026-10-21"

# A catalog of made-up models with small limits, so each rule is cheap to hit.
CATALOG = """
version: test-1
x-prices: &prices {input: 1.0, output: 5.0, cache_write_5m: 1.25, cache_write_1h: 2.0, cache_read: 0.1}
models:
  - id: sim-classic
    display_name: Sim Classic
    created_at: 2025-01-01
    line: haiku
    aliases: [sim-classic-20250101]
    context_window: 2000
    max_output_tokens: 1000
    min_cacheable_tokens: 100
    accepts: {sampling: all, thinking: [enabled, disabled], inference_geo: [], prefill: true}
    tiers: [standard]
    regions: [local]
    prices: *prices
  - id: sim-modern
    display_name: Sim Modern
    created_at: 2026-06-01
    line: opus
    context_window: 1000000
    max_output_tokens: 128000
    min_cacheable_tokens: 200
    accepts: {sampling: default_temperature, thinking: [adaptive, disabled], inference_geo: [global, us],
              effort: [low, high], prefill: false}
    tiers: [standard]
    regions: [local]
    prices: *prices
  - id: sim-deprecated
    display_name: Sim Deprecated
    created_at: 2024-01-01
    context_window: 200000
    max_output_tokens: 64000
    min_cacheable_tokens: 100
    deprecated_at: 2025-01-01
    retires_at: 2999-01-01
    tiers: [standard]
    regions: [local]
    prices: *prices
  - id: sim-retired
    display_name: Sim Retired
    created_at: 2023-01-01
    context_window: 200000
    max_output_tokens: 64000
    min_cacheable_tokens: 100
    deprecated_at: 2024-01-01
    retires_at: 2024-06-01
    tiers: [standard]
    regions: [local]
    prices: *prices
"""


@pytest.fixture
def catalog_path(tmp_path: Path) -> str:
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG)
    return str(path)


def _settings(catalog_path: str, **overrides: Any) -> SimulatorSettings:
    return SimulatorSettings(catalog_path=catalog_path, time_to_first_token_ms=0, inter_token_ms=0,
                             output_tokens=6, **overrides)


@pytest.fixture
def sim(catalog_path: str) -> Simulator:
    return Simulator(_settings(catalog_path))


@pytest.fixture
async def client(sim: Simulator) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(sim.app())) as c:
        yield c


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def body(model: str = "sim-classic", text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": model, "max_tokens": 100, "messages": user(text), **extra}


async def post(c: TestClient, payload: Any, version: str | None = V2026, path: str = "/v1/messages",
               headers: dict[str, str] | None = None) -> tuple[int, Any, aiohttp.ClientResponse]:
    h = {"x-api-key": "sk-test", "content-type": "application/json"}
    if version is not None:
        h["anthropic-version"] = version
    h.update(headers or {})
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response = await c.post(path, data=data, headers=h)
    text = await response.text()
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = text
    return response.status, parsed, response


async def error_of(c: TestClient, payload: Any, version: str | None = V2026, path: str = "/v1/messages"
                   ) -> tuple[int, str, str]:
    status, answer, response = await post(c, payload, version, path)
    assert answer["type"] == "error" and answer["request_id"] == response.headers["request-id"], answer
    return status, answer["error"]["type"], answer["error"]["message"]


async def add_script(c: TestClient, script: dict[str, Any]) -> str:
    response = await c.post("/_sim/scripts", json=script)
    assert response.status == 200, await response.text()
    return (await response.json())["id"]


def sse(text: str) -> list[tuple[str, Any]]:
    """(event, data) of an SSE body; data parsed when it is JSON."""
    out = []
    for frame in text.split("\n\n"):
        if not frame.strip():
            continue
        event, data = "", []
        for line in frame.split("\n"):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        try:
            out.append((event, json.loads("\n".join(data))))
        except ValueError:
            out.append((event, "\n".join(data)))
    return out


async def stats(c: TestClient) -> dict[str, int]:
    return await (await c.get("/_sim/stats")).json()


# -- generator basics ----------------------------------------------------------------------------


def test_directives_parse():
    d = directives("hi [[sim:status=529]] and [[sim:ttft_ms=12.5]] [[sim:unknown=3]] [[sim:tokens=7]]")
    assert (d.status, d.ttft_ms, d.tokens, d.disconnect_after) == (529, 12.5, 7, None)
    assert directives("[[sim:tokens=1.2.3]]").tokens is None


def test_completion_is_deterministic_per_prompt():
    assert completion_words("a", 20) == completion_words("a", 20)
    assert completion_words("a", 20) != completion_words("b", 20)
    assert len(completion_words("a", 5)) == 5


def test_prompt_cache_writes_then_reads_and_skips_short_prefixes():
    cache = PromptCache()
    system = [{"type": "text", "text": "x" * 4000, "cache_control": {"type": "ephemeral"}}]
    request = {"system": system, "messages": user("hello")}
    first = cache.account(measure(request), min_tokens=500)
    second = cache.account(measure(request), min_tokens=500)
    assert first.creation_5m == 1000 and first.read == 0 and first.creation_1h == 0
    assert (second.input_tokens, second.creation, second.read) == (first.input_tokens, 0, 1000)
    short = {"system": [{"type": "text", "text": "tiny", "cache_control": {"type": "ephemeral"}}],
             "messages": user("hello")}
    use = cache.account(measure(short), min_tokens=500)
    assert (use.creation, use.read) == (0, 0)
    # The minimum is the model's: the same prefix is cached under a lower one.
    assert cache.account(measure(short), min_tokens=1).creation == 1


def test_signer_round_trip():
    signer = Signer()
    signature = signer.sign("thought")
    assert signer.verify("thought", signature) and not signer.verify("thought!", signature)
    assert not Signer().verify("thought", signature) and not signer.verify("thought", "ü")
    assert not signer.verify(None, signature) and not signer.verify("thought", 7)


# -- headers -------------------------------------------------------------------------------


async def test_auth_accepts_x_api_key_or_bearer(client):
    response = await client.post("/v1/messages", json=body(), headers={"anthropic-version": V2026})
    assert response.status == 401 and (await response.json())["error"]["type"] == "authentication_error"
    status, _, _ = await post(client, body(), headers={"x-api-key": "", "authorization": "Bearer sk-x"})
    assert status == 200
    response = await client.post("/v1/messages", json=body(),
                                 headers={"anthropic-version": V2026, "authorization": "Bearer sk-x"})
    assert response.status == 200


async def test_version_header_rules(client):
    assert await error_of(client, body(), version=None) == (
        400, "invalid_request_error", "anthropic-version: header is required")
    assert await error_of(client, body(), version="2024-01-01") == (
        400, "invalid_request_error", 'anthropic-version: "2024-01-01" is not a valid version')
    assert (await error_of(client, body(), version="2023-06-01, 2023-06-01"))[2] == \
        'anthropic-version: "2023-06-01, 2023-06-01" is not a valid version'
    for version in (V2023, V2026):
        assert (await post(client, body(), version=version))[0] == 200
    # Sent twice, the header reads as the two values joined, and is refused.
    response = await client.post("/v1/messages", json=body(), headers=[
        ("x-api-key", "k"), ("anthropic-version", V2023), ("anthropic-version", V2023)])
    assert (await response.json())["error"]["message"] == \
        'anthropic-version: "2023-06-01, 2023-06-01" is not a valid version'
    for path in ("/v1/messages/count_tokens", "/v1/models"):
        response = await client.post(path, json=body(), headers={"x-api-key": "k"}) if "count" in path else \
            await client.get(path, headers={"x-api-key": "k"})
        assert response.status == 400
        assert (await response.json())["error"]["message"] == "anthropic-version: header is required"


# -- version rules -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
@pytest.mark.parametrize("name,value", [("temperature", 1.0), ("temperature", 0.2), ("temperature", None),
                                        ("top_p", 0.9), ("top_k", 5)])
async def test_2026_refuses_sampling_parameters_even_defaults(client, path, name, value):
    for model in ("sim-classic", "sim-modern"):
        assert await error_of(client, body(model, **{name: value}), V2026, path) == (
            400, "invalid_request_error", f"{name}: Extra inputs are not permitted")


async def test_2026_refuses_documents_in_assistant_messages(client):
    doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "d"}}
    messages = [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": [{"type": "text", "text": "x"}, doc]},
                {"role": "user", "content": "more"}]
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        assert await error_of(client, {**body(), "messages": messages}, V2026, path) == (
            400, "invalid_request_error",
            "messages.1.content.1: document blocks are not allowed in assistant messages")
    assert (await post(client, {**body(), "messages": messages}, V2023))[0] == 200
    # In a user turn, or nested in another block (a web fetch result), documents stay accepted.
    nested = {"type": "web_fetch_tool_result", "tool_use_id": "srvtoolu_1",
              "content": {"type": "web_fetch_result", "url": "https://x", "content": doc}}
    ok = [{"role": "user", "content": [doc, {"type": "text", "text": "read it"}]},
          {"role": "assistant", "content": [nested]}, {"role": "user", "content": "thanks"}]
    assert (await post(client, {**body(), "messages": ok}, V2026))[0] == 200


async def test_2026_refuses_citations_on_user_text(client):
    cited = {"type": "text", "text": "quoted", "citations": [{"type": "char_location", "cited_text": "q",
                                                              "document_index": 0, "start_char_index": 0,
                                                              "end_char_index": 1}]}
    direct = [{"role": "user", "content": [{"type": "text", "text": "a"}, cited]}]
    assert await error_of(client, {**body(), "messages": direct}) == (
        400, "invalid_request_error",
        "messages.0.content.1.citations: citations are not allowed on text blocks in user messages")
    search = {"type": "search_result", "source": "s", "title": "t", "content": [cited]}
    assert (await error_of(client, {**body(), "messages": [{"role": "user", "content": [search]}]}))[2] == \
        "messages.0.content.0.content.0.citations: citations are not allowed on text blocks in user messages"
    in_tool = [{"role": "user", "content": "q"},
               {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "s", "input": {}}]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [search]}]}]
    assert (await error_of(client, {**body(), "messages": in_tool}, path="/v1/messages/count_tokens"))[2] == \
        "messages.2.content.0.content.0.content.0.citations: " \
        "citations are not allowed on text blocks in user messages"
    # Still accepted: empty citations, cited assistant text, citations enabled on a search result, 2023-06-01.
    fine = [{"role": "user", "content": [{"type": "text", "text": "x", "citations": []},
                                         {**search, "content": [{"type": "text", "text": "y"}],
                                          "citations": {"enabled": True}}]},
            {"role": "assistant", "content": [cited]}, {"role": "user", "content": "ok"}]
    assert (await post(client, {**body(), "messages": fine}))[0] == 200
    assert (await post(client, {**body(), "messages": direct}, V2023))[0] == 200


async def test_2023_sampling_by_model(client):
    assert (await post(client, body("sim-classic", temperature=0.2, top_p=0.5, top_k=3), V2023))[0] == 200
    assert (await post(client, body("sim-modern", temperature=1), V2023))[0] == 200
    assert (await post(client, body("sim-modern", temperature=1.0, top_p=None), V2023))[0] == 200
    for name, value in (("temperature", 0.5), ("top_p", 1.0), ("top_k", 40)):
        for path in ("/v1/messages", "/v1/messages/count_tokens"):
            assert await error_of(client, body("sim-modern", **{name: value}), V2023, path) == (
                400, "invalid_request_error", f"`{name}` is deprecated for this model.")
    assert (await error_of(client, body("sim-classic", temperature="hot"), V2023))[2] == \
        "temperature: Input should be a valid number"


# -- model rules --------------------------------------------------------------------------------


async def test_model_required_unknown_and_retired(client):
    payload = body()
    del payload["model"]
    assert await error_of(client, payload) == (400, "invalid_request_error", "model: Field required")
    assert await error_of(client, body("claude-nope")) == (404, "not_found_error", "model: claude-nope")
    assert await error_of(client, body("sim-retired")) == (404, "not_found_error", "model: sim-retired")
    assert await error_of(client, body("sim-retired"), path="/v1/messages/count_tokens") == (
        404, "not_found_error", "model: sim-retired")
    status, message, _ = await post(client, body("sim-deprecated"))
    assert status == 200 and message["model"] == "sim-deprecated"
    status, message, _ = await post(client, body("sim-classic-20250101"))  # an alias
    assert status == 200 and message["model"] == "sim-classic-20250101"


async def test_lifecycle_is_judged_at_request_time(catalog_path):
    before = Simulator(_settings(catalog_path), clock=lambda: datetime(2024, 3, 1, tzinfo=UTC))
    async with TestClient(TestServer(before.app())) as c:
        assert (await post(c, body("sim-retired")))[0] == 200


async def test_max_tokens_rules(client):
    assert await error_of(client, {**body(), "max_tokens": 1001}) == (
        400, "invalid_request_error",
        "max_tokens: 1001 > 1000, which is the maximum allowed number of output tokens for sim-classic")
    assert (await error_of(client, {**body("sim-classic-20250101"), "max_tokens": 5000}))[2] == \
        "max_tokens: 5000 > 1000, which is the maximum allowed number of output tokens for sim-classic-20250101"
    payload = body()
    del payload["max_tokens"]
    assert (await error_of(client, payload))[2] == "max_tokens: Field required"
    assert (await error_of(client, {**body(), "max_tokens": -1}))[2] == \
        "max_tokens: Input should be greater than or equal to 0"
    assert (await error_of(client, {**body(), "max_tokens": "5"}))[2] == "max_tokens: Input should be a valid integer"
    assert (await error_of(client, {**body(), "max_tokens": 10**500}))[2].startswith("max_tokens: 1000000")
    # max_tokens 0 populates the cache and generates nothing.
    status, message, _ = await post(client, {**body(), "max_tokens": 0})
    assert status == 200 and message["content"] == [] and message["stop_reason"] == "max_tokens"
    # count_tokens needs no max_tokens.
    status, counted, _ = await post(client, payload, path="/v1/messages/count_tokens")
    assert status == 200 and counted["input_tokens"] > 0


async def test_prompt_too_long(client):
    long_text = "y" * 8000  # 2000 tokens + 4 framing > the 2000-token window
    status, kind, message = await error_of(client, body(text=long_text))
    assert (status, kind) == (400, "invalid_request_error")
    assert message == "prompt is too long: 2004 tokens > 2000 maximum"
    assert (await error_of(client, body(text=long_text), path="/v1/messages/count_tokens"))[2] == message
    status, counted, _ = await post(client, body("sim-modern", text=long_text), path="/v1/messages/count_tokens")
    assert counted == {"input_tokens": 2004}


async def test_thinking_type_rules(client):
    enabled = {"type": "enabled", "budget_tokens": 2000}
    assert await error_of(client, body("sim-modern", thinking=enabled)) == (
        400, "invalid_request_error",
        '"thinking.type.enabled" is not supported for this model. Use "thinking.type.adaptive" and '
        '"output_config.effort" to control thinking behavior.')
    assert (await error_of(client, body("sim-classic", thinking={"type": "adaptive"})))[2].startswith(
        '"thinking.type.adaptive" is not supported for this model.')
    assert (await error_of(client, body("sim-modern", thinking={"type": "between_tools"}),
                           path="/v1/messages/count_tokens"))[2].startswith(
        '"thinking.type.between_tools" is not supported for this model.')
    assert (await error_of(client, body("sim-modern", thinking="on")))[2] == \
        "thinking: Input should be a valid dictionary"
    for model, thinking in (("sim-modern", {"type": "adaptive"}), ("sim-modern", {"type": "disabled"}),
                            ("sim-classic", enabled), ("sim-classic", None)):
        assert (await post(client, body(model, thinking=thinking)))[0] == 200


async def test_inference_geo_rules(client):
    assert await error_of(client, body("sim-classic", inference_geo="us")) == (
        400, "invalid_request_error", "inference_geo: 'us' is not supported for this model")
    assert (await error_of(client, body("sim-modern", inference_geo="eu")))[2] == \
        "inference_geo: 'eu' is not supported for this model"
    status, message, _ = await post(client, body("sim-modern", inference_geo="us"))
    assert status == 200 and message["usage"]["inference_geo"] == "us"
    assert (await post(client, body("sim-classic", inference_geo=None)))[0] == 200
    # count_tokens takes no inference_geo; an extra field there is ignored.
    assert (await post(client, body("sim-classic", inference_geo="us"), path="/v1/messages/count_tokens"))[0] == 200


async def test_prefill_and_empty_turn_rules(client):
    prefill = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Sure,"}]
    assert await error_of(client, {**body("sim-modern"), "messages": prefill}) == (
        400, "invalid_request_error",
        "This model does not support assistant message prefill. The conversation must end with a user message.")
    assert (await post(client, {**body("sim-classic"), "messages": prefill}))[0] == 200
    for empty in ("", []):
        final_empty = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": empty}]
        assert (await post(client, {**body("sim-classic"), "messages": final_empty}))[0] == 200
        first_empty = [{"role": "user", "content": empty}, {"role": "assistant", "content": "x"},
                       {"role": "user", "content": "y"}]
        assert (await error_of(client, {**body("sim-classic"), "messages": first_empty}))[2] == \
            "messages.0: all messages must have non-empty content except for the optional final assistant message"
        middle = [{"role": "user", "content": "a"}, {"role": "assistant", "content": empty},
                  {"role": "user", "content": "b"}]
        assert (await error_of(client, {**body("sim-modern"), "messages": middle}))[2] == \
            "messages.1: all messages must have non-empty content except for the optional final assistant message"


async def test_thinking_signature_round_trip(client):
    sid = await add_script(client, {"content": [{"type": "thinking", "thinking": "Let me add 2 and 2."},
                                                {"type": "text", "text": "4"}]})
    status, message, _ = await post(client, body("sim-modern", text=f"2+2? [[sim:script={sid}]]"))
    assert status == 200 and message["content"][0]["signature"]
    thinking = message["content"][0]

    def conversation(block: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": [block, message["content"][1]]},
                {"role": "user", "content": "and 3+3?"}]

    assert (await post(client, {**body("sim-modern"), "messages": conversation(thinking)}))[0] == 200
    assert (await post(client, {**body("sim-modern"), "messages": conversation(thinking)},
                       path="/v1/messages/count_tokens"))[0] == 200
    altered = {**thinking, "thinking": thinking["thinking"] + " "}
    assert await error_of(client, {**body("sim-modern"), "messages": conversation(altered)}) == (
        400, "invalid_request_error", "messages.1.content.0: Invalid `signature` in `thinking` block")
    unsigned = {k: v for k, v in thinking.items() if k != "signature"}
    assert (await error_of(client, {**body("sim-modern"), "messages": conversation(unsigned)}))[2] == \
        "messages.1.content.0: Invalid `signature` in `thinking` block"
    # redacted_thinking is not checked; thinking in a user turn is not an assistant's.
    redacted = {"type": "redacted_thinking", "data": "opaque"}
    assert (await post(client, {**body("sim-modern"), "messages": conversation(redacted)}))[0] == 200

    # The streamed signature is the same kind: it verifies when sent back.
    status, text, _ = await post(client, body("sim-modern", text=f"again [[sim:script={sid}]]", stream=True))
    events = sse(text)
    signature = [d["delta"]["signature"] for e, d in events if e == "content_block_delta"
                 and d["delta"]["type"] == "signature_delta"]
    assert signature == [thinking["signature"]]


async def test_default_answer_thinks_when_asked_and_signs_it(client):
    status, message, _ = await post(client, body("sim-modern", thinking={"type": "adaptive"}))
    assert status == 200 and [b["type"] for b in message["content"]] == ["thinking", "text"]
    back = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": message["content"]},
            {"role": "user", "content": "next"}]
    assert (await post(client, {**body("sim-modern"), "messages": back}))[0] == 200
    status, text, _ = await post(client, body("sim-modern", thinking={"type": "adaptive", "display": "omitted"},
                                              stream=True))
    events = sse(text)
    assert events[1][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert not [d for e, d in events if e == "content_block_delta" and d["delta"]["type"] == "thinking_delta"]


async def test_unknown_fields_block_types_and_tool_types_are_accepted(client):
    payload = body("sim-modern", future_field={"x": 1}, output_config={"effort": "high", "new": True},
                   tools=[{"type": "quantum_tool_20270101", "name": "q"},
                          {"name": "f", "input_schema": {"type": "object"}}],
                   context_management={"edits": []})
    payload["messages"] = [{"role": "user", "content": [{"type": "hologram", "data": "..."},
                                                       {"type": "text", "text": "hi"}]}]
    assert (await post(client, payload))[0] == 200
    assert (await post(client, payload, path="/v1/messages/count_tokens"))[0] == 200


async def test_body_type_errors_name_the_field(client):
    cases = [
        ({**body(), "messages": "hi"}, "messages: Input should be a valid list"),
        ({**body(), "messages": []}, "messages: List should have at least 1 item after validation, not 0"),
        ({**body(), "messages": [{"role": "system", "content": "x"}]},
         "messages.0.role: Input should be 'user' or 'assistant'"),
        ({**body(), "messages": [{"role": "user"}]}, "messages.0.content: Field required"),
        ({**body(), "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
         "messages.0.content.0.text: Input should be a valid string"),
        ({**body(), "messages": [{"role": "user", "content": [{"text": "x"}]}]},
         "messages.0.content.0.type: Field required"),
        ({**body(), "stream": "yes"}, "stream: Input should be a valid boolean"),
        ({**body(), "system": [{"type": "text", "text": "s", "cache_control": "now"}]},
         "system.0.cache_control: Input should be a valid dictionary"),
        ({**body(), "stop_sequences": [1]}, "stop_sequences.0: Input should be a valid string"),
        ({**body(), "model": 7}, "model: Input should be a valid string"),
    ]
    for payload, message in cases:
        assert await error_of(client, payload) == (400, "invalid_request_error", message), message


async def test_hostile_bodies_never_get_a_5xx(client, sim):
    deep_list = b"[" * 100_000 + b"]" * 100_000
    deep_content = {**body(), "messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": []}]}]}
    node = deep_content["messages"][0]["content"][0]
    for _ in range(95):
        inner = {"type": "tool_result", "tool_use_id": "t", "content": []}
        node["content"].append(inner)
        node = inner
    node["content"].append({"type": "text", "text": "bottom"})
    nested_input = {"a": None}
    cursor = nested_input
    for _ in range(150):
        cursor["a"] = {"a": None}
        cursor = cursor["a"]
    bodies: list[bytes] = [
        b"", b"null", b"[]", b"42", b'"text"', b"{", b"{]", b"\xff\xfe", b'{"model": NaN}', b"[1,]",
        deep_list, b'{"a":' * 5000 + b"1" + b"}" * 5000,
        b'{"model": "sim-classic", "max_tokens": 5, "messages": [{"role": "user", "content": "\\ud800"}]}',
        b'{"model": "sim-classic", "max_tokens": ' + b"9" * 5000 + b', "messages": []}',
        b'{"model": "sim-classic", "max_tokens": 1e400, "messages": [{"role": "user", "content": "x"}]}',
        b'{"model": "sim-classic", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],'
        b' "temperature": 1e999}',
        json.dumps(deep_content).encode(),
        json.dumps({**body(), "tools": [{"name": "t", "input_schema": nested_input}]}).encode(),
        json.dumps({**body(), "messages": [{"role": "assistant", "content": [{"type": "thinking"}]},
                                           {"role": "user", "content": "x"}]}).encode(),
        json.dumps({**body(), "messages": [None, 1, "x"]}).encode(),
        json.dumps({**body(), "messages": [{"role": ["user"], "content": {"a": 1}}]}).encode(),
        json.dumps({**body(), "messages": [{"role": "user", "content": [None, [], 5]}]}).encode(),
        json.dumps({**body(), "thinking": {"type": ["enabled"]}}).encode(),
        json.dumps({**body(), "thinking": {"type": "enabled", "display": {"x": 1}}, "stream": True}).encode(),
        json.dumps({**body(), "cache_control": {"type": "ephemeral", "ttl": 5}}).encode(),
        json.dumps({**body(), "cache_control": {"type": "ephemeral", "ttl": "1h"}, "messages": [
            {"role": "user", "content": [{"type": "image", "source": {}}]}]}).encode(),
        json.dumps({**body(), "stop_sequences": ["", "\u0000"], "metadata": [1]}).encode(),
        json.dumps({**body(), "system": {"type": "text"}}).encode(),
        json.dumps({**body(), "system": [{"type": "text"}]}).encode(),
        json.dumps({**body(), "tools": {"a": 1}}).encode(),
        json.dumps({**body(), "tools": [[1]]}).encode(),
        json.dumps({**body(), "inference_geo": 5}).encode(),
        json.dumps({**body(), "model": {"id": "x"}, "max_tokens": True}).encode(),
        json.dumps(body(text="[[sim:script=zz]] [[sim:status=999]] [[sim:tokens=99999999999999999999]]")).encode(),
        json.dumps({**body(text="[[sim:echo]] \\ud800 [[sim:chunk_chars=0]]")}).encode(),
        json.dumps({"model": "sim-classic", "max_tokens": 5, "messages": [
            {"role": "user", "content": [{"type": "search_result", "content": "notalist"}]}]}).encode(),
        ("{" + ",".join(f'"k{i}": {i}' for i in range(20000)) + "}").encode(),
    ]
    for path in ("/v1/messages", "/v1/messages/count_tokens", "/_sim/scripts"):
        for raw in bodies:
            for version in (V2023, V2026):
                status, answer, _ = await post(client, raw, version, path)
                assert status < 500, (path, raw[:80], answer)
                if status >= 400 and path != "/_sim/scripts":
                    assert answer["type"] == "error", answer
    assert (await stats(client))["internal_errors"] == 0


# -- prompt caching ---------------------------------------------------------------------------


async def test_cache_uses_the_models_minimum_and_splits_by_ttl(client):
    system = [{"type": "text", "text": "a" * 800, "cache_control": {"type": "ephemeral", "ttl": "1h"}},
              {"type": "text", "text": "b" * 400, "cache_control": {"type": "ephemeral"}}]
    # sim-modern caches from 200 tokens: the 1h part (200) then the 5m part (100).
    _, first, _ = await post(client, {**body("sim-modern"), "system": system})
    assert first["usage"]["cache_creation"] == {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200}
    assert first["usage"]["cache_creation_input_tokens"] == 300 and first["usage"]["cache_read_input_tokens"] == 0
    _, second, _ = await post(client, {**body("sim-modern"), "system": system})
    assert second["usage"]["cache_read_input_tokens"] == 300 and second["usage"]["cache_creation_input_tokens"] == 0
    assert second["usage"]["input_tokens"] == first["usage"]["input_tokens"]
    total = second["usage"]["input_tokens"] + 300
    _, counted, _ = await post(client, {**body("sim-modern"), "system": system}, path="/v1/messages/count_tokens")
    assert counted == {"input_tokens": total}
    # Below sim-modern's 200-token minimum nothing is cached; sim-classic's minimum is 100.
    small = [{"type": "text", "text": "c" * 600, "cache_control": {"type": "ephemeral"}}]
    _, modern, _ = await post(client, {**body("sim-modern"), "system": small})
    assert modern["usage"]["cache_creation_input_tokens"] == 0
    _, classic, _ = await post(client, {**body("sim-classic"), "system": small})
    assert classic["usage"]["cache_creation"] == {"ephemeral_5m_input_tokens": 150, "ephemeral_1h_input_tokens": 0}


async def test_top_level_cache_control_and_lookback(client):
    turns = [{"role": "user", "content": "q" * 1200}]
    auto = {**body("sim-classic"), "messages": turns, "cache_control": {"type": "ephemeral"}}
    _, first, _ = await post(client, auto)
    assert first["usage"]["cache_creation_input_tokens"] == 300
    # The conversation grows; the breakpoint moves to the last block and the
    # earlier write is found by looking back.
    grown = {**auto, "messages": turns + [{"role": "assistant", "content": "a" * 40},
                                          {"role": "user", "content": "u" * 40}]}
    _, second, _ = await post(client, grown)
    assert second["usage"]["cache_read_input_tokens"] == 300
    assert second["usage"]["cache_creation_input_tokens"] == 20


# -- scripts -----------------------------------------------------------------------------


RICH = [
    {"type": "thinking", "thinking": "Consider the question carefully."},
    {"type": "text", "text": "Per the doc, yes.", "citations": [
        {"type": "char_location", "cited_text": "yes", "document_index": 0, "document_title": None,
         "start_char_index": 0, "end_char_index": 3}]},
    {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "weather"}},
    {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": [
        {"type": "web_search_result", "url": "https://w", "title": "W", "encrypted_content": "e",
         "page_age": None}]},
    {"type": "redacted_thinking", "data": "opaque=="},
    {"type": "future_block", "payload": {"n": 1}},
    {"type": "tool_use", "id": "toolu_1", "name": "pay", "input_json": '{"amount": 1.50, "id": 9007199254740993}'},
]


async def test_script_content_streamed_as_the_api_streams_it(client):
    sid = await add_script(client, {"content": RICH, "chunk_chars": 5, "stop_reason": "tool_use"})
    status, text, response = await post(client, body("sim-modern", text=f"go [[sim:script={sid}]]", stream=True))
    assert status == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = sse(text)
    kinds = [e for e, _ in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    starts = [d["content_block"] for e, d in events if e == "content_block_start"]
    assert starts[0] == {"type": "thinking", "thinking": "", "signature": ""}
    assert starts[1] == {"type": "text", "text": "", "citations": []}
    assert starts[2] == {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}}
    assert starts[3:6] == RICH[3:6]
    assert starts[6] == {"type": "tool_use", "id": "toolu_1", "name": "pay", "input": {}}

    def deltas(index: int) -> list[dict[str, Any]]:
        return [d["delta"] for e, d in events if e == "content_block_delta" and d["index"] == index]

    thinking = deltas(0)
    assert [d["thinking"] for d in thinking[:-1]] == ["Consi", "der t", "he qu", "estio", "n car", "efull", "y."]
    assert thinking[-1]["type"] == "signature_delta" and thinking[-1]["signature"]
    text_deltas = deltas(1)
    assert text_deltas[0] == {"type": "citations_delta", "citation": RICH[1]["citations"][0]}
    assert "".join(d["text"] for d in text_deltas[1:]) == "Per the doc, yes."
    assert all(len(d["text"]) <= 5 for d in text_deltas[1:])
    assert "".join(d["partial_json"] for d in deltas(2)) == '{"query":"weather"}'
    assert deltas(3) == deltas(4) == deltas(5) == []
    assert "".join(d["partial_json"] for d in deltas(6)) == RICH[6]["input_json"]
    stops = [d["index"] for e, d in events if e == "content_block_stop"]
    assert stops == list(range(7))
    assert events[-2][1]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert "\\u" not in text  # compact JSON, no ASCII escaping


async def test_script_content_not_streamed_is_the_same_message(client):
    sid = await add_script(client, {"content": RICH, "stop_reason": "tool_use"})
    status, raw, _ = await post(client, body("sim-modern", text=f"go [[sim:script={sid}]]"))
    assert status == 200
    content = raw["content"]
    assert content[0]["type"] == "thinking" and content[0]["thinking"] == RICH[0]["thinking"]
    assert content[1] == RICH[1]
    assert content[2] == RICH[2] and content[3:6] == RICH[3:6]
    assert content[6]["input"] == {"amount": 1.5, "id": 9007199254740993}
    assert raw["stop_reason"] == "tool_use" and raw["type"] == "message" and raw["role"] == "assistant"
    # The whole SDK accepts it, streamed and not.
    _, text, _ = await post(client, body("sim-modern", text=f"again [[sim:script={sid}]]", stream=True))
    assert sse(text)[0][1]["message"]["model"] == "sim-modern"


async def test_input_json_is_passed_through_verbatim(client):
    exact = '{"n": 9007199254740993, "price": 1.50, "e": 1E+2, "s": "caf\\u00e9"}'
    sid = await add_script(client, {"content": [{"type": "tool_use", "id": "toolu_9", "name": "f",
                                                 "input_json": exact}], "stop_reason": "tool_use"})
    response = await client.post("/v1/messages", json=body(text=f"[[sim:script={sid}]]"),
                                 headers={"x-api-key": "k", "anthropic-version": V2026})
    raw = await response.text()
    assert '"input":' + exact + "}" in raw
    _, text, _ = await post(client, body(text=f"[[sim:script={sid}]]", stream=True))
    joined = "".join(d["delta"]["partial_json"] for e, d in sse(text) if e == "content_block_delta")
    assert joined == exact


async def test_script_status_error_and_headers(client):
    sid = await add_script(client, {"status": 529, "headers": {"retry-after": "3", "x-should-retry": "true"}})
    for stream in (False, True):
        status, answer, response = await post(client, body(text=f"x [[sim:script={sid}]]", stream=stream))
        assert status == 529
        assert answer["error"] == {"type": "overloaded_error", "message": "simulated overloaded_error"}
        assert response.headers["retry-after"] == "3" and response.headers["x-should-retry"] == "true"
        assert answer["request_id"] == response.headers["request-id"]
    sid = await add_script(client, {"status": 400, "error": {"type": "invalid_request_error", "message": "nope"}})
    assert await error_of(client, body(text=f"[[sim:script={sid}]]")) == (400, "invalid_request_error", "nope")
    assert await error_of(client, body(text=f"[[sim:script={sid}]]"), path="/v1/messages/count_tokens") == (
        400, "invalid_request_error", "nope")
    assert (await stats(client))["injected_failures"] == 4


async def test_script_times_then_ordinary_answers(client):
    sid = await add_script(client, {"status": 529, "times": 2})
    payload = body(text=f"retry me [[sim:script={sid}]]")
    assert [(await post(client, payload))[0] for _ in range(3)] == [529, 529, 200]
    # The retries are still recorded under the script's id.
    records = await (await client.get(f"/_sim/requests?script={sid}")).json()
    assert [r["status"] for r in records] == [529, 529, 200]


async def test_scripts_are_bounded(client, sim):
    sim.scripts.limit = 3
    ids = [await add_script(client, {"content": [{"type": "text", "text": f"s{i}"}]}) for i in range(4)]
    _, message, _ = await post(client, body(text=f"[[sim:script={ids[0]}]]"))
    assert message["content"][0]["text"] != "s0"  # dropped: an ordinary answer
    _, message, _ = await post(client, body(text=f"[[sim:script={ids[3]}]]"))
    assert message["content"] == [{"type": "text", "text": "s3"}]


async def test_script_marker_in_blocks_and_tool_results(client):
    sid = await add_script(client, {"content": [{"type": "text", "text": "scripted"}]})
    in_block = [{"role": "user", "content": [{"type": "text", "text": "see"},
                                             {"type": "text", "text": f"[[sim:script={sid}]]"}]}]
    assert (await post(client, {**body(), "messages": in_block}))[1]["content"][0]["text"] == "scripted"
    in_tool = [{"role": "user", "content": "q"},
               {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                             "content": [{"type": "text", "text": f"ok [[sim:script={sid}]]"}]}]}]
    assert (await post(client, {**body(), "messages": in_tool}))[1]["content"][0]["text"] == "scripted"
    # Only the last user turn counts.
    earlier = [{"role": "user", "content": f"[[sim:script={sid}]]"}, {"role": "assistant", "content": "a"},
               {"role": "user", "content": "plain"}]
    assert (await post(client, {**body(), "messages": earlier}))[1]["content"][0]["text"] != "scripted"


async def test_script_stop_fields_message_and_usage(client):
    script = {"content": [{"type": "text", "text": "I can't help with that."}], "stop_reason": "refusal",
              "stop_sequence": None, "stop_details": {"type": "refusal", "category": "cyber", "explanation": None},
              "message": {"container": {"id": "container_1", "expires_at": "2026-12-01T00:00:00Z"}},
              "usage": {"output_tokens": 40, "server_tool_use": {"web_search_requests": 2},
                        "service_tier": "priority", "inference_geo": "us",
                        "cache_creation": {"ephemeral_5m_input_tokens": 7, "ephemeral_1h_input_tokens": 0}},
              "start_usage": {"output_tokens": 3, "service_tier": "priority"}}
    sid = await add_script(client, script)
    _, text, _ = await post(client, body("sim-modern", text=f"[[sim:script={sid}]]", stream=True))
    events = sse(text)
    start = events[0][1]["message"]
    assert start["container"] == script["message"]["container"]
    assert start["usage"]["output_tokens"] == 3 and start["usage"]["service_tier"] == "priority"
    assert start["usage"]["input_tokens"] > 0
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "refusal", "stop_sequence": None,
                              "stop_details": script["stop_details"]}
    assert delta["usage"]["output_tokens"] == 40 and delta["usage"]["server_tool_use"] == {"web_search_requests": 2}
    assert delta["usage"]["inference_geo"] == "us"
    assert delta["usage"]["cache_creation"]["ephemeral_5m_input_tokens"] == 7
    assert delta["usage"]["input_tokens"] == start["usage"]["input_tokens"]
    _, message, _ = await post(client, body("sim-modern", text=f"[[sim:script={sid}]]"))
    assert message["stop_reason"] == "refusal" and message["stop_details"] == script["stop_details"]
    assert message["container"] == script["message"]["container"]
    assert message["usage"]["output_tokens"] == 40 and message["usage"]["service_tier"] == "priority"


async def test_script_pings_every_n_deltas(client):
    sid = await add_script(client, {"content": [{"type": "text", "text": "abcdefghij"}], "chunk_chars": 1,
                                    "pings": {"every": 3}})
    _, text, _ = await post(client, body(text=f"[[sim:script={sid}]]", stream=True))
    kinds = [e for e, _ in sse(text)]
    assert kinds.count("ping") == 3
    first = kinds.index("ping")
    assert kinds[first - 3:first] == ["content_block_delta"] * 3


@pytest.mark.parametrize("ping_every_ms", [None, 60])
async def test_script_pause(client, ping_every_ms):
    sid = await add_script(client, {"content": [{"type": "text", "text": "abcd"}], "chunk_chars": 2,
                                    "pause": {"after_events": 3, "ms": 400, "ping_every_ms": ping_every_ms}})
    response = await client.post("/v1/messages", json=body(text=f"[[sim:script={sid}]]", stream=True),
                                 headers={"x-api-key": "k", "anthropic-version": V2026})
    arrivals: list[tuple[float, str]] = []
    began = time.monotonic()
    buffer = ""
    async for chunk in response.content.iter_any():
        buffer += chunk.decode()
        while "\n\n" in buffer:
            frame, buffer = buffer.split("\n\n", 1)
            arrivals.append((time.monotonic() - began, frame.split("\n")[0][7:]))
    kinds = [k for _, k in arrivals]
    pings = [t for t, k in arrivals if k == "ping"]
    real = [(t, k) for t, k in arrivals if k != "ping"]
    assert [k for _, k in real][:4] == ["message_start", "content_block_start", "content_block_delta",
                                        "content_block_delta"]
    gap = real[3][0] - real[2][0]
    assert 0.35 <= gap < 2.0
    if ping_every_ms is None:
        assert "ping" not in kinds
    else:
        assert 4 <= len(pings) <= 7 and all(real[2][0] <= t <= real[3][0] for t in pings)


async def test_script_error_after_events(client):
    script = {"content": [{"type": "text", "text": "abcdefgh"}], "chunk_chars": 2,
              "error_after_events": {"after": 4, "error": {"type": "overloaded_error", "message": "Overloaded"}}}
    sid = await add_script(client, script)
    _, text, _ = await post(client, body(text=f"[[sim:script={sid}]]", stream=True))
    events = sse(text)
    assert [e for e, _ in events] == ["message_start", "content_block_start", "content_block_delta",
                                      "content_block_delta", "error"]
    assert events[-1][1] == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert await error_of(client, body(text=f"[[sim:script={sid}]]")) == (529, "overloaded_error", "Overloaded")
    counters = await stats(client)
    assert counters["streams_started"] == 1 and counters["streams_completed"] == 0


async def test_script_disconnect_after_events(client):
    sid = await add_script(client, {"content": [{"type": "text", "text": "abcdefgh"}], "chunk_chars": 2,
                                    "disconnect_after_events": 3})
    response = await client.post("/v1/messages", json=body(text=f"[[sim:script={sid}]]", stream=True),
                                 headers={"x-api-key": "k", "anthropic-version": V2026})
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async for chunk in response.content.iter_any():
            received += chunk
    assert [e for e, _ in sse(received.decode())] == ["message_start", "content_block_start", "content_block_delta"]
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await client.post("/v1/messages", json=body(text=f"[[sim:script={sid}]]"),
                          headers={"x-api-key": "k", "anthropic-version": V2026})
    records = await (await client.get(f"/_sim/requests?script={sid}")).json()
    assert [r["status"] for r in records] == [200, None]


async def test_script_events_exact_raw_and_pauses(client):
    message = {"id": "msg_x", "type": "message", "role": "assistant", "model": "m", "content": [],
               "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 1}}
    raw_delta = 'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,' \
                '"delta":{"type":"text_delta","text":"raw  text"}}\n\n'
    script = {"events": [
        {"event": "message_start", "data": {"type": "message_start", "message": message}},
        {"event": "content_block_start", "data": {"type": "content_block_start", "index": 0,
                                                  "content_block": {"type": "text", "text": ""}}},
        {"raw": ": a comment\n\n"},
        {"raw": raw_delta},
        {"pause_ms": 50},
        {"event": "future_event", "data": {"type": "future_event", "x": "é"}},
        {"event": "content_block_stop", "data": {"type": "content_block_stop", "index": 0}},
        {"event": "message_delta", "data": {"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                            "stop_sequence": None}, "usage": {"output_tokens": 9}}},
        {"event": "message_stop", "data": {"type": "message_stop"}},
    ]}
    sid = await add_script(client, script)
    response = await client.post("/v1/messages", json=body(text=f"[[sim:script={sid}]]", stream=True),
                                 headers={"x-api-key": "k", "anthropic-version": V2026})
    text = await response.text()
    assert text.startswith('event: message_start\ndata: {"type":"message_start","message":{"id":"msg_x",')
    assert ": a comment\n\n" + raw_delta in text
    assert 'event: future_event\ndata: {"type":"future_event","x":"é"}\n\n' in text
    _, assembled, _ = await post(client, body(text=f"[[sim:script={sid}]]"))
    assert assembled["id"] == "msg_x" and assembled["content"] == [{"type": "text", "text": "raw  text"}]
    assert assembled["usage"] == {"input_tokens": 3, "output_tokens": 9}
    # Events that end in an error: the non-streamed answer is that error.
    failing = await add_script(client, {"events": script["events"][:2] + [
        {"event": "error", "data": {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}}]})
    assert await error_of(client, body(text=f"[[sim:script={failing}]]")) == (429, "rate_limit_error", "slow")
    broken = await add_script(client, {"events": [{"raw": "event: nonsense\ndata: [\n\n"}]})
    status, _, _ = await post(client, body(text=f"[[sim:script={broken}]]"))
    assert status == 500  # a script that makes no message is the test's own mistake, said loudly


async def test_script_through_the_official_sdk(client):
    base = str(client.make_url(""))
    sdk = anthropic.AsyncAnthropic(api_key="sk-test", base_url=base, max_retries=0)
    sid = await add_script(client, {"content": RICH[:3] + [RICH[6]], "stop_reason": "tool_use"})
    messages = [{"role": "user", "content": f"go [[sim:script={sid}]]"}]
    async with sdk.messages.stream(model="sim-modern", max_tokens=100, messages=messages) as stream:
        final = await stream.get_final_message()
    plain = await sdk.messages.create(model="sim-modern", max_tokens=100, messages=messages)
    assert final.model_dump(exclude={"id", "usage"}) == plain.model_dump(exclude={"id", "usage"})
    assert final.content[3].input == {"amount": 1.5, "id": 9007199254740993}
    # The thinking block goes back through the SDK and verifies.
    follow = messages + [{"role": "assistant", "content": [b.model_dump() for b in final.content]},
                         {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                                       "content": "paid"}]}]
    reply = await sdk.messages.create(model="sim-modern", max_tokens=100, messages=follow)
    assert reply.content[0].type == "text"
    counted = await sdk.messages.count_tokens(model="sim-modern", messages=follow)
    assert counted.input_tokens > 0
    page = await sdk.models.list(limit=2)
    assert [m.id for m in page.data] == ["sim-modern", "sim-classic"]
    assert (await sdk.models.retrieve("sim-classic-20250101")).id == "sim-classic"
    await sdk.close()


async def test_script_validation(client):
    for script, message in (
        ({"colour": "red"}, "script: colour: unknown script field"),
        ({"status": 200}, "script: status: must be an integer between 400 and 599"),
        ({"content": "hi"}, "script: content: must be a list of content blocks"),
        ({"content": [{"type": "tool_use", "input_json": {}}]},
         "script: content.0.input_json: must be a string (raw JSON text)"),
        ({"events": [{"nothing": 1}]}, "script: events.0: needs event, raw or pause_ms"),
        ({"pause": {"ms": 5}}, "script: pause: needs after_events and ms"),
        ({"times": 0}, "script: times: must be an integer at least 1"),
    ):
        response = await client.post("/_sim/scripts", json=script)
        assert response.status == 400 and (await response.json())["error"]["message"] == message
    with pytest.raises(ScriptError):
        parse_script([])


# -- recording ------------------------------------------------------------------------------


async def test_requests_are_recorded_exactly(client):
    sid = await add_script(client, {"content": [{"type": "text", "text": "ok"}]})
    raw = ('{ "model" : "sim-classic",  "max_tokens": 5,"messages":[{"role":"user","content":'
           f'"n=1.50 [[sim:script={sid}]]"}}], "x": 9007199254740993 }}').encode()
    response = await client.post("/v1/messages", data=raw, headers={
        "authorization": "Bearer sk-secret", "anthropic-version": V2026,
        "anthropic-beta": "a-2026-01-01,b-2026-02-02", "content-type": "application/json",
        "anthropic-workspace-id": "wrk_1"})
    assert response.status == 200
    await post(client, b"{not json", path="/v1/messages/count_tokens")
    await post(client, body(), version=None)
    records = await (await client.get(f"/_sim/requests?script={sid}")).json()
    assert len(records) == 1
    record = records[0]
    assert record["body"] == raw.decode() and record["script"] == sid and record["status"] == 200
    assert record["path"] == "/v1/messages" and record["method"] == "POST"
    assert record["headers"] == {"anthropic-version": V2026, "anthropic-beta": "a-2026-01-01,b-2026-02-02",
                                 "content-type": "application/json", "anthropic-workspace-id": "wrk_1",
                                 "authorization": True, "x-api-key": False}
    assert "sk-secret" not in json.dumps(records)
    last = await (await client.get("/_sim/requests?last=2")).json()
    assert [(r["path"], r["status"], r["body"]) for r in last] == [
        ("/v1/messages/count_tokens", 400, "{not json"), ("/v1/messages", 400, json.dumps(body()))]
    assert last[1]["headers"]["anthropic-version"] is None and last[1]["headers"]["x-api-key"] is True
    assert (await client.get("/_sim/requests?last=x")).status == 400


async def test_recording_is_a_bounded_ring(catalog_path):
    sim = Simulator(_settings(catalog_path, recorded_requests=3))
    async with TestClient(TestServer(sim.app())) as c:
        for i in range(5):
            await post(c, body(text=f"n{i}"))
        records = await (await c.get("/_sim/requests")).json()
        assert [json.loads(r["body"])["messages"][0]["content"] for r in records] == ["n2", "n3", "n4"]
        assert [r["seq"] for r in records] == [3, 4, 5]


# -- count_tokens -------------------------------------------------------------------------------


async def test_count_tokens_matches_messages_usage(client):
    payload = {**body("sim-modern"), "system": "be brief", "tools": [{"name": "f", "input_schema": {}}],
               "messages": [{"role": "user", "content": [{"type": "text", "text": "hello " * 20},
                                                         {"type": "image", "source": {"type": "url", "url": "u"}}]}]}
    _, message, _ = await post(client, payload)
    usage = message["usage"]
    total = usage["input_tokens"] + usage["cache_creation_input_tokens"] + usage["cache_read_input_tokens"]
    count_payload = {k: v for k, v in payload.items() if k != "max_tokens"}
    status, counted, response = await post(client, count_payload, path="/v1/messages/count_tokens")
    assert status == 200 and counted == {"input_tokens": total} and response.headers["request-id"]
    sid = await add_script(client, {"input_tokens": 12345})
    scripted = {**count_payload, "messages": user(f"[[sim:script={sid}]]")}
    assert (await post(client, scripted, path="/v1/messages/count_tokens"))[1] == {"input_tokens": 12345}
    counters = await stats(client)
    assert counters["count_tokens_requests"] == 2 and counters["requests"] == 1


# -- Models API ---------------------------------------------------------------------------------


async def test_models_endpoints(client):
    headers = {"x-api-key": "k", "anthropic-version": V2026}
    page = await (await client.get("/v1/models", headers=headers)).json()
    assert [m["id"] for m in page["data"]] == ["sim-modern", "sim-classic", "sim-deprecated"]
    assert page["has_more"] is False and (page["first_id"], page["last_id"]) == ("sim-modern", "sim-deprecated")
    modern = page["data"][0]
    assert modern["type"] == "model" and modern["created_at"] == "2026-06-01T00:00:00Z"
    assert (modern["max_input_tokens"], modern["max_tokens"], modern["lifecycle"]) == (1000000, 128000, "active")
    assert modern["capabilities"]["thinking"]["types"]["enabled"] == {"supported": False}
    assert modern["capabilities"]["effort"]["high"] == {"supported": True}
    deprecated = page["data"][2]
    assert deprecated["lifecycle"] == "deprecated" and deprecated["deprecated_at"] == "2025-01-01T00:00:00Z"
    page = await (await client.get("/v1/models?limit=1&after_id=sim-modern", headers=headers)).json()
    assert [m["id"] for m in page["data"]] == ["sim-classic"] and page["has_more"] is True
    page = await (await client.get("/v1/models?lifecycle[]=retired", headers=headers)).json()
    assert [m["id"] for m in page["data"]] == ["sim-retired"]
    response = await client.get("/v1/models/sim-classic-20250101", headers=headers)
    assert (await response.json())["id"] == "sim-classic"
    response = await client.get("/v1/models/nope", headers=headers)
    assert response.status == 404 and (await response.json())["error"]["message"] == "model: nope"
    assert (await client.get("/v1/models?limit=0", headers=headers)).status == 400
    assert (await client.get("/v1/models", headers={"anthropic-version": V2026})).status == 401


# -- the default answer and directives ------------------------------------------------------------


async def test_default_answer_json_and_sse(client):
    status, message, response = await post(client, body(text="same prompt"))
    assert status == 200 and message["content"][0]["type"] == "text" and response.headers["request-id"]
    assert message["usage"]["output_tokens"] == 6 and message["stop_reason"] == "end_turn"
    status, text, _ = await post(client, body(text="same prompt", stream=True))
    events = sse(text)
    assert [e for e, _ in events[:3]] == ["message_start", "content_block_start", "ping"]
    streamed = "".join(d["delta"]["text"] for e, d in events if e == "content_block_delta")
    assert streamed == message["content"][0]["text"]
    assert events[-2][1]["usage"]["output_tokens"] == 6
    counters = await stats(client)
    assert (counters["streams_started"], counters["streams_completed"]) == (1, 1)


async def test_directives_still_work(client):
    status, answer, response = await post(client, body(text="busy [[sim:status=529]]"))
    assert status == 529 and answer["error"]["type"] == "overloaded_error" and response.headers["retry-after"] == "1"
    _, message, _ = await post(client, body(text="[[sim:tokens=3]] short"))
    assert message["usage"]["output_tokens"] == 3
    _, text, _ = await post(client, body(text=r"[[sim:echo]] caf\u00e9 au lait [[sim:chunk_chars=3]]", stream=True))
    pieces = [d["delta"]["text"] for e, d in sse(text) if e == "content_block_delta"]
    assert pieces == ["caf", "é a", "u l", "ait"]
    _, text, _ = await post(client, body(text="[[sim:error_after=2]]", stream=True))
    kinds = [e for e, _ in sse(text)]
    assert kinds[-1] == "error" and kinds.count("content_block_delta") == 2
    response = await client.post("/v1/messages", json=body(text="[[sim:disconnect_after=2]]", stream=True),
                                 headers={"x-api-key": "k", "anthropic-version": V2026})
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()
    _, message, _ = await post(client, body(text="stop here", stop_sequences=["the", "a"]))
    assert message["stop_reason"] in ("stop_sequence", "end_turn")
    counters = await stats(client)
    assert counters["injected_failures"] == 1 and counters["streams_started"] == 3


async def test_directives_can_be_turned_off(catalog_path):
    sim = Simulator(_settings(catalog_path, allow_directives=False))
    async with TestClient(TestServer(sim.app())) as c:
        sid = await add_script(c, {"status": 529})
        assert (await post(c, body(text=f"[[sim:status=529]] [[sim:script={sid}]]")))[0] == 200


async def test_the_shipped_catalog_loads():
    sim = Simulator(SimulatorSettings(time_to_first_token_ms=0, inter_token_ms=0))
    async with TestClient(TestServer(sim.app())) as c:
        assert (await post(c, body("claude-opus-4-8", thinking={"type": "adaptive"})))[0] == 200
        assert (await error_of(c, body("claude-opus-4-8", temperature=0.3), V2023))[2] == \
            "`temperature` is deprecated for this model."
        assert (await error_of(c, body("claude-mythos-preview")))[:2] == (404, "not_found_error")


async def test_concurrent_scripted_streams_stay_apart(client):
    ids = [await add_script(client, {"content": [{"type": "text", "text": f"answer {i} " * 5}],
                                     "chunk_chars": 3, "itl_ms": 1}) for i in range(10)]
    results = await asyncio.gather(*(post(client, body(text=f"[[sim:script={sid}]]", stream=True)) for sid in ids))
    for i, (_, text, _) in enumerate(results):
        got = "".join(d["delta"]["text"] for e, d in sse(text) if e == "content_block_delta")
        assert got == f"answer {i} " * 5
    assert re.fullmatch(r"[0-9a-f]{16}", ids[0])
