"""Simulated deployments: each ``/d/{deployment}/...`` prefix (and
"default", the unprefixed routes) has a profile — region, pacing, a heavy
tail, failure rates and a failure script — and its own random draws.

A profile is `SimulatedDeployment` (settings ``simulator.deployments``, or
``PUT /_sim/deployments/{name}`` at run time, which wins until ``DELETE``).
A deployment with neither behaves like a profile with every field at its
default, pacing from the top-level ``time_to_first_token_ms`` /
``inter_token_ms``; so any deployment name works.

Each Messages request that passes the API's rules draws one `Outcome`: the
next entry of ``outcomes`` while any is left, else from the rates (one
draw each of failure, slow and mid-stream failure, always three, so a
seeded run repeats exactly). count_tokens and the Models API draw nothing.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from sluice.config.simulator import SimulatedDeployment, SimulatorSettings
from sluice.simulator.rules import ERROR_TYPES, ApiError

DEFAULT = "default"
_DEFAULT_PROFILE = SimulatedDeployment()


@dataclass(frozen=True)
class Outcome:
    """What a deployment does to one request: refuse it at `status`, make
    its first token late (`slow`), and/or fail it after the first content
    delta (`midstream`)."""

    status: int | None = None
    slow: bool = False
    midstream: bool = False

    @property
    def label(self) -> str:
        """"529", "ok", "slow", "midstream" or "slow+midstream"."""
        if self.status is not None:
            return str(self.status)
        return "+".join(n for n, on in (("slow", self.slow), ("midstream", self.midstream)) if on) or "ok"

    @classmethod
    def parse(cls, entry: str) -> Outcome:
        """An ``outcomes`` entry (already checked by SimulatedDeployment)."""
        if entry == "slow":
            return cls(slow=True)
        if entry == "midstream":
            return cls(midstream=True)
        return cls() if entry == "ok" else cls(status=int(entry))


def failure(outcome: Outcome, profile: SimulatedDeployment) -> ApiError:
    """The refusal for an outcome with a status, in the API's shape (each
    wire re-shapes it): 529 says "Overloaded" as the API does; others
    ``simulated <error type>``. ``retry-after`` when the profile sets one."""
    status = outcome.status or 500
    kind = ERROR_TYPES.get(status, "api_error")
    headers = {} if profile.retry_after_s is None else {"retry-after": f"{profile.retry_after_s:g}"}
    return ApiError(status, "Overloaded" if status == 529 else f"simulated {kind}", kind, headers)


def parse_profile(doc: Any) -> SimulatedDeployment:
    """A profile from JSON; ValueError whose message names each bad field
    (``failure_rate: Input should be less than or equal to 1``)."""
    if not isinstance(doc, dict):
        raise ValueError("a deployment profile must be a JSON object")
    try:
        return SimulatedDeployment.model_validate(doc)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"])
            problems.append(f"{where}: {error['msg']}" if where else error["msg"])
        raise ValueError("; ".join(problems)) from None


@dataclass
class _State:
    profile: SimulatedDeployment
    rng: random.Random
    next_outcome: int = 0
    requests: int = 0
    by_outcome: Counter[str] = field(default_factory=Counter)


class Deployments:
    """Profiles and per-deployment state (script position, RNG, counters)."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self._settings = settings
        self._runtime: dict[str, SimulatedDeployment] = {}
        self._states: dict[str, _State] = {}

    def profile(self, name: str) -> SimulatedDeployment:
        """The profile in force: set at run time, else configured, else defaults."""
        if name in self._runtime:
            return self._runtime[name]
        return self._settings.deployments.get(name, _DEFAULT_PROFILE)

    def pacing(self, name: str) -> tuple[float, float]:
        """(time to first token, inter-token interval), seconds."""
        profile = self.profile(name)
        ttft = profile.time_to_first_token_ms
        itl = profile.inter_token_ms
        return ((self._settings.time_to_first_token_ms if ttft is None else ttft) / 1000,
                (self._settings.inter_token_ms if itl is None else itl) / 1000)

    def draw(self, name: str) -> Outcome:
        """The outcome of the deployment's next Messages request (counted)."""
        state = self._state(name)
        profile = state.profile
        if state.next_outcome < len(profile.outcomes):
            outcome = Outcome.parse(profile.outcomes[state.next_outcome])
            state.next_outcome += 1
        else:
            fail, slow, midstream = (state.rng.random() for _ in range(3))
            if fail < profile.failure_rate:
                outcome = Outcome(status=profile.failure_status)
            else:
                outcome = Outcome(slow=slow < profile.slow_probability,
                                  midstream=midstream < profile.midstream_failure_rate)
        state.requests += 1
        state.by_outcome[outcome.label] += 1
        return outcome

    def put(self, name: str, profile: SimulatedDeployment) -> None:
        """Replaces the profile; the script, RNG and counters start over."""
        self._runtime[name] = profile
        self._states.pop(name, None)

    def reset(self, name: str) -> None:
        """Back to the configured (or default) profile, state started over."""
        self._runtime.pop(name, None)
        self._states.pop(name, None)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """``{name: {"profile", "requests", "by_outcome"}}`` for every
        deployment configured, set at run time or sent a request."""
        names = sorted({*self._settings.deployments, *self._runtime, *self._states})
        return {name: self.describe(name) for name in names}

    def describe(self, name: str) -> dict[str, Any]:
        """``{"profile", "requests", "by_outcome"}`` of one deployment; the
        profile with its pacing resolved (milliseconds). `requests` counts
        the Messages requests that drew an outcome."""
        state = self._states.get(name)
        ttft, itl = self.pacing(name)
        profile = self.profile(name).model_dump()
        profile.update(time_to_first_token_ms=ttft * 1000, inter_token_ms=itl * 1000)
        return {"profile": profile, "requests": state.requests if state else 0,
                "by_outcome": dict(state.by_outcome) if state else {}}

    def _state(self, name: str) -> _State:
        state = self._states.get(name)
        if state is None:
            profile = self.profile(name)
            state = self._states[name] = _State(profile, random.Random(profile.seed))
        return state
