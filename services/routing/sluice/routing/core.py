"""Chooses the model and the deployments that may serve a request, and
lists models.

A request names a model, or an alias that routes by policy ("auto" is
built in; a tenant adds its own in `routing.aliases`; a tenant's
`model_map` may send a named model to an alias or another model).

- A named model is checked against the catalog, its lifecycle and limits,
  the tenant's allowed models and tier (decision reason "requested", or
  "mapped").
- An alias reads the request (`features.extract`), classifies its task and
  complexity (`classifier`), lets the policy choose a capability tier
  (`policy.choose_tier`, with the cost controller's shift and the customer
  tier's ceiling) and takes the tier's first model the tenant may use; an
  experiment on the alias picks the policy by a sticky hash of tenant and
  metadata.user_id.

Either way the candidates are the model's deployments allowed in the
tenant's home region (residency, from the deployments file), then those of
each model in its fallback chain that the tenant may use and that can take
the request, at most `max_candidates`. Deployments whose circuit breaker is
open on any replica (the fleet snapshot) are left off while another
deployment can serve, and a deployment whose recent time to first token is
more than twice the best one's (and 250 ms more), or whose output rate is
under half the best one's, for the same model, goes behind the others;
otherwise the deployments file's order stands.

The decision (`RouteDecision`) goes back with the candidates: the gateway
sends it as `x-sluice-route` and keeps it on billing and audit records.

The Models API (GET /v1/models) answers from the same catalog, listing what
the tenant may use in its region, newest first, in the API's pages.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import orjson

from sluice.auth.v1 import principal_pb2
from sluice.catalog import Catalog, ModelEntry, models_api
from sluice.catalog.deployments import Deployments, Serving
from sluice.catalog.pricing import cost_micro_usd, usd
from sluice.llm.v1 import messages_pb2, wire_pb2
from sluice.routing import features as feats
from sluice.routing import policy as pol
from sluice.routing.classifier import TIERS, Prediction, TaskClassifier
from sluice.routing.controller import DEPLOYMENT, CostController
from sluice.routing.v1 import candidate_pb2, decision_pb2, model_pb2
from sluice.rpc.errors import Reason, SluiceError
from sluice.storage.fleet import Snapshot
from sluice.telemetry import metrics
from sluice.wire import jsontext
from sluice.wire.request import MessagesRequest

# A deployment is slow when its mean time to first token exceeds the best
# one's by this factor and margin, over at least this many answers.
_SLOW_FACTOR = 2.0
_SLOW_MARGIN_S = 0.25
_SLOW_MIN_SAMPLES = 10
# Warm prompt prefixes remembered per process (tenant, model, prefix).
_WARM_MAX = 100_000
_TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}


class Router:
    """The routing decision (module doc). `policies` and `classifier` route
    aliases (without them only named models route); `cost_target_usd` is
    the deployment-wide target of the cost controller."""

    def __init__(self, catalog: Catalog, deployments: Deployments, region: str, default_model: str,
                 max_candidates: int = 6, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 policies: pol.Policies | None = None, classifier: TaskClassifier | None = None,
                 controller: CostController | None = None, cost_target_usd: float = 0.012,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if catalog.lookup(default_model) is None:
            raise ValueError(f"routing.default_model {default_model!r} is not in catalog {catalog.version}")
        if not deployments.allowed_geos(region):
            raise ValueError(f"region {region!r} has no residency entry in deployments {deployments.version}")
        self.catalog = catalog
        self.deployments = deployments
        self.allowed_geos = deployments.allowed_geos(region)
        self.policies = policies
        self.classifier = classifier
        self.controller = controller or CostController()
        self.cost_target_usd = cost_target_usd
        self._max_candidates = max_candidates
        # Candidates per (model, reason): built once per fleet view, they are
        # on every request's path.
        self._candidates: dict[tuple[str, str], tuple[list[candidate_pb2.Candidate], tuple[str, ...]]] = {}
        self.region = region
        self._default_model = default_model
        self._clock = clock
        self._monotonic = monotonic
        self._infos: dict[tuple[str, date], model_pb2.ModelInfo] = {}
        self._unhealthy: frozenset[str] = frozenset()
        self._slow: frozenset[str] = frozenset()
        self._warm: dict[bytes, float] = {}

    # -- the fleet's view ----------------------------------------------------------------

    @property
    def slow(self) -> frozenset[str]:
        """Deployments judged slow in the current fleet view."""
        return self._slow

    def adopt(self, snapshot: Snapshot) -> None:
        """A new fleet snapshot: unhealthy and slow deployments, the shared
        cost shifts. Candidate lists are rebuilt only when the first two change."""
        ttft: dict[str, list[tuple[str, float]]] = {}
        rate: dict[str, list[tuple[str, float]]] = {}
        for model in self.catalog.models:
            for serving in self.deployments.serving(model, self.region):
                lat = snapshot.latency.get(serving.deployment_id)
                if lat is not None and lat.samples >= _SLOW_MIN_SAMPLES:
                    ttft.setdefault(model.id, []).append((serving.deployment_id, lat.ttft_s))
                if lat is not None and lat.rate_samples >= _SLOW_MIN_SAMPLES and lat.output_tps > 0:
                    rate.setdefault(model.id, []).append((serving.deployment_id, lat.output_tps))
        slow: set[str] = set()
        for seen in ttft.values():
            fastest = min(t for _d, t in seen)
            slow.update(d for d, t in seen if t > fastest * _SLOW_FACTOR and t > fastest + _SLOW_MARGIN_S)
        for seen in rate.values():
            quickest = max(r for _d, r in seen)
            slow.update(d for d, r in seen if r * _SLOW_FACTOR < quickest)
        unhealthy, slow_set = snapshot.unhealthy, frozenset(slow)
        if unhealthy != self._unhealthy or slow_set != self._slow:
            self._unhealthy, self._slow = unhealthy, slow_set
            self._candidates.clear()
        self.controller.adopt(snapshot.shifts)

    # -- routing ---------------------------------------------------------------------------

    def route(self, principal: principal_pb2.Principal, requested: str, max_tokens: int = 0,
              count_tokens: bool = False, request: wire_pb2.WireRequest | None = None,
              estimated_input_tokens: int = 0,
              ) -> tuple[list[candidate_pb2.Candidate], ModelEntry, decision_pb2.RouteDecision]:
        """Candidates for a request, the model it resolved to and why.

        `request` is the client's body: read only to route an alias;
        `estimated_input_tokens` the caller's estimate of its input (the
        codec's, as the gateway computed it; 0 = computed here).
        Raises SluiceError: WRONG_REGION for a tenant of another region;
        MODEL_NOT_FOUND (404, "model: <name>", the API's wording) for a name
        the catalog does not know; MODEL_NOT_ALLOWED (403) for one the tenant
        may not use in its region (or an alias whose policy has no model the
        tenant may use); MODEL_RETIRED (404) for a retired model, naming the
        date; INVALID_REQUEST (400, the API's wording) when max_tokens
        exceeds the model's largest output, or an alias's request body is
        not a Messages request.
        """
        self._check_region(principal)
        name = requested or principal.default_model or self._default_model
        decision = decision_pb2.RouteDecision(requested=requested, reason="requested")
        if principal.model_map and name in principal.model_map:
            name, decision.reason = principal.model_map[name], "mapped"
        policy_name = self._policy_name(principal, name)
        if policy_name is not None:
            return self._by_policy(principal, name, policy_name, max_tokens, count_tokens, request, decision,
                                   estimated_input_tokens)
        model = self.catalog.lookup(name)
        if model is None:
            raise SluiceError(Reason.MODEL_NOT_FOUND, f"model: {name}", metadata={"model": name})
        self._check_allowed(principal, model)
        if model.lifecycle(self._clock()) == "retired":
            raise SluiceError(Reason.MODEL_RETIRED, f"model: {name} (retired on {model.retires_at}; "
                              "GET /v1/models lists the models you can use)",
                              metadata={"model": model.id, "retired_on": str(model.retires_at)})
        if not count_tokens and max_tokens > model.max_output_tokens:
            raise SluiceError.bad_request("max_tokens", f"{max_tokens} > {model.max_output_tokens}, which is the "
                                          f"maximum allowed number of output tokens for {model.id}")
        candidates = self._candidates_for(principal, model, max_tokens, count_tokens, decision)
        _child(metrics.ROUTE_DECISIONS, "", "", decision.reason).inc()
        return candidates, model, decision

    def _candidates_for(self, principal: principal_pb2.Principal, model: ModelEntry, max_tokens: int,
                        count_tokens: bool, decision: decision_pb2.RouteDecision, reason: str = "requested"
                        ) -> list[candidate_pb2.Candidate]:
        """The model's candidates (as `reason`: "requested" or "policy"),
        then its fallbacks'; the unhealthy ones left off go on the decision."""
        candidates, skipped = self._of(model, reason)
        candidates = list(candidates)
        if not candidates:
            raise SluiceError(Reason.MODEL_NOT_ALLOWED, f"model {model.id} has no deployment where inference for "
                              f"region {self.region} may run ({', '.join(self.allowed_geos)})",
                              metadata={"model": model.id, "region": self.region})
        unhealthy = list(skipped)
        now = self._clock()
        for fallback_id in self.deployments.fallbacks(model.id):
            if len(candidates) >= self._max_candidates:
                break
            fallback = self.catalog.lookup(fallback_id)
            if (fallback is None or not self._live_for(principal, fallback, now)
                    or (not count_tokens and max_tokens > fallback.max_output_tokens)):
                continue
            more, skipped = self._of(fallback, "fallback")
            candidates += more
            unhealthy += skipped
        if unhealthy:
            decision.unhealthy.extend(unhealthy)
        return candidates[:self._max_candidates]

    def _of(self, model: ModelEntry, reason: str) -> tuple[list[candidate_pb2.Candidate], tuple[str, ...]]:
        """The model's candidates in this region for this reason, in order
        (module doc), and the unhealthy deployments left off; cached until
        the fleet's view changes."""
        key = (model.id, reason)
        found = self._candidates.get(key)
        if found is None:
            servings = self.deployments.serving(model, self.region)
            healthy = [s for s in servings if s.deployment_id not in self._unhealthy]
            skipped = tuple(s.deployment_id for s in servings if s.deployment_id in self._unhealthy)
            if not healthy:  # every one unhealthy: inference's breakers judge (and panic)
                healthy, skipped = list(servings), ()
            healthy.sort(key=lambda s: s.deployment_id in self._slow)  # stable: the file's order otherwise
            found = self._candidates[key] = ([_candidate(model, s, reason) for s in healthy], skipped)
        if found[1]:
            for dep in found[1]:
                _child(metrics.ROUTE_UNHEALTHY_SKIPPED, dep).inc()
        return found

    # -- routing by policy -------------------------------------------------------------

    def _policy_name(self, principal: principal_pb2.Principal, name: str) -> str | None:
        """The policy an alias routes to (the tenant's aliases first), or None for a model name."""
        if principal.routing_aliases and name in principal.routing_aliases and self.catalog.lookup(name) is None:
            return principal.routing_aliases[name]  # (a model's name stays the model's: model_map routes models)
        if self.policies is not None:
            return self.policies.aliases.get(name)
        return None

    def _by_policy(self, principal: principal_pb2.Principal, alias: str, policy_name: str, max_tokens: int,
                   count_tokens: bool, request: wire_pb2.WireRequest | None,
                   decision: decision_pb2.RouteDecision, estimated_input_tokens: int = 0,
                   ) -> tuple[list[candidate_pb2.Candidate], ModelEntry, decision_pb2.RouteDecision]:
        if self.policies is None or self.classifier is None:
            raise SluiceError(Reason.MODEL_NOT_FOUND, f"model: {alias}", metadata={"model": alias})
        if request is None or not request.body:
            raise SluiceError.bad_request("model", f"routing alias {alias!r} needs the request body")
        parsed = MessagesRequest(request.body, request.anthropic_version, tuple(request.anthropic_beta),
                                 count_tokens=count_tokens, exact=False)
        metadata = parsed.doc.get("metadata")
        user = metadata.get("user_id") if isinstance(metadata, dict) else None
        experiment = self.policies.experiment(alias, principal.tenant_id)
        if experiment is not None:
            arm = pol.arm_for(experiment[1], principal.tenant_id, user if isinstance(user, str) else "")
            policy_name, decision.experiment, decision.arm = self.policies.policy_of(arm), experiment[0], arm.name
        features = feats.extract(parsed, estimated_input_tokens or None)
        prediction = self.classifier.predict(features)
        candidates, model = self.decide(principal, policy_name, prediction, features, max_tokens, count_tokens,
                                        decision, (lambda _m: 0) if count_tokens else
                                        (lambda chosen: self._warm_tokens(principal, chosen, parsed)),
                                        observe=not count_tokens)
        return candidates, model, decision

    def decide(self, principal: principal_pb2.Principal, policy_name: str, prediction: Prediction,
               features: feats.Features, max_tokens: int, count_tokens: bool,
               decision: decision_pb2.RouteDecision, warm_tokens: Callable[[ModelEntry], int] = lambda _m: 0,
               observe: bool = True) -> tuple[list[candidate_pb2.Candidate], ModelEntry]:
        """The policy's choice for a classified request: fills `decision`,
        returns the candidates and the model; with `observe`, the cost
        controller counts the request. Replay calls this with what billing
        records kept of a request (its prediction and features). Raises
        SluiceError as `route` does."""
        if self.policies is None:
            raise SluiceError(Reason.MODEL_NOT_FOUND, f"model: {decision.requested}")
        policy = self.policies.policies.get(policy_name)
        if policy is None:  # a tenant alias naming a policy the file no longer has
            raise SluiceError(Reason.MODEL_NOT_FOUND, f"model: {decision.requested} (routing policy "
                              f"{policy_name!r} is not in policies {self.policies.version})",
                              metadata={"model": decision.requested})
        scopes: tuple[str, ...] = ((DEPLOYMENT, f"tenant:{principal.tenant_id}") if principal.cost_target_usd
                                   else (DEPLOYMENT,))
        shift = self.controller.shift(scopes)
        choice = pol.choose_tier(policy, prediction, features, shift, principal.tier)
        model, tier, reason = self._model_for(principal, policy, choice, max_tokens, count_tokens)
        decision.reason = reason
        candidates = self._candidates_for(principal, model, max_tokens, count_tokens, decision, "policy")
        decision.policy, decision.policy_version = policy_name, policy.version
        decision.policies_version = self.policies.version
        decision.task, decision.task_confidence = prediction.task, prediction.task_p
        decision.complexity, decision.complexity_confidence = prediction.complexity, prediction.complexity_p
        decision.tier, decision.floor = tier, choice.floor
        decision.cost_shift = shift
        decision.classifier_version = self.classifier.version if self.classifier is not None else ""
        decision.prompt_tokens, decision.tools, decision.media = features.prompt_tokens, features.tools, features.media
        decision.thinking, decision.turns = features.thinking, features.turns
        output = policy.tasks[prediction.task].output_tokens
        decision.estimated_cost_usd = estimate_cost(
            candidates[0].prices, features.prompt_tokens, min(output, max_tokens) if max_tokens else output,
            warm_tokens(model))
        if observe:
            self.controller.observe(DEPLOYMENT, self.cost_target_usd, decision.estimated_cost_usd)
            if principal.cost_target_usd:
                self.controller.observe(scopes[1], principal.cost_target_usd, decision.estimated_cost_usd)
        _export(decision, features)
        return candidates, model

    def _model_for(self, principal: principal_pb2.Principal, policy: pol.Policy, choice: pol.Choice,
                   max_tokens: int, count_tokens: bool) -> tuple[ModelEntry, str, str]:
        """The chosen tier's first model the tenant may use; failing that the
        nearest tier's (lower ones first, never below the floor, then
        higher). Raises INVALID_REQUEST naming max_tokens when only the
        request's max_tokens rules the usable models out (as for a named
        model), MODEL_NOT_ALLOWED when no tier has one."""
        wanted = pol.rank(choice.tier)
        floor = pol.rank(choice.floor)
        order = [wanted, *range(wanted - 1, floor - 1, -1), *range(wanted + 1, 3)]
        now = self._clock()
        largest = 0
        for rank in order:
            tier = TIERS[rank]
            for model_id in policy.tiers[tier]:
                model = self.catalog.lookup(model_id)
                if (model is None or not self._live_for(principal, model, now)
                        or not self.deployments.serving(model, self.region)):
                    continue
                if count_tokens or max_tokens <= model.max_output_tokens:
                    return model, tier, choice.reason if rank == wanted else "available"
                largest = max(largest, model.max_output_tokens)
        if largest:
            raise SluiceError.bad_request("max_tokens", f"{max_tokens} > {largest}, which is the maximum allowed "
                                          "number of output tokens of the models this routing policy may use")
        raise SluiceError(Reason.MODEL_NOT_ALLOWED, "no model of this routing policy is available to this tenant "
                          "in its region", metadata={"region": self.region})

    def _warm_tokens(self, principal: principal_pb2.Principal, model: ModelEntry, parsed: MessagesRequest) -> int:
        """Tokens of the request's cached prefix that are likely warm: its
        last cache breakpoint's, when this process routed the same prefix
        (tools, system and the turns before the latest) of the same tenant
        to the same model within the breakpoint's ttl. Remembers it."""
        breakpoints = parsed.cache_breakpoints()
        if not breakpoints:
            return 0
        doc = parsed.doc
        digest = hashlib.blake2b(orjson.dumps([principal.tenant_id, model.id, doc.get("tools"), doc.get("system"),
                                               doc["messages"][:-1]], default=str), digest_size=16).digest()
        now = self._monotonic()
        tokens, ttl = breakpoints[-1]
        warm = self._warm.get(digest, 0.0) > now
        if len(self._warm) >= _WARM_MAX:
            self._warm = {k: v for k, v in self._warm.items() if v > now}
            if len(self._warm) >= _WARM_MAX:
                self._warm.clear()
        self._warm[digest] = now + _TTL_SECONDS.get(ttl, 300.0)
        return tokens if warm else 0

    def info(self, model: ModelEntry) -> model_pb2.ModelInfo:
        """What a route answer says of its model, built once per model and
        day (it is on every request's path; the lifecycle changes only with
        the date): model_info without the Models API object and aliases,
        which the gateway does not read there."""
        now = self._clock()
        key = (model.id, now.date())
        found = self._infos.get(key)
        if found is None:
            if len(self._infos) > 4 * len(self.catalog.models):
                self._infos.clear()
            found = self._infos[key] = model_info(model, now)
            found.ClearField("json")
            found.ClearField("aliases")
        return found

    def _check_region(self, principal: principal_pb2.Principal) -> None:
        if principal.region != self.region:
            raise SluiceError(
                Reason.WRONG_REGION,
                f"tenant {principal.tenant_id} belongs to region {principal.region}; "
                f"this deployment serves {self.region}",
            )

    @staticmethod
    def _check_allowed(principal: principal_pb2.Principal, model: ModelEntry) -> None:
        allowed = principal.allowed_models
        if allowed and model.id not in allowed and not set(model.aliases) & set(allowed):
            raise SluiceError(Reason.MODEL_NOT_ALLOWED, f"model {model.id} is not enabled for this tenant",
                              metadata={"model": model.id})
        if principal.tier not in model.tiers:
            raise SluiceError(Reason.MODEL_NOT_ALLOWED, f"model {model.id} is not available on the {principal.tier} tier",
                              metadata={"model": model.id})
        if principal.region not in model.regions:
            raise SluiceError(Reason.MODEL_NOT_ALLOWED, f"model {model.id} is not available in region {principal.region}",
                              metadata={"model": model.id})

    # -- the Models API ---------------------------------------------------------------

    def _live_for(self, principal: principal_pb2.Principal, model: ModelEntry | None, now: datetime) -> bool:
        """The model exists, the tenant may use it and it has not retired:
        what a fallback or a policy's choice must be."""
        return model is not None and self._usable(principal, model) and model.lifecycle(now) != "retired"

    def _usable(self, principal: principal_pb2.Principal, model: ModelEntry) -> bool:
        try:
            self._check_allowed(principal, model)
        except SluiceError:
            return False
        return True

    def list_models(self, principal: principal_pb2.Principal, limit: int | None = None, before_id: str = "",
                    after_id: str = "", lifecycle: tuple[str, ...] = ()) -> tuple[list[model_pb2.ModelInfo], bool]:
        """One page of the models the tenant may use in its region, newest
        first (GET /v1/models): by default the active and deprecated ones,
        or those of the lifecycles asked for. Raises SluiceError(INVALID_REQUEST)
        naming the parameter for a bad limit, both cursors at once, a cursor
        that names no listed model, or an unknown lifecycle."""
        self._check_region(principal)
        now = self._clock()
        try:
            shown = models_api.lifecycles(lifecycle)
            listed = [m for m in self.catalog.newest_first()
                      if self._usable(principal, m) and m.lifecycle(now) in shown]
            chosen, more = models_api.page(listed, limit or None, after_id, before_id)  # 0: unset
        except models_api.PageError as err:
            raise SluiceError.bad_request(err.field, err.message) from None
        return [model_info(m, now) for m in chosen], more

    def get_model(self, principal: principal_pb2.Principal, name: str) -> model_pb2.ModelInfo:
        """The model with this id or alias, retired ones included (they stay
        in the catalogue as the record of their retirement). Raises
        SluiceError(NOT_FOUND, "model: <name>") for a model the tenant may
        not use in its region, as for one that does not exist."""
        self._check_region(principal)
        model = self.catalog.lookup(name)
        if model is None or not self._usable(principal, model):
            raise SluiceError(Reason.MODEL_NOT_FOUND, f"model: {name}", metadata={"model": name})
        return model_info(model, self._clock())


def estimate_cost(prices: candidate_pb2.Prices, input_tokens: int, output_tokens: int, warm_tokens: int = 0) -> float:
    """USD a request is expected to cost: its input at the input price
    (the warm prefix at the cache-read price), `output_tokens` at the output
    price; billing's own pricing function (sluice.catalog.pricing)."""
    warm = min(warm_tokens, input_tokens)
    usage = messages_pb2.Usage(input_tokens=input_tokens - warm, cache_read_input_tokens=warm,
                               output_tokens=output_tokens)
    return usd(cost_micro_usd(usage, prices))


_CHILDREN: dict[tuple[object, ...], object] = {}


def _child(metric: Any, *labels: str) -> Any:
    """A labelled metric, looked up once (prometheus_client's labels() takes a
    lock and builds a key on every call; these are on every routed request)."""
    key = (metric, *labels)
    found = _CHILDREN.get(key)
    if found is None:
        found = _CHILDREN[key] = metric.labels(*labels)
    return found


def _export(decision: decision_pb2.RouteDecision, features: feats.Features) -> None:
    """The decision and what the classifier saw, as metrics (drift shows as
    a moving distribution)."""
    _child(metrics.ROUTE_DECISIONS, decision.policy, decision.tier, decision.reason).inc()
    _child(metrics.ROUTE_PREDICTED, decision.task, decision.complexity).inc()
    metrics.ROUTE_PROMPT_TOKENS.observe(features.prompt_tokens)
    metrics.ROUTE_CLASSIFIER_CONFIDENCE.observe(decision.task_confidence)
    for name, present in (("tools", features.tools), ("media", features.media), ("thinking", features.thinking),
                          ("multi_turn", features.turns > 1)):
        if present:
            _child(metrics.ROUTE_FEATURES, name).inc()


def model_info(model: ModelEntry, now: datetime) -> model_pb2.ModelInfo:
    """The typed ModelInfo, with `json` the Models API object."""
    obj = models_api.model_object(model, now)
    info = model_pb2.ModelInfo(
        id=model.id, display_name=model.display_name, lifecycle=obj["lifecycle"],
        max_input_tokens=model.context_window, max_tokens=model.max_output_tokens, line=model.line or "",
        aliases=model.aliases, json=jsontext.dumps(obj).encode("utf-8"),
    )
    info.created_at.FromDatetime(models_api.midnight(model.created_at))
    if obj["deprecated_at"] and model.deprecated_at:
        info.deprecated_at.FromDatetime(models_api.midnight(model.deprecated_at))
    if obj["retires_at"] and model.retires_at:
        info.retires_at.FromDatetime(models_api.midnight(model.retires_at))
    return info


def _candidate(model: ModelEntry, serving: Serving, reason: str) -> candidate_pb2.Candidate:
    p, dep = model.prices, serving.deployment
    k = dep.price_multiplier
    return candidate_pb2.Candidate(
        model_id=model.id,
        provider=dep.provider,
        upstream_model=serving.provider_model,
        region=dep.region,
        prices=candidate_pb2.Prices(
            input=p.input * k, output=p.output * k, cache_write_5m=p.cache_write_5m * k,
            cache_write_1h=p.cache_write_1h * k, cache_read=p.cache_read * k,
            server_tool_use={name: price * k for name, price in p.server_tool_use.items()},
        ),
        context_window=model.context_window,
        max_output_tokens=model.max_output_tokens,
        deployment=serving.deployment_id,
        geo=dep.geo,
        inference_geo=dep.inference_geo,
        reason=reason,
        accepts_prefill=model.accepts.prefill,
    )

