"""The catalogs for people: the model presets, the GPU catalog, the cluster specs."""

from __future__ import annotations

from shardsim.render.tables import new_table
from shardsim.units import format_bytes


def render_models(rows: list[dict], console) -> None:
    table = new_table(("model", "alias", "params", "active", "bf16 bytes", "format", "weight bytes", "KV B/token",
                       "layers", "heads/kv", "experts"), left=("model", "alias", "format"))
    for r in rows:
        table.add_row(r["name"], r["aliases"][0], f"{r['params']:,}", f"{r['active_params']:,}", f"{r['bf16_bytes']:,}",
                      r["quant"] if r["quant"] != "none" else "bf16", f"{r['weight_bytes']:,}",
                      f"{r['kv_bytes_per_token']:,}", str(r["layers"]), f"{r['heads']}/{r['kv_heads']}",
                      str(r["experts"] or "–"))
    console.print(table)


def render_gpus(catalog: dict, console) -> None:
    table = new_table(("gpu", "aliases", "nominal", "CUDA capacity", "bytes"), left=("gpu", "aliases", "nominal"))
    for g in catalog.values():
        table.add_row(g.name, ", ".join(g.aliases), g.nominal, format_bytes(g.capacity_bytes), f"{g.capacity_bytes:,}")
    console.print(table)


def render_clusters(specs: list, console) -> None:
    table = new_table(("cluster", "gpu", "nodes × gpus", "intra-node", "inter-node", "$/hour", "purchase $"),
                      left=("cluster", "gpu", "nodes × gpus", "intra-node", "inter-node"))
    for c in specs:
        inter = c.inter_node_link.kind if c.inter_node_link else "–"
        table.add_row(c.name, c.gpu.name, f"{c.nodes} × {c.gpus_per_node}", c.intra_node_link.kind, inter,
                      "–" if c.price_per_hour_usd is None else f"{c.price_per_hour_usd:,.2f}",
                      "–" if c.purchase_price_usd is None else f"{c.purchase_price_usd:,.0f}")
    console.print(table)
