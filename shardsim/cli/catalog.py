"""``shardsim models``, ``gpus``, ``clusters``: the presets and the hardware catalog."""

from __future__ import annotations

from shardsim.cli.common import console, print_json
from shardsim.cli.options import JsonOpt


def models(as_json: JsonOpt = False) -> None:
    """The Qwen3 presets: parameters, active parameters, bf16 bytes, KV bytes per token.

    \b
    Example: shardsim models --json
    """
    from shardsim.core.memory.kv_cache import kv_bytes_per_token
    from shardsim.core.memory.weights import total_weight_bytes
    from shardsim.core.tensors import active_parameter_count, parameter_count
    from shardsim.presets import PRESET_ALIASES, get_preset

    rows = []
    for full, aliases in PRESET_ALIASES.items():
        spec = get_preset(full)
        rows.append({
            "name": full, "aliases": list(aliases), "architecture": spec.architecture,
            "params": parameter_count(spec), "active_params": active_parameter_count(spec),
            "bf16_bytes": total_weight_bytes(spec, "bf16", spec.quant.model_copy(update={"method": "none"})),
            "weight_bytes": total_weight_bytes(spec, "bf16"), "quant": spec.quant.method,
            "kv_bytes_per_token": kv_bytes_per_token(spec, 2), "layers": spec.num_layers, "heads": spec.num_heads,
            "kv_heads": spec.num_kv_heads, "head_dim": spec.head_dim, "experts": spec.num_experts,
            "max_context": spec.max_position_embeddings,
        })
    if as_json:
        return print_json(rows)
    from shardsim.render.catalog_text import render_models

    render_models(rows, console())


def gpus(as_json: JsonOpt = False) -> None:
    """The GPU catalog: capacity as the CUDA runtime reports it, beside the nominal size.

    \b
    Example: shardsim gpus   (then e.g. --gpu h200, --gpu "NVIDIA H100 80GB HBM3")
    """
    from shardsim.hardware import gpu_catalog

    cat = gpu_catalog()
    if as_json:
        return print_json([g.model_dump() for g in cat.values()])
    from shardsim.render.catalog_text import render_gpus

    render_gpus(cat, console())


def clusters(as_json: JsonOpt = False) -> None:
    """The cluster specs in cluster_specs/.

    \b
    Example: shardsim clusters   (then --cluster NAME or --cluster FILE.yaml)
    """
    from shardsim.hardware import list_clusters

    specs = list_clusters()
    if as_json:
        return print_json([c.model_dump() for c in specs])
    from shardsim.render.catalog_text import render_clusters

    render_clusters(specs, console())


def register(app) -> None:
    app.command()(models)
    app.command()(gpus)
    app.command()(clusters)
