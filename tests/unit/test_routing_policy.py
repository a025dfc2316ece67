"""Routing by policy (issue 15): each signal, policy evaluation, the cost
controller, experiments, health and latency from the fleet view."""

from __future__ import annotations

import json
import math
import random
import statistics
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.auth.v1.principal_pb2 import Principal
from sluice.catalog import load_catalog
from sluice.catalog.catalog import CatalogError
from sluice.catalog.deployments import load_deployments
from sluice.llm.v1 import wire_pb2
from sluice.routing import features as feats
from sluice.routing.classifier import TASKS, Prediction, TaskClassifier
from sluice.routing.controller import DEPLOYMENT, CostController
from sluice.routing.core import Router, estimate_cost
from sluice.routing.policy import arm_for, choose_tier, load_policies, rank
from sluice.routing.v1 import decision_pb2
from sluice.rpc.errors import Reason, SluiceError
from sluice.storage.fleet import Latency, Snapshot
from sluice.wire.request import MessagesRequest

CATALOG = load_catalog()
DEPLOYMENTS = load_deployments(CATALOG)
POLICIES = load_policies(CATALOG)
AUTO = POLICIES.policies["auto"]


def request(body: dict) -> MessagesRequest:
    return MessagesRequest(json.dumps({"model": "auto", "max_tokens": 256, **body}).encode(), exact=False)


def features(**body) -> feats.Features:
    return feats.extract(request(body))


def principal(**kw) -> Principal:
    base = dict(tenant_id="t", tier="enterprise", region="local")
    base.update(kw)
    return Principal(**base)


def prediction(task: str = "simple_qa", complexity: str = "low", at_least: float = 1.0) -> Prediction:
    return Prediction(task, 0.9, complexity, 0.9, at_least)


class FixedClassifier:
    """A classifier that answers what the test says (the router's port)."""

    version = "fixed"

    def __init__(self, answer: Prediction) -> None:
        self.answer = answer

    def predict(self, _features: feats.Features) -> Prediction:
        return self.answer


def router(region: str = "local", answer: Prediction | None = None, **kw) -> Router:
    return Router(CATALOG, DEPLOYMENTS, region, "claude-sonnet-4-6", policies=kw.pop("policies", POLICIES),
                  classifier=FixedClassifier(answer or prediction()), **kw)


def wire(body: dict | None = None, **extra) -> wire_pb2.WireRequest:
    body = {"model": "auto", "max_tokens": 256, "messages": [{"role": "user", "content": "hi"}], **(body or {}),
            **extra}
    return wire_pb2.WireRequest(body=json.dumps(body).encode())


# -- features: each signal --------------------------------------------------------------


def test_features_read_the_latest_user_turn_and_count_turns():
    f = features(messages=[{"role": "user", "content": "translate hello"},
                           {"role": "assistant", "content": "hola"},
                           {"role": "user", "content": [{"type": "text", "text": "Summarise the report"}]}])
    assert f.turns == 2 and not (f.tools or f.media or f.thinking)
    assert "summarise" in f.tokens and "translate" not in f.tokens  # the latest turn is the task
    assert "summarise the" in f.tokens  # word bigrams
    assert "#turns:2" in f.tokens


@pytest.mark.parametrize("body,flag", [
    ({"tools": [{"name": "x", "input_schema": {"type": "object"}}]}, "tools"),
    ({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a", "content": "ok"}]}]},
     "tools"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64",
                                                                             "media_type": "image/png",
                                                                             "data": "AAAA"}}]}]}, "media"),
    ({"messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "base64",
                                                                                "media_type": "application/pdf",
                                                                                "data": "AAAA"}}]}]}, "media"),
    ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, "thinking"),
])
def test_each_prompt_signal_is_read(body, flag):
    body.setdefault("messages", [{"role": "user", "content": "go"}])
    f = features(**body)
    assert getattr(f, flag) is True
    assert f"#{flag}" in f.tokens


def test_a_text_document_is_not_media_and_its_text_is_read():
    f = features(messages=[{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Quarterly revenue"}},
        {"type": "text", "text": "extract the figures"}]}])
    assert not f.media and "quarterly" in f.tokens and "extract" in f.tokens


def test_length_is_bucketed_and_cjk_is_read_as_bigrams():
    short = features(messages=[{"role": "user", "content": "hi"}])
    long = features(messages=[{"role": "user", "content": "word " * 3000}])
    assert "#len:0" in short.tokens and "#len:4" in long.tokens
    assert long.prompt_tokens > 700
    cjk = features(messages=[{"role": "user", "content": "この文章を要約してください"}])
    assert "要約" in cjk.tokens


def test_the_classifier_reads_a_bounded_text():
    text = "alpha " * 20_000 + "omega"
    f = features(messages=[{"role": "user", "content": text}])
    assert "omega" in f.tokens  # the tail is read
    assert len(f.tokens) < 50


# -- policy evaluation -------------------------------------------------------------------------


def test_task_and_complexity_choose_the_tier():
    f = features(messages=[{"role": "user", "content": "x"}])
    assert choose_tier(AUTO, prediction("simple_qa", "low"), f, 0, "enterprise").tier == "fast"
    assert choose_tier(AUTO, prediction("code_generation", "medium"), f, 0, "enterprise").tier == "balanced"
    choice = choose_tier(AUTO, prediction("complex_reasoning", "high"), f, 0, "enterprise")
    assert (choice.tier, choice.reason, choice.floor) == ("top", "task", "balanced")


def test_a_signal_raises_the_tier():
    thinking = features(messages=[{"role": "user", "content": "x"}], thinking={"type": "enabled",
                                                                                "budget_tokens": 2048})
    choice = choose_tier(AUTO, prediction("simple_qa", "low"), thinking, 0, "enterprise")
    assert (choice.tier, choice.reason) == ("balanced", "signal")


def test_cost_shift_moves_only_borderline_requests_and_never_below_the_floor():
    f = features(messages=[{"role": "user", "content": "x"}])
    sure = prediction("code_generation", "high", at_least=0.95)
    unsure = prediction("code_generation", "high", at_least=0.55)
    assert choose_tier(AUTO, sure, f, 0.6, "enterprise").tier == "top"
    moved = choose_tier(AUTO, unsure, f, 0.6, "enterprise")
    assert (moved.tier, moved.reason, moved.borderline) == ("balanced", "cost", True)
    # code_review's floor is balanced: a full shift cannot take it lower.
    assert choose_tier(AUTO, prediction("code_review", "low", 0.1), f, 1.0, "enterprise").tier == "balanced"
    for task in TASKS:
        for level in ("low", "medium", "high"):
            tier = choose_tier(AUTO, prediction(task, level, 0.0), f, 1.0, "enterprise").tier
            assert rank(tier) >= rank(AUTO.tasks[task].floor)


def test_customer_tier_ceiling():
    f = features(messages=[{"role": "user", "content": "x"}])
    choice = choose_tier(AUTO, prediction("legal_analysis", "high"), f, 0, "free")
    assert (choice.tier, choice.reason) == ("balanced", "ceiling")


def test_policies_file_is_checked(tmp_path: Path):
    bad = tmp_path / "p.yaml"
    bad.write_text("version: '1'\naliases: {auto: nope}\npolicies: {}\n")
    with pytest.raises(CatalogError, match="no policy 'nope'"):
        load_policies(CATALOG, bad)
    bad.write_text("version: '1'\naliases: {claude-opus-4-6: auto}\npolicies:\n  auto:\n    version: 1\n"
                   "    tiers: {fast: [claude-haiku-4-5], balanced: [claude-sonnet-4-6], top: [claude-nope]}\n"
                   "    tasks: {}\n")
    with pytest.raises(CatalogError) as err:
        load_policies(CATALOG, bad)
    assert "missing" in str(err.value)


def test_experiment_arms_are_sticky_and_weighted():
    from sluice.routing.policy import Arm, Experiment

    experiment = Experiment(alias="auto", arms=[Arm(name="a", policy="auto", weight=80),
                                                Arm(name="b", policy="frugal", weight=20)])
    arms = [arm_for(experiment, "t", f"user-{i}").name for i in range(4000)]
    assert abs(arms.count("a") / 4000 - 0.8) < 0.03
    assert all(arm_for(experiment, "t", f"user-{i}").name == arms[i] for i in range(200))  # sticky


# -- the router -----------------------------------------------------------------------------------


def test_auto_routes_by_task_and_names_the_decision():
    r = router(answer=prediction("simple_qa", "low"))
    candidates, model, decision = r.route(principal(), "auto", 256, request=wire())
    assert model.id == "claude-haiku-4-5" and candidates[0].model_id == "claude-haiku-4-5"
    assert (decision.policy, decision.tier, decision.reason, decision.task) == ("auto", "fast", "task", "simple_qa")
    assert decision.estimated_cost_usd > 0 and decision.policies_version == POLICIES.version
    top = router(answer=prediction("complex_reasoning", "high")).route(principal(), "auto", 256, request=wire())
    assert top[1].id == "claude-opus-4-6" and top[2].tier == "top"


def test_named_models_route_as_before_and_say_so():
    _candidates, model, decision = router().route(principal(), "claude-sonnet-4-6", 256)
    assert model.id == "claude-sonnet-4-6" and decision.reason == "requested" and not decision.policy


def test_tenant_aliases_and_model_map():
    r = router(answer=prediction("translation", "high"))
    _c, model, decision = r.route(principal(routing_aliases={"support-bot": "frugal"}), "support-bot", 256,
                                  request=wire())
    assert (decision.policy, model.id) == ("frugal", "claude-sonnet-4-6")  # frugal: high translation -> balanced
    _c, model, decision = r.route(principal(model_map={"claude-opus-4-6": "auto"}), "claude-opus-4-6", 256,
                                  request=wire())
    assert decision.policy == "auto" and decision.requested == "claude-opus-4-6"
    _c, model, decision = r.route(principal(model_map={"claude-opus-4-6": "claude-haiku-4-5"}), "claude-opus-4-6")
    assert (model.id, decision.reason) == ("claude-haiku-4-5", "mapped")


def test_an_alias_without_a_body_or_a_policy_is_refused():
    with pytest.raises(SluiceError) as err:
        router().route(principal(), "auto", 256)
    assert err.value.reason is Reason.INVALID_REQUEST
    with pytest.raises(SluiceError) as err:
        router().route(principal(routing_aliases={"x": "gone"}), "x", 256, request=wire())
    assert err.value.reason is Reason.MODEL_NOT_FOUND


def test_a_tier_without_a_usable_model_takes_the_nearest():
    r = router(answer=prediction("legal_analysis", "high"))
    _c, model, decision = r.route(principal(tier="standard", allowed_models=["claude-sonnet-4-6",
                                                                              "claude-haiku-4-5"]),
                                  "auto", 256, request=wire())
    assert (model.id, decision.tier, decision.reason) == ("claude-sonnet-4-6", "balanced", "available")


def test_an_eu_tenants_candidates_are_all_eu():
    r = router("eu-west-1", answer=prediction("complex_reasoning", "high"))
    candidates, _m, _d = r.route(principal(region="eu-west-1"), "auto", 256, request=wire())
    assert candidates and {c.geo for c in candidates} == {"eu"}


def test_an_unhealthy_deployment_is_skipped_and_a_slow_one_goes_last():
    r = router(max_candidates=64)
    before, _m, _d = r.route(principal(), "claude-sonnet-4-6")
    assert before[0].deployment == "anthropic-global"
    r.adopt(Snapshot(unhealthy=frozenset({"anthropic-global"})))
    after, _m, decision = r.route(principal(), "claude-sonnet-4-6")
    assert "anthropic-global" not in [c.deployment for c in after]
    assert "anthropic-global" in decision.unhealthy
    lat = {"anthropic-global": Latency(3.0, 50, 40, 50), "anthropic-us": Latency(0.4, 50, 60, 50)}
    r.adopt(Snapshot(latency=lat))
    slow, _m, _d = r.route(principal(), "claude-sonnet-4-6")
    names = [c.deployment for c in slow if c.model_id == "claude-sonnet-4-6"]
    assert names[0] == "anthropic-us" and names.index("anthropic-global") > names.index("vertex-us-east5")
    r.adopt(Snapshot(latency={"anthropic-global": Latency(0.4, 50, 20, 50), "anthropic-us": Latency(0.4, 50, 90, 50)}))
    by_rate = [c.deployment for c in r.route(principal(), "claude-sonnet-4-6")[0]]
    assert by_rate[0] == "anthropic-us" and by_rate.index("anthropic-global") > 1  # a quarter of the output rate


def test_every_deployment_unhealthy_leaves_the_list_to_inference():
    r = router("eu-west-1")
    eu = {c.deployment for c in r.route(principal(region="eu-west-1"), "claude-sonnet-4-6")[0]}
    r.adopt(Snapshot(unhealthy=frozenset(eu)))
    assert {c.deployment for c in r.route(principal(region="eu-west-1"), "claude-sonnet-4-6")[0]} == eu


def test_experiment_on_an_alias_records_the_arm(tmp_path: Path):
    text = resources.files("sluice.catalog").joinpath("policies.yaml").read_text()
    text = text.replace("experiments: {}", "experiments:\n  frugal-test:\n    alias: auto\n    arms:\n"
                        "      - {name: control, policy: auto, weight: 1}\n"
                        "      - {name: frugal, policy: auto-frugal, weight: 1}\n")  # an arm may name an alias
    path = tmp_path / "policies.yaml"
    path.write_text(text)
    r = router(policies=load_policies(CATALOG, path), answer=prediction("translation", "high"))
    seen = {}
    for i in range(400):
        _c, model, d = r.route(principal(), "auto", 256, request=wire(metadata={"user_id": f"u{i}"}))
        seen.setdefault(d.arm, set()).add((d.policy, model.id))
        assert d.experiment == "frugal-test"
    assert seen == {"control": {("auto", "claude-opus-4-6")}, "frugal": {("frugal", "claude-sonnet-4-6")}}


def test_a_warm_prefix_is_priced_at_the_cache_read_price():
    r = router(answer=prediction("rag_answer", "low"))
    system = [{"type": "text", "text": "reference " * 4000, "cache_control": {"type": "ephemeral"}}]
    first = r.route(principal(), "auto", 256, request=wire(system=system))[2].estimated_cost_usd
    second = r.route(principal(), "auto", 256, request=wire(system=system))[2].estimated_cost_usd
    assert second < first / 3


def test_estimate_cost_uses_catalog_prices():
    candidate = router().route(principal(), "claude-haiku-4-5")[0][0]
    assert estimate_cost(candidate.prices, 1_000_000, 0) == pytest.approx(1.0)
    assert estimate_cost(candidate.prices, 1_000_000, 0, 1_000_000) == pytest.approx(0.1)


# -- the cost controller --------------------------------------------------------------------------


def test_controller_integrates_clamps_and_shares():
    c = CostController(gain=0.1, export=False)
    c.observe(DEPLOYMENT, 0.01, 0.03)  # 3x target: +0.2
    assert c.shift([DEPLOYMENT]) == pytest.approx(0.2)
    for _ in range(50):
        c.observe(DEPLOYMENT, 0.01, 0.0)
    assert c.shift([DEPLOYMENT]) == 0.0  # clamped, no stored credit
    c.observe("tenant:t", 0.01, 0.02)
    assert c.shift([DEPLOYMENT, "tenant:t"]) == pytest.approx(0.1)
    steps = c.drain()
    assert steps["tenant:t"] == pytest.approx(0.1) and c.drain() == {}
    c.adopt({"tenant:t": 0.5})  # another replica pushed it further
    assert c.shift(["tenant:t"]) == pytest.approx(0.5)
    c.take_back("tenant:t", 0.1)
    assert c.drain() == {"tenant:t": pytest.approx(0.1)}


def test_one_huge_request_cannot_push_everyone_down_a_tier():
    c = CostController(gain=0.01, export=False)
    c.observe(DEPLOYMENT, 0.012, 5.0)  # a 1.8 MB prompt on the top tier: 400 times the target
    assert c.shift([DEPLOYMENT]) == pytest.approx(0.09)  # counted as 10 times the target at most


def synthetic_trace(n: int, seed: int = 7):
    """(task, labelled complexity, prediction, prompt tokens) of n requests:
    tasks uniform, complexity 45/35/20 low/medium/high, the classifier's
    confidence uniform in [0.4, 1], prompts log-normal around 650 tokens."""
    rng = random.Random(seed)
    for _ in range(n):
        task = rng.choice(TASKS)
        level = rng.choices(("low", "medium", "high"), (0.45, 0.35, 0.2))[0]
        confidence = rng.uniform(0.4, 1.0)
        yield task, level, Prediction(task, 0.9, level, confidence, confidence if level != "low" else 1.0), \
            int(math.exp(rng.gauss(6.5, 1.2)))


def test_controller_holds_a_10000_request_trace_within_5_percent_keeping_complex_requests_at_their_floor():
    target = 0.008  # below what the policy would spend unchecked (about 0.0104 on this trace)
    r = router(controller=CostController(gain=0.01, export=False), cost_target_usd=target)
    costs, shifted = [], 0
    for task, level, pred, tokens in synthetic_trace(10_000):
        decision = decision_pb2.RouteDecision(requested="auto")
        r.decide(principal(), "auto", pred, feats.Features(tokens, False, False, False, 1, ()), 4096, False,
                 decision)
        costs.append(decision.estimated_cost_usd)
        shifted += decision.reason == "cost"
        if level == "high":
            assert rank(decision.tier) >= rank(AUTO.tasks[task].floor)
    held = costs[1000:]  # after the first thousand: the controller has found its level
    assert abs(statistics.mean(held) / target - 1) <= 0.05
    for start in range(0, len(held), 3000):
        window = held[start:start + 3000]
        assert abs(statistics.mean(window) / target - 1) <= 0.05, start
    assert shifted > 1000


def test_controller_gives_quality_back_when_under_target():
    r = router(controller=CostController(gain=0.01, export=False), cost_target_usd=0.008)
    for _task, _level, pred, tokens in synthetic_trace(3000):
        r.decide(principal(), "auto", pred, feats.Features(tokens, False, False, False, 1, ()), 4096, False,
                 decision_pb2.RouteDecision())
    assert r.controller.shift([DEPLOYMENT]) > 0.3
    r.cost_target_usd = 1.0  # far above what anything costs
    for _task, _level, pred, tokens in synthetic_trace(3000, seed=8):
        r.decide(principal(), "auto", pred, feats.Features(tokens, False, False, False, 1, ()), 4096, False,
                 decision_pb2.RouteDecision())
    assert r.controller.shift([DEPLOYMENT]) == 0.0


# -- any input ---------------------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
        ["type", "text", "content", "role", "source", "data", "thinking", "tools", "metadata", "user_id",
         "cache_control", "system", "messages", "x"]), inner, max_size=4),
    max_leaves=25)


REAL = Router(CATALOG, DEPLOYMENTS, "local", "claude-sonnet-4-6", policies=POLICIES, classifier=TaskClassifier.load())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "x"]),
                                                "content": _json}), max_size=4),
       extra=st.dictionaries(st.sampled_from(["system", "tools", "thinking", "metadata", "cache_control"]), _json,
                             max_size=3))
def test_any_request_routes_or_is_refused_with_a_sluice_error(messages, extra):
    """Whatever the body holds, routing an alias answers with candidates or
    a SluiceError (a 4xx), never another exception."""
    r = REAL
    body = json.dumps({"model": "auto", "max_tokens": 256, "messages": messages, **extra}).encode()
    try:
        candidates, _m, decision = r.route(principal(), "auto", 256, request=wire_pb2.WireRequest(body=body))
    except SluiceError as err:
        assert err.reason is Reason.INVALID_REQUEST
        return
    assert candidates and decision.policy == "auto"
    parsed = MessagesRequest(body, exact=False)
    assert feats.extract(parsed).turns >= 1


# -- checks of hostile or mistaken configuration --------------------------------------------------------


def test_policies_refuse_a_ceiling_below_a_floor_an_infinite_weight_and_two_experiments_on_one_alias(tmp_path):
    shipped = resources.files("sluice.catalog").joinpath("policies.yaml").read_text()
    cases = {
        "below the floor of": shipped.replace("    ceilings:\n      free: balanced\n  # The same",
                                              "    ceilings:\n      free: fast\n  # The same"),
        "weight": shipped.replace("experiments: {}", "experiments:\n  e:\n    alias: auto\n    arms:\n"
                                  "      - {name: a, policy: auto, weight: .inf}\n"
                                  "      - {name: b, policy: frugal, weight: 1}\n"),
        "already has experiment": shipped.replace("experiments: {}", "experiments:\n" + "".join(
            f"  e{i}:\n    alias: auto\n    arms:\n      - {{name: a, policy: auto, weight: 1}}\n"
            f"      - {{name: b, policy: frugal, weight: 1}}\n" for i in (1, 2))),
    }
    for expected, text in cases.items():
        assert text != shipped, expected
        path = tmp_path / "p.yaml"
        path.write_text(text)
        with pytest.raises(CatalogError, match=expected):
            load_policies(CATALOG, path)


def test_tenant_routing_is_checked_against_policies_and_catalog():
    from sluice.config.tenants import TenantRouting
    from sluice.routing.policy import check_tenants

    tenants = {"ok": TenantRouting(aliases={"support-bot": "frugal"}, model_map={"claude-opus-4-6": "support-bot"}),
               "bad": TenantRouting(aliases={"claude-haiku-4-5": "auto", "ghost": "nosuch"},
                                    model_map={"claude-opus-4-6": "nowhere"})}
    problems = check_tenants(POLICIES, CATALOG, tenants, ["free", "standard", "enterprise"])
    assert len(problems) == 3 and all(p.startswith("tenants.bad.") for p in problems), problems
    assert check_tenants(POLICIES, CATALOG, {}, ["standard"])  # the policies' ceiling names tier "free"


def test_a_tenant_alias_cannot_take_over_a_model_name():
    _c, model, decision = router().route(principal(routing_aliases={"claude-haiku-4-5": "auto"}),
                                         "claude-haiku-4-5", 256, request=wire())
    assert model.id == "claude-haiku-4-5" and decision.reason == "requested"


def test_auto_with_a_max_tokens_no_model_takes_is_a_400_naming_max_tokens():
    with pytest.raises(SluiceError) as err:
        router().route(principal(), "auto", 500_000, request=wire(max_tokens=500_000))
    assert err.value.reason is Reason.INVALID_REQUEST and "max_tokens" in str(err.value.message) + str(
        err.value.metadata)


def test_a_damaged_classifier_is_a_config_error(tmp_path):
    import numpy as np

    from sluice.config import ConfigError
    from sluice.routing.classifier import ARTIFACT
    from sluice.routing.module import load_classifier

    card = Path(str(ARTIFACT) + ".json").read_text()
    for name, arrays in (("truncated", None), ("shape", {"intercepts": np.zeros(3)}),
                         ("nan", {"weights_nan": True})):
        stem = tmp_path / name
        (tmp_path / f"{name}.json").write_text(card)
        if arrays is None:
            (tmp_path / f"{name}.npz").write_bytes(Path(str(ARTIFACT) + ".npz").read_bytes()[:1000])
        else:
            with np.load(str(ARTIFACT) + ".npz") as data:
                parts = dict(data)
            if "intercepts" in arrays:
                parts["intercepts"] = arrays["intercepts"]
            else:
                parts["weights"] = parts["weights"].copy()
                parts["weights"][0, 0] = np.nan
            np.savez(tmp_path / f"{name}.npz", **parts)
        with pytest.raises(ConfigError):
            load_classifier(str(stem))


def test_the_gateways_estimate_is_taken_instead_of_walking_the_prompt_again():
    body = wire(messages=[{"role": "user", "content": "word " * 4000}])
    own = router().route(principal(), "auto", 256, request=body)[2].prompt_tokens
    given = router().route(principal(), "auto", 256, request=body, estimated_input_tokens=own)[2].prompt_tokens
    assert given == own == MessagesRequest(body.body).estimated_input_tokens()
