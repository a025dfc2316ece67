"""`simulator`: the upstream model simulator's pacing, failures and simulated deployments."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from sluice.config.base import Section, check_address

_SIM_DEPLOYMENT = re.compile(r"[A-Za-z0-9._-]{1,64}")


_SIM_OUTCOMES = ("ok", "slow", "midstream")


class SimulatedDeployment(Section):
    """One simulated provider deployment's behaviour (the simulator's
    ``/d/{deployment}/...`` routes; ``PUT /_sim/deployments/{deployment}``
    takes the same fields as JSON)."""

    # Endpoint region the deployment is in; when set, a Vertex path location
    # or a SigV4 credential-scope region that differs is refused (404 / 403).
    region: str = ""
    # usage.inference_geo reported when the request names none (Anthropic
    # wire); on the Vertex and Bedrock wires, reported only when set.
    inference_geo: str = ""
    # Pacing, milliseconds; None = the simulator's top-level values.
    time_to_first_token_ms: float | None = Field(None, ge=0)
    inter_token_ms: float | None = Field(None, ge=0)
    # Heavy tail: with this probability the first token waits slow_ttft_ms instead.
    slow_probability: float = Field(0.0, ge=0, le=1)
    slow_ttft_ms: float = Field(0.0, ge=0)
    # Refused before the stream, at failure_status, in the wire's error format.
    failure_rate: float = Field(0.0, ge=0, le=1)
    failure_status: int = Field(529, ge=400, le=599)
    # An `error` event (overloaded_error) after the first content delta.
    midstream_failure_rate: float = Field(0.0, ge=0, le=1)
    # Failure script, one entry per Messages request, before the rates apply:
    # "ok", "slow", "midstream" or an HTTP status ("529", "500", ...).
    outcomes: list[str] = []
    # retry-after header (seconds) on injected failures; None = none.
    retry_after_s: float | None = Field(None, ge=0)
    # Seeds the deployment's random draws, for reproducible runs.
    seed: int | None = None

    @field_validator("outcomes")
    @classmethod
    def _v_outcomes(cls, value: list[str]) -> list[str]:
        for i, item in enumerate(value):
            if item in _SIM_OUTCOMES:
                continue
            if not (item.isascii() and item.isdigit() and 400 <= int(item) <= 599):
                raise ValueError(f"outcomes[{i}]: {item!r} is not ok, slow, midstream or an HTTP status 400-599")
        return value


class SimulatorSettings(Section):
    listen: str = "127.0.0.1:8090"
    # Delay before the first event, and between content deltas, milliseconds.
    time_to_first_token_ms: float = Field(20.0, ge=0)
    inter_token_ms: float = Field(5.0, ge=0)
    # Tokens generated when max_tokens allows; a directive can change it per request.
    output_tokens: int = Field(32, ge=1)
    # Words per content_block_delta.
    tokens_per_delta: int = Field(1, ge=1)
    # Probabilities of injected failures, for soak and fallback tests.
    failure_rate_529: float = Field(0.0, ge=0, le=1)
    failure_rate_500: float = Field(0.0, ge=0, le=1)
    # Honour in-prompt directives such as [[sim:status=529]] (tests, demos).
    allow_directives: bool = True
    # Model catalog whose facts (limits, lifecycle, what each model accepts)
    # the simulator enforces as the API would; empty = the one shipped.
    catalog_path: str = ""
    # Requests kept for GET /_sim/requests (tests compare what arrived).
    recorded_requests: int = Field(2000, ge=0)
    # Simulated deployments served under /d/{deployment}/ (Anthropic, Vertex
    # and Bedrock wires); one not listed behaves like the top-level values.
    deployments: dict[str, SimulatedDeployment] = {}
    # SigV4 access key id -> secret key the Bedrock wire verifies signatures
    # with; empty = signatures are checked for shape and scope only.
    aws_credentials: dict[str, str] = {"AKIASLUICESIM": "sluice-sim-secret"}

    _v_listen = field_validator("listen")(check_address)

    @field_validator("deployments")
    @classmethod
    def _v_deployments(cls, value: dict[str, SimulatedDeployment]) -> dict[str, SimulatedDeployment]:
        for name in value:
            if not _SIM_DEPLOYMENT.fullmatch(name):
                raise ValueError(f"deployment name {name!r} must match [A-Za-z0-9._-]{{1,64}}")
        return value
