"""The cost controller: holds the blended cost per request of a scope under
its target.

An integral controller on the shift `s` (0..1) that `policy.choose_tier`
reads: every policy-routed request of a scope adds
`gain * (cost / target - 1)` to the scope's shift, so the shift climbs
while requests cost more than the target and falls back (giving quality
back) while they cost less; it rests where the average cost equals the
target (of costs capped at MAX_RATIO times it), or near 0 when the policy's
natural choices are already under it.
Clamped to [0, 1] on every step, so a long cheap spell does not store up
credit (no integral wind-up). One request counts at most `MAX_RATIO` times
the target: a single huge prompt (a tenant pasting a 2 MB log) moves the
shift by at most `gain * (MAX_RATIO - 1)`, not all the way to 1 for
everyone. Under target the shift falls back towards 0, which is where it
stays while requests cost less than the target; an expensive request
still nudges it up until cheaper ones take it back.

Scopes: "deployment" (all policy-routed traffic of this Sluice deployment,
`routing.cost_target_usd`) and "tenant:<id>" for a tenant with its own
target; a request obeys the larger shift of its scopes.

Replicas share each scope's shift through the fleet store: a replica keeps
the steps it took since its last exchange (`drain`), adds them to the
shared value and adopts the sum (`adopt`), so the integral counts every
replica's requests once. Replay runs it alone, one request at a time.
"""

from __future__ import annotations

from collections.abc import Iterable

from sluice.telemetry import metrics

DEPLOYMENT = "deployment"
# The most one request counts, in multiples of the target (see module doc).
MAX_RATIO = 10.0


class CostController:
    """Shift per scope (module doc). `gain` is the step per request at twice
    the target; `average_window` sizes the rolling average kept for the
    header and metrics (an exponential average over about that many
    requests)."""

    def __init__(self, gain: float = 0.01, average_window: int = 500, export: bool = True) -> None:
        self.gain = gain
        self._alpha = 2.0 / (average_window + 1)
        self._shift: dict[str, float] = {}
        self._pending: dict[str, float] = {}
        self._average: dict[str, float] = {}
        self._targets: dict[str, float] = {}
        self._export = export

    def shift(self, scopes: Iterable[str]) -> float:
        """The largest shift among `scopes`."""
        return max((self._shift.get(scope, 0.0) for scope in scopes), default=0.0)

    def observe(self, scope: str, target_usd: float, cost_usd: float) -> None:
        """One routed request of `scope` that will cost about `cost_usd`."""
        if target_usd <= 0:
            return
        before = self._shift.get(scope, 0.0)
        ratio = min(cost_usd / target_usd, MAX_RATIO)
        after = min(max(before + self.gain * (ratio - 1.0), 0.0), 1.0)
        self._shift[scope] = after
        self._pending[scope] = self._pending.get(scope, 0.0) + (after - before)
        average = self._average.get(scope)
        average = cost_usd if average is None else average + self._alpha * (cost_usd - average)
        self._average[scope] = average
        if self._export:
            if self._targets.get(scope) != target_usd:
                self._targets[scope] = target_usd
                metrics.ROUTE_COST_TARGET.labels(scope).set(target_usd)
            metrics.ROUTE_COST_SHIFT.labels(scope).set(after)
            metrics.ROUTE_COST_PER_REQUEST.labels(scope).set(average)

    def average(self, scope: str) -> float:
        """Rolling average cost per request of `scope`, USD (0 before any)."""
        return self._average.get(scope, 0.0)

    def drain(self) -> dict[str, float]:
        """The steps taken since the last drain, per scope (then forgotten)."""
        pending, self._pending = self._pending, {}
        return {scope: step for scope, step in pending.items() if step}

    def take_back(self, scope: str, step: float) -> None:
        """A drained step the store did not take: pending again."""
        self._pending[scope] = self._pending.get(scope, 0.0) + step

    def adopt(self, shared: dict[str, float]) -> None:
        """The shared shifts after this replica's steps were added, plus any
        steps taken since the drain."""
        for scope, value in shared.items():
            value = min(max(value, 0.0), 1.0) + self._pending.get(scope, 0.0)
            self._shift[scope] = min(max(value, 0.0), 1.0)
            if self._export:
                metrics.ROUTE_COST_SHIFT.labels(scope).set(self._shift[scope])
