"""Shedding classes and the per-class fractions policies give them.

A class is an int, 0 the most important (enterprise) to 3 (background
work). A policy gives each class a fraction in (0, 1] of a capacity (a
limiter's share of its limit, a shedder's utilisation threshold); a less
important class never gets more, so class 0 is always the last refused.
"""

from __future__ import annotations

from collections.abc import Mapping

CLASSES = (0, 1, 2, 3)


def class_fractions(values: Mapping[int, float], what: str, complete: bool = False) -> dict[int, float]:
    """`values` checked and ordered by class. `complete`: every class of
    CLASSES must be there (settings); otherwise at least one. Raises
    ValueError naming `what` and the offending class."""
    ordered = dict(sorted(values.items()))
    if complete and set(ordered) != set(CLASSES):
        raise ValueError(f"{what} need exactly the classes {', '.join(map(str, CLASSES))}, got {sorted(ordered)}")
    if not ordered:
        raise ValueError(f"{what} must name at least one class")
    previous, previous_cls = 1.0, None
    for cls, value in ordered.items():
        if not 0.0 < value <= 1.0:
            raise ValueError(f"{what}: class {cls}: must be in (0, 1], got {value}")
        if value > previous:
            raise ValueError(f"{what}: class {cls}: {value} is more than class {previous_cls}'s {previous}")
        previous, previous_cls = value, cls
    return ordered
