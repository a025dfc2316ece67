"""The response cache's key rules (sluice.cache.key) and mode resolution."""

from __future__ import annotations

import asyncio
import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.auth.v1 import principal_pb2
from sluice.cache import key as keys
from sluice.cache.core import ResponseCache
from sluice.cache.v1 import cache_service_pb2 as pb
from sluice.config.cache import CacheSettings
from sluice.llm.v1 import wire_pb2
from sluice.storage.redis import connect
from sluice.storage.response_cache import ResponseStore, namespace_of, resolve_mode

BASE = {"model": "claude-sonnet-4-6", "max_tokens": 64,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}]}


def digest(doc: dict, namespace: str = "tenant:a", model: str = "claude-sonnet-4-6", version: str = "2023-06-01",
           betas: list[str] | None = None, prompt_version: str = "") -> bytes:
    return keys.request_digest(doc, namespace, model, "cat-1", version, betas or [], prompt_version)


def test_fields_that_do_not_change_the_answer_are_left_out():
    same = copy.deepcopy(BASE)
    same.update(stream=True, metadata={"user_id": "u-2"}, service_tier="auto", inference_geo="eu", model="auto")
    del same["system"][0]["cache_control"]
    del same["messages"][0]["content"][0]["cache_control"]
    same["cache_control"] = {"type": "ephemeral"}
    assert digest(same) == digest(BASE)


def test_everything_that_shapes_the_answer_is_part_of_the_key():
    base = digest(BASE)
    for change in ({"max_tokens": 65}, {"temperature": 0.5}, {"stop_sequences": ["x"]},
                   {"tool_choice": {"type": "auto"}}, {"system": "Be long."},
                   {"messages": [{"role": "user", "content": "hello"}]}):
        assert digest({**BASE, **change}) != base, change
    assert digest(BASE, namespace="tenant:b") != base
    assert digest(BASE, model="claude-opus-4-6") != base
    assert digest(BASE, version="2026-10-21") != base
    assert digest(BASE, prompt_version="v2") != base
    assert digest(BASE, betas=["b1", "b2"]) == digest(BASE, betas=["b2", "b1"]) != base


def test_nested_tool_result_marks_are_left_out_too():
    marked = {**BASE, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
              "content": [{"type": "text", "text": "42", "cache_control": {"type": "ephemeral"}}]}]}]}
    plain = copy.deepcopy(marked)
    del plain["messages"][0]["content"][0]["content"][0]["cache_control"]
    assert digest(marked) == digest(plain)


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=4), max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(body=st.dictionaries(st.text(max_size=12), JSON, max_size=6), user=st.text(max_size=30))
def test_any_body_has_one_key_whatever_its_member_order_and_metadata(body, user):
    reordered = dict(reversed(list(body.items())))
    reordered["metadata"] = {"user_id": user}
    assert digest(body) == digest(reordered)
    assert len(digest(body)) == 32


def test_server_tools_and_categories():
    assert keys.server_tools({"tools": [{"type": "web_search_20250305", "name": "web_search"}]})
    assert keys.server_tools({"mcp_servers": [{"url": "x"}]}) and keys.server_tools({"container": "c1"})
    assert not keys.server_tools({"tools": [{"name": "lookup", "input_schema": {}}, {"type": "bash_20250124"},
                                            {"type": "custom", "name": "x"}, {"type": "memory_20250818"}]})
    # A tool type Sluice does not know as the client's is the provider's: never cached.
    assert keys.server_tools({"tools": [{"type": "memory_search_20270101", "name": "m"}]})
    assert keys.category({"tools": [{"name": "t"}]}, "") == "tools"
    assert keys.category({"messages": [{"role": "user", "content": [{"type": "image"}]}]}, "") == "media"
    assert keys.category({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "") == "thinking"
    assert keys.category({}, "") == "text" and keys.category({"tools": [1]}, "factual_qa") == "factual_qa"
    policy = principal_pb2.CachePolicy(ttl_seconds=600, ttl_by_category={"tools": 60})
    assert keys.ttl_for(policy, "tools", 3600, 86400) == 60
    assert keys.ttl_for(policy, "text", 3600, 86400) == 600
    assert keys.ttl_for(principal_pb2.CachePolicy(), "text", 3600, 1800) == 1800


def test_the_mode_comes_from_the_header_then_the_alias_then_the_tenant():
    policy = principal_pb2.CachePolicy(mode="read-only", aliases={"auto": "read-write"})
    assert resolve_mode(policy, "", "claude-sonnet-4-6") == ("read-only", "")
    assert resolve_mode(policy, "", "auto") == ("read-write", "")
    assert resolve_mode(policy, "off", "auto") == ("off", "mode_off")
    assert resolve_mode(principal_pb2.CachePolicy(), "", "m") == ("off", "mode_off")
    assert resolve_mode(principal_pb2.CachePolicy(enabled=False), "read-write", "m") == ("off", "tenant_disabled")
    assert resolve_mode(principal_pb2.CachePolicy(), "sometimes", "m") == ("off", "unknown_mode")
    shared = principal_pb2.Principal(tenant_id="a", cache=principal_pb2.CachePolicy(shared_namespace="docs"))
    assert namespace_of(shared) == "shared:docs" and namespace_of(principal_pb2.Principal(tenant_id="a")) == "tenant:a"


def _dumps(doc: dict) -> bytes:
    import json

    return json.dumps(doc).encode()  # json goes deeper than orjson


def _deep(depth: int) -> dict:
    value: dict = {"type": "string"}
    for _ in range(depth):
        value = {"type": "object", "properties": {"a": value}}
    return value


def test_bodies_nested_deeper_than_the_encoder_get_no_key_and_no_plan():
    from sluice.wire.prefix import prefix_chain

    doc = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}],
           "tools": [{"name": "t", "input_schema": _deep(300), "cache_control": {"type": "ephemeral"}}]}
    assert prefix_chain(doc, "tenant:a") is None
    cache = ResponseCache(ResponseStore(connect("memory://deep"), "d", 1.0), CacheSettings())
    found = asyncio.run(cache.lookup(pb.LookupRequest(
        principal=principal_pb2.Principal(tenant_id="a", cache=principal_pb2.CachePolicy(mode="read-write")),
        request=wire_pb2.WireRequest(body=_dumps(doc)), model="m")))
    assert (found.status, found.reason) == ("bypass", "unkeyable")


def test_marks_the_api_refuses_are_refused_wherever_they_sit():
    import json

    import pytest

    from sluice.rpc.errors import SluiceError
    from sluice.wire.request import MessagesRequest

    def request(mark: dict, nested: str = "search_result") -> MessagesRequest:
        inner = {"type": "text", "text": "r", "cache_control": mark}
        block = {"type": nested, "source": "s", "title": "t", "content": [inner]} if nested == "search_result" \
            else {"type": nested, "tool_use_id": "t1", "content": [inner]}
        body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [block]}]}
        return MessagesRequest(json.dumps(body).encode(), "2023-06-01")

    for nested in ("search_result", "tool_result"):
        request({"type": "ephemeral", "ttl": "1h"}, nested)
        for bad, said in (({"type": "persistent"}, "cache_control.type"), ({"type": "ephemeral", "ttl": "2h"},
                                                                              "cache_control.ttl")):
            with pytest.raises(SluiceError, match=said):
                request(bad, nested)
    five = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
        {"type": "text", "text": str(i), "cache_control": {"type": "ephemeral"}} for i in range(5)]}]}
    with pytest.raises(SluiceError, match="A maximum of 4 blocks"):
        MessagesRequest(json.dumps(five).encode(), "2023-06-01")
    for field, value in (("metadata", {"user_id": "u", "extra": 1}), ("metadata", {"user_id": "x" * 257}),
                         ("metadata", "abc"), ("service_tier", "bogus")):
        body = {"model": "m", "max_tokens": 1, "messages": [], field: value}
        with pytest.raises(SluiceError, match=field):
            MessagesRequest(json.dumps(body).encode(), "2023-06-01")
