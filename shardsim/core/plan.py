"""plan(model, layout, workload, capacity) → PlanReport: the memory of every rank. Pure: no I/O, no torch.

Per rank: weights (exact), KV cache (exact), activation peak (estimate), runtime (estimate: CUDA context, cuBLAS,
NCCL, allocator rounding). total = weights + ZeRO gather buffer + kv_cache + activations + runtime, which is what
the GPU shows as used. The per-stage arithmetic is ``planner.Planner``.
"""

from __future__ import annotations

from shardsim.constants import MAX_BATCH
from shardsim.core.layout import Layout, rank_coords
from shardsim.core.memory.runtime import DEFAULT_FABRIC, Fabric
from shardsim.core.model import ModelSpec
from shardsim.core.planner import Planner
from shardsim.core.records import PlanReport, RankReport
from shardsim.core.requests import ServeRequest
from shardsim.core.tensors import Shard, active_parameter_count, parameter_count
from shardsim.core.workload import Workload

__all__ = ["Fabric", "Planner", "PlanReport", "RankReport", "Workload", "plan", "plan_request"]


def plan(spec: ModelSpec, layout: Layout, workload: Workload, capacity_bytes: int, *,
         fabric: Fabric = DEFAULT_FABRIC, cluster_name: str = "", gpu_name: str = "",
         warnings: list[str] | None = None) -> PlanReport:
    """Every rank's memory for ``spec`` sharded as ``layout`` serving ``workload`` on GPUs of ``capacity_bytes``
    wired as ``fabric`` (its gpus_per_node places ranks on nodes)."""
    workload = workload.checked()
    planner = Planner(spec, layout, workload, fabric=fabric)
    placement = fabric.placement
    lay = planner.layout
    ranks = []
    for rank in range(lay.world_size):
        coords = rank_coords(rank, lay)
        terms = planner.rank_terms(coords, workload.context, workload.batch)
        slot = placement.slot(rank)
        ranks.append(RankReport(rank, slot.node, slot.local_gpu, coords, terms.layers, terms.bytes,
                                capacity_bytes, terms.runtime.communicators,
                                terms.runtime.components(), terms.kv_bytes_per_token, terms.state_bytes_per_sequence))
    peak_rank = max(ranks, key=lambda r: (r.bytes.total, -r.rank)).rank
    model_limit = spec.max_position_embeddings
    max_context = planner.largest_fitting(capacity_bytes, workload.batch, "context", model_limit)
    limited_by = "model" if max_context == model_limit else "memory"
    max_batch = planner.largest_fitting(capacity_bytes, workload.context, "batch", MAX_BATCH)
    notes = list(warnings or [])
    return PlanReport(
        model=spec, layout=lay, workload=workload, quant=planner.quant,
        params=parameter_count(spec), active_params=active_parameter_count(spec),
        weight_bytes=planner.wm.stage_tally(0, spec.num_layers - 1, True, True, Shard()).bytes,
        capacity_bytes=capacity_bytes, ranks=ranks, peak_rank=peak_rank, max_context=max_context,
        max_context_limited_by=limited_by, max_batch=max_batch, warnings=notes,
        cluster_name=cluster_name, gpu_name=gpu_name, interconnect=fabric.intra,
    )


def plan_request(request: ServeRequest) -> PlanReport:
    """``plan`` for a ServeRequest (``core.requests``): its model, layout, workload and hardware."""
    hw = request.hardware
    return plan(request.model, request.layout, request.workload, hw.capacity_bytes, fabric=hw.fabric,
                cluster_name=hw.cluster_name, gpu_name=hw.gpu_name, warnings=list(hw.warnings))
