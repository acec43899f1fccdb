"""Text rendering of capacity reviews (rich tables)."""

from __future__ import annotations

from shardsim.render.tables import new_table

from shardsim.capacity.records import layout_text
from shardsim.capacity.review import Review
from shardsim.units import gib_text as _gib


def render_review(rv: Review, console, top: int = 10, misses: int = 3) -> None:
    rv.finish(top, misses)
    money = "purchase $" if rv.by == "purchase" else "$/hour"
    fmt_cost = (lambda c: "–" if c is None else f"{c:,.0f}") if rv.by == "purchase" else \
        (lambda c: "–" if c is None else f"{c:,.2f}")
    console.print(f"[bold]review[/] · engine {rv.engine} · {len(rv.clusters)} clusters · {rv.evaluated:,} layouts evaluated"
                  f" · ranked by {money} of the GPUs used (cluster price / its GPUs × layout GPUs), then headroom")
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
                      f" · KV {kvs} · {m.evaluated:,} layouts evaluated · {len(m.fitting):,} distinct options fit")
        if m.fitting:
            cols = ["#", "cluster", "layout", "GPUs"] + (["weights", "KV"] if len(m.variants) > 1 else []) + \
                [money, "needs GiB", "of GiB", "headroom", "max context", "max conc.", "KV tokens/replica"]
            table = new_table(cols, left=("cluster", "layout", "weights", "KV"))
            for i, o in enumerate(m.fitting[: top if top > 0 else None], 1):
                cluster = o.cluster.name + (f" (+{len(o.also_on)})" if o.also_on else "")
                row = [str(i), cluster, layout_text(o.layout), str(o.layout.world_size)]
                if len(m.variants) > 1:
                    row += [o.variant.weights_label, o.variant.kv_dtype]
                row += [fmt_cost(o.cost), _gib(o.peak_bytes), _gib(o.budget_bytes), _gib(o.headroom_bytes),
                        f"{o.max_context:,}", f"{o.max_concurrency:,}", f"{o.kv_cache_tokens:,}"]
                table.add_row(*row)
            console.print(table)
            c = m.fitting[0]
            console.print(f"cheapest: [green]{c.cluster.name} {layout_text(c.layout)}[/] on {c.layout.world_size} × "
                          f"{c.cluster.gpu.name} · {money} {fmt_cost(c.cost)} · headroom {_gib(c.headroom_bytes)} GiB")
        else:
            console.print("[bold red]no layout on any cluster fits[/]")
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
