"""Resilience policies on a fake clock: retry budget, circuit breaker, latency
percentiles and hedging, adaptive concurrency, priority load shedding."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.resilience.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from sluice.resilience.budget import RetryBudget
from sluice.resilience.latency import HedgePolicy, LatencyTracker
from sluice.resilience.limiter import AIMDLimit, PartitionedLimiter
from sluice.resilience.shedding import LagMonitor, LoadShedder, shed_class


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- retry budget -------------------------------------------------------------


def test_budget_allows_ratio_of_requests_as_extras_and_refuses_beyond():
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, min_per_second=0.0, window_s=10.0, clock=clock)
    for _ in range(100):
        budget.deposit()
    assert budget.available() == pytest.approx(20.0)
    granted = sum(budget.try_withdraw() for _ in range(30))
    assert granted == 20
    assert budget.available() == 0.0
    budget.deposit()  # a fifth of a token is not a whole one
    assert not budget.try_withdraw()
    for _ in range(4):
        budget.deposit()
    assert budget.try_withdraw()


def test_budget_floor_applies_at_low_traffic():
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, min_per_second=1.0, window_s=10.0, clock=clock)
    # No traffic at all: the floor alone allows min_per_second x window_s extras.
    assert sum(budget.try_withdraw() for _ in range(15)) == 10
    assert not budget.try_withdraw()
    # Withdrawals expire with the window, so the floor comes back.
    clock.advance(10.0)
    assert budget.available() == pytest.approx(10.0)
    assert budget.try_withdraw()


def test_budget_deposits_expire_after_the_window():
    clock = FakeClock()
    budget = RetryBudget(ratio=0.5, min_per_second=0.0, window_s=10.0, clock=clock)
    for _ in range(10):
        budget.deposit()
    clock.advance(8.9)
    assert budget.available() == pytest.approx(5.0)  # still inside the window
    clock.advance(1.1)
    assert budget.available() == 0.0
    assert not budget.try_withdraw()


def test_budget_withdrawals_outlive_deposits_made_before_them():
    clock = FakeClock()
    budget = RetryBudget(ratio=1.0, min_per_second=0.0, window_s=10.0, clock=clock)
    for _ in range(4):
        budget.deposit()
    clock.advance(5.0)
    assert sum(budget.try_withdraw() for _ in range(4)) == 4
    # The deposits leave the window first: the later withdrawals still count
    # against new deposits until they expire too.
    clock.advance(5.0)
    budget.deposit()
    assert budget.available() == 0.0
    clock.advance(5.0)
    assert budget.available() == pytest.approx(1.0)


def test_budget_rejects_bad_settings():
    for kwargs in ({"ratio": -0.1}, {"min_per_second": -1.0}, {"window_s": 0.0}):
        with pytest.raises(ValueError):
            RetryBudget(**kwargs)


# -- circuit breaker ----------------------------------------------------------


def _breaker(clock: FakeClock, **kwargs) -> CircuitBreaker:
    return CircuitBreaker(clock=clock, **kwargs)


def test_breaker_opens_on_consecutive_failures():
    clock = FakeClock()
    breaker = _breaker(clock, consecutive_failures=3)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()  # breaks the run
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state == CLOSED
    breaker.record_failure()
    assert breaker.state == OPEN
    assert not breaker.allow()
    assert breaker.retry_in() == pytest.approx(5.0)


def test_breaker_opens_on_error_rate_only_after_min_requests():
    clock = FakeClock()
    breaker = _breaker(clock, consecutive_failures=100, error_rate=0.5, min_requests=20)
    # Alternating verdicts: a 50 % error rate, never two failures in a row.
    for _ in range(9):
        breaker.record_failure()
        breaker.record_success()
    breaker.record_failure()  # 19 verdicts, 10 failures: too few to judge
    assert breaker.state == CLOSED
    breaker.record_failure()  # 20 verdicts, 11 failures
    assert breaker.state == OPEN


def test_breaker_error_rate_forgets_verdicts_older_than_the_window():
    clock = FakeClock()
    breaker = _breaker(clock, consecutive_failures=100, error_rate=0.5, min_requests=10,
                       window_s=10.0)
    for _ in range(4):
        breaker.record_failure()
        breaker.record_success()
    clock.advance(10.0)
    breaker.record_failure()
    breaker.record_failure()
    # Counting the old verdicts it would be 6 failures in 10 and open; only
    # the last 2 are in the window.
    assert breaker.state == CLOSED


def test_breaker_turns_half_open_after_open_s():
    clock = FakeClock()
    breaker = _breaker(clock, consecutive_failures=1, open_s=5.0)
    breaker.record_failure()
    clock.advance(4.0)
    assert breaker.state == OPEN
    assert breaker.retry_in() == pytest.approx(1.0)
    assert not breaker.allow()
    clock.advance(1.0)
    assert breaker.state == HALF_OPEN
    assert breaker.retry_in() == 0.0


def test_breaker_half_open_admits_a_single_probe():
    clock = FakeClock()
    breaker = _breaker(clock, consecutive_failures=1, open_s=5.0, half_open_probes=1)
    breaker.record_failure()
    clock.advance(5.0)
    assert breaker.allow()
    assert not breaker.allow()
    assert not breaker.allow()


def test_breaker_probe_success_closes_and_resets_the_window():
    clock = FakeClock()
    breaker = _breaker(clock, consecutive_failures=2, open_s=5.0)
    breaker.record_failure()
    breaker.record_failure()
    clock.advance(5.0)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == CLOSED
    assert breaker.allow() and breaker.allow()
    breaker.record_failure()  # the failures before the trip are forgotten
    assert breaker.state == CLOSED


def test_breaker_probe_failure_reopens_with_doubled_open_time_capped():
    clock = FakeClock()
    breaker = _breaker(clock, consecutive_failures=1, open_s=5.0, max_open_s=15.0)
    breaker.record_failure()
    waits = []
    for _ in range(4):
        waits.append(breaker.retry_in())
        clock.advance(breaker.retry_in())
        assert breaker.allow()
        breaker.record_failure()
    assert waits == [5.0, 10.0, 15.0, 15.0]
    # Closing resets the open time to open_s.
    clock.advance(breaker.retry_in())
    assert breaker.allow()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.retry_in() == pytest.approx(5.0)


def test_breaker_release_frees_a_probe_slot():
    clock = FakeClock()
    breaker = _breaker(clock, consecutive_failures=1, open_s=5.0)
    breaker.record_failure()
    clock.advance(5.0)
    assert breaker.allow()
    assert not breaker.allow()
    breaker.release()  # the probe was cancelled: no verdict
    assert breaker.state == HALF_OPEN
    assert breaker.allow()


def test_breaker_ignores_stragglers_while_open_and_without_a_probe():
    clock = FakeClock()
    breaker = _breaker(clock, consecutive_failures=1, open_s=5.0)
    breaker.record_failure()
    breaker.record_success()  # a call admitted before the trip
    assert breaker.state == OPEN
    breaker.record_failure()
    assert breaker.retry_in() == pytest.approx(5.0)  # not extended
    clock.advance(5.0)
    assert breaker.state == HALF_OPEN
    breaker.record_success()  # no probe outstanding: not a probe's verdict
    assert breaker.state == HALF_OPEN


def test_breaker_on_change_sees_every_transition():
    clock = FakeClock()
    seen: list[tuple[str, str]] = []
    breaker = _breaker(clock, consecutive_failures=1, open_s=5.0,
                       on_change=lambda old, new: seen.append((old, new)))
    breaker.record_failure()
    clock.advance(5.0)
    assert breaker.allow()
    breaker.record_failure()
    clock.advance(10.0)
    assert breaker.allow()
    breaker.record_success()
    assert seen == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, OPEN), (OPEN, HALF_OPEN),
                    (HALF_OPEN, CLOSED)]


# -- latency and hedging ------------------------------------------------------


def test_tracker_percentile_on_known_data():
    tracker = LatencyTracker(window=256, min_samples=20)
    for ms in range(100, 0, -1):  # 1..100 ms, recorded out of order
        tracker.record(ms / 1000)
    assert tracker.count == 100
    assert tracker.percentile(0.95) == pytest.approx(0.095)
    assert tracker.percentile(0.5) == pytest.approx(0.050)
    assert tracker.percentile(0.07) == pytest.approx(0.007)  # 0.07 x 100 = 7.000000000000001
    assert tracker.percentile(1.0) == pytest.approx(0.100)
    assert tracker.percentile(0.0) == pytest.approx(0.001)


def test_tracker_is_none_before_min_samples():
    tracker = LatencyTracker(min_samples=20)
    for _ in range(19):
        tracker.record(0.1)
    assert tracker.percentile(0.95) is None
    tracker.record(0.1)
    assert tracker.percentile(0.95) == pytest.approx(0.1)


def test_tracker_keeps_the_last_window_and_resorts_only_when_stale():
    tracker = LatencyTracker(window=20, min_samples=20, refresh_every=5)
    for _ in range(20):
        tracker.record(1.0)
    assert tracker.percentile(1.0) == 1.0
    for _ in range(4):
        tracker.record(9.0)
    assert tracker.percentile(1.0) == 1.0  # cached: 4 new samples < refresh_every
    tracker.record(9.0)
    assert tracker.percentile(1.0) == 9.0
    for _ in range(20):
        tracker.record(2.0)  # the ring now holds only these
    assert tracker.count == 20
    assert tracker.percentile(0.0) == tracker.percentile(1.0) == 2.0


def test_tracker_answers_from_the_cached_sort_while_the_ring_is_filling():
    tracker = LatencyTracker(window=256, min_samples=20, refresh_every=16)
    for ms in range(1, 21):
        tracker.record(ms / 1000)
    assert tracker.percentile(1.0) == pytest.approx(0.020)
    for _ in range(15):
        tracker.record(5.0)
    assert tracker.count == 35
    assert tracker.percentile(1.0) == pytest.approx(0.020)  # the 20 sorted samples
    tracker.record(5.0)
    assert tracker.percentile(1.0) == 5.0
    assert tracker.percentile(0.5) == pytest.approx(0.018)  # 18th of 36


def test_tracker_rejects_bad_input():
    tracker = LatencyTracker()
    with pytest.raises(ValueError):
        tracker.record(float("nan"))
    with pytest.raises(ValueError):
        tracker.record(-0.1)
    with pytest.raises(ValueError):
        tracker.percentile(1.5)


def test_hedge_delay_fixed_percentile_and_floor():
    tracker = LatencyTracker(min_samples=20)
    assert HedgePolicy(fixed_delay_s=0.3).delay(tracker) == 0.3
    assert HedgePolicy().delay(tracker) is None  # no samples: no hedge
    for ms in range(1, 101):
        tracker.record(ms / 1000)
    assert HedgePolicy(percentile=0.95, min_delay_s=0.01).delay(tracker) == pytest.approx(0.095)
    assert HedgePolicy(percentile=0.95, min_delay_s=0.2).delay(tracker) == 0.2
    assert HedgePolicy(percentile=0.95, fixed_delay_s=0.5).delay(tracker) == 0.5


# -- adaptive concurrency -----------------------------------------------------


def test_aimd_decreases_on_drop_and_on_timeout():
    limit = AIMDLimit(initial=20, backoff_ratio=0.9, timeout_s=2.0)
    limit.on_sample(0.1, in_flight=20, dropped=True)
    assert limit.limit == 18
    limit.on_sample(2.5, in_flight=18, dropped=False)  # slower than the timeout
    assert limit.limit == 16  # floor(18 x 0.9)


def test_aimd_cuts_once_per_congestion_episode_not_per_dropped_call():
    limit = AIMDLimit(initial=100, max_limit=100)
    # 30 calls started at t=0..0.29 all fail at t=1: one episode, one cut.
    for i in range(30):
        limit.on_sample(1.0 - i / 100, 30, dropped=True, started_at=i / 100, now=1.0)
    assert limit.limit == 90
    # A call that started after that cut fails: a new episode.
    limit.on_sample(0.5, 30, dropped=True, started_at=1.2, now=1.7)
    assert limit.limit == 81


def test_aimd_cuts_at_most_once_per_smoothed_round_trip():
    limit = AIMDLimit(initial=50, max_limit=100)
    limit.on_sample(1.0, 50, dropped=False)  # answers take a second: SRTT 1 s
    limit.on_sample(0.01, 50, dropped=True, started_at=9.99, now=10.0)
    limit.on_sample(0.01, 50, dropped=True, started_at=10.49, now=10.5)  # refused at once, same round trip
    assert limit.limit == 45  # floor(51 * 0.9), once
    limit.on_sample(0.01, 50, dropped=True, started_at=11.09, now=11.1)
    assert limit.limit == 40


def test_the_partitioned_limiter_feeds_start_times_so_a_burst_of_drops_cuts_once():
    clock = FakeClock()
    limiter = PartitionedLimiter(AIMDLimit(initial=20, max_limit=20), clock=clock)
    permits = [limiter.try_acquire(0) for _ in range(10)]
    clock.advance(1.0)
    for permit in permits:
        permit.release("dropped")
    assert limiter.limit == 18


def test_aimd_increases_only_when_busy():
    limit = AIMDLimit(initial=20)
    limit.on_sample(0.1, in_flight=9, dropped=False)  # under half used: proves nothing
    assert limit.limit == 20
    limit.on_sample(0.1, in_flight=10, dropped=False)
    assert limit.limit == 21


def test_aimd_respects_min_and_max():
    limit = AIMDLimit(initial=3, min_limit=2, max_limit=4)
    for _ in range(5):
        limit.on_sample(0.1, in_flight=4, dropped=False)
    assert limit.limit == 4
    for _ in range(5):
        limit.on_sample(0.1, in_flight=4, dropped=True)
    assert limit.limit == 2
    with pytest.raises(ValueError):
        AIMDLimit(initial=1, min_limit=2)
    with pytest.raises(ValueError):
        AIMDLimit(backoff_ratio=1.0)


def _fill(limiter: PartitionedLimiter, cls: int) -> list:
    permits = []
    while (permit := limiter.try_acquire(cls)) is not None:
        permits.append(permit)
    return permits


def _admits(limiter: PartitionedLimiter, cls: int) -> bool:
    permit = limiter.try_acquire(cls)
    if permit is not None:
        permit.release("ignore")
    return permit is not None


def test_partitioned_limiter_fills_by_class_and_class_0_gets_the_whole_limit():
    aimd = AIMDLimit(initial=20)
    limiter = PartitionedLimiter(aimd, {0: 1.0, 1: 0.85, 2: 0.6, 3: 0.4}, clock=FakeClock())
    held = _fill(limiter, 3)
    assert len(held) == 8  # floor(20 x 0.4)
    held += _fill(limiter, 2)
    assert len(held) == 12  # floor(20 x 0.6)
    held += _fill(limiter, 1)
    assert len(held) == 17  # floor(20 x 0.85)
    held += _fill(limiter, 0)
    assert len(held) == 20  # class 0 is refused only with the whole limit in use
    assert limiter.refused() == {0: 1, 1: 1, 2: 1, 3: 1}


def test_partitioned_limiter_refuses_low_classes_first_as_the_limit_shrinks():
    aimd = AIMDLimit(initial=20)
    limiter = PartitionedLimiter(aimd, {0: 1.0, 1: 0.85, 2: 0.6, 3: 0.4}, clock=FakeClock())
    held = [limiter.try_acquire(0) for _ in range(4)]
    refused_at = {}
    while aimd.limit > aimd.min_limit:
        for cls in range(4):
            if cls not in refused_at and not _admits(limiter, cls):
                refused_at[cls] = aimd.limit
        aimd.on_sample(1.0, in_flight=20, dropped=True)
    # With 4 in flight: class c goes once floor(limit x share) <= 4.
    assert refused_at == {3: 12, 2: 8, 1: 5, 0: 4}
    for permit in held:
        permit.release("ignore")
    assert limiter.in_flight == 0


def test_partitioned_limiter_admits_any_class_when_idle():
    aimd = AIMDLimit(initial=1)
    limiter = PartitionedLimiter(aimd, {0: 1.0, 3: 0.4}, clock=FakeClock())
    permit = limiter.try_acquire(3)  # floor(1 x 0.4) = 0, yet nothing is in flight
    assert permit is not None
    assert limiter.try_acquire(0) is None
    permit.release("success", 0.1)
    assert limiter.limit == 2  # the sample from class 3 let the limit grow


def test_permit_double_release_is_a_no_op():
    aimd = AIMDLimit(initial=10)
    limiter = PartitionedLimiter(aimd, {0: 1.0}, clock=FakeClock())
    first = limiter.try_acquire(0)
    second = limiter.try_acquire(0)
    assert limiter.in_flight == 2
    first.release("dropped", 0.1)
    assert (limiter.in_flight, limiter.limit) == (1, 9)
    first.release("dropped", 0.1)
    first.release("success", 0.1)
    assert (limiter.in_flight, limiter.limit) == (1, 9)
    second.release("ignore")
    assert (limiter.in_flight, limiter.limit) == (0, 9)


def test_permit_measures_rtt_on_the_clock_when_not_given():
    clock = FakeClock()
    aimd = AIMDLimit(initial=10, timeout_s=1.0)
    limiter = PartitionedLimiter(aimd, {0: 1.0}, clock=clock)
    permit = limiter.try_acquire(0)
    clock.advance(1.5)
    permit.release("success")  # 1.5 s > timeout_s: counts as a drop
    assert limiter.limit == 9


def test_partitioned_limiter_rejects_unknown_class_and_bad_shares():
    limiter = PartitionedLimiter(AIMDLimit(), {0: 1.0, 1: 0.5})
    with pytest.raises(ValueError):
        limiter.try_acquire(2)
    with pytest.raises(ValueError):
        limiter.try_acquire(0).release("maybe", 0.1)
    with pytest.raises(ValueError):
        PartitionedLimiter(AIMDLimit(), {0: 0.5, 1: 0.8})


# -- shedding -----------------------------------------------------------------


@pytest.mark.parametrize("tier, priority, expected", [
    ("enterprise", "interactive", 0), ("enterprise", "batch", 2), ("enterprise", "background", 3),
    ("standard", "interactive", 1), ("standard", "batch", 2), ("standard", "background", 3),
    ("free", "interactive", 2), ("free", "batch", 2), ("free", "background", 3),
    ("trial", "interactive", 1), ("enterprise", "urgent", 0),
])
def test_shed_class_table(tier, priority, expected):
    assert shed_class(tier, priority) == expected


def test_shed_class_defaults_to_interactive():
    assert shed_class("enterprise") == 0


def test_shedder_refuses_classes_3_2_1_in_order_and_class_0_only_at_max():
    shedder = LoadShedder(max_in_flight=20, clock=FakeClock())  # 1.0, 0.9, 0.75, 0.6
    first_refused_at = {}
    while shedder.enter(0):
        for cls in (1, 2, 3):
            if cls not in first_refused_at and not shedder.admits(cls):
                first_refused_at[cls] = shedder.in_flight
    assert first_refused_at == {3: 12, 2: 15, 1: 18}
    assert shedder.in_flight == 20
    counters = shedder.counters()
    assert counters["admitted"][0] == 20 and counters["shed"][0] == 1
    shedder.exit()
    assert shedder.enter(0)


def test_shedder_lag_counts_as_utilisation():
    clock = FakeClock()
    shedder = LoadShedder(max_in_flight=100, lag_threshold_s=0.05, clock=clock)
    shedder.report_lag(0.035)  # 0.7 of the lag that means "full"
    assert shedder.utilisation == pytest.approx(0.7)
    assert [shedder.admits(c) for c in range(4)] == [True, True, True, False]
    clock.advance(0.5)  # one half-life: halfway to the new reading
    shedder.report_lag(0.005)
    assert shedder.lag_s == pytest.approx(0.02)
    assert all(shedder.admits(c) for c in range(4))
    shedder.report_lag(10.0)  # same instant: covers no time, moves nothing
    assert shedder.lag_s == pytest.approx(0.02)
    clock.advance(60.0)
    shedder.report_lag(10.0)  # a long stall counts as twice the threshold, no more
    assert shedder.utilisation == pytest.approx(2.0)
    assert not shedder.enter(0)


def test_shedder_retry_after_grows_with_load():
    shedder = LoadShedder(max_in_flight=10, clock=FakeClock())
    advice = []
    for _ in range(10):
        advice.append(shedder.retry_after_s())
        shedder.enter(0)
    advice.append(shedder.retry_after_s())
    assert advice == sorted(advice)
    assert advice[0] == 1.0 and advice[6] == pytest.approx(1.0)  # shedding starts at 0.6
    assert advice[8] == pytest.approx(3.0) and advice[-1] == 5.0


def test_shedder_exit_without_enter_is_an_error():
    shedder = LoadShedder(max_in_flight=2, clock=FakeClock())
    with pytest.raises(RuntimeError):
        shedder.exit()
    with pytest.raises(ValueError):
        shedder.enter(7)
    with pytest.raises(ValueError):
        LoadShedder(max_in_flight=2, thresholds={0: 0.6, 1: 0.9})


_thresholds = st.lists(st.floats(0.01, 1.0), min_size=3, max_size=3).map(
    lambda xs: {0: 1.0, **dict(enumerate(sorted(xs, reverse=True), start=1))})
_ops = st.lists(st.one_of(
    st.tuples(st.just("enter"), st.integers(0, 3)),
    st.tuples(st.just("exit"), st.just(0)),
    st.tuples(st.just("lag"), st.floats(0.0, 0.2)),
    st.tuples(st.just("advance"), st.floats(0.0, 2.0)),
), max_size=80)


@settings(max_examples=300, deadline=None, database=None)
@given(thresholds=_thresholds, max_in_flight=st.integers(1, 30), ops=_ops)
def test_shedder_never_sheds_enterprise_while_a_lower_class_is_admitted(
        thresholds, max_in_flight, ops):
    clock = FakeClock()
    shedder = LoadShedder(max_in_flight, thresholds, lag_threshold_s=0.05, clock=clock)
    for op, arg in ops:
        if op == "enter":
            expected = shedder.admits(arg)
            assert shedder.enter(arg) == expected
        elif op == "exit" and shedder.in_flight:
            shedder.exit()
        elif op == "lag":
            shedder.report_lag(arg)
        elif op == "advance":
            clock.advance(arg)
        if not shedder.admits(0):
            assert not any(shedder.admits(c) for c in (1, 2, 3))


def test_lag_monitor_measures_lag_and_feeds_the_shedder():
    clock = FakeClock()
    shedder = LoadShedder(max_in_flight=10, lag_threshold_s=0.05, clock=clock)
    monitor = LagMonitor(shedder.report_lag, clock=clock)
    assert monitor.observe(expected_at=clock.now - 0.03) == pytest.approx(0.03)
    assert shedder.lag_s == pytest.approx(0.03)
    clock.advance(0.1)
    assert monitor.observe(expected_at=clock.now + 0.001, actual_at=clock.now) == 0.0
    assert monitor.last_s == 0.0
