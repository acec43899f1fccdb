"""PNG charts through matplotlib (an optional extra, imported only when a chart is drawn): per-rank stacked bars
against the capacity line for one plan, a fit map over context × batch, and, for GPU-count sweeps, the peak rank of
every layout against the capacity line."""

from __future__ import annotations

from pathlib import Path

from shardsim.capacity.sweep import SweepPoint
from shardsim.core.records import PlanReport
from shardsim.errors import ShardsimError
from shardsim.units import GiB

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
