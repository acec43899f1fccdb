"""The fit behind ``speed.fitted``: for one engine's fitted rows, the compute and memory efficiencies and the step
and request overheads that minimise the sum of squared log errors of TTFT, TPOT and output tokens/s.

Deterministic: a profile over memory efficiency, then a free coordinate search. The profile holds memory at each
of ``PROFILE_MEMORY`` in turn (starting from the prior, ``fitted.PRIOR``, then each point from the one before) while
a coordinate search on fixed grids (``GRIDS``) settles the others: each value in turn is set to its grid point
with the least loss, the others held, until a sweep moves none (ties keep the lower point). From the profile's best
point all are then searched the same way, and from the values the table held before (a coordinate search stops in
the nearest valley: on 2026-12-07 vLLM's profile path stopped at 26.31 where a search from the table's values
reached 26.23); the lower loss is kept. A value's scan is coarse-to-fine (``_scan``). Each row's scheduler
and stages are built once (``estimate.prepare``); a candidate only replaces the efficiencies.
The fp8 speedup (``roofline.Efficiency.fp8_speedup``) is searched only where some row runs fp8 matmuls
(``fitted_grids``); elsewhere it stays None. ``benchmarks/fit_speed.py`` runs it on the database and prints the
table to write.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from shardsim.speed import estimate as est
from shardsim.speed.calibration import ServingRow, measured, speed_request_of
from shardsim.speed.fitted import PRIOR
from shardsim.speed.roofline import FP8_DENSE_OVER_BF16, Efficiency

GRIDS = {
    "compute": [round(0.05 + 0.01 * i, 2) for i in range(96)],
    "memory": [round(0.05 + 0.01 * i, 2) for i in range(96)],
    "step_overhead_s": [round(0.0001 * i, 4) for i in range(301)],
    "ttft_overhead_s": [round(0.001 * i, 3) for i in range(301)],
    "seq_overhead_s": [round(1e-6 * i, 6) for i in range(301)],
    "layer_overhead_s": [round(1e-6 * i, 6) for i in range(201)],
    "moe_layer_overhead_s": [round(1e-6 * i, 6) for i in range(301)],
    "fp8_speedup": [round(1.0 + 0.01 * i, 2) for i in range(101)],
}
SATURATED_PENALTY = math.log(10) ** 2
"""A rate the model cannot serve, for a row that was served: the loss of a factor-10 error."""
MAX_SWEEPS = 50


@dataclass(frozen=True)
class Prepared:
    row: ServingRow
    request: object
    sched: object
    pipe: object
    measured: dict


def prepare_rows(rows: list[ServingRow]) -> tuple[list[Prepared], list[tuple[str, str]]]:
    """Each row's request, scheduler and stages; rows the model cannot take are returned with their reason."""
    from shardsim.errors import ShardsimError

    ready, skipped = [], []
    for row in rows:
        try:
            request = speed_request_of(row)
            sched, pipe, _ = est.prepare(request)
            ready.append(Prepared(row, request, sched, pipe, measured(row)))
        except ShardsimError as exc:
            skipped.append((row.id, str(exc)))
    return ready, skipped


def predict(p: Prepared, eff: Efficiency) -> dict[str, float | None]:
    """TTFT and TPOT (ms) and output tokens/s of one prepared row under ``eff``."""
    pipe = replace(p.pipe, eff=eff)
    steady, saturated = est.steady_of(p.request, p.sched, pipe)
    dp, out = p.request.serve.layout.dp, p.request.workload.output_tokens
    return {"ttft": None if saturated else steady.ttft * 1e3, "tpot": steady.tpot * 1e3 if out > 1 else None,
            "throughput": steady.rate * dp * out}


def loss(prepared: list[Prepared], eff: Efficiency) -> float:
    total = 0.0
    for p in prepared:
        pred = predict(p, eff)
        for metric, (value, _) in p.measured.items():
            guess = pred.get(metric)
            total += SATURATED_PENALTY if not guess else math.log(guess / value) ** 2
    return total


PROFILE_MEMORY = tuple(round(0.45 + 0.05 * i, 2) for i in range(11))
"""The memory efficiencies the profile holds in turn (0.45 … 0.95). The loss has separate valleys along memory
efficiency against the per-step overheads: a search with memory free moves it on its first sweep, before the
overheads have followed, and stays in the nearest valley (vLLM's rows: from every start 0.55 … 0.95 it stopped at
0.63, loss 26.10, where memory held at 0.89 reaches 25.77). Holding memory at each point while the other six
settle finds the valley; the final search frees them all from the best point."""
COARSE_POINTS = 30
"""A coordinate's scan: about this many evenly spaced grid points first, then every point within one stride of the
best (a full scan of the largest grid, 301 points, costs ten times as much)."""


def fitted_grids(prepared: list[Prepared]) -> dict:
    """The grids of the values ``prepared`` can set: the fp8 speedup only where some row runs its matmuls in fp8 (an
    fp8 checkpoint on a GPU with fp8 tensor cores), else it stays None (the peaks' ratio)."""
    fp8 = any(p.pipe.peaks.dtype == "fp8" for p in prepared)
    return {name: grid for name, grid in GRIDS.items() if fp8 or name != "fp8_speedup"}


def fit(prepared: list[Prepared], start: Efficiency | None = None,
        also_from: tuple[Efficiency, ...] = ()) -> tuple[Efficiency, float]:
    """The search (module docstring) from ``start``, else the profile over ``PROFILE_MEMORY`` from the prior (each
    point warm-started from the one before) and the free search from its best point, and a free search from each
    of ``also_from`` (``benchmarks/fit_speed.py``: the values the table held before); returns the values with the
    least loss and that loss (ties: the profile's)."""
    found = [_fit_one(prepared, start)] + [_fit_one(prepared, other) for other in also_from]
    return min(found, key=lambda pair: pair[1])


def _fit_one(prepared: list[Prepared], start: Efficiency | None) -> tuple[Efficiency, float]:
    grids = fitted_grids(prepared)
    if start is not None and start.fp8_speedup is None and "fp8_speedup" in grids:
        start = replace(start, fp8_speedup=FP8_DENSE_OVER_BF16)  # unset: the peaks' ratio, where the search begins
    if start is not None and "fp8_speedup" not in grids:
        start = replace(start, fp8_speedup=None)  # no row sets it (a previous table's value does not carry over)
    if start is not None:
        return _search(prepared, start, grids)
    eff = PRIOR.efficiency()
    if "fp8_speedup" in grids:
        eff = replace(eff, fp8_speedup=FP8_DENSE_OVER_BF16)
    profile = []
    for memory in PROFILE_MEMORY:
        held = {**grids, "memory": [memory]}
        eff, value = _search(prepared, replace(eff, memory=memory), held)
        profile.append((value, memory, eff))
    _, _, best = min(profile, key=lambda p: (p[0], p[1]))
    return _search(prepared, best, grids)


def _search(prepared: list[Prepared], start: Efficiency, grids: dict) -> tuple[Efficiency, float]:
    """Coordinate search on ``grids`` from the grid point nearest ``start`` until a sweep moves no value."""
    eff = replace(start, **{name: min(grid, key=lambda g: abs(g - getattr(start, name))) for name, grid in grids.items()})
    best = loss(prepared, eff)
    for _ in range(MAX_SWEEPS):
        moved = False
        for name, grid in grids.items():
            value, point = _scan(prepared, eff, name, grid)
            if value < best and point != getattr(eff, name):
                eff, best, moved = replace(eff, **{name: point}), value, True
        if not moved:
            break
    return eff, best


def _scan(prepared: list[Prepared], eff: Efficiency, name: str, grid: list) -> tuple[float, float]:
    """The least loss along one value's grid and its point (ties: the lower point): ``COARSE_POINTS`` evenly spaced
    points and the current one, then every point within one stride of the best of those."""
    stride = max(1, len(grid) // COARSE_POINTS)
    here = grid.index(getattr(eff, name))
    scores = {}

    def score(i):
        if i not in scores:
            scores[i] = loss(prepared, replace(eff, **{name: grid[i]}))
        return scores[i]

    coarse = min(sorted({*range(0, len(grid), stride), here}), key=lambda i: (score(i), i))
    for i in range(max(0, coarse - stride), min(len(grid), coarse + stride + 1)):
        score(i)
    i = min(scores, key=lambda i: (scores[i], i))
    return scores[i], grid[i]
