"""`gateway`: the Anthropic-compatible HTTP facade and overload shedding."""

from __future__ import annotations

from pydantic import Field, field_validator

from sluice.config.base import Section, check_address, check_class_shares


class GatewaySettings(Section):
    # Anthropic-compatible HTTP facade, host:port.
    http_listen: str = "127.0.0.1:8080"
    # Deadline for a request whose client set none, seconds.
    default_timeout_seconds: float = Field(600.0, gt=0)
    # Largest HTTP request body accepted; larger gets 413 request_too_large.
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    # Deadline for each of auth, safety, cache and routing, seconds.
    stage_timeout_seconds: float = Field(2.0, gt=0)
    # While a stream is silent (the model thinking, a server tool running),
    # a `ping` event is sent this often, seconds, so that proxies with idle
    # timeouts keep the connection; 0 turns Sluice's own pings off. The
    # upstream's pings are relayed either way.
    stream_ping_interval_seconds: float = Field(10.0, ge=0)
    # Overload: utilisation is the larger of in-flight requests / max_in_flight
    # and event-loop lag / overload_lag_seconds; a request is shed (529 with
    # retry-after) when utilisation reaches its class's threshold: class 0
    # (enterprise) only at 1.0, background work first.
    max_in_flight: int = Field(4096, ge=1)
    overload_lag_seconds: float = Field(0.5, gt=0)
    shed_thresholds: dict[int, float] = {0: 1.0, 1: 0.9, 2: 0.75, 3: 0.6}

    _v_listen = field_validator("http_listen")(check_address)
    _v_thresholds = field_validator("shed_thresholds")(check_class_shares)
