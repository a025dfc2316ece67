"""Prompt-prefix identity (sluice.wire.prefix) and the ledger's rules
(sluice.storage.prefix_ledger): forecast against the simulator's model of
the API's prompt cache, learning token counts from usage."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.llm.v1 import messages_pb2
from sluice.simulator.generator import PromptCache, measure
from sluice.storage.prefix_ledger import Warm, forecast, plan_of, settle
from sluice.wire.prefix import LOOKBACK_BLOCKS, prefix_chain

MARK = {"type": "ephemeral"}


def test_no_mark_no_chain_and_marks_do_not_change_identity():
    doc = {"system": "s" * 100, "messages": [{"role": "user", "content": "hi"}]}
    assert prefix_chain(doc, "tenant:a") is None
    marked = {**doc, "cache_control": MARK}  # automatic caching: a breakpoint on the last block
    chain = prefix_chain(marked, "tenant:a")
    assert [p.block for p in chain.breakpoints] == [1] and len(chain.hashes) == 2
    explicit = {"system": [{"type": "text", "text": "s" * 100, "cache_control": MARK}],
                "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": MARK}]}]}
    assert prefix_chain(explicit, "tenant:a").hashes == chain.hashes
    assert prefix_chain(explicit, "tenant:b").hashes != chain.hashes  # namespaces never meet
    assert chain.positions() == [1, 0]


def test_lookback_reaches_twenty_blocks():
    messages = [{"role": "user", "content": [{"type": "text", "text": f"m{i}"} for i in range(30)]}]
    messages[0]["content"][-1]["cache_control"] = MARK
    chain = prefix_chain({"messages": messages}, "t")
    assert chain.positions() == list(range(29, 29 - LOOKBACK_BLOCKS, -1))
    assert chain.longest_hit({10}) == 10 and chain.longest_hit({9}) == -1


def test_the_shape_sees_through_digits_only():
    a = prefix_chain({"system": [{"type": "text", "text": "Now: 2026-11-30 10:01", "cache_control": MARK}],
                      "messages": []}, "t")
    b = prefix_chain({"system": [{"type": "text", "text": "Now: 2026-11-30 10:02", "cache_control": MARK}],
                      "messages": []}, "t")
    c = prefix_chain({"system": [{"type": "text", "text": "Now: later", "cache_control": MARK}],
                      "messages": []}, "t")
    assert a.hashes != b.hashes and a.shape(0) == b.shape(0) != c.shape(0)


def usage(use) -> messages_pb2.Usage:  # type: ignore[no-untyped-def]
    return messages_pb2.Usage(input_tokens=use.input_tokens, cache_read_input_tokens=use.read,
                              cache_creation_input_tokens=use.creation)


class Ledger:
    """The ledger's rules on a dict (one deployment, one model, no clock)."""

    def __init__(self) -> None:
        self.entries: dict[bytes, Warm] = {}

    def warm(self, chain) -> dict[int, Warm]:  # type: ignore[no-untyped-def]
        return {p: self.entries[chain.hashes[p]] for p in chain.positions() if chain.hashes[p] in self.entries}

    def apply(self, settlement) -> None:  # type: ignore[no-untyped-def]
        for digest, tokens, ttl in [*settlement.written, *([settlement.refreshed] if settlement.refreshed else [])]:
            self.entries[digest] = Warm(tokens, ttl)


@settings(max_examples=60, deadline=None)
@given(system_words=st.integers(0, 3000), turns=st.lists(st.tuples(st.integers(1, 400), st.integers(1, 300)),
                                                            min_size=1, max_size=8),
       hour=st.booleans(), automatic=st.booleans(), min_tokens=st.sampled_from([1024, 2048, 4096]))
def test_forecast_reads_equal_the_simulators_over_any_conversation(system_words, turns, hour, automatic,
                                                                   min_tokens):
    """A conversation marked the usual way (system prompt, and the latest
    turn or automatic caching): every turn's forecast read equals what the
    simulator's prompt cache reports, once the ledger learnt from usage."""
    sim, ledger = PromptCache(), Ledger()
    system_mark = {"type": "ephemeral", "ttl": "1h"} if hour else MARK
    system = [{"type": "text", "text": "word " * system_words, "cache_control": system_mark}] if system_words else []
    messages: list[dict] = []
    for n, (asked, said) in enumerate(turns):
        block = {"type": "text", "text": f"q{n} " + "ask " * asked}
        if not automatic:
            block["cache_control"] = MARK
        messages.append({"role": "user", "content": [block]})
        body = {"model": "m", "max_tokens": 8, "system": system, "messages": messages,
                **({"cache_control": MARK} if automatic else {})}
        chain = prefix_chain(body, "tenant:t")
        if chain is None:
            continue
        predicted = forecast(chain, ledger.warm(chain), min_tokens, "d")
        actual = sim.account(measure(body), min_tokens)
        assert predicted.read_tokens == actual.read, (n, predicted, actual)
        plan = plan_of(chain, min_tokens)
        plan.forecasts.append(predicted)
        ledger.apply(settle(plan, "d", usage(actual)))
        block.pop("cache_control", None)
        messages.append({"role": "assistant", "content": [{"type": "text", "text": "say " * said}]})


def test_a_read_refreshes_and_learns_the_exact_count():
    chain = prefix_chain({"system": [{"type": "text", "text": "x" * 20000, "cache_control": MARK}],
                          "messages": [{"role": "user", "content": "hi"}]}, "t")
    first = forecast(chain, {}, 1024, "d")
    assert (first.read_tokens, first.write_5m_tokens, first.hit_block) == (0, 5000, -1)
    plan = plan_of(chain, 1024)
    plan.forecasts.append(first)
    written = settle(plan, "d", messages_pb2.Usage(cache_creation_input_tokens=5003))
    assert written.written == [(chain.hashes[0], 5003, 300)] and written.refreshed is None
    warm = {0: Warm(5003, 300)}
    again = forecast(chain, warm, 1024, "d")
    assert (again.read_tokens, again.write_5m_tokens, again.hit_block) == (5003, 0, 0)
    plan.forecasts[0].CopyFrom(again)
    read = settle(plan, "d", messages_pb2.Usage(cache_read_input_tokens=5003))
    assert read.written == [] and read.refreshed == (chain.hashes[0], 5003, 300)
    # Below the model's minimum nothing is forecast to be written.
    assert forecast(chain, {}, 8192, "d").write_5m_tokens == 0


def test_a_deployment_serving_a_model_and_its_fallback_keeps_their_forecasts_apart():
    from sluice.storage.prefix_ledger import forecast_for

    chain = prefix_chain({"system": [{"type": "text", "text": "x" * 20000, "cache_control": MARK}],
                          "messages": [{"role": "user", "content": "hi"}]}, "t")
    plan = plan_of(chain, 1024)
    plan.forecasts.extend([forecast(chain, {}, 1024, "d", "opus"),
                           forecast(chain, {0: Warm(5003, 300)}, 1024, "d", "sonnet")])
    assert forecast_for(plan, "d", "sonnet").read_tokens == 5003 and forecast_for(plan, "d", "opus").read_tokens == 0
    read = settle(plan, "d", messages_pb2.Usage(cache_read_input_tokens=5003), "sonnet")
    assert read.refreshed == (chain.hashes[0], 5003, 300)
    assert settle(plan, "d", messages_pb2.Usage(cache_read_input_tokens=5003), "opus").refreshed is None
