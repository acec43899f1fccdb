"""The context × batch fit grid: whether the plan's layout still fits at other contexts and batches.

``fit_grid(request)`` computes it — outside the page, before rendering — by the sweep's own points
(``capacity.sweep.sweep_grid``: the most loaded rank's total by ``Planner.peak_total`` on the request's layout,
workload and GPU, the same arithmetic as ``core.plan.plan_request``), for contexts from 4,096 doubling up to the
model's window and batches 1 … 256, each axis with the request's own value added. ``grid_section`` shows it: one
cell per point with the free GiB of the most loaded GPU (negative: short by that much), the request's own cell
outlined.
"""

from __future__ import annotations

from dataclasses import dataclass

from shardsim.render.html.document import Cell, Section, para, table
from shardsim.units import gib_text

FIRST_CONTEXT = 4096
BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass(frozen=True)
class FitGrid:
    """The sweep's points on the request's layout (context-major), the axes, and the request's own point."""

    contexts: tuple[int, ...]
    batches: tuple[int, ...]
    points: tuple  # capacity.sweep.SweepPoint, context-major
    context: int
    batch: int
    capacity_bytes: int

    def point(self, context: int, batch: int):
        return self.points[self.contexts.index(context) * len(self.batches) + self.batches.index(batch)]


def grid_axes(window: int, context: int, batch: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Contexts 4,096, 8,192 … below the window, the window itself and the request's context; batches 1 … 256 and
    the request's batch."""
    contexts, c = {window, context}, FIRST_CONTEXT
    while c < window:
        contexts.add(c)
        c *= 2
    return tuple(sorted(contexts)), tuple(sorted(set(BATCHES) | {batch}))


def fit_grid(request) -> FitGrid:
    """The fit grid of a ``core.requests.ServeRequest`` on its own layout and GPU (``capacity.sweep.sweep_grid``)."""
    from shardsim.capacity.sweep import sweep_grid

    wl, hw = request.workload, request.hardware
    contexts, batches = grid_axes(request.model.max_position_embeddings, wl.context, wl.batch)
    points = sweep_grid(request.model, request.layout, wl, hw.capacity_bytes, contexts, batches, hw.gpu_name,
                        hw.fabric)
    return FitGrid(contexts, batches, tuple(points), wl.context, wl.batch, hw.capacity_bytes)


def grid_section(grid: FitGrid | None, window: int | None = None) -> Section:
    """The grid as a table: rows are contexts, columns batches, each cell the free GiB of the most loaded GPU
    (green: fits, red: does not), the request's own cell outlined."""
    lead = ("Free memory (GiB) of the most loaded GPU at each context and batch, by shardsim's planner on this layout "
            "and GPU (the engine's own start-up check is in the Engine section); negative: short by that much.")
    if grid is None:
        return Section("fit-grid", "Context × batch", lead, [para("no grid was computed for this report", "muted")])
    rows = []
    for c in grid.contexts:
        label = f"{c:,}" + (" (window)" if c == window else "")
        row = [Cell(label, "here" if c == grid.context else "")]
        for b in grid.batches:
            p = grid.point(c, b)
            cls = ("fit" if p.fits else "nofit") + (" here" if (c, b) == (grid.context, grid.batch) else "")
            row.append(Cell(gib_text(p.headroom_bytes), cls,
                            f"context {c:,} × batch {b}: {gib_text(p.peak_bytes)} of {gib_text(p.capacity_bytes)} GiB "
                            f"on rank {p.peak_rank}"))
        rows.append(row)
    headers = ["context ↓ · batch →", *(f"{b:,}" for b in grid.batches)]
    fits = sum(p.fits for p in grid.points)
    body = [table(headers, rows, numeric=range(1, len(headers))),
            para(f"{fits} of {len(grid.points)} points fit; outlined: this report's context {grid.context:,} × "
                 f"batch {grid.batch:,}.", "muted")]
    return Section("fit-grid", "Context × batch", lead, body)

