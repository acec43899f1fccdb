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

from shardsim.capacity.workload import BASE_PRESETS
from shardsim.constants import KV_BLOCK_TOKENS
from shardsim.core.layout import Layout, enumerate_layouts
from shardsim.core.memory.kv_cache import kv_bytes_per_token
from shardsim.core.memory.weights import total_weight_bytes
from shardsim.core.model import ModelSpec, QuantConfig
from shardsim.core.planner import Planner
from shardsim.core.quant import quant_from_choice
from shardsim.core.tensors import active_parameter_count, parameter_count
from shardsim.core.workload import Workload
from shardsim.hardware import GPUSpec, gpu_catalog
from shardsim.presets import get_preset

FIT_CONTEXT = 8192
FIT_BATCH = 1
MAX_GPUS = 64
GPUS_PER_NODE = 8


def smallest_layout(spec: ModelSpec, gpu: GPUSpec, layouts: list[Layout], planner: Planner,
                    context: int = FIT_CONTEXT, batch: int = FIT_BATCH) -> Layout | None:
    """The first of ``layouts`` (sorted: fewest GPUs, then smallest tp; model-parallel before data-parallel) whose
    peak rank fits ``gpu``; None if none does."""
    for lay in layouts:
        if planner.with_layout(lay).peak_total(context, batch).total_bytes <= gpu.capacity_bytes:
            return lay
    return None


def family_rows(presets: tuple[str, ...] = BASE_PRESETS, gpus: list[GPUSpec] | None = None,
                max_gpus: int = MAX_GPUS, progress: Callable[[int, int], None] | None = None) -> list[dict]:
    gpus = list(gpu_catalog().values()) if gpus is None else gpus
    rows = []
    for i, name in enumerate(presets, 1):
        spec = get_preset(name)
        kv_token = kv_bytes_per_token(spec, 2)
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
