"""Routing policies: from a classified request to a capability tier.

The policies file (`libs/sluice/catalog/policies.yaml`, or
`routing.policies_path`) names aliases, experiments and policies. A policy
maps each task and complexity to a tier (fast, balanced, top), holds each
task at a floor, raises the tier for prompt signals (thinking, images or
documents, very long prompts), caps it per customer tier, and lists each
tier's models. `choose_tier` is the whole decision and is pure: the router,
replay and the tests run the same function.

The cost controller's `shift` (0..1) moves borderline requests one tier
down: a request is borderline when the classifier's probability that its
complexity is at least the predicted level is below the shift; it never
goes below the task's floor (nor below a signal's tier).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from sluice.catalog import Catalog
from sluice.catalog.catalog import CatalogError, parse_data_file
from sluice.config.tenants import TenantId, TenantRouting
from sluice.routing.classifier import COMPLEXITIES, TASKS, TIERS, Prediction
from sluice.routing.features import Features

Tier = Literal["fast", "balanced", "top"]
_RANK: dict[str, int] = {t: i for i, t in enumerate(TIERS)}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskRule(_Strict):
    low: Tier
    medium: Tier
    high: Tier
    floor: Tier
    # Output the task usually needs, tokens: the cost estimate's output
    # (capped by the request's max_tokens).
    output_tokens: int = Field(ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _v_floor(self) -> TaskRule:
        below = [level for level in COMPLEXITIES if _RANK[getattr(self, level)] < _RANK[self.floor]]
        if below:
            raise ValueError(f"{', '.join(below)}: tier below the floor {self.floor}")
        return self


class Signals(_Strict):
    """Tiers a prompt feature needs at least, whatever the task."""

    thinking: Tier = "balanced"
    media: Tier = "fast"
    long_prompt_tokens: int = Field(default=50_000, ge=1)
    long_prompt: Tier = "balanced"


class Policy(_Strict):
    version: int = Field(ge=1)
    tiers: dict[Tier, list[str]]
    tasks: dict[str, TaskRule]
    signals: Signals = Signals()
    # Highest tier per customer tier (e.g. free: balanced).
    ceilings: dict[str, Tier] = {}

    @model_validator(mode="after")
    def _v_ceilings(self) -> Policy:
        for customer_tier, ceiling in self.ceilings.items():
            below = [t for t, rule in self.tasks.items() if _RANK[ceiling] < _RANK[rule.floor]]
            if below:
                raise ValueError(f"ceilings.{customer_tier}: {ceiling} is below the floor of {', '.join(below)}")
        return self

    @model_validator(mode="after")
    def _v_complete(self) -> Policy:
        missing = [t for t in TASKS if t not in self.tasks]
        unknown = [t for t in self.tasks if t not in TASKS]
        if missing or unknown:
            raise ValueError(f"tasks: missing {missing or 'none'}, unknown {unknown or 'none'}")
        if set(self.tiers) != set(TIERS) or not all(self.tiers.values()):
            raise ValueError(f"tiers must list models for each of {', '.join(TIERS)}")
        return self


class Arm(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    # A policy, or an alias standing for one.
    policy: str
    weight: float = Field(gt=0, le=1e6, allow_inf_nan=False)


class Experiment(_Strict):
    alias: str
    # Empty: every tenant.
    tenants: list[TenantId] = []
    arms: list[Arm] = Field(min_length=2)


# Names that travel in the x-sluice-route header and metric labels.
Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]


class _PoliciesFile(_Strict):
    version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    aliases: dict[Name, Name]
    experiments: dict[Name, Experiment] = {}
    policies: dict[Name, Policy]


@dataclass(frozen=True)
class Choice:
    """A tier and why: reason is one of RouteDecision.reason's values."""

    tier: str
    floor: str
    reason: str
    borderline: bool


class Policies:
    """The parsed policies file (module doc)."""

    def __init__(self, parsed: _PoliciesFile, source: str) -> None:
        self.version = parsed.version
        self.aliases = dict(parsed.aliases)
        self.experiments = dict(parsed.experiments)
        self.policies = dict(parsed.policies)
        self.source = source
        # Experiments by alias, for the request path.
        self._by_alias: dict[str, list[tuple[str, Experiment]]] = {}
        for name, experiment in self.experiments.items():
            self._by_alias.setdefault(experiment.alias, []).append((name, experiment))

    def policy_of(self, arm: Arm) -> str:
        """The policy an arm runs (an arm may name an alias)."""
        return arm.policy if arm.policy in self.policies else self.aliases.get(arm.policy, arm.policy)

    def experiment(self, alias: str, tenant: str) -> tuple[str, Experiment] | None:
        """The experiment running on `alias` for `tenant`, if any (the
        first in the file's order)."""
        for name, experiment in self._by_alias.get(alias, ()):
            if not experiment.tenants or tenant in experiment.tenants:
                return name, experiment
        return None


def load_policies(catalog: Catalog, path: str | Path | None = None) -> Policies:
    """Loads and checks the policies file (or the built-in one). Raises
    CatalogError naming the file and field: a model no tier may use
    (unknown to the catalog), an alias, experiment arm or tenant alias
    naming no policy, an alias that is also a model id."""
    source, parsed = parse_data_file(path, "policies.yaml", "routing policies", _PoliciesFile)
    problems = []
    for name, policy in parsed.policies.items():
        for tier, models in policy.tiers.items():
            problems += [f"policies.{name}.tiers.{tier}: unknown model {m!r}" for m in models
                         if catalog.lookup(m) is None]
    for alias, policy_name in parsed.aliases.items():
        if policy_name not in parsed.policies:
            problems.append(f"aliases.{alias}: no policy {policy_name!r}")
        if catalog.lookup(alias) is not None:
            problems.append(f"aliases.{alias}: is a model id or alias in the catalog")
    for name, experiment in parsed.experiments.items():
        if experiment.alias not in parsed.aliases:
            problems.append(f"experiments.{name}.alias: no alias {experiment.alias!r}")
        problems += [f"experiments.{name}.arms: no policy or alias {arm.policy!r}" for arm in experiment.arms
                     if arm.policy not in parsed.policies and parsed.aliases.get(arm.policy) not in parsed.policies]
        if len({arm.name for arm in experiment.arms}) != len(experiment.arms):
            problems.append(f"experiments.{name}.arms: an arm name is used twice")
    seen: dict[str, list[tuple[str, set[str]]]] = {}
    for name, experiment in parsed.experiments.items():
        tenants = set(experiment.tenants)
        for other, other_tenants in seen.get(experiment.alias, []):
            if not tenants or not other_tenants or tenants & other_tenants:
                problems.append(f"experiments.{name}: alias {experiment.alias!r} already has experiment {other!r} "
                                "for some of the same tenants (only the first would run)")
        seen.setdefault(experiment.alias, []).append((name, tenants))
    if problems:
        raise CatalogError(f"{source}: " + "; ".join(problems))
    return Policies(parsed, source)


def check_tenants(policies: Policies, catalog: Catalog, tenants: Mapping[str, TenantRouting],
                  customer_tiers: Iterable[str]) -> list[str]:
    """Problems of the tenants' routing against the policies and catalog
    (for `sluice check-config`; tenants change at run time through the admin
    API, so the router only ever refuses a request): an alias that is a
    model name (model_map routes a model), an alias naming no policy, a
    model_map target that is neither a model nor an alias; and ceilings
    naming a customer tier auth does not define."""
    problems = []
    for tenant_id, routing in tenants.items():
        for alias, policy in routing.aliases.items():
            if catalog.lookup(alias) is not None:
                problems.append(f"tenants.{tenant_id}.routing.aliases.{alias}: is a model name; "
                                "route a model with routing.model_map")
            if policy not in policies.policies:
                problems.append(f"tenants.{tenant_id}.routing.aliases.{alias}: no routing policy {policy!r} "
                                f"in {policies.source}")
        for model, target in routing.model_map.items():
            if catalog.lookup(target) is None and target not in policies.aliases and target not in routing.aliases:
                problems.append(f"tenants.{tenant_id}.routing.model_map.{model}: {target!r} is neither a model "
                                "nor a routing alias")
    tiers = set(customer_tiers)
    for name, spec in policies.policies.items():
        problems += [f"{policies.source}: policies.{name}.ceilings.{tier}: no customer tier {tier!r} in auth.tiers"
                     for tier in spec.ceilings if tier not in tiers]
    return problems


def choose_tier(policy: Policy, prediction: Prediction, features: Features, shift: float,
                customer_tier: str) -> Choice:
    """The tier for a classified request (module doc). `shift` is the cost
    controller's, 0..1."""
    rule = policy.tasks[prediction.task]
    tier = _RANK[getattr(rule, prediction.complexity)]
    reason = "task"
    least = _RANK[rule.floor]
    signals = policy.signals
    for needed, applies in ((signals.thinking, features.thinking), (signals.media, features.media),
                            (signals.long_prompt, features.prompt_tokens >= signals.long_prompt_tokens)):
        if applies:
            least = max(least, _RANK[needed])
    if tier < least:
        tier, reason = least, "signal"
    borderline = tier > least and prediction.complexity_at_least < shift
    if borderline:
        tier, reason = tier - 1, "cost"
    ceiling = policy.ceilings.get(customer_tier)
    if ceiling is not None and tier > _RANK[ceiling]:
        tier, reason = _RANK[ceiling], "ceiling"
    return Choice(TIERS[tier], rule.floor, reason, borderline)


def arm_for(experiment: Experiment, tenant: str, user: str) -> Arm:
    """The arm of a (tenant, metadata.user_id): a SHA-256 of both, as a
    point in [0, total weight); the same user always lands in the same arm
    while the arms are unchanged."""
    digest = hashlib.sha256(f"{tenant}\0{user}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * sum(arm.weight for arm in experiment.arms)
    for arm in experiment.arms:
        if point < arm.weight:
            return arm
        point -= arm.weight
    return experiment.arms[-1]


def rank(tier: str) -> int:
    """0 (fast) .. 2 (top)."""
    return _RANK[tier]


__all__ = ["COMPLEXITIES", "Choice", "Policies", "Policy", "arm_for", "check_tenants", "choose_tier", "load_policies",
           "rank"]
