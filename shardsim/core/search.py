"""The one search for the largest value that fits (context, batch, micro-batch, sequence length)."""

from __future__ import annotations

from typing import Callable


def largest_that_fits(fits: Callable[[int], bool], upper: int) -> int:
    """The largest n in 1 … ``upper`` with ``fits(n)``; 0 when ``fits(1)`` is false. ``fits`` must be monotone
    (true up to some n, false after: memory grows with every size searched here), so bisection finds it in
    ⌈log₂ upper⌉ + 2 calls."""
    if not fits(1):
        return 0
    if fits(upper):
        return upper
    lo, hi = 1, upper  # fits(lo), not fits(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo
