"""Sweeps of one model: a (context × batch) grid on one layout, or every layout over a list of GPU counts.

Each point is the most loaded rank at (context, batch) by ``Planner.peak_total`` with its terms (weights, KV cache,
activations, runtime) from ``Planner.rank_bytes``; ``fits`` compares its total with the GPU's capacity. Output: rows
(``SweepPoint``), CSV and JSON; the charts are ``shardsim.render.charts``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable

from shardsim.constants import MAX_REVIEW_LAYOUTS, MAX_SWEEP_POINTS
from shardsim.core.layout import Layout, enumerate_layouts, rank_coords
from shardsim.core.memory.runtime import DEFAULT_FABRIC, Fabric
from shardsim.core.model import ModelSpec
from shardsim.core.planner import Planner
from shardsim.core.workload import Workload
from shardsim.errors import ShardsimError

CSV_FIELDS = ("model", "gpu", "gpus", "tp", "pp", "dp", "ep", "context", "batch", "peak_rank", "weights_bytes",
              "kv_cache_bytes", "activations_bytes", "runtime_bytes", "peak_bytes", "capacity_bytes", "headroom_bytes",
              "fits")


@dataclass(slots=True)
class SweepPoint:
    model: str
    gpu: str
    gpus: int
    tp: int
    pp: int
    dp: int
    ep: int
    context: int
    batch: int
    peak_rank: int
    weights_bytes: int  # weights + ZeRO-3 gather buffer of the peak rank
    kv_cache_bytes: int
    activations_bytes: int
    runtime_bytes: int
    peak_bytes: int
    capacity_bytes: int
    headroom_bytes: int
    fits: bool

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def layout_text(self) -> str:
        return Layout(tp=self.tp, pp=self.pp, dp=self.dp, ep=self.ep).short()


@dataclass(frozen=True, slots=True)
class SweepRequest:
    """A sweep: one model, its contexts and batches, and either one validated layout or the GPU counts to sweep every
    layout over (the other None), the base workload and the hardware (``core.requests.Hardware``)."""

    model: ModelSpec
    layout: Layout | None
    gpu_counts: tuple[int, ...] | None
    workload: Workload
    hardware: Any
    contexts: tuple[int, ...]
    batches: tuple[int, ...]


def parse_int_list(text: str, option: str, low: int = 1, high: int | None = None) -> list[int]:
    """``4096,8192,32768`` (also ``8k``/``32K`` = × 1024, ``units.parse_count``) → sorted unique ints, each in
    [low, high]."""
    from shardsim.units import parse_count

    out = []
    for raw in str(text).split(","):
        item = raw.strip()
        if not item:
            continue
        value = parse_count(item)
        if value is None:
            raise ShardsimError(f"{option} {text!r:.60} must be comma-separated whole numbers, e.g. 4096,8k,32k")
        if value < low or (high is not None and value > high):
            rng = f"{low:,} … {high:,}" if high is not None else f"≥ {low}"
            raise ShardsimError(f"{option}: {value:,} is out of range; accepted: {rng}")
        if value not in out:
            out.append(value)
    if not out:
        raise ShardsimError(f"{option} is empty; give comma-separated whole numbers, e.g. 4096,8192")
    return sorted(out)


def _point(planner: Planner, gpu: str, capacity: int, context: int, batch: int) -> SweepPoint:
    lay = planner.layout
    rank = planner.peak_total(context, batch).rank
    rb = planner.rank_terms(rank_coords(rank, lay), context, batch).bytes
    return SweepPoint(planner.spec.name, gpu, lay.world_size, lay.tp, lay.pp, lay.dp, lay.ep, context, batch, rank,
                      rb.weights + rb.zero_gather, rb.kv_cache, rb.activations, rb.runtime, rb.total, capacity,
                      capacity - rb.total, rb.total <= capacity)


def check_points(points: int) -> None:
    """Refuse a sweep of more than ``MAX_SWEEP_POINTS`` points before computing any."""
    if points > MAX_SWEEP_POINTS:
        raise ShardsimError(f"the sweep has {points:,} points (contexts × batches × layouts); the limit is "
                            f"{MAX_SWEEP_POINTS:,}: give fewer values")


def sweep_grid(spec: ModelSpec, layout: Layout, workload: Workload, capacity: int, contexts: Iterable[int],
               batches: Iterable[int], gpu: str = "", fabric: Fabric = DEFAULT_FABRIC) -> list[SweepPoint]:
    """Every (context, batch) on one layout: context-major order."""
    contexts, batches = list(contexts), list(batches)
    check_points(len(contexts) * len(batches))
    planner = Planner(spec, layout, workload.checked(), fabric=fabric)
    out = []
    for c in contexts:
        for b in batches:
            workload.model_copy(update={"context": c, "batch": b}).checked()
            out.append(_point(planner, gpu, capacity, c, b))
    return out


def sweep_gpus(spec: ModelSpec, gpu_counts: Iterable[int], workload: Workload, capacity: int, contexts: Iterable[int],
               batches: Iterable[int], gpu: str = "", tp_max: int = 8,
               progress: Callable[[int, int], None] | None = None,
               fabric: Fabric = DEFAULT_FABRIC) -> list[SweepPoint]:
    """Every valid layout using exactly N GPUs (TP inside a node of ``tp_max``) for each N, at each (context, batch)."""
    counts = list(gpu_counts)
    base = Planner(spec, Layout(), workload.checked(), fabric=fabric)
    contexts, batches = list(contexts), list(batches)
    for c in contexts:
        for b in batches:
            workload.model_copy(update={"context": c, "batch": b}).checked()
    check_points(len(contexts) * len(batches))
    every = enumerate_layouts(spec, max(counts), tp_max=tp_max, limit=MAX_REVIEW_LAYOUTS)
    check_points(len(contexts) * len(batches) * sum(lay.world_size in counts for lay in every))
    out = []
    for i, n in enumerate(counts, 1):
        for lay in (lay for lay in every if lay.world_size == n):
            planner = base.with_layout(lay)
            for c in contexts:
                for b in batches:
                    out.append(_point(planner, gpu, capacity, c, b))
        if progress is not None:
            progress(i, len(counts))
    return out


def to_csv(points: list[SweepPoint]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for p in points:
        writer.writerow({k: (str(v).lower() if isinstance(v, bool) else v) for k, v in p.to_dict().items()})
    return buf.getvalue()
