"""Prompt-cache affinity: forecast each candidate's prompt-cache reads and
writes from the prefix ledger, and send a request where its prefix is warm.

A request with cache_control marks reads its cached prefix at 0.1x the
input price on a deployment where that prefix was written in the last 5
minutes (or hour), and writes it again at 1.25x (2x) anywhere else
(Anthropic's pricing page). So among the first model's candidates, a warm
deployment goes first when that makes the request cheaper at the
candidates' own prices. Health and latency come first: unhealthy
deployments are already left off and slow ones are never moved up.

Also the plan's warnings (metric `sluice_prefix_warnings_total` and the
x-sluice-prompt-cache header): "short_prefix" when a marked prefix is
below the model's minimum cacheable length (nothing will be cached), and
"volatile_prefix" when the content before a breakpoint differs from a
recent request's only in digits (a timestamp or id in the system prompt:
every request writes, none reads).
"""

from __future__ import annotations

from collections import OrderedDict

import orjson

from sluice.auth.v1 import principal_pb2
from sluice.cache.v1 import prefix_pb2
from sluice.catalog.catalog import ModelEntry
from sluice.llm.v1 import wire_pb2
from sluice.routing.v1 import candidate_pb2, decision_pb2
from sluice.storage.prefix_ledger import PrefixLedger, forecast, plan_of
from sluice.storage.response_cache import namespace_of
from sluice.telemetry import metrics
from sluice.wire.prefix import PrefixChain, prefix_chain

# Prefix shapes remembered per process for the volatile-prefix warning.
_SHAPES_MAX = 4096


def input_cost(prices: candidate_pb2.Prices, tokens: int, plan: prefix_pb2.PrefixForecast) -> float:
    """USD for a prompt of `tokens` input tokens under a forecast: reads at
    the read price, writes at the write prices, the rest at base input."""
    plain = max(tokens - plan.read_tokens - plan.write_5m_tokens - plan.write_1h_tokens, 0)
    return (plain * prices.input + plan.read_tokens * prices.cache_read + plan.write_5m_tokens * prices.cache_write_5m
            + plan.write_1h_tokens * prices.cache_write_1h) / 1_000_000


class Affinity:
    """Plans a routed request's prompt cache (see the module doc). `slow`
    says which deployments routing currently judges slow."""

    def __init__(self, ledger: PrefixLedger, catalog_lookup, slow) -> None:
        self._ledger = ledger
        self._lookup = catalog_lookup
        self._slow = slow
        self._shapes: OrderedDict[bytes, bytes] = OrderedDict()

    async def plan(self, principal: principal_pb2.Principal, request: wire_pb2.WireRequest, model: ModelEntry,
                   candidates: list[candidate_pb2.Candidate], decision: decision_pb2.RouteDecision,
                   input_tokens: int) -> tuple[list[candidate_pb2.Candidate], prefix_pb2.PrefixPlan | None]:
        """The candidates (a warm one first when cheaper) and the plan; no
        plan for a request without cache_control marks. The body was
        checked by the gateway; one this cannot read gets no plan."""
        if b'"cache_control"' not in request.body:
            return candidates, None
        try:
            doc = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return candidates, None
        if not isinstance(doc, dict):
            return candidates, None
        chain = prefix_chain(doc, namespace_of(principal))
        if chain is None:
            return candidates, None
        places = list(dict.fromkeys((c.deployment, c.model_id) for c in candidates))
        warm = await self._ledger.warm(chain, places)
        plan = plan_of(chain, model.min_cacheable_tokens)
        minimums = {model.id: model.min_cacheable_tokens}
        for c in candidates:
            if c.model_id not in minimums:
                entry = self._lookup(c.model_id)
                minimums[c.model_id] = entry.min_cacheable_tokens if entry is not None else model.min_cacheable_tokens
        forecasts = {place: forecast(chain, warm.get(place, {}), minimums[place[1]], *place) for place in places}
        candidates = self._prefer_warm(candidates, forecasts, input_tokens, decision)
        plan.forecasts.extend(forecasts[(c.deployment, c.model_id)] for c in candidates)
        plan.warnings.extend(self._warnings(chain, model.min_cacheable_tokens, warm))
        for warning in plan.warnings:
            metrics.PREFIX_WARNINGS.labels(warning).inc()
        return candidates, plan

    def _prefer_warm(self, candidates: list[candidate_pb2.Candidate],
                     forecasts: dict[tuple[str, str], prefix_pb2.PrefixForecast], input_tokens: int,
                     decision: decision_pb2.RouteDecision) -> list[candidate_pb2.Candidate]:
        """The first model's cheapest candidate under its forecast first,
        when it reads more than the first one does and is not slow."""
        first = candidates[0]
        lead = [c for c in candidates if c.model_id == first.model_id and c.reason == first.reason]
        slow = self._slow()

        def cost(c: candidate_pb2.Candidate) -> float:
            return input_cost(c.prices, input_tokens, forecasts[(c.deployment, c.model_id)])

        best = min((c for c in lead if c.deployment not in slow), key=cost, default=first)
        if best is first or forecasts[(best.deployment, best.model_id)].read_tokens <= \
                forecasts[(first.deployment, first.model_id)].read_tokens or cost(best) >= cost(first):
            return candidates
        decision.cache_affinity = best.deployment
        metrics.PREFIX_AFFINITY.labels(best.deployment).inc()
        return [best, *(c for c in candidates if c is not best)]

    def _warnings(self, chain: PrefixChain, min_tokens: int, warm: dict) -> list[str]:
        """short_prefix and volatile_prefix (module doc), each at most once."""
        out = []
        learnt = {block: w.tokens for found in warm.values() for block, w in found.items()}
        if any(learnt.get(p.block, p.estimated_tokens) < min_tokens for p in chain.breakpoints):
            out.append("short_prefix")
        warm_blocks = set(learnt)
        for point in chain.breakpoints:
            if point.block in warm_blocks or point.estimated_tokens < min_tokens:
                continue
            shape = chain.shape(point.block)
            seen = self._shapes.get(shape)
            self._shapes[shape] = chain.hashes[point.block]
            self._shapes.move_to_end(shape)
            if len(self._shapes) > _SHAPES_MAX:
                self._shapes.popitem(last=False)
            if seen is not None and seen != chain.hashes[point.block]:
                out.append("volatile_prefix")
                break
        return out
