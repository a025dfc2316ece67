"""Integer counts over a sliding time window, kept in a ring of time slices."""

from __future__ import annotations


class SlidingCounts:
    """`fields` integer counters summed over the last `window_s` seconds.

    The window is cut into `slices` equal slices (Finagle's WindowedAdder and
    Hystrix's rolling counters do the same): a count lives between
    `window_s - window_s / slices` and `window_s` seconds, so the window slides
    in steps of one slice. Running totals make `total` O(1); `roll` clears at
    most `slices` expired slices, so every call is O(slices) worst case and
    O(1) amortised. Times are the caller's clock readings in seconds; a clock
    that steps back leaves the window where it is.
    """

    __slots__ = ("_slice_s", "_slices", "_rings", "_totals", "_slot")

    def __init__(self, fields: int, window_s: float, now: float, slices: int = 10) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self._slice_s = window_s / slices
        self._slices = slices
        self._rings = [[0] * slices for _ in range(fields)]
        self._totals = [0] * fields
        self._slot = int(now // self._slice_s)

    def roll(self, now: float) -> None:
        """Expire the slices that have left the window by `now`."""
        slot = int(now // self._slice_s)
        gap = slot - self._slot
        if gap <= 0:
            return
        self._slot = slot
        if gap >= self._slices:
            self.clear()
            return
        totals = self._totals
        for step in range(slot - gap + 1, slot + 1):
            i = step % self._slices
            for field, ring in enumerate(self._rings):
                totals[field] -= ring[i]
                ring[i] = 0

    def add(self, field: int, amount: int) -> None:
        """Add `amount` (may be negative) to `field` in the current slice; call `roll` first."""
        self._rings[field][self._slot % self._slices] += amount
        self._totals[field] += amount

    def total(self, field: int) -> int:
        """The sum of `field` over the window as of the last `roll`."""
        return self._totals[field]

    def clear(self) -> None:
        for ring in self._rings:
            for i in range(self._slices):
                ring[i] = 0
        for field in range(len(self._totals)):
            self._totals[field] = 0
