"""The PyTorch CUDA caching allocator's rounding: bytes reserved from the driver for bytes allocated.

Source: c10/cuda/CUDACachingAllocator.cpp (``round_size``, ``get_allocation_size``; constants in
``shardsim.constants``). A request rounds up to 512 B; requests ≤ 1 MiB share 2 MiB small-pool segments; requests
of 1–10 MiB share 20 MiB segments; larger requests get their own segment rounded up to 2 MiB. The model assumes
allocations made in sequence without frees (loading weights, allocating the KV cache), so segments fill in order;
it does not model fragmentation from frees, hence ``reserved`` is an estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from shardsim.constants import (
    ALLOC_LARGE_SEGMENT,
    ALLOC_MIN_BLOCK,
    ALLOC_MIN_LARGE_ALLOC,
    ALLOC_ROUND_LARGE,
    ALLOC_SMALL_SEGMENT,
    ALLOC_SMALL_SIZE,
)
from shardsim.units import round_up


def reserved_for(size: int, times: int = 1) -> int:
    """Reserved bytes for ``times`` equal allocations of ``size`` bytes (same rules as AllocationTally)."""
    rounded = -(-size // ALLOC_MIN_BLOCK) * ALLOC_MIN_BLOCK
    if rounded <= ALLOC_SMALL_SIZE:
        return -(-(rounded * times) // ALLOC_SMALL_SEGMENT) * ALLOC_SMALL_SEGMENT
    if rounded < ALLOC_MIN_LARGE_ALLOC:
        return -(-(rounded * times) // ALLOC_LARGE_SEGMENT) * ALLOC_LARGE_SEGMENT
    return -(-rounded // ALLOC_ROUND_LARGE) * ALLOC_ROUND_LARGE * times


@dataclass(slots=True)
class AllocationTally:
    """A multiset of allocations summarised for the allocator: exact bytes, and what each pool rounds to."""

    bytes: int = 0
    count: int = 0
    small_rounded: int = 0   # Σ round512(size) of requests ≤ 1 MiB
    mid_rounded: int = 0     # Σ round512(size) of requests in (1 MiB, 10 MiB)
    large_reserved: int = 0  # Σ round2MiB(size) of requests ≥ 10 MiB

    def add(self, size: int, times: int = 1) -> None:
        if size <= 0 or times <= 0:
            return
        rounded = round_up(size, ALLOC_MIN_BLOCK)
        self.bytes += size * times
        self.count += times
        if rounded <= ALLOC_SMALL_SIZE:
            self.small_rounded += rounded * times
        elif rounded < ALLOC_MIN_LARGE_ALLOC:
            self.mid_rounded += rounded * times
        else:
            self.large_reserved += round_up(rounded, ALLOC_ROUND_LARGE) * times

    def merge(self, other: "AllocationTally", times: int = 1) -> None:
        self.bytes += other.bytes * times
        self.count += other.count * times
        self.small_rounded += other.small_rounded * times
        self.mid_rounded += other.mid_rounded * times
        self.large_reserved += other.large_reserved * times

    @property
    def reserved(self) -> int:
        """Segments the allocator would hold for these allocations."""
        return (
            round_up(self.small_rounded, ALLOC_SMALL_SEGMENT)
            + round_up(self.mid_rounded, ALLOC_LARGE_SEGMENT)
            + self.large_reserved
        )
