"""The fit behind ``speed.fitted``: for one engine's fitted rows, the compute and memory efficiencies and the step
and request overheads that minimise the sum of squared log errors of TTFT, TPOT and output tokens/s.

Deterministic: a coordinate search on fixed grids (``GRIDS``) from the prior (``fitted.PRIOR``) at each of
``START_MEMORY``: each value in turn is set to the grid point with the least loss, the others held, until a full
sweep moves none (ties keep the lower grid point); the start with the least loss wins. Each row's scheduler and stages are built once (``estimate.prepare``); a candidate only
replaces the efficiencies. ``benchmarks/fit_speed.py`` runs it on the database and prints the table to write.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from shardsim.speed import estimate as est
from shardsim.speed.calibration import ServingRow, measured, speed_request_of
from shardsim.speed.fitted import PRIOR
from shardsim.speed.roofline import Efficiency

GRIDS = {
    "compute": [round(0.05 + 0.01 * i, 2) for i in range(96)],
    "memory": [round(0.05 + 0.01 * i, 2) for i in range(96)],
    "step_overhead_s": [round(0.0001 * i, 4) for i in range(301)],
    "ttft_overhead_s": [round(0.001 * i, 3) for i in range(301)],
    "seq_overhead_s": [round(1e-6 * i, 6) for i in range(301)],
    "layer_overhead_s": [round(1e-6 * i, 6) for i in range(201)],
    "moe_layer_overhead_s": [round(1e-6 * i, 6) for i in range(301)],
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


START_MEMORY = (0.55, 0.75, 0.95)
"""The memory efficiencies the search starts from (the prior's other values kept): the loss has separate valleys
along memory efficiency against the per-step overheads (vLLM's rows: from 0.75 alone the search stopped at 0.68
with a loss of 12.27 where 0.95 and up reach 12.02 and below), so the search runs from each and keeps the least."""


def fit(prepared: list[Prepared], start: Efficiency | None = None) -> tuple[Efficiency, float]:
    """The coordinate search (module docstring) from ``start``, else from the prior at each of ``START_MEMORY``;
    returns the values with the least loss (ties: the first start) and that loss."""
    if start is not None:
        return _search(prepared, start)
    prior = PRIOR.efficiency()
    results = [_search(prepared, replace(prior, memory=m)) for m in START_MEMORY]
    return min(results, key=lambda r: r[1])


def _search(prepared: list[Prepared], start: Efficiency) -> tuple[Efficiency, float]:
    eff = start
    eff = replace(eff, **{name: min(grid, key=lambda g: abs(g - getattr(eff, name))) for name, grid in GRIDS.items()})
    best = loss(prepared, eff)
    for _ in range(MAX_SWEEPS):
        moved = False
        for name, grid in GRIDS.items():
            scores = [(loss(prepared, replace(eff, **{name: g})), i, g) for i, g in enumerate(grid)]
            value, _, point = min(scores)
            if value < best and point != getattr(eff, name):
                eff, best, moved = replace(eff, **{name: point}), value, True
        if not moved:
            break
    return eff, best
