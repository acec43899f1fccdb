"""The Qwen3 family table for people (``shardsim report``)."""

from __future__ import annotations

from shardsim.render.tables import new_table

from shardsim.capacity.family import FIT_BATCH, FIT_CONTEXT, GPUS_PER_NODE, MAX_GPUS
from shardsim.hardware import gpu_catalog
from shardsim.units import GB, gib_text

FIT_COLUMNS = 8
"""Models per fit grid at 160 columns (the eight Qwen3 sizes); the hybrids and VL models follow. A narrower terminal
takes fewer per grid: about 11 columns per model beside the 28 of the GPU and its capacity."""
FIT_COLUMN_CELLS, FIT_LABEL_CELLS = 11, 28


def layout_label(d: dict | None) -> str:
    """``1``, ``2 PP2``, ``6 TP2×PP3``, ``8 TP4×DP2·EP8``: GPUs, then the degrees above 1."""
    if d is None:
        return f"> {MAX_GPUS}"
    parts = [f"{k.upper()}{d[k]}" for k in ("tp", "pp", "dp") if d[k] > 1]
    text = "×".join(parts) + (f"·EP{d['ep']}" if d["ep"] > 1 else "")
    return f"{d['gpus']} {text}".strip()


def render_family(rows: list[dict], console) -> None:

    def gb(n: int) -> str:
        return f"{n / GB:,.2f}"

    cols = ("model", "params", "active", "bf16 GB", "fp8 GB", "int4 GB", "KV B/token", "KV 8K GB", "KV 8K GiB",
            "KV 32K GB", "KV 32K GiB")
    table = new_table(cols, left=("model",), title="Qwen3 family · sizes (GB = 10^9 B, GiB = 2^30 B)")
    for r in rows:
        table.add_row(r["model"], f"{r['params']:,}", f"{r['active_params']:,}", gb(r["bf16_bytes"]), gb(r["fp8_bytes"]),
                      gb(r["int4_bytes"]), f"{r['kv_bytes_per_token']:,}", gb(r["kv_8k_bytes"]), gib_text(r["kv_8k_bytes"]),
                      gb(r["kv_32k_bytes"]), gib_text(r["kv_32k_bytes"]))
    console.print(table)
    console.print("params: tied embeddings counted once · fp8: 128×128 block scales (fp32) · int4: GPTQ, group 128 · "
                  "KV: bf16, per sequence (2 · full-attention layers · KV heads · head_dim · 2 B per token; the hybrids' "
                  "linear-attention layers add a fixed state per sequence instead)")
    console.print()
    catalog = gpu_catalog()
    gpu_names = list(rows[0]["smallest_layout"]) if rows else []
    per_grid = max(2, min(FIT_COLUMNS, (console.width - FIT_LABEL_CELLS) // FIT_COLUMN_CELLS))
    for start in range(0, len(rows), per_grid):  # a readable grid: a few models per table
        part = rows[start:start + per_grid]
        fit = new_table(("GPU", "GiB", *(r["model"].removeprefix("Qwen3-") for r in part)), left=("GPU",),
                        title=f"smallest layout that fits · context {FIT_CONTEXT:,} × batch {FIT_BATCH} · GPUs and "
                              f"degrees (fewest GPUs, then smallest tp; ≤ {MAX_GPUS} GPUs, {GPUS_PER_NODE} per node)"
                        if start == 0 else None, no_wrap=("GPU",))
        for name in gpu_names:
            gpu = catalog.get(name)
            fit.add_row(name, gib_text(gpu.capacity_bytes) if gpu else "",
                        *(layout_label(r["smallest_layout"][name]) for r in part))
        console.print(fit)
