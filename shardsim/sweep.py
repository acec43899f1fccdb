"""Sweeps of one model: a (context × batch) grid on one layout, or every layout over a list of GPU counts.

Each point is the most loaded rank at (context, batch) by ``Planner.peak_total`` with its terms (weights, KV cache,
activations, runtime) from ``Planner.rank_bytes``; ``fits`` compares its total with the GPU's capacity. Output: rows
(``SweepPoint``), CSV, JSON, and PNG charts through matplotlib (an optional extra, imported only for charts):
per-rank stacked bars against the capacity line for one plan, a fit map over context × batch, and, for GPU-count
sweeps, the peak rank of every layout against the capacity line.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

from .errors import ShardsimError
from .layout import Layout, enumerate_layouts, rank_coords
from .models import ModelSpec
from .plan import Planner, PlanReport, Workload
from .units import GiB

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
        return f"TP{self.tp}×PP{self.pp}×DP{self.dp}" + (f"·EP{self.ep}" if self.ep > 1 else "")


def parse_int_list(text: str, option: str, low: int = 1, high: int | None = None) -> list[int]:
    """``4096,8192,32768`` (also ``8k``/``32K`` = × 1024) → sorted unique ints, each in [low, high]."""
    out = []
    for raw in str(text).split(","):
        item = raw.strip().lower()
        if not item:
            continue
        mult = 1024 if item.endswith("k") else 1
        try:
            value = int(item[:-1] if mult > 1 else item) * mult
        except ValueError:
            raise ShardsimError(f"{option} {text!r} must be comma-separated whole numbers, e.g. 4096,8192,32768") from None
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
    rank, total = planner.peak_total(context, batch)
    rb, _ = planner.rank_bytes(rank_coords(rank, lay), context, batch)
    return SweepPoint(planner.spec.name, gpu, lay.world_size, lay.tp, lay.pp, lay.dp, lay.ep, context, batch, rank,
                      rb.weights + rb.zero_gather, rb.kv_cache, rb.activations, rb.runtime, rb.total, capacity,
                      capacity - rb.total, rb.total <= capacity)


def sweep_grid(spec: ModelSpec, layout: Layout, workload: Workload, capacity: int, contexts: Iterable[int],
               batches: Iterable[int], gpu: str = "") -> list[SweepPoint]:
    """Every (context, batch) on one layout: context-major order."""
    planner = Planner(spec, layout, workload.checked())
    out = []
    for c in contexts:
        for b in batches:
            workload.model_copy(update={"context": c, "batch": b}).checked()
            out.append(_point(planner, gpu, capacity, c, b))
    return out


def sweep_gpus(spec: ModelSpec, gpu_counts: Iterable[int], workload: Workload, capacity: int, contexts: Iterable[int],
               batches: Iterable[int], gpu: str = "", tp_max: int = 8,
               progress: Callable[[int, int], None] | None = None) -> list[SweepPoint]:
    """Every valid layout using exactly N GPUs (TP inside a node of ``tp_max``) for each N, at each (context, batch)."""
    counts = list(gpu_counts)
    base = Planner(spec, Layout(), workload.checked())
    contexts, batches = list(contexts), list(batches)
    for c in contexts:
        for b in batches:
            workload.model_copy(update={"context": c, "batch": b}).checked()
    every = enumerate_layouts(spec, max(counts), tp_max=tp_max)
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


# ---------------------------------------------------------------- charts
_COLORS = {"weights": "#4C72B0", "KV cache": "#55A868", "activations": "#DD8452", "runtime": "#8172B3"}


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ShardsimError("charts need matplotlib, which is not installed: pip install 'shardsim[charts]' "
                            "(or leave out --chart)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def chart_ranks(report: PlanReport, path: Path) -> Path:
    """Per-rank stacked bars (weights / KV / activations / runtime, GiB) against the GPU's capacity line."""
    plt = _pyplot()
    ranks = report.ranks
    xs = list(range(len(ranks)))
    terms = {
        "weights": [(r.bytes.weights + r.bytes.zero_gather) / GiB for r in ranks],
        "KV cache": [r.bytes.kv_cache / GiB for r in ranks],
        "activations": [r.bytes.activations / GiB for r in ranks],
        "runtime": [r.bytes.runtime / GiB for r in ranks],
    }
    width = max(7.5, min(18.0, 0.35 * len(ranks) + 3))
    fig, ax = plt.subplots(figsize=(width, 5.2), dpi=110)
    bottom = [0.0] * len(ranks)
    for name, values in terms.items():
        ax.bar(xs, values, bottom=bottom, label=name, color=_COLORS[name], width=0.8)
        bottom = [b + v for b, v in zip(bottom, values)]
    cap = report.capacity_bytes / GiB
    ax.axhline(cap, color="#C44E52", linestyle="--", linewidth=1.5, label=f"capacity {cap:,.2f} GiB")
    peak = report.peak
    ax.annotate(f"peak rank {peak.rank}: {peak.bytes.total / GiB:,.2f} GiB", xy=(peak.rank, peak.bytes.total / GiB),
                xytext=(0, 6), textcoords="offset points", ha="center", fontsize=8)
    lay, wl = report.layout, report.workload
    verdict = "fits" if report.fits else "does NOT fit"
    ax.set_title(f"{report.model.name} · {lay.describe()}\ncontext {wl.context:,} × batch {wl.batch:,} · "
                 f"{report.gpu_name or 'GPU'} · {verdict} · headroom {report.headroom_bytes / GiB:,.2f} GiB", fontsize=9)
    ax.set_xlabel("rank")
    ax.set_ylabel("GiB")
    step = max(1, len(ranks) // 32)
    ax.set_xticks(xs[::step])
    ax.set_ylim(0, max(cap, max(bottom)) * 1.12)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), fontsize=8, ncol=5, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _fit_cmap():
    """Greens to yellow below 100 % of the GPU, a sharp step to orange and red above it."""
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("shardsim_fit", [
        (0.0, "#1a9850"), (0.25, "#66bd63"), (0.4999, "#fee08b"), (0.5, "#f46d43"), (1.0, "#a50026")])


def chart_fitmap(points: list[SweepPoint], path: Path) -> Path:
    """Heat map over context (rows) × batch (columns): the peak rank's share of the GPU, each cell labelled with
    its GiB; cells over 100 % do not fit."""
    plt = _pyplot()
    from matplotlib.colors import TwoSlopeNorm

    contexts = sorted({p.context for p in points})
    batches = sorted({p.batch for p in points})
    at = {(p.context, p.batch): p for p in points}
    grid = [[at[(c, b)].peak_bytes / at[(c, b)].capacity_bytes for b in batches] for c in contexts]
    hi = max(1.5, max(max(row) for row in grid))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(batches) + 2.5), max(3.2, 0.7 * len(contexts) + 1.8)), dpi=110)
    img = ax.imshow(grid, cmap=_fit_cmap(), norm=TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=hi), aspect="auto")
    for i, c in enumerate(contexts):
        for j, b in enumerate(batches):
            p = at[(c, b)]
            mark = "✓" if p.fits else "✗"
            ax.text(j, i, f"{mark} {p.peak_bytes / GiB:,.1f}", ha="center", va="center", fontsize=8,
                    color="white" if grid[i][j] < 0.3 or grid[i][j] > 1.4 else "black")
    ax.set_xticks(range(len(batches)), [f"{b:,}" for b in batches])
    ax.set_yticks(range(len(contexts)), [f"{c:,}" for c in contexts])
    ax.set_xlabel("batch (sequences per replica)")
    ax.set_ylabel("context (tokens)")
    first = points[0]
    ax.set_title(f"{first.model} · {first.layout_text} · {first.gpu} {first.capacity_bytes / GiB:,.2f} GiB\n"
                 "peak rank GiB; colour = share of the GPU (✗ over capacity)", fontsize=10)
    cbar = fig.colorbar(img, ax=ax)
    cbar.set_label("peak / capacity")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def chart_layouts(points: list[SweepPoint], path: Path) -> Path:
    """GPU-count sweep: the peak rank of every layout as stacked bars against the capacity line (first context and
    batch of the sweep)."""
    plt = _pyplot()
    c0, b0 = points[0].context, points[0].batch
    pts = [p for p in points if p.context == c0 and p.batch == b0]
    xs = list(range(len(pts)))
    fig, ax = plt.subplots(figsize=(max(8.0, min(26.0, 0.3 * len(pts) + 5)), 5.4), dpi=110)
    bottom = [0.0] * len(pts)
    for name, attr in (("weights", "weights_bytes"), ("KV cache", "kv_cache_bytes"),
                       ("activations", "activations_bytes"), ("runtime", "runtime_bytes")):
        values = [getattr(p, attr) / GiB for p in pts]
        ax.bar(xs, values, bottom=bottom, label=name, color=_COLORS[name], width=0.8)
        bottom = [b + v for b, v in zip(bottom, values)]
    cap = pts[0].capacity_bytes / GiB
    ax.axhline(cap, color="#C44E52", linestyle="--", linewidth=1.5, label=f"capacity {cap:,.2f} GiB")
    for x, p, top in zip(xs, pts, bottom):
        ax.text(x, top, "✓" if p.fits else "✗", ha="center", va="bottom", fontsize=8,
                color="#1a9850" if p.fits else "#C44E52")
    ax.set_xticks(xs, [f"{p.gpus}: {p.layout_text}" for p in pts], rotation=90, fontsize=7)
    ax.set_ylabel("peak rank GiB")
    ax.set_title(f"{pts[0].model} on {pts[0].gpu} · context {c0:,} × batch {b0:,}\n"
                 "peak rank of every layout (GPUs: layout; ✗ over capacity)", fontsize=9)
    ax.set_ylim(0, max(cap, max(bottom)) * 1.12)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
