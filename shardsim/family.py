"""The Qwen3 family table, computed from the presets' own config.json files — where common tables go wrong.

Per model: parameters (tied embeddings counted once) and active parameters (MoE: the top-k experts of every
layer), whole-model bytes in bf16, in FP8 (128×128 block scales in fp32, as Qwen's FP8 checkpoints and vLLM store
them) and in int4 (GPTQ layout, group 128, with scales and zeros), the KV cache per token
(2 · layers · KV heads · head_dim · 2 B in bf16) and per sequence at 8K and 32K tokens, and the smallest layout
that fits on each GPU of the catalog at 8K context, batch 1 (fewest GPUs, then the smallest tp; TP inside an
8-GPU node; shardsim's planner with the checkpoint's bf16 weights).

Where common tables go wrong: Qwen3 uses grouped-query attention with only 4 (MoE) or 8 (dense) KV heads of
head_dim 128, so Qwen3-235B-A22B holds 188 KiB of KV per token — 1.58 GB at 8K, not the ~25 GB one gets by
giving K and V all 64 query heads; and Qwen3-8B has 8,190,735,360 parameters (its 151,936 × 4,096 embedding and
lm_head are separate tensors), not the 7.72 B some tables list.
"""

from __future__ import annotations

from typing import Callable

from .cluster import GPUSpec, gpu_catalog
from .constants import KV_BLOCK_TOKENS
from .layout import Layout, enumerate_layouts
from .memory.weights import total_weight_bytes
from .models import ModelSpec, QuantConfig, get_preset
from .plan import Planner, Workload
from .quant import quant_from_choice
from .review import BASE_PRESETS
from .tensors import active_parameter_count, parameter_count
from .units import GB, GiB

FIT_CONTEXT = 8192
FIT_BATCH = 1
MAX_GPUS = 64
GPUS_PER_NODE = 8


def smallest_layout(spec: ModelSpec, gpu: GPUSpec, layouts: list[Layout], planner: Planner,
                    context: int = FIT_CONTEXT, batch: int = FIT_BATCH) -> Layout | None:
    """The first of ``layouts`` (sorted: fewest GPUs, then smallest tp; model-parallel before data-parallel) whose
    peak rank fits ``gpu``; None if none does."""
    for lay in layouts:
        if planner.with_layout(lay).peak_total(context, batch)[1] <= gpu.capacity_bytes:
            return lay
    return None


def family_rows(presets: tuple[str, ...] = BASE_PRESETS, gpus: list[GPUSpec] | None = None,
                max_gpus: int = MAX_GPUS, progress: Callable[[int, int], None] | None = None) -> list[dict]:
    gpus = list(gpu_catalog().values()) if gpus is None else gpus
    rows = []
    for i, name in enumerate(presets, 1):
        spec = get_preset(name)
        kv_token = spec.kv_bytes_per_token(2)
        layouts = sorted(enumerate_layouts(spec, max_gpus, tp_max=GPUS_PER_NODE),
                         key=lambda l: (l.world_size, l.tp, l.dp, l.ep, l.pp))
        planner = Planner(spec, Layout(), Workload(context=FIT_CONTEXT, batch=FIT_BATCH))
        smallest = {}
        for gpu in gpus:
            lay = smallest_layout(spec, gpu, layouts, planner)
            smallest[gpu.name] = None if lay is None else {
                "gpus": lay.world_size, "tp": lay.tp, "pp": lay.pp, "dp": lay.dp, "ep": lay.ep}
        rows.append({
            "model": spec.name, "architecture": spec.architecture,
            "params": parameter_count(spec), "active_params": active_parameter_count(spec),
            "bf16_bytes": total_weight_bytes(spec, "bf16", QuantConfig()),
            "fp8_bytes": total_weight_bytes(spec, "bf16", quant_from_choice("fp8")),
            "int4_bytes": total_weight_bytes(spec, "bf16", quant_from_choice("int4")),
            "layers": spec.num_layers, "kv_heads": spec.num_kv_heads, "head_dim": spec.head_dim,
            "kv_bytes_per_token": kv_token,
            "kv_8k_bytes": kv_token * 8192, "kv_32k_bytes": kv_token * 32768,
            "smallest_layout": smallest,
        })
        if progress is not None:
            progress(i, len(presets))
    return rows


def family_json(rows: list[dict]) -> dict:
    return {
        "fit": {"context": FIT_CONTEXT, "batch": FIT_BATCH, "max_gpus": MAX_GPUS, "gpus_per_node": GPUS_PER_NODE,
                "engine": "none", "weights": "bf16", "kv_dtype": "bf16", "kv_block_tokens": KV_BLOCK_TOKENS},
        "models": rows,
    }


def layout_label(d: dict | None) -> str:
    """``1``, ``2 PP2``, ``6 TP2×PP3``, ``8 TP4×DP2·EP8``: GPUs, then the degrees above 1."""
    if d is None:
        return f"> {MAX_GPUS}"
    parts = [f"{k.upper()}{d[k]}" for k in ("tp", "pp", "dp") if d[k] > 1]
    text = "×".join(parts) + (f"·EP{d['ep']}" if d["ep"] > 1 else "")
    return f"{d['gpus']} {text}".strip()


def render_family(rows: list[dict], console) -> None:
    from rich.table import Table

    def gb(n: int) -> str:
        return f"{n / GB:,.2f}"

    def gib(n: int) -> str:
        return f"{n / GiB:,.2f}"

    table = Table(show_edge=False, header_style="bold", title="Qwen3 family · sizes (GB = 10^9 B, GiB = 2^30 B)")
    cols = ("model", "params", "active", "bf16 GB", "fp8 GB", "int4 GB", "KV B/token", "KV 8K GB", "KV 8K GiB",
            "KV 32K GB", "KV 32K GiB")
    for col in cols:
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=True)
    for r in rows:
        table.add_row(r["model"], f"{r['params']:,}", f"{r['active_params']:,}", gb(r["bf16_bytes"]), gb(r["fp8_bytes"]),
                      gb(r["int4_bytes"]), f"{r['kv_bytes_per_token']:,}", gb(r["kv_8k_bytes"]), gib(r["kv_8k_bytes"]),
                      gb(r["kv_32k_bytes"]), gib(r["kv_32k_bytes"]))
    console.print(table)
    console.print("params: tied embeddings counted once · fp8: 128×128 block scales (fp32) · int4: GPTQ, group 128 · "
                  "KV: bf16, per sequence (2 · layers · KV heads · head_dim · 2 B per token)")
    console.print()
    catalog = gpu_catalog()
    gpu_names = list(rows[0]["smallest_layout"]) if rows else []
    fit = Table(show_edge=False, header_style="bold",
                title=f"smallest layout that fits · context {FIT_CONTEXT:,} × batch {FIT_BATCH} · GPUs and degrees "
                      f"(fewest GPUs, then smallest tp; ≤ {MAX_GPUS} GPUs, {GPUS_PER_NODE} per node)")
    fit.add_column("GPU", no_wrap=True)
    fit.add_column("GiB", justify="right", no_wrap=True)
    for r in rows:
        fit.add_column(r["model"].removeprefix("Qwen3-"), justify="right", no_wrap=True)
    for name in gpu_names:
        gpu = catalog.get(name)
        fit.add_row(name, gib(gpu.capacity_bytes) if gpu else "", *(layout_label(r["smallest_layout"][name]) for r in rows))
    console.print(fit)
