"""Every value the speed model fitted to measurements, in one table, each naming the rows it was fitted to and how.

The rows are in ``shardsim/speed/data/serving_benchmarks.jsonl`` (``"split": "fitted"``); no held-out row was
used, so the held-out errors ``shardsim calibrate --speed`` reports (and the bands ``speed`` prints,
``speed.bands``) are out of sample. ``benchmarks/fit_speed.py`` prints these values from the database (a
deterministic search, below); they are written here by hand and never recomputed at import.

How: for each engine, the four values minimise the sum over its fitted rows of the squared log errors of TPOT,
TTFT and output tokens/s (each row's figures present), by coordinate search on fixed grids (compute and memory
efficiency 0.05 … 1.00 in steps of 0.01, step overhead 0 … 30 ms in steps of 0.1 ms, request overhead 0 … 300 ms
in steps of 1 ms), starting from the grid point nearest the PRIOR row below and sweeping the four in turn until
no value moves: deterministic. An engine with fewer than ``MIN_ROWS`` fitted rows takes the values fitted to all
engines' fitted rows together (named ``"*"``).
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_ROWS = 3
"""Fitted rows an engine needs for its own values; fewer: the all-engine fit."""


@dataclass(frozen=True, slots=True)
class SpeedFit:
    """The fitted values of one engine ("*": all engines' fitted rows together)."""

    engine: str
    compute_efficiency: float
    memory_efficiency: float
    step_overhead_ms: float
    ttft_overhead_ms: float
    rows: tuple[str, ...]
    how: str


PRIOR = SpeedFit("prior", 0.55, 0.75, 2.0, 20.0, (),
                 "the search's starting point, not fitted: 55 % of dense peak and 75 % of HBM bandwidth are where "
                 "the FlashAttention-2 paper puts fused GEMM + attention forward on A100 (Dao 2023, arXiv:2307.08691, "
                 "§4.1: 50–73 % of peak) and where STREAM-like kernels sit on HBM; 2 ms and 20 ms per step and "
                 "request are placeholders")

FITTED: tuple[SpeedFit, ...] = (
    SpeedFit("*", 0.55, 0.75, 2.0, 20.0, (),
             "not fitted: the database had no row with split 'fitted' when this table was written; the prior"),
)
"""Written from ``benchmarks/fit_speed.py``; ``tests/unit/test_speed_fit.py`` refits and compares."""

_BY_ENGINE = {f.engine: f for f in FITTED}


def speed_fit(engine: str | None) -> SpeedFit:
    """The fitted values for ``engine`` (None: the planner alone, which schedules like vLLM V1), else all engines'."""
    return _BY_ENGINE.get(engine or "vllm") or _BY_ENGINE["*"]
