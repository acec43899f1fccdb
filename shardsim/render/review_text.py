"""Text rendering of capacity reviews (rich tables)."""

from __future__ import annotations

from shardsim.render.tables import new_table

from shardsim.capacity.records import layout_text
from shardsim.capacity.review import Review
from shardsim.units import gib_text as _gib


def _options_table(m, options, money: str, fmt_cost, reason: bool = False, width: int = 160):
    """The options of one model: cluster, layout, GPUs, cost and memory — or, with a speed load, the estimates
    (TTFT and TPOT in ms, output tokens/s per GPU, $ per million output tokens; GPUs as replicas × GPUs each).
    Below 120 columns the memory table leaves out the budget, the concurrency and the KV tokens (JSON has them)."""
    wide = width >= 120
    cols = ["#", "cluster", "layout", "GPUs"] + (["weights", "KV"] if len(m.variants) > 1 else [])
    # GPUs as replicas × GPUs per replica; the layout's degrees above 1 (data parallel is the replicas)
    if m.speed:
        cols += ["TTFT", "TPOT", "tok/s/GPU", "$/Mtok"]
    else:
        cols += [money, "needs GiB"] + (["of GiB"] if wide else []) + ["headroom", "max context"] + (
            ["max conc.", "KV tokens/replica"] if wide else [])
    cols += ["why not ranked"] if reason else []
    table = new_table(cols, left=("cluster", "layout", "weights", "KV", "why not ranked"))
    for i, o in enumerate(options, 1):
        cluster = o.cluster.name + (f" (+{len(o.also_on)})" if o.also_on else "")
        lay = o.layout
        row = [str(i), cluster, compact_layout(lay), f"{lay.dp}×{lay.tp * lay.pp}"]
        if len(m.variants) > 1:
            row += [o.variant.weights_label, o.variant.kv_dtype]
        if m.speed:
            s = o.speed
            row += (["–"] * 4 if s is None else
                    ["∞" if s.ttft_ms is None else f"{s.ttft_ms:,.0f}", f"{s.tpot_ms:,.1f}",
                     f"{s.tokens_per_s_per_gpu:,.0f}", "–" if s.usd_per_mtok is None else f"{s.usd_per_mtok:,.3f}"])
        else:
            row += [fmt_cost(o.cost), _gib(o.peak_bytes)] + ([_gib(o.budget_bytes)] if wide else []) + [
                _gib(o.headroom_bytes), f"{o.max_context:,}"] + (
                [f"{o.max_concurrency:,}", f"{o.kv_cache_tokens:,}"] if wide else [])
        row += [o.held_back or ""] if reason else []
        table.add_row(*row)
    return table


def compact_layout(layout) -> str:
    """The degrees above 1 (``TP2·PP2``; ``TP1`` for one GPU per replica; data parallel is the replicas column)."""
    parts = [f"{name}{d}" for name, d in (("TP", layout.tp), ("PP", layout.pp), ("EP", layout.ep)) if d > 1]
    return "·".join(parts) or "TP1"


def _speed_line(s) -> str:
    band = s.band.get("tpot_ms") if isinstance(s.band, dict) else None
    return (f" · TPOT {s.tpot_ms:,.1f} ms, {s.tokens_per_s_per_gpu:,.0f} output tok/s per GPU"
            + (f", ${s.usd_per_mtok:,.3f} per Mtok" if s.usd_per_mtok is not None else "")
            + (f", ${s.usd_per_month:,.0f} per month" if s.usd_per_month is not None else "")
            + (f" (estimates ±{100 * band:g} %)" if isinstance(band, (int, float)) else " (estimates)"))


def render_review(rv: Review, console, top: int = 10, misses: int = 3) -> None:
    rv.finish(top, misses)
    money = "purchase $" if rv.by == "purchase" else "$/hour"
    fmt_cost = (lambda c: "–" if c is None else f"{c:,.0f}") if rv.by == "purchase" else \
        (lambda c: "–" if c is None else f"{c:,.2f}")
    speed = any(m.speed for m in rv.models)
    order = ("$ per million output tokens among the layouts that meet the targets, then " if speed else "") + \
        f"{money} of the GPUs used (cluster price / its GPUs × layout GPUs), then headroom"
    console.print(f"[bold]review[/] · engine {rv.engine} · {len(rv.clusters)} clusters · {rv.evaluated:,} layouts evaluated"
                  f" · ranked by {order}")
    if rv.engine == "vllm":
        console.print(f"needs: the worst rank's weights + activation peak + non-torch memory + the workload's KV pages "
                      f"(max_model_len = context), of vLLM's budget {rv.gpu_memory_utilization:g} × capacity")
    else:
        console.print("needs: the most loaded rank's total at batch = ceil(concurrency / dp), of the GPU's capacity")
    for m in rv.models:
        spec = m.spec
        weights = "/".join(dict.fromkeys(v.weights_label for v in m.variants))
        kvs = "/".join(dict.fromkeys(v.kv_dtype for v in m.variants))
        console.print()
        console.print(f"[bold]{spec.name}[/] · context {m.context:,} × {m.concurrency:,} concurrent · weights {weights}"
                      f" · KV {kvs} · {m.evaluated:,} layouts evaluated · {len(m.fitting):,} distinct options ranked"
                      + (" · TTFT and TPOT in ms, estimates" if m.speed else ""))
        if m.fitting:
            console.print(_options_table(m, m.fitting[: top if top > 0 else None], money, fmt_cost,
                                         width=console.width))
            c = m.fitting[0]
            best = "cheapest per token" if m.speed else "cheapest"
            console.print(f"{best}: [green]{c.cluster.name} {layout_text(c.layout)}[/] = {c.layout.dp} replica(s) × "
                          f"{c.layout.tp * c.layout.pp} {c.cluster.gpu.name} · {money} {fmt_cost(c.cost)} · headroom "
                          f"{_gib(c.headroom_bytes)} GiB" + (_speed_line(c.speed) if c.speed else ""))
        else:
            console.print("[bold red]no layout on any cluster fits[/]" if not m.held_back else
                          "[bold red]no layout fits with the minimum headroom and meets the targets[/]")
        if misses and m.held_back:
            console.print("fits, but not ranked:")
            console.print(_options_table(m, m.held_back[:misses], money, fmt_cost, reason=True,
                                         width=console.width))
        if misses and m.misses:
            console.print("nearest misses:")
            for o in m.misses[:misses]:
                extra = f" ({o.variant.weights_label}, KV {o.variant.kv_dtype})" if len(m.variants) > 1 else ""
                short = f"short by {_gib(-o.headroom_bytes)} GiB" if o.headroom_bytes < 0 else "refused"
                console.print(f"  {o.cluster.name} {layout_text(o.layout)}{extra} · {short} · {o.reason}")
    both = rv.all_at_once()
    if both is not None:
        console.print()
        parts = ", ".join(f"{d['model']} TP{d['layout']['tp']}×PP{d['layout']['pp']}×DP{d['layout']['dp']}"
                          + (f"·EP{d['layout']['ep']}" if d['layout']['ep'] > 1 else "") for d in both["models"])
        console.print(f"all models at once: [green]{both['cluster']}[/] · {both['gpus']} of {both['cluster_gpus']} GPUs · "
                      f"{money} {fmt_cost(both['cost'])} · {parts}")
    elif len(rv.models) > 1:
        console.print("\nall models at once: no single cluster hosts them all")
