"""The response cache and the prefix ledger on a real Redis: hit, miss,
TTL expiry, eviction under a memory bound, tenant isolation, invalidation,
a store that is down (bypass, never an error)."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid

import pytest

from sluice.auth.v1 import principal_pb2
from sluice.cache.core import ResponseCache
from sluice.cache.v1 import cache_service_pb2 as pb
from sluice.config.cache import CacheSettings
from sluice.llm.v1 import messages_pb2, wire_pb2
from sluice.storage.prefix_ledger import PrefixLedger, Settlement
from sluice.storage.redis import connect
from sluice.storage.response_cache import ResponseStore
from sluice.wire.prefix import prefix_chain
from tests.infra.processes import free_port
from tests.infra.redis_server import LocalRedis

pytestmark = pytest.mark.integration


def principal(tenant: str, **cache: object) -> principal_pb2.Principal:
    return principal_pb2.Principal(tenant_id=tenant, cache=principal_pb2.CachePolicy(mode="read-write", **cache))


def lookup(who: principal_pb2.Principal, text: str, **extra: object) -> pb.LookupRequest:
    body = json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 32,
                       "messages": [{"role": "user", "content": text}]}).encode()
    return pb.LookupRequest(principal=who, request=wire_pb2.WireRequest(body=body, anthropic_version="2023-06-01"),
                            model="claude-sonnet-4-6", catalog_version="c1", **extra)


def answer(text: str, request_id: str = "req-1") -> pb.CachedAnswer:
    return pb.CachedAnswer(origin_request_id=request_id, policy_version="default@1", model="claude-sonnet-4-6",
                           usage=messages_pb2.Usage(input_tokens=10, output_tokens=5), cost_usd=0.0001, events=[
                               wire_pb2.WireEvent(type="content_block_delta", data=json.dumps(
                                   {"type": "content_block_delta", "index": 0,
                                    "delta": {"type": "text_delta", "text": text}}).encode())])


@pytest.fixture
def cache(redis_url):
    scope = f"it-{uuid.uuid4().hex[:8]}"
    store = ResponseStore(connect(redis_url), scope, 2.0)
    yield ResponseCache(store, CacheSettings())


async def remember(cache: ResponseCache, who, text: str, said: str = "42") -> pb.LookupResponse:  # type: ignore[no-untyped-def]
    missed = await cache.lookup(lookup(who, text))
    assert (missed.status, missed.reason) == ("miss", "absent") and missed.key
    stored = await cache.store(pb.StoreRequest(principal=who, key=missed.key, answer=answer(said)))
    assert stored.stored and stored.stored_bytes > 0
    return missed


async def test_a_stored_answer_hits_with_its_events_and_provenance(cache):
    who = principal("acme")
    await remember(cache, who, "What is six times seven?")
    hit = await cache.lookup(lookup(who, "What is six times seven?"))
    assert hit.hit and hit.status == "hit" and b"42" in hit.events[0].data
    assert hit.answer.origin_request_id == "req-1" and hit.answer.policy_version == "default@1"
    assert not hit.answer.events  # sent once, in `events`
    read_only = await cache.lookup(lookup(who, "What is six times seven?", mode="read-only"))
    assert read_only.hit
    assert (await cache.lookup(lookup(who, "What is six times eight?"))).status == "miss"


async def test_tenants_never_share_unless_they_name_one_namespace(cache):
    await remember(cache, principal("acme"), "shared question")
    assert (await cache.lookup(lookup(principal("globex"), "shared question"))).status == "miss"
    await remember(cache, principal("acme", shared_namespace="docs"), "doc question")
    assert (await cache.lookup(lookup(principal("globex", shared_namespace="docs"), "doc question"))).hit
    # A key made for one namespace cannot store into another.
    missed = await cache.lookup(lookup(principal("acme"), "other question"))
    refused = await cache.store(pb.StoreRequest(principal=principal("globex"), key=missed.key, answer=answer("x")))
    assert (refused.stored, refused.reason) == (False, "bad_key")


async def test_entries_expire_with_their_ttl(cache):
    who = principal("acme", ttl_seconds=1)
    missed = await remember(cache, who, "short-lived")
    assert missed.ttl_seconds == 1
    deadline = time.monotonic() + 5
    while (await cache.lookup(lookup(who, "short-lived"))).hit:
        assert time.monotonic() < deadline, "the entry outlived its TTL"
        await asyncio.sleep(0.1)


async def test_invalidation_bumps_one_generation(cache):
    acme, globex = principal("acme"), principal("globex")
    for who in (acme, globex):
        await remember(cache, who, "q")
    versioned = await cache.lookup(lookup(acme, "q", prompt_version="v1"))
    await cache.store(pb.StoreRequest(principal=acme, key=versioned.key, answer=answer("tagged")))
    assert (await cache.lookup(lookup(acme, "q", prompt_version="v1"))).hit
    await cache._store.bump("p:tenant:acme:v1")
    assert (await cache.lookup(lookup(acme, "q", prompt_version="v1"))).reason == "invalidated"
    assert (await cache.lookup(lookup(acme, "q"))).hit
    await cache._store.bump("ns:tenant:acme")
    assert (await cache.lookup(lookup(acme, "q"))).reason == "invalidated"
    assert (await cache.lookup(lookup(globex, "q"))).hit
    await cache._store.bump("all")
    assert (await cache.lookup(lookup(globex, "q"))).reason == "invalidated"
    again = await cache.lookup(lookup(globex, "q"))
    await cache.store(pb.StoreRequest(principal=globex, key=again.key, answer=answer("after")))
    assert b"after" in (await cache.lookup(lookup(globex, "q"))).events[0].data


async def test_large_answers_are_not_kept():
    store = ResponseStore(connect("memory://too-large"), "s", 1.0)
    cache = ResponseCache(store, CacheSettings(max_entry_bytes=1024))
    who = principal("acme")
    missed = await cache.lookup(lookup(who, "long"))
    big = answer(os.urandom(4096).hex())
    assert (await cache.store(pb.StoreRequest(principal=who, key=missed.key, answer=big))).reason == "too_large"


async def test_eviction_under_the_memory_bound_keeps_the_newest_and_never_errors():
    server = LocalRedis()
    try:
        client = connect(server.url)
        await client.config_set("maxmemory", str(4 * 1024 * 1024))
        await client.config_set("maxmemory-policy", "allkeys-lru")
        cache = ResponseCache(ResponseStore(client, "evict", 2.0), CacheSettings())
        who = principal("acme")
        for n in range(200):  # ~60 KB each after compression: 12 MB into a 4 MB bound
            missed = await cache.lookup(lookup(who, f"question {n}"))
            stored = await cache.store(pb.StoreRequest(principal=who, key=missed.key,
                                                       answer=answer(os.urandom(60_000).hex())))
            assert stored.stored, stored.reason
        info = await client.info("memory")
        assert info["used_memory"] <= 4 * 1024 * 1024 + 256 * 1024
        results = [(await cache.lookup(lookup(who, f"question {n}"))).status for n in range(200)]
        assert results[-1] == "hit" and results[0] == "miss"
        assert 20 <= results.count("hit") < 100, results.count("hit")
        await client.aclose()
    finally:
        server.stop()


async def test_a_store_that_is_down_is_a_bypass_within_its_deadline():
    cache = ResponseCache(ResponseStore(connect(f"redis://127.0.0.1:{free_port()}/0"), "down", 0.5),
                          CacheSettings())
    who = principal("acme")
    started = time.monotonic()
    down = await cache.lookup(lookup(who, "anything"))
    assert (down.status, down.reason) == ("bypass", "store_unavailable")
    assert time.monotonic() - started < 2.5
    key = b'{"ns":"tenant:acme","a":"m","p":"","d":"00","g":[0,0,0,0,0],"t":60,"c":"text"}'
    skipped = await cache.store(pb.StoreRequest(principal=who, key=key, answer=answer("x")))
    assert (skipped.stored, skipped.reason) == (False, "store_unavailable")


async def test_the_prefix_ledger_keeps_warm_prefixes_per_deployment_and_model(redis_url):
    ledger = PrefixLedger(connect(redis_url), f"it-{uuid.uuid4().hex[:8]}", "test")
    chain = prefix_chain({"system": [{"type": "text", "text": "s" * 9000, "cache_control": {"type": "ephemeral"}}],
                          "messages": [{"role": "user", "content": "hi"}]}, "tenant:a")
    places = [("dep-a", "m1"), ("dep-b", "m1"), ("dep-a", "m2")]
    assert await ledger.warm(chain, places) == {p: {} for p in places}
    await ledger.record("dep-a", "m1", Settlement([(chain.hashes[0], 2251, 1)], None))
    warm = await ledger.warm(chain, places)
    assert warm[("dep-a", "m1")][0].tokens == 2251 and warm[("dep-b", "m1")] == {} == warm[("dep-a", "m2")]
    deadline = time.monotonic() + 5  # written for one second: the provider's entry would be gone
    while (await ledger.warm(chain, places))[("dep-a", "m1")]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    await ledger.close()


async def test_an_alias_and_a_model_name_keep_their_own_answers(cache):
    who = principal("acme")

    def named(name: str) -> pb.LookupRequest:
        body = json.dumps({"model": name, "max_tokens": 32, "messages": [{"role": "user", "content": "q"}]}).encode()
        return pb.LookupRequest(principal=who, request=wire_pb2.WireRequest(body=body, anthropic_version="2023-06-01"),
                                model="claude-haiku-4-5", catalog_version="c1")

    for name in ("auto", "claude-haiku-4-5"):
        missed = await cache.lookup(named(name))
        assert missed.status == "miss"
        await cache.store(pb.StoreRequest(principal=who, key=missed.key, answer=answer(name)))
    await cache._store.bump("a:auto")  # every tenant's answers stored under "auto"
    assert (await cache.lookup(named("auto"))).reason == "invalidated"
    hit = await cache.lookup(named("claude-haiku-4-5"))
    assert hit.hit and b"claude-haiku-4-5" in hit.events[0].data
