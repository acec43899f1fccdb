"""``shardsim sweep`` for people: one row per point, and the context × batch fit map."""

from __future__ import annotations

from shardsim.render.tables import new_table

from shardsim.units import gib_text


def render_sweep(spec, layout, gpu_name, capacity, points, ctxs, bats, written, console) -> None:
    """The sweep's rows (peak rank per point) and, for a grid, the fit map."""

    g = gib_text
    where = layout.describe() if layout is not None else "every layout per GPU count"
    console.print(f"[bold]{spec.name}[/] · {where} · {gpu_name} {g(capacity)} GiB per GPU · peak rank per point, GiB")
    cols = (["GPUs", "layout"] if layout is None else []) + ["context", "batch", "peak rank", "weights", "kv cache",
                                                             "activations", "runtime", "total", "headroom", "fits"]
    table = new_table(cols, left=("layout", "fits"))
    for p in points:
        row = ([str(p.gpus), p.layout_text] if layout is None else [])
        row += [f"{p.context:,}", f"{p.batch:,}", str(p.peak_rank), g(p.weights_bytes), g(p.kv_cache_bytes),
                g(p.activations_bytes), g(p.runtime_bytes), g(p.peak_bytes),
                f"[green]{g(p.headroom_bytes)}[/]" if p.fits else f"[red]{g(p.headroom_bytes)}[/]",
                "[green]yes[/]" if p.fits else "[red]no[/]"]
        table.add_row(*row)
    console.print(table)
    if layout is not None and len(ctxs) * len(bats) > 1:
        fit = new_table(("context \\ batch", *(f"{b:,}" for b in bats)),
                        title="fit map · peak rank GiB (✓ fits, ✗ does not)")
        at = {(p.context, p.batch): p for p in points}
        for c in ctxs:
            fit.add_row(f"{c:,}", *((f"[green]✓ {g(at[c, b].peak_bytes)}[/]" if at[c, b].fits
                                     else f"[red]✗ {g(at[c, b].peak_bytes)}[/]") for b in bats))
        console.print(fit)
    for path in written:
        console.print(f"chart: {path}")
