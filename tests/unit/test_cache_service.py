"""The cache service on hostile input: any body, mode, tag or key gets an
answer (a bypass, a miss, a skip), never an exception."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.auth.v1 import principal_pb2
from sluice.cache.core import ResponseCache
from sluice.cache.v1 import cache_service_pb2 as pb
from sluice.config.cache import CacheSettings
from sluice.llm.v1 import wire_pb2
from sluice.storage.redis import connect
from sluice.storage.response_cache import ResponseStore

CACHE = ResponseCache(ResponseStore(connect("memory://hostile"), "h", 1.0), CacheSettings())
BODIES = st.one_of(
    st.binary(max_size=200),
    st.just(b'{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":1}'),
    st.just(b'{"model":"m","messages":[],"tools":[{"type":"web_search_20250305"}]}'),
    st.just(b'[1,2,3]'), st.just(b'{"n":1e400}'), st.just(b'{"n":123456789012345678901234567890}'),
    st.just(b'{"s":"\\ud800"}'), st.just(b"[" * 5000 + b"]" * 5000))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES, mode=st.text(max_size=12) | st.sampled_from(["read-write", "read-only", "off"]),
       tag=st.text(max_size=20), key=st.binary(max_size=80), tenant=st.text(max_size=10))
def test_any_lookup_or_store_gets_an_answer(body, mode, tag, key, tenant):
    principal = principal_pb2.Principal(tenant_id=tenant, cache=principal_pb2.CachePolicy(mode="read-write"))

    async def both() -> tuple[pb.LookupResponse, pb.StoreResponse]:
        found = await CACHE.lookup(pb.LookupRequest(principal=principal, request=wire_pb2.WireRequest(body=body),
                                                    mode=mode, prompt_version=tag, model="m"))
        kept = await CACHE.store(pb.StoreRequest(principal=principal, key=found.key or key))
        return found, kept

    found, kept = asyncio.run(both())
    assert found.status in ("hit", "miss", "bypass")
    if found.status == "bypass":
        assert found.reason in ("unkeyable", "unknown_mode", "mode_off", "server_tools")
    assert kept.stored or kept.reason == "bad_key"
