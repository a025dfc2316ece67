from __future__ import annotations

from sluice.simulator.generator import MIN_CACHEABLE_TOKENS, PromptCache, completion_words, directives


def test_directives_parse():
    d = directives("hi [[sim:status=529]] and [[sim:ttft_ms=12.5]] [[sim:unknown=3]] [[sim:tokens=7]]")
    assert (d.status, d.ttft_ms, d.tokens, d.disconnect_after) == (529, 12.5, 7, None)


def test_completion_is_deterministic_per_prompt():
    assert completion_words("a", 20) == completion_words("a", 20)
    assert completion_words("a", 20) != completion_words("b", 20)
    assert len(completion_words("a", 5)) == 5


def test_prompt_cache_writes_then_reads_and_skips_short_prefixes():
    cache = PromptCache()
    long_system = [{"type": "text", "text": "x" * (4 * MIN_CACHEABLE_TOKENS + 40), "cache_control": {"type": "ephemeral"}}]
    body = {"system": long_system, "messages": [{"role": "user", "content": "hello"}]}
    first = cache.account(body)
    second = cache.account(body)
    assert first[1] > MIN_CACHEABLE_TOKENS and first[2] == 0
    assert second == (first[0], 0, first[1])

    short = {"system": [{"type": "text", "text": "tiny", "cache_control": {"type": "ephemeral"}}],
             "messages": [{"role": "user", "content": "hello"}]}
    assert cache.account(short)[1:] == (0, 0)
