"""Overload and failure policies for the request path: retry and hedge budgets,
circuit breakers, latency percentiles for hedging, adaptive concurrency limits
and priority load shedding.

Every policy is synchronous, stdlib-only and cheap enough to consult on every
request; the async callers own the I/O. Anything that reads time takes a
`clock` (seconds, `time.monotonic` by default) so tests drive it by hand.
"""
