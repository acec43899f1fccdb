"""What every engine profile returns: per-rank figures in the engine's own terms, and a start verdict."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..constants import CUBLAS_WORKSPACE_BYTES, CUBLAS_WORKSPACE_PRE_HOPPER_BYTES
from ..layout import Layout, rank_coords, shard_of, stage_ranges
from ..memory.weights import weight_model
from ..models import ModelSpec, QuantConfig
from ..tensors import kv_heads_per_rank


@dataclass(slots=True)
class EngineRankReport:
    """One rank as the engine sees it; byte figures are ints, absent ones None."""

    rank: int
    layers: int
    model_loading_bytes: int
    activation_peak_bytes: int | None = None
    non_torch_bytes: int | None = None
    cuda_graph_bytes: int | None = None
    available_kv_cache_bytes: int | None = None
    kv_cache_bytes: int | None = None
    kv_cache_tokens: int | None = None
    peak_allocated_bytes: int | None = None
    used_bytes: int | None = None


@dataclass(slots=True)
class EngineReport:
    engine: str
    version: str
    knobs: dict
    ranks: list[EngineRankReport]
    starts: bool
    refusal: str | None = None
    kv_cache_tokens: int | None = None
    max_concurrency: float | None = None
    peak_allocated_bytes: int | None = None
    error_bands: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ranks"] = [asdict(r) for r in self.ranks]
        return d


def cublas_workspace_bytes(compute_capability: str | None) -> int:
    """PyTorch's cuBLAS workspace (allocated through the caching allocator, so engines' profiles see it):
    32 MiB + 1 MiB cuBLASLt on Hopper (sm90) and newer, 8.125 MiB + 1 MiB before
    (aten/src/ATen/cuda/CublasHandlePool.cpp, getChosenWorkspaceSize)."""
    try:
        major = int(str(compute_capability).split(".")[0])
    except (TypeError, ValueError):
        major = 9
    return CUBLAS_WORKSPACE_BYTES if major >= 9 else CUBLAS_WORKSPACE_PRE_HOPPER_BYTES


def rank_weight_bytes(spec: ModelSpec, layout: Layout, dtype: str, quant: QuantConfig) -> list[tuple[int, int, int]]:
    """(rank, decoder layers held, exact weight bytes) for every rank, by the planner's shard rules."""
    wm = weight_model(spec, dtype, quant)
    ranges = stage_ranges(layout)
    out = []
    for rank in range(layout.world_size):
        coords = rank_coords(rank, layout)
        first, last = ranges[coords.pp_rank]
        is_first, is_last = coords.pp_rank == 0, coords.pp_rank == layout.pp - 1
        tally = wm.stage_tally(first, last, is_first, is_last, shard_of(coords, layout))
        out.append((rank, last - first + 1, tally.bytes))
    return out


def kv_bytes_per_token_per_layer(spec: ModelSpec, tp: int, kv_dtype_bytes: int) -> int:
    return 2 * kv_heads_per_rank(spec.num_kv_heads, tp) * spec.head_dim * kv_dtype_bytes
