"""`routing`: the default model, policies, classifier, cost controller, fleet exchange."""

from __future__ import annotations

from pydantic import Field

from sluice.config.base import Section


class RoutingSettings(Section):
    # Model for requests that name none and whose tenant sets no default.
    default_model: str = "claude-sonnet-4-6"
    # Longest candidate list (deployments of the model, then of its
    # fallbacks) handed to inference.
    max_candidates: int = Field(6, ge=1, le=64)
    # Routing policies YAML (aliases such as "auto", experiments); empty =
    # the policies shipped with Sluice.
    policies_path: str = ""
    # Task classifier artifact, the path without its .npz/.json suffix;
    # empty = the one shipped with Sluice (`sluice routing train` builds it).
    classifier_path: str = ""
    # Target blended cost per policy-routed request of the whole deployment,
    # USD (the design review's $0.012); tenants may set their own on top.
    cost_target_usd: float = Field(0.012, gt=0, le=100)
    # The cost controller's step per request at twice the target (see
    # sluice.routing.controller): larger reacts faster and wobbles more.
    cost_controller_gain: float = Field(0.01, gt=0, le=1)
    # How often latency history, breaker state and the cost shift are
    # exchanged with the region's Redis (auth.redis_url), seconds.
    fleet_interval_seconds: float = Field(1.0, gt=0, le=60)
    # Latency history read by routing: the mean of the last this many minutes.
    latency_window_minutes: int = Field(5, ge=1, le=60)
    # Who shares latency history, breaker state and the cost shift: the
    # replicas with the same scope on the same Redis. Empty = the region
    # (one Sluice deployment per region); set it when two deployments of one
    # region share a Redis (staging beside production).
    fleet_scope: str = Field("", pattern=r"^[a-z0-9_-]{0,63}$")
